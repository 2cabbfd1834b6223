"""Shared helpers of the bench scripts: bench containers, bench inventories, timing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
PREFIX = "mailctl-bench-"
IMAGE = "mailctl-base:bookworm-amd64-mail"  # packages downloaded, not installed
DOMAIN = "bench.test"
PASSWORD_PREFIX = "bench-pw-"  # bench containers only, never published
SYSTEMD_RUN = ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
               "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
               "--tmpfs", "/run", "--tmpfs", "/run/lock"]


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tool(name: str) -> str:
    """A tool from the project's venv, else from PATH."""
    venv = ROOT / ".venv" / "bin" / name
    if venv.exists():
        return str(venv)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found: run scripts/bootstrap (it creates .venv)")
    return found


def run(*argv: str, check: bool = True, timeout: float = 900,
        env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BenchError(f"{' '.join(argv[:4])} … failed ({proc.returncode}):\n  "
                         + "\n  ".join(tail))
    return proc


def docker(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check, timeout=timeout)


def ensure_engine_and_image() -> None:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        raise BenchError("the Docker engine is not running: run scripts/bootstrap")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        log(f"building {IMAGE} (molecule/images/build.sh, a few minutes, once)")
        run("bash", str(ROOT / "molecule" / "images" / "build.sh"), "amd64", timeout=1800)
        if docker("image", "inspect", IMAGE, check=False).returncode != 0:
            raise BenchError(f"{IMAGE} is missing after molecule/images/build.sh")


def running(name: str) -> bool:
    proc = docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def start_container(name: str, reuse: bool) -> bool:
    """Start a systemd container named name (a bench name). True if a running one was
    reused."""
    assert name.startswith(PREFIX)
    if reuse and running(name):
        return True
    docker("rm", "-f", name, check=False)
    docker("run", "-d", "--name", name, "--hostname", f"mail.{DOMAIN}", "--network", "bridge",
           *SYSTEMD_RUN, IMAGE, "/sbin/init")
    wait_booted(name)
    return False


def wait_booted(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).stdout
        if state.strip() in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise BenchError(f"{name}: systemd did not finish booting in {timeout:.0f}s")


def remove(names: list[str]) -> None:
    for name in names:
        assert name.startswith(PREFIX)
        docker("rm", "-f", name, check=False)


def write_inventory(directory: Path, hosts: dict[str, str], users: int) -> Path:
    """A mailctl inventory for bench containers: hosts {container name: backend}, users
    u0..u<n-1>@bench.test with passwords bench-pw-uN (1G quota each)."""
    (directory / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    lines = ["---", "all:", "  hosts:"]
    for name, backend in hosts.items():
        lines += [f"    {name}:", "      ansible_connection: community.docker.docker",
                  "      ansible_python_interpreter: /usr/bin/python3",
                  f"      mail_backend: {backend}"]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    group = ["---", f"mail_hostname: mail.{DOMAIN}", f"mail_domains: [{DOMAIN}]",
             "mail_users:"]
    for i in range(users):
        group += [f"  - address: u{i}@{DOMAIN}", f"    password: {PASSWORD_PREFIX}u{i}",
                  "    quota: 1G"]
    group += ["mail_postfix_overrides:",
              "  smtp_dns_support_level: disabled",
              '  default_transport: "error:outbound mail is disabled in the bench"']
    (directory / "group_vars" / "all" / "main.yml").write_text("\n".join(group) + "\n")
    return directory


def mailctl_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"

    return env


def deploy(inventory: Path, *extra: str, timeout: float = 900) -> float:
    """mailctl deploy; returns the wall time in seconds (raises on failure)."""
    t0 = time.monotonic()
    run(tool("mailctl"), "deploy", "-i", str(inventory), *extra, timeout=timeout,
        env=mailctl_env())
    return time.monotonic() - t0


def host_info() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, {cpu}"
