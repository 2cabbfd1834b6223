"""Shared helpers of the bench scripts: bench containers, bench inventories, timing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    from mailctl import containers
    from mailctl.errors import MailctlError
except ImportError:  # run with a Python that lacks the venv: use the checkout's package
    sys.path.insert(0, str(ROOT / "cli"))
    from mailctl import containers
    from mailctl.errors import MailctlError

BENCH = ROOT / "bench"
PREFIX = "mailctl-bench-"
IMAGE = containers.MAIL_IMAGE  # packages downloaded, not installed
DOMAIN = "bench.test"
PASSWORD_PREFIX = "bench-pw-"  # bench containers only, never published


class BenchError(Exception):
    """A failure the bench reports as one line (its context is logged before it)."""


def guarded(main: Callable[[], int | None]) -> int:
    """Run a bench's main: every failure ends as one `error:` line and exit 1, no traceback;
    the bench's own `finally` blocks have removed its containers by then."""
    try:
        return main() or 0
    except (BenchError, MailctlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except subprocess.TimeoutExpired as exc:
        print(f"error: {' '.join(map(str, exc.cmd[:3]))} … did not finish in {exc.timeout:.0f}s",
              file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    return 1


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
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-15:]:
            log(f"  | {line}")  # the context of the one-line error below
        raise BenchError(f"{' '.join(argv[:4])} … failed (exit {proc.returncode}; its last "
                         "lines are above)")
    return proc


def docker(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check, timeout=timeout)


def ensure_engine_and_image() -> None:
    containers.ensure_engine()
    containers.ensure_image(IMAGE, log)


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
    containers.run_systemd(name, IMAGE, f"mail.{DOMAIN}", "--network", "bridge")
    containers.wait_booted(name)
    return False


def remove(names: list[str]) -> None:
    for name in names:
        assert name.startswith(PREFIX)
        docker("rm", "-f", name, check=False)


def write_inventory(directory: Path, hosts: dict[str, str], users: int,
                    connection: str = "community.docker.docker") -> Path:
    """A mailctl inventory for bench containers: hosts {container name: backend}, users
    u0..u<n-1>@bench.test with passwords bench-pw-uN (1G quota each)."""
    (directory / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    lines = ["---", "all:", "  hosts:"]
    for name, backend in hosts.items():
        lines += [f"    {name}:", f"      ansible_connection: {connection}",
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


def mitogen_env() -> dict | None:
    """mailctl's environment with Mitogen's strategy, or None when it is not installed."""
    env = mailctl_env()
    found = run(tool("python"), "-c", "import ansible_mitogen, os; "
                "print(os.path.dirname(ansible_mitogen.__file__))", env=env, check=False)
    if found.returncode != 0:
        return None
    env["ANSIBLE_STRATEGY_PLUGINS"] = found.stdout.strip() + "/plugins/strategy"
    env["ANSIBLE_STRATEGY"] = "mitogen_linear"
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
