"""The embedded default: one local systemd container with Postfix and the mail store, its
mail ports published on 127.0.0.1 only, deployed from inventories/sandbox/."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import MailctlError
from .paths import share_dir

NAME = "mailctl-sandbox"
IMAGE = "mailctl-base:bookworm-amd64"
HOSTNAME = "mail.sandbox.test"
# container port -> port on 127.0.0.1 (offset so a local MTA on 25 does not clash)
PORTS = {25: 10025, 465: 10465, 587: 10587, 143: 10143, 993: 10993, 110: 10110, 995: 10995}
STATE_DIR = Path.home() / ".local" / "share" / "mailctl" / "sandbox"
CA_DIR = STATE_DIR / "ca"


@dataclass
class SandboxStatus:
    exists: bool
    running: bool
    ports: dict[int, int]


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None:
        raise MailctlError("docker is not installed: run scripts/bootstrap (or apt-get install "
                           "docker.io)")
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise MailctlError(f"docker {args[0]} failed: {first}")
    return proc


def ensure_engine() -> None:
    if _docker("info", check=False).returncode != 0:
        raise MailctlError("the Docker engine is not running: start it (scripts/bootstrap "
                           "does, or run `dockerd &` as root)")


def ensure_image(log) -> None:
    if _docker("image", "inspect", IMAGE, check=False).returncode == 0:
        return
    script = share_dir() / "images" / "build.sh"
    if not script.is_file():
        script = share_dir() / "molecule" / "images" / "build.sh"
    log(f"building the base image {IMAGE} from debootstrap (a few minutes, once)")
    if subprocess.run(["bash", str(script), "amd64"], check=False).returncode != 0:
        raise MailctlError(f"building {IMAGE} failed (see the output above)")


def status() -> SandboxStatus:
    proc = _docker("inspect", "-f", "{{.State.Running}}", NAME, check=False)
    if proc.returncode != 0:
        return SandboxStatus(False, False, {})
    return SandboxStatus(True, proc.stdout.strip() == "true", dict(PORTS))


def start(log) -> None:
    """Start the container (reusing a running one)."""
    ensure_engine()
    ensure_image(log)
    current = status()
    if current.running:
        log(f"container {NAME} is already running; reusing it")
        return
    if current.exists:
        _docker("rm", "-f", NAME)
    publish = []
    for inside, outside in PORTS.items():
        publish += ["-p", f"127.0.0.1:{outside}:{inside}"]
    _docker("run", "-d", "--name", NAME, "--hostname", HOSTNAME,
            "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", *publish, IMAGE, "/sbin/init")
    log(f"started container {NAME} ({IMAGE})")


def stop() -> bool:
    if not status().exists:
        return False
    _docker("rm", "-f", NAME)
    return True


def inventory() -> Path:
    return share_dir() / "inventories" / "sandbox"


def demo_delivery(user: str, password: str, rcpt: str, rcpt_password: str,
                  timeout: float = 60) -> str:
    """Send a message through the published submission port and read it back over the
    published IMAPS port, as an outside mail client would. Returns the subject."""
    import imaplib
    import smtplib
    import ssl
    import time
    import uuid

    ctx = ssl.create_default_context(cafile=str(CA_DIR / "ca.crt"))
    original = ctx.wrap_socket

    def wrap(sock, *args, **kwargs):  # verify against the mail name, not 127.0.0.1
        kwargs["server_hostname"] = HOSTNAME
        return original(sock, *args, **kwargs)

    ctx.wrap_socket = wrap
    subject = f"Hello from the mailctl sandbox {uuid.uuid4().hex[:8]}"
    try:
        with smtplib.SMTP("127.0.0.1", PORTS[587], timeout=20) as smtp:
            smtp.starttls(context=ctx)
            smtp.login(user, password)
            smtp.sendmail(user, [rcpt], f"From: {user}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                                        f"\r\nIt works.\r\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            imap = imaplib.IMAP4_SSL("127.0.0.1", PORTS[993], ssl_context=ctx, timeout=20)
            imap.login(rcpt, rcpt_password)
            imap.select("INBOX", readonly=True)
            _, found = imap.search(None, "SUBJECT", f'"{subject}"')
            imap.logout()
            if found and found[0].split():
                return subject
            time.sleep(1)
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error) as exc:
        raise MailctlError(f"sandbox mail test failed: {type(exc).__name__}: {exc}") from None
    raise MailctlError(f"sandbox mail test: {subject!r} did not arrive within {timeout:.0f}s")
