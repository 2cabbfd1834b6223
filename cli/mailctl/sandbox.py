"""The embedded default: one local systemd container with Postfix and the mail store, its
mail ports published on 127.0.0.1 only, deployed from inventories/sandbox/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import containers
from .errors import MailctlError
from .paths import share_dir

NAME = "mailctl-sandbox"
IMAGE = containers.MAIL_IMAGE  # packages already downloaded: a quick first deploy
HOSTNAME = "mail.sandbox.test"
# container port -> port on 127.0.0.1 (offset so a local MTA on 25 does not clash)
PORTS = {25: 10025, 465: 10465, 587: 10587, 143: 10143, 993: 10993, 110: 10110, 995: 10995,
         4190: 14190}
STATE_DIR = Path.home() / ".local" / "share" / "mailctl" / "sandbox"
CA_DIR = STATE_DIR / "ca"


@dataclass
class SandboxStatus:
    exists: bool
    running: bool
    ports: dict[int, int]


def status() -> SandboxStatus:
    proc = containers.docker("inspect", "-f", "{{.State.Running}}", NAME, check=False)
    if proc.returncode != 0:
        return SandboxStatus(False, False, {})
    return SandboxStatus(True, proc.stdout.strip() == "true", dict(PORTS))


def start(log) -> None:
    """Start the container (reusing a running one) and wait until systemd has booted."""
    containers.ensure_engine()
    containers.ensure_image(IMAGE, log)
    current = status()
    if current.running:
        log(f"container {NAME} is already running; reusing it")
        return
    if current.exists:
        containers.docker("rm", "-f", NAME)
    publish = []
    for inside, outside in PORTS.items():
        publish += ["-p", f"127.0.0.1:{outside}:{inside}"]
    containers.run_systemd(NAME, IMAGE, HOSTNAME, *publish)
    containers.wait_booted(NAME)
    log(f"started container {NAME} ({IMAGE})")


def stop() -> bool:
    if not status().exists:
        return False
    containers.docker("rm", "-f", NAME)
    return True


def inventory() -> Path:
    return share_dir() / "inventories" / "sandbox"


def ca_dir_for(source: Path, given: Path | None) -> Path | None:
    """--ca-dir, else for the sandbox's inventory (its directory or a file in it) the
    sandbox's own CA directory (its certificates and DKIM keys live there, not beside the
    inventory), else None."""
    here = Path(source).resolve()
    if given or inventory().resolve() not in (here, here.parent):
        return given
    return CA_DIR


# What each published port says first; True: implicit TLS, verified against the sandbox CA.
# Port 25: postscreen opens with "220-" and waits to see whether the client talks first
# (published ports reach the sandbox from Docker's gateway, not from mynetworks)
GREETINGS = {25: ("220", False), 587: ("220 ", False), 465: ("220 ", True),
             143: ("* OK", False), 993: ("* OK", True), 110: ("+OK", False),
             995: ("+OK", True), 4190: ('"IMPLEMENTATION"', False)}


def _tls_context():
    import ssl

    ctx = ssl.create_default_context(cafile=str(CA_DIR / "ca.crt"))
    original = ctx.wrap_socket

    def wrap(sock, *args, **kwargs):  # verify against the mail name, not 127.0.0.1
        kwargs["server_hostname"] = HOSTNAME
        return original(sock, *args, **kwargs)

    ctx.wrap_socket = wrap
    return ctx


def smoke() -> None:
    """The quick check `sandbox up` runs (the full suite is `mailctl verify`): every
    published port greets, and the implicit-TLS ports show a certificate that chains to
    the sandbox CA and names the mail host."""
    import socket

    ctx = _tls_context()
    for inside, (greeting, tls) in GREETINGS.items():
        try:
            with socket.create_connection(("127.0.0.1", PORTS[inside]), timeout=10) as raw:
                sock = ctx.wrap_socket(raw) if tls else raw
                first = sock.recv(512).decode("ascii", "replace")
        except OSError as exc:
            raise MailctlError(f"sandbox port {inside} (127.0.0.1:{PORTS[inside]}): "
                               f"{type(exc).__name__}: {exc}") from None
        if not first.startswith(greeting):
            raise MailctlError(f"sandbox port {inside} (127.0.0.1:{PORTS[inside]}) greeted "
                               f"{first.strip()[:60]!r}, expected {greeting.strip()!r}")


def demo_delivery(user: str, password: str, rcpt: str, rcpt_password: str,
                  timeout: float = 60) -> str:
    """Send a message through the published submission port and read it back over the
    published IMAPS and POP3S ports, as an outside mail client would; it must carry the
    sender domain's DKIM signature. Returns the subject."""
    import imaplib
    import poplib
    import re
    import smtplib
    import time
    import uuid

    ctx = _tls_context()
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
                break
            time.sleep(0.5)
        else:
            raise MailctlError(f"sandbox mail test: {subject!r} did not arrive within "
                               f"{timeout:.0f}s")
        pop = poplib.POP3_SSL("127.0.0.1", PORTS[995], context=ctx, timeout=20)
        pop.user(rcpt)
        pop.pass_(rcpt_password)
        count = len(pop.list()[1])
        headers = b"\n".join(pop.top(count, 0)[1]) if count else b""
        pop.quit()
        if subject.encode() not in headers:
            raise MailctlError(f"sandbox mail test: {subject!r} is in IMAP but not the last "
                               "message over POP3")
        domain = user.split("@", 1)[1].encode()
        if not re.search(rb"^DKIM-Signature:.*?\bd=" + re.escape(domain) + rb";",
                         headers, re.M | re.S):
            raise MailctlError(f"sandbox mail test: {subject!r} arrived without a DKIM "
                               f"signature for {domain.decode()}")
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailctlError(f"sandbox mail test failed: {type(exc).__name__}: {exc}") from None
    return subject
