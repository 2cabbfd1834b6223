"""An internet-facing host defends itself ([5/8]) without hurting real clients: postscreen
refuses a client that talks before the banner, failed logins get slower and then the address
is banned from every mail port while other clients go on, `mailctl bans` shows and lifts the
ban, the per-user sending limit answers 4xx to one user only, and a connection flood over the
anvil limit gets 4xx. Run by molecule's verifier in the default and cyrus scenarios.

The clients come from extra addresses of the scenario's own docker network, added to this
machine's side of it (the bridge) for the test and removed after it: the mail host sees each
as a different client, and nothing leaves the machine."""

from __future__ import annotations

import functools
import imaplib
import ipaddress
import smtplib
import socket
import subprocess
import sys
import time
import uuid

import pytest
from world import inventory_dir, state, tls_context

from mailctl.inventory import Inventory
from mailctl.model import MailHost

JAILS = {"dovecot": "mailctl-dovecot", "cyrus": "mailctl-cyrus"}


@functools.cache
def _host() -> MailHost:
    hosts = [h for h in Inventory(inventory_dir()).mail_hosts() if h.kind == "allinone"]
    if len(hosts) != 1:
        pytest.fail(f"the defence checks need one all-in-one host, not {len(hosts)}")
    return hosts[0]


def _users():
    known = {u.address: u for u in _host().users if u.password}
    limited = [a for a, _ in _host().send_limits.users if a in known]
    if not limited:
        pytest.fail("the scenario gives one user a small mail_send_limits entry")
    others = [u for a, u in known.items() if a not in limited]
    return known[limited[0]], others[0]


@pytest.fixture(scope="module")
def sources():
    """Seven addresses of the scenario's network on this machine's bridge to it."""
    gateway = state()["ip"].rsplit(".", 1)[0] + ".1"
    found = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                           text=True, check=True).stdout
    bridge = next((line.split()[1] for line in found.splitlines()
                   if f" {gateway}/" in line), None)
    if bridge is None:
        pytest.fail(f"no interface of this machine holds {gateway}")
    added = [str(ipaddress.ip_address(gateway) + 200 + i) for i in range(7)]
    for address in added:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", bridge], check=False,
                       capture_output=True)
    yield added
    for address in added:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", bridge], check=False,
                       capture_output=True)
        _mailctl("bans", "--unban", address)


def _connect(port: int, source: str, timeout: float = 30) -> socket.socket:
    return socket.create_connection((_host().dns.ipv4, port), timeout=timeout,
                                    source_address=(source, 0))


def _banned(port: int, source: str) -> bool:
    """True when the host refuses (or drops) a new connection from source."""
    try:
        with _connect(port, source, timeout=3) as sock:
            sock.settimeout(3)
            return not sock.recv(64)
    except (ConnectionRefusedError, TimeoutError, ConnectionResetError):
        return True


def _wait_banned(port: int, source: str, timeout: float = 20) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _banned(port, source):
            return time.monotonic() - start
        time.sleep(0.5)
    pytest.fail(f"{source} was not banned from port {port} within {timeout:.0f} s")


def _mailctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from mailctl.cli import main; main()", *args,
                           "-i", str(inventory_dir())], capture_output=True, text=True,
                          timeout=300, check=False)


class _Imap(imaplib.IMAP4):
    def __init__(self, source: str):
        self._source = source
        super().__init__(_host().hostname, 143, timeout=30)

    def _create_socket(self, timeout):
        return _connect(self.port, self._source, timeout)


class _Smtp(smtplib.SMTP):
    def __init__(self, port: int, source: str):
        self._source = source
        super().__init__(_host().hostname, port, timeout=30)

    def _get_socket(self, host, port, timeout):
        return _connect(port, self._source, timeout)


def _imap_login(source: str, user: str, password: str) -> tuple[bool, float]:
    """One IMAP login over STARTTLS from source: (accepted, seconds the answer took)."""
    with _Imap(source) as imap:
        imap.starttls(ssl_context=tls_context(_host()))
        start = time.monotonic()
        try:
            imap.login(user, password)
            return True, time.monotonic() - start
        except imaplib.IMAP4.error:
            return False, time.monotonic() - start


