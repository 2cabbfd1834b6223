"""Deploy at scale: wall time of `mailctl deploy` to N hosts (N = 1, 5, 10 by default), a
first deploy and a no-change redeploy per N, with the ratio to N = 1.

The hosts are systemd containers from the prepared image mailctl-base:bookworm-amd64-mail
(the mail packages already in apt's cache, so downloads are not what is measured), reached
over SSH with a key pair and pinned host keys made for this run, on a docker network of
their own. Each host is an all-in-one mail server with its own domain. Every container is
removed at the end (also on Ctrl-C). Bounded: each deploy is stopped after 20 minutes.

    bench/scale [--sizes 1,5,10] [--forks N] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = "mailctl-base:bookworm-amd64-mail"
NETWORK = "mailctl-bench-scale"
SUBNET = "172.30.78"  # .0/24; hosts from .10
PREFIX = "mailctl-bench-scale-"
DEPLOY_TIMEOUT = 20 * 60


def sh(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"bench/scale: {' '.join(argv[:3])} failed: {proc.stderr.strip()[-500:]}")
    return proc


def mailctl() -> str:
    local = REPO / ".venv" / "bin" / "mailctl"
    return str(local) if local.exists() else "mailctl"


def cleanup() -> None:
    names = sh("docker", "ps", "-aq", "--filter", f"name=^{PREFIX}", check=False).stdout.split()
    if names:
        sh("docker", "rm", "-f", *names, check=False)
    sh("docker", "network", "rm", NETWORK, check=False)


def start_hosts(count: int, ssh_dir: Path) -> list[tuple[str, str]]:
    """Start `count` containers, give each fresh host keys and this run's public key; return
    [(name, ip)] once every one answers over SSH with its pinned host key."""
    sh("docker", "network", "create", "--subnet", f"{SUBNET}.0/24", NETWORK)
    hosts, known = [], []
    pub = (ssh_dir / "id_ed25519.pub").read_text()
    for i in range(count):
        name, ip = f"{PREFIX}{i + 1:02d}", f"{SUBNET}.{10 + i}"
        sh("docker", "run", "-d", "--name", name, "--hostname", f"mail{i + 1:02d}.scale.test",
           "--network", NETWORK, "--ip", ip, "--cap-add", "SYS_ADMIN", "--cgroupns", "host",
           "--security-opt", "seccomp=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock", IMAGE, "/sbin/init")
        hosts.append((name, ip))
    for name, ip in hosts:
        wait_booted(name)
        script = ("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && "
                  "install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && "
                  "chmod 600 /root/.ssh/authorized_keys && systemctl restart ssh && "
                  "cat /etc/ssh/ssh_host_ed25519_key.pub")
        proc = subprocess.run(["docker", "exec", "-i", name, "sh", "-c", script], input=pub,
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            sys.exit(f"bench/scale: preparing SSH on {name} failed: {proc.stderr.strip()}")
        known.append(f"{ip} {' '.join(proc.stdout.split()[:2])}")
    (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
    return hosts


def wait_booted(name: str, timeout: float = 120) -> None:
    """Until systemd in the container is up (right after `docker run` its bus may not be)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sh("docker", "exec", name, "systemctl", "is-system-running", "--wait",
                   check=False, timeout=timeout).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    sys.exit(f"bench/scale: {name} did not finish booting within {timeout:.0f} s")


def write_inventory(directory: Path, hosts: list[tuple[str, str]], ssh_dir: Path) -> None:
    lines = ["all:", "  vars:", "    ansible_user: root",
             f"    ansible_ssh_private_key_file: {ssh_dir / 'id_ed25519'}",
             f"    ansible_ssh_common_args: -o UserKnownHostsFile={ssh_dir / 'known_hosts'} "
             "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
             "  hosts:"]
    for i, (name, ip) in enumerate(hosts, 1):
        domain = f"d{i:02d}.scale.test"
        lines += [f"    {name}:", f"      ansible_host: {ip}",
                  f"      mail_hostname: mail{i:02d}.scale.test",
                  f"      mail_domains: [{domain}]",
                  "      mail_users:",
                  f"        - {{address: alice@{domain}, password: bench-alice-{i}}}",
                  f"        - {{address: bob@{domain}, password: bench-bob-{i}}}",
                  "      mail_postfix_overrides: {smtp_dns_support_level: disabled}"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")


def deploy(inventory: Path, forks: int, ca_dir: Path) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([mailctl(), "deploy", "-i", str(inventory), "--forks", str(forks),
                           "--ca-dir", str(ca_dir)], capture_output=True, text=True,
                          timeout=DEPLOY_TIMEOUT, check=False)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"bench/scale: deploy failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    totals = [line.strip() for line in proc.stdout.splitlines() if "host(s):" in line]
    return elapsed, (totals[-1] if totals else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,5,10", help="host counts, comma-separated")
    parser.add_argument("--forks", type=int, default=0,
                        help="Ansible forks (default: one per host)")
    parser.add_argument("--keep", action="store_true", help="keep the last set of containers")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    if shutil.which("docker") is None or sh("docker", "info", check=False).returncode != 0:
        sys.exit("bench/scale: the Docker engine is not running (scripts/bootstrap starts it)")
    if sh("docker", "image", "inspect", IMAGE, check=False).returncode != 0:
        sh("bash", str(REPO / "molecule" / "images" / "build.sh"), "amd64", "--mail",
           timeout=3600)
    rows = []
    cleanup()
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="mailctl-bench-scale-") as tmp:
                work = Path(tmp)
                ssh_dir = work / "ssh"
                ssh_dir.mkdir(mode=0o700)
                sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519"))
                hosts = start_hosts(n, ssh_dir)
                write_inventory(work / "inventory", hosts, ssh_dir)
                forks = args.forks or n
                first, _ = deploy(work / "inventory", forks, work / "ca")
                again, again_totals = deploy(work / "inventory", forks, work / "ca")
                print(f"N={n:<3} first deploy {first:7.1f} s   no-change {again:7.1f} s   "
                      f"({again_totals})", flush=True)
                rows.append((n, first, again))
                if not (args.keep and n == sizes[-1]):
                    cleanup()
    finally:
        if not args.keep:
            cleanup()
    base = {"first": rows[0][1], "again": rows[0][2]}
    print(f"\nmailctl deploy to N hosts over SSH ({IMAGE}), forks = N unless --forks; "
          f"{time.strftime('%Y-%m-%d')}, {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{'N':>4} {'first (s)':>10} {'x N=1':>7} {'per host':>9} {'no-change (s)':>14} "
          f"{'x N=1':>7} {'per host':>9}")
    for n, first, again in rows:
        print(f"{n:>4} {first:>10.1f} {first / base['first']:>7.2f} {first / n:>9.1f} "
              f"{again:>14.1f} {again / base['again']:>7.2f} {again / n:>9.1f}")


if __name__ == "__main__":
    main()
