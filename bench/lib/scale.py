"""Deploy at scale: wall time of `mailctl deploy` to N hosts (N = 1, 5, 10 by default), a
first deploy and a no-change redeploy per N, with the ratio to N = 1, and the controller's
CPU-seconds per host for the no-change redeploy (and with Mitogen for Ansible, when the venv
has it: its mitogen_linear strategy over the same SSH connections).

Controller CPU: the deploys run in a cpuacct cgroup of their own (cgroup v1), which counts
every process they start, also the ssh ControlPersist masters that outlive a run and are
nobody's child; without that cgroup, only mailctl and the processes it waited for.

The hosts are systemd containers from the prepared image mailctl-base:bookworm-amd64-mail
(the mail packages already in apt's cache, so downloads are not what is measured), reached
over SSH with a key pair and pinned host keys made for this run, on a docker network of
their own. Each host is an all-in-one mail server with its own domain. Every container is
removed at the end (also on Ctrl-C). Bounded: each deploy is stopped after 20 minutes.

    bench/scale [--sizes 1,5,10] [--forks N] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    IMAGE,
    BenchError,
    containers,
    ensure_engine_and_image,
    guarded,
    log,
    mailctl_env,
    mitogen_env,
    tool,
)
from common import run as sh

NETWORK = "mailctl-bench-scale"
SUBNET = "172.30.78"  # .0/24; hosts from .10
PREFIX = "mailctl-bench-scale-"
DEPLOY_TIMEOUT = 20 * 60


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
        containers.run_systemd(name, IMAGE, f"mail{i + 1:02d}.scale.test",
                               "--network", NETWORK, "--ip", ip)
        hosts.append((name, ip))
    for name, ip in hosts:
        containers.wait_booted(name, timeout=120)
        script = ("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && "
                  "install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && "
                  "chmod 600 /root/.ssh/authorized_keys && systemctl restart ssh && "
                  "cat /etc/ssh/ssh_host_ed25519_key.pub")
        proc = subprocess.run(["docker", "exec", "-i", name, "sh", "-c", script], input=pub,
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise BenchError(f"preparing SSH on {name} failed: {proc.stderr.strip()[-200:]}")
        known.append(f"{ip} {' '.join(proc.stdout.split()[:2])}")
    (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
    return hosts


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


CPU_GROUP = Path("/sys/fs/cgroup/cpuacct/mailctl-bench-controller")


def cpu_group() -> Path | None:
    try:
        CPU_GROUP.mkdir(exist_ok=True)
    except OSError:
        return None
    return CPU_GROUP


def controller_cpu(group: Path | None) -> float:
    """CPU seconds so far: of the cgroup, else of this process's waited-for children."""
    if group:
        return int((group / "cpuacct.usage").read_text()) / 1e9
    times = os.times()
    return times.children_user + times.children_system


def deploy(inventory: Path, forks: int, ca_dir: Path,
           env: dict | None = None) -> tuple[float, float, str]:
    """One mailctl deploy: (wall seconds, controller CPU seconds, its totals line)."""
    group = cpu_group()

    def join_group() -> None:  # in the child, before exec
        if group:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    t0, cpu0 = time.monotonic(), controller_cpu(group)
    proc = subprocess.run([tool("mailctl"), "deploy", "-i", str(inventory), "--forks", str(forks),
                           "--ca-dir", str(ca_dir)], capture_output=True, text=True,
                          timeout=DEPLOY_TIMEOUT, check=False, env=env or mailctl_env(),
                          preexec_fn=join_group)
    elapsed, cpu = time.monotonic() - t0, controller_cpu(group) - cpu0
    if proc.returncode != 0:
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-20:]:
            log(f"  | {line}")
        raise BenchError(f"mailctl deploy to {inventory} failed (its last lines are above)")
    totals = [line.strip() for line in proc.stdout.splitlines() if "host(s):" in line]
    return elapsed, cpu, (totals[-1] if totals else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,5,10", help="host counts, comma-separated")
    parser.add_argument("--forks", type=int, default=0,
                        help="Ansible forks (default: one per host)")
    parser.add_argument("--keep", action="store_true", help="keep the last set of containers")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    ensure_engine_and_image()
    with_mitogen = mitogen_env()
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
                first, _, _ = deploy(work / "inventory", forks, work / "ca")
                again, cpu, again_totals = deploy(work / "inventory", forks, work / "ca")
                mitogen = (deploy(work / "inventory", forks, work / "ca", with_mitogen)
                           if with_mitogen else None)
                print(f"N={n:<3} first deploy {first:7.1f} s   no-change {again:7.1f} s, "
                      f"controller {cpu:6.1f} CPU-s ({again_totals})"
                      + (f"; with Mitogen {mitogen[0]:.1f} s, {mitogen[1]:.1f} CPU-s "
                         f"({mitogen[2]})" if mitogen else ""), flush=True)
                rows.append((n, first, again, cpu, mitogen))
                if not (args.keep and n == sizes[-1]):
                    cleanup()
    finally:
        if not args.keep:
            cleanup()
        # empty once the last SSH master has exited (ControlPersist); else left for the next run
        with contextlib.suppress(OSError):
            CPU_GROUP.rmdir()
    base = {"first": rows[0][1], "again": rows[0][2]}
    print(f"\nmailctl deploy to N hosts over SSH ({IMAGE}), forks = N unless --forks; "
          f"{time.strftime('%Y-%m-%d')}, {len(os.sched_getaffinity(0))} cores")
    print(f"{'N':>4} {'first (s)':>10} {'x N=1':>7} {'per host':>9} {'no-change (s)':>14} "
          f"{'x N=1':>7} {'per host':>9} {'ctl CPU-s/host':>15}"
          + (f" {'Mitogen (s)':>12} {'ctl CPU-s/host':>15}" if with_mitogen else ""))
    for n, first, again, cpu, mitogen in rows:
        print(f"{n:>4} {first:>10.1f} {first / base['first']:>7.2f} {first / n:>9.1f} "
              f"{again:>14.1f} {again / base['again']:>7.2f} {again / n:>9.1f} {cpu / n:>15.2f}"
              + (f" {mitogen[0]:>12.1f} {mitogen[1] / n:>15.2f}" if mitogen else ""))


    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