def _submit(source: str, user, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
    """One message from user on 587: each recipient's RCPT reply."""
    replies = {}
    with _Smtp(587, source) as smtp:
        smtp.starttls(context=tls_context(_host()))
        smtp.login(user.address, user.password)
        smtp.mail(user.address)
        for rcpt in recipients:
            replies[rcpt] = smtp.rcpt(rcpt)
        if any(code == 250 for code, _ in replies.values()):
            smtp.data(f"Subject: defence {uuid.uuid4().hex}\r\n\r\nbody\r\n".encode())
        else:
            smtp.rset()
    return replies


# --------------------------------------------------------------------------- postscreen

def test_pregreet_client_is_refused_and_a_polite_one_accepted(sources):
    rude, polite = sources[0], sources[1]
    with _connect(25, rude) as sock:
        sock.sendall(b"EHLO rude.example\r\n")  # before the banner
        sock.settimeout(30)
        stream = sock.makefile("rwb")
        lines = []
        for command in (b"MAIL FROM:<x@rude.example>\r\n", b"RCPT TO:<postmaster@"
                        + _host().domains[0].encode() + b">\r\n"):
            stream.write(command)
            stream.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                break
            lines.append(line.decode(errors="replace").strip())
            if line[:3] in (b"550", b"521", b"421"):
                break
    assert any(line[:3] in ("550", "521", "421") for line in lines), (
        f"a client talking before the banner was not refused: {lines}")
    start = time.monotonic()
    with _Smtp(25, polite) as smtp:
        code, _ = smtp.ehlo("polite.example")
    assert code == 250, f"a polite client from {polite} got {code} after the greeting"
    assert time.monotonic() - start < _host().postscreen.greet_wait + 15


def test_pregreet_is_logged_for_the_postscreen_jail():
    out = subprocess.run(["docker", "exec", _host().name, "fail2ban-client", "status",
                          "mailctl-postscreen"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"the postscreen jail is not running: {out.stderr.strip()}"
    assert "Total failed:\t1" in out.stdout or "Total failed:\t2" in out.stdout, out.stdout


# --------------------------------------------------------------------------- logins, bans

def test_failed_imap_logins_slow_down_then_the_address_is_banned(sources):
    attacker, bystander = sources[2], sources[3]
    victim, other = _users()
    ok, fast = _imap_login(bystander, other.address, other.password)
    assert ok, f"{other.address} could not log in from {bystander}"
    delays = []
    for _ in range(_host().bans.maxretry):
        # each failed login counts once: one short of maxretry, the address is not banned
        # (Dovecot logs every failure twice; Debian's filter alone counted both)
        time.sleep(2)  # fail2ban reads the journal within a second
        assert not _banned(143, attacker), (
            f"{attacker} was banned after {len(delays)} failed logins, not {_host().bans.maxretry}")
        accepted, took = _imap_login(attacker, victim.address, "not-" + victim.password)
        assert not accepted
        delays.append(took)
    _wait_banned(143, attacker)
    delay = _host().login_throttle.failure_delay
    if _host().backend == "dovecot":
        # Dovecot answers failures on a timer of failure_delay (so the first waits up to
        # that), and its penalty per address grows with each failure
        assert delays[-1] > delays[0] + 1 and delays[-1] >= delay, (
            f"failed logins did not get slower: {delays}")
    else:  # Cyrus pauses failedloginpause after every failure
        assert min(delays) >= delay - 0.2, f"failed logins were not held {delay} s: {delays}"
    assert fast < delay, f"a good login took {fast:.1f} s"
    for port in (25, 587, 993, 110):  # banned from every mail port
        assert _banned(port, attacker), f"{attacker} still reaches port {port}"
    ok, _ = _imap_login(bystander, other.address, other.password)
    assert ok, f"another client ({bystander}) was shut out too"

    listed = _mailctl("bans")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = [line for line in listed.stdout.splitlines() if attacker in line]
    assert row and JAILS[_host().backend] in row[0], listed.stdout
    lifted = _mailctl("bans", "--unban", attacker)
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    assert not _banned(143, attacker), f"{attacker} is still banned after --unban"


def test_failed_auth_on_submission_bans_the_address(sources):
    attacker, bystander = sources[4], sources[5]
    victim, other = _users()
    for _ in range(_host().bans.maxretry):
        if _banned(587, attacker):
            break
        try:
            with _Smtp(587, attacker) as smtp:
                smtp.starttls(context=tls_context(_host()))
                smtp.ehlo()
                smtp.user, smtp.password = victim.address, "not-" + victim.password
                # one mechanism per attempt (login() would also try LOGIN: two failures)
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    smtp.auth("PLAIN", smtp.auth_plain)
        except (OSError, smtplib.SMTPServerDisconnected):
            break  # the ban came down on this very connection
    _wait_banned(587, attacker)
    replies = _submit(bystander, other, [other.address])
    assert replies[other.address][0] == 250, replies
    listed = _mailctl("bans")
    row = [line for line in listed.stdout.splitlines() if attacker in line]
    assert row and "mailctl-postfix-sasl" in row[0], listed.stdout
    assert _mailctl("bans", "--unban", attacker).returncode == 0
    assert not _banned(587, attacker)


# --------------------------------------------------------------------------- limits

def test_sending_limit_defers_one_user_only_and_resets():
    limited, other = _users()
    rule = dict(_host().send_limits.users)[limited.address][0]
    source = state()["ip"].rsplit(".", 1)[0] + ".1"  # this machine's own address there
    first = time.monotonic()
    accepted = []
    for _ in range(rule.count):
        accepted.append(_submit(source, limited, [other.address])[other.address][0])
    assert accepted == [250] * rule.count, accepted
    code, text = _submit(source, limited, [other.address])[other.address]
    assert code == 450 and b"4.7.1" in text, (code, text)
    assert _submit(source, other, [limited.address])[limited.address][0] == 250
    time.sleep(max(0.0, rule.per + 2 - (time.monotonic() - first)))
    assert _submit(source, limited, [other.address])[other.address][0] == 250, (
        "the limit did not reset after its window")


def test_connection_flood_gets_4xx(sources):
    limits = _host().limits
    replies, flood = [], []
    try:
        for _ in range(max(limits.connection_rate, limits.connections) + 2):
            # a banner, a 421 or a drop; the default 30 s because two scenarios may share
            # the cores (10 s timed out once when three did)
            sock = _connect(587, sources[6])
            flood.append(sock)
            replies.append(sock.makefile("rb").readline()[:3])
    finally:
        for sock in flood:
            sock.close()
    assert replies[0] == b"220", replies
    assert b"421" in replies, f"no 4xx after {len(replies)} connections: {set(replies)}"
