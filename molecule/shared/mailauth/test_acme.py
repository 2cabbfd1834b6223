"""Certificates that real clients trust ([4/8]): the host's certificate comes from the
scenario's ACME CA (Pebble in the outside container, harness.py), real clients verify it
against Pebble's root and the host name, and the on-host timer renews it at two-thirds of
its short lifetime while mail sessions are in progress. Run by molecule's verifier in the
scenarios whose host has mail_tls mode acme (default, cyrus)."""

from __future__ import annotations

import functools
import imaplib
import socket
import subprocess
import time
import uuid

import pytest
from cryptography import x509
from world import IMAPS, SMTP, inventory_dir, state, tls_context

from mailctl import certs
from mailctl.inventory import Inventory
from mailctl.model import MailHost
from mailctl.render import tls_paths

REMOTE_ROOT = "/opt/outside/acme-root.pem"


@functools.cache
def _host() -> MailHost:
    inventory = Inventory(inventory_dir())
    hosts = [h for h in inventory.mail_hosts() if h.acme]
    if len(hosts) != 1:
        pytest.fail(f"the ACME checks need one host with mail_tls mode acme, not {len(hosts)}")
    return hosts[0]


def on(container: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", "exec", container, *argv], capture_output=True,
                          text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{container}: {' '.join(argv)}: {proc.stderr.strip()[-800:]}")
    return proc


def installed() -> certs.CertInfo:
    """The installed certificate, read by mailctl's own parser."""
    mail = _host()
    return certs.parse_pem(on(mail.name, "cat", tls_paths(mail)["cert"]).stdout)


def installed_serial() -> int:
    return int(installed().serial, 16)


def served_serial(port: int) -> int:
    """The serial of the certificate a new connection gets, verified against the root."""
    mail = _host()
    with socket.create_connection((mail.dns.ipv4, port), timeout=10) as raw, \
            tls_context(mail).wrap_socket(raw, server_hostname=mail.hostname) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def host_clock() -> int:
    return int(on(_host().name, "date", "+%s").stdout)


def acme_journal(since: int) -> list[str]:
    out = on(_host().name, "journalctl", "--no-pager", "-q", "-o", "cat", "--since",
             f"@{since}", "-u", "mailctl-acme.service").stdout
    return [line for line in out.splitlines() if line.strip()]


def wait_for(what: str, probe, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def lifetime() -> int:
    return int(installed().lifetime.total_seconds())


def users() -> tuple:
    known = [u for u in _host().users if u.password]
    return known[0], known[1]


# --------------------------------------------------------------------------- real clients

@pytest.mark.parametrize("port,starttls", [(25, "smtp"), (587, "smtp"), (465, None),
                                           (993, None), (995, None), (143, "imap"),
                                           (110, "pop3")])
def test_openssl_verifies_the_chain_and_name(port, starttls):
    """openssl s_client from the outside container: the chain ends at Pebble's root and
    the certificate carries the host's name (and the extra names of mail_tls.names)."""
    mail, outside = _host(), state()["container"]
    subprocess.run(["docker", "cp", state()["acme_root"], f"{outside}:{REMOTE_ROOT}"],
                   check=True)
    argv = ["openssl", "s_client", "-connect", f"{mail.dns.ipv4}:{port}", "-servername",
            mail.hostname, "-CAfile", REMOTE_ROOT, "-verify_return_error", "-brief"]
    for name in mail.tls.all_names(mail.hostname):
        proc = on(outside, "sh", "-c", " ".join([*argv, "-verify_hostname", name]
                                                 + (["-starttls", starttls] if starttls else [])
                                                 ) + " </dev/null", check=False)
        assert "Verification: OK" in proc.stderr, f"port {port}, {name}: {proc.stderr[-600:]}"


def test_curl_reads_a_mailbox_over_imaps():
    """curl (another TLS stack's client) lists a user's mailboxes over IMAPS, trusting
    Pebble's root only; the password goes through a netrc file, never an argument."""
    mail, outside = _host(), state()["container"]
    user = users()[0]
    subprocess.run(["docker", "cp", state()["acme_root"], f"{outside}:{REMOTE_ROOT}"],
                   check=True)
    netrc = f"machine {mail.hostname} login {user.address} password {user.password}\n"
    subprocess.run(["docker", "exec", "-i", outside, "sh", "-c",
                    "umask 077; cat > /root/.netrc"], input=netrc, text=True, check=True)
    proc = on(outside, "curl", "-sS", "--netrc", "--cacert", REMOTE_ROOT,
              f"imaps://{mail.hostname}/", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "INBOX" in proc.stdout


def test_port_80_is_closed_between_challenges():
    """certbot answers HTTP-01 itself, only while a challenge is pending: between renewals
    nothing listens on port 80 (a renewal may be running at one probe, not at all three)."""
    mail = _host()
    listening = []
    for _ in range(3):
        listening.append(on(mail.name, "ss", "-Hltn", "sport = :80").stdout.strip())
        time.sleep(1)
    assert "" in listening, f"port 80 is open between renewals: {listening}"


# --------------------------------------------------------------------------- renewal

def test_the_timer_renews_while_sessions_go_on():
    """Without a deploy, the timer renews at two-thirds of the lifetime and reloads the
    services: an SMTP submission and an IMAP session opened before the renewal complete
    after it, and new connections get the new certificate on every TLS port."""
    mail = _host()
    sender, recipient = users()
    subject = f"mailctl-acme-{uuid.uuid4().hex}"
    before = installed_serial()
    since = host_clock()

    smtp = SMTP(mail, 587)
    smtp.starttls(context=tls_context(mail))
    smtp.login(sender.address, sender.password)
    assert smtp.mail(sender.address)[0] == 250
    assert smtp.rcpt(recipient.address)[0] == 250
    imap = IMAPS(mail)
    imap.login(recipient.address, recipient.password)
    imap.select("INBOX")

    renewed = wait_for("the timer's renewal", lambda: installed_serial() != before,
                       timeout=lifetime() + 30)
    assert renewed
    now = installed_serial()
    for port in (465, 993, 995):
        wait_for(f"port {port} to serve the renewed certificate",
                 lambda port=port: served_serial(port) == now, timeout=30)

    body = f"Subject: {subject}\r\nFrom: {sender.address}\r\nTo: {recipient.address}\r\n\r\nx\r\n"
    assert smtp.data(body.encode())[0] == 250, "the submission begun before the reload failed"
    smtp.quit()
    assert imap.noop()[0] == "OK", "the IMAP session begun before the reload ended"
    wait_for("the message in the session begun before the reload", lambda: _found(imap, subject),
             timeout=60)
    imap.logout()

    lines = acme_journal(since)
    assert any(line.startswith(f"issued {mail.hostname} (two-thirds of its lifetime have "
                               "passed)") for line in lines), lines


def _found(imap: imaplib.IMAP4, subject: str) -> bool:
    imap.noop()
    status, data = imap.search(None, "SUBJECT", f'"{subject}"')
    return status == "OK" and bool(data[0].split())
