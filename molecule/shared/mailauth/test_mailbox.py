"""The mail is the asset ([6/8]): `mailctl mailbox manifest` shows what a user's own client
sees, a backup taken while mail arrives restores exactly (UIDs, UIDVALIDITY, flags, keywords,
dates, folders, subscriptions, POP3 UIDLs), a restore never removes newer mail without
--force, and a user whose mail is gone entirely gets it all back. Run by molecule's verifier
in the default (Dovecot) and cyrus scenarios: the same file for both stores.

The mailbox is seeded by a real client (imaplib over IMAPS with the user's password): three
folders besides INBOX (one unsubscribed, one with a non-ASCII name), custom keywords,
\\Seen/\\Flagged/\\Answered, dates from years ago, messages of 1 KiB to 5 MiB, 8-bit and
non-ASCII headers. Every mailctl command runs as a user would run it, against the
scenario's inventory."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import imaplib
import json
import poplib
import re
import smtplib
import socket
import subprocess
import sys
import threading
import time
import uuid
from email.utils import formatdate
from pathlib import Path

import pytest
from world import IMAPS, SMTP, address, inventory_dir, tls_context

from mailctl.inventory import Inventory
from mailctl.model import MailHost

RUN = uuid.uuid4().hex[:8]
YEAR = 365 * 24 * 3600
# name -> subscribed; "Entwürfe" travels as modified UTF-7
FOLDERS = {"Archive": True, "Reports/2019": True, "Entw&APw-rfe": False}


@functools.cache
def _host() -> MailHost:
    hosts = [h for h in Inventory(inventory_dir()).mail_hosts() if h.kind == "allinone"]
    assert len(hosts) == 1, f"one all-in-one host expected, not {len(hosts)}"
    return hosts[0]


@functools.cache
def _users():
    """(owner, sender): two users with passwords, no small sending limit and no inventory
    filters (they would file or answer the mail these checks send)."""
    limited = {a for a, _ in _host().send_limits.users}
    usable = sorted((u for u in _host().users
                     if u.password and u.address not in limited and not u.sieve),
                    key=lambda u: u.address)
    assert len(usable) >= 2, "the scenario has two users with passwords and no send limit"
    return usable[-1], usable[0]


def _mailctl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """mailctl as a user runs it; commands that read hosts get the scenario's inventory."""
    inventory = [] if args[:2] == ("mailbox", "diff") else ["-i", str(inventory_dir())]
    done = subprocess.run([sys.executable, "-c", "from mailctl.cli import main; main()", *args,
                           *inventory], capture_output=True, text=True, timeout=timeout,
                          check=False)
    print(f"$ mailctl {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def _manifest(path: Path) -> dict:
    owner = _users()[0].address
    done = _mailctl("mailbox", "manifest", "--host", _host().name, "-u", owner,
                    "-o", str(path))
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text())["users"][owner]


def _diff(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess:
    return _mailctl("mailbox", "diff", str(a), str(b), "-u", _users()[0].address, *extra)


def _message(n: int, size: int, subject: str) -> bytes:
    head = (f"From: Jörg Müller <joerg@sandbox.test>\r\nTo: {_users()[0].address}\r\n"
            f"Subject: {subject}\r\nDate: {formatdate(1300000000 + n * 86400)}\r\n"
            f"Message-ID: <{RUN}.{n}@sandbox.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\n").encode()
    line = "Grüße aus dem Archiv, naïve café ".encode() * 2 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


SEED = [  # (mailbox, flags, age in years, size)
    ("INBOX", r"\Seen", 15, 1024),
    ("INBOX", r"\Seen \Flagged $Label1", 9, 64 * 1024),
    ("INBOX", r"\Answered \Seen project-x", 4, 5 * 1024 * 1024),
    ("INBOX", "", 0, 2048),
    ("Archive", r"\Seen $Label2", 12, 8192),
    ("Archive", r"\Seen", 7, 300 * 1024),
    ("Reports/2019", r"\Flagged", 6, 4096),
    ("Entw&APw-rfe", r"\Draft \Seen", 1, 1500),
]


@pytest.fixture(scope="module")
def seeded() -> dict:
    return seed()


def seed() -> dict:
    """The owner's mailbox after the seeding, as the owner's own client reads it:
    {mailbox: sorted [(sha256, flags)]}."""
    owner = _users()[0]
    imap = IMAPS(_host())
    try:
        imap.login(owner.address, owner.password)
        for name, subscribed in FOLDERS.items():
            imap.create(f'"{name}"')
            if subscribed:
                imap.subscribe(f'"{name}"')
        for n, (box, flags, age, size) in enumerate(SEED):
            when = time.time() - age * YEAR - n * 3600
            append = (f'"{box}"', f"({flags})" if flags else None,
                      imaplib.Time2Internaldate(when), _message(n, size, f"seed {RUN} {n} Grüße"))
            try:
                typ, data = imap.append(*append)
            except (imaplib.IMAP4.error, OSError) as exc:
                typ, data = "failed", [str(exc)]
            if typ != "OK" and _host().backend == "cyrus":
                # Cyrus: the ACME timer's SIGHUP (every minute here, 90-second certificates)
                # interrupts a child reading a literal: it answers BAD "junk after literal"
                # or NO "System I/O error", or closes the connection, and stores nothing
                # (README, "Certificates"). A client sends it again on a new connection.
                with contextlib.suppress(imaplib.IMAP4.error, OSError):
                    imap.shutdown()
                imap = IMAPS(_host())
                imap.login(owner.address, owner.password)
                typ, data = imap.append(*append)
            assert typ == "OK", data
        return _client_view(imap)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()


def _client_view(imap: imaplib.IMAP4) -> dict:
    view = {}
    for box in ["INBOX", *FOLDERS]:
        imap.select(f'"{box}"', readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        rows = []
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                rows.append((hashlib.sha256(item[1]).hexdigest(),
                             sorted(f for f in flags if f != r"\Recent")))
        view[box] = sorted(rows)
        imap.close()
    return view


class POP3S(poplib.POP3_SSL):
    """POP3S to the host's address, the certificate verified for its mail name."""

    def __init__(self, host: MailHost):
        self._address = address(host)
        super().__init__(host.hostname, 995, context=tls_context(host), timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self._address, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def _pop3_uidls(user) -> list[str]:
    pop = POP3S(_host())
    pop.user(user.address)
    pop.pass_(user.password)
    _, lines, _ = pop.uidl()
    pop.quit()
    return [line.split()[1].decode() for line in lines]


def test_the_manifest_shows_what_the_users_client_sees(seeded, tmp_path):
    owner = _users()[0]
    found = _manifest(tmp_path / "m.json")
    for box, subscribed in FOLDERS.items():
        assert found["mailboxes"][box]["subscribed"] is subscribed, box
    for box, rows in seeded.items():
        mine = sorted((m["sha256"], m["flags"]) for m in found["mailboxes"][box]["messages"])
        assert mine == rows, box
    dates = sorted(m["internaldate"] for b in found["mailboxes"].values()
                   for m in b["messages"])
    assert dates[0] < time.strftime("%Y", time.gmtime(time.time() - 14 * YEAR))
    assert max(m["size"] for m in found["mailboxes"]["INBOX"]["messages"]) > 5_000_000
    assert found["pop3_uidls"] == _pop3_uidls(owner)
    assert found["quota"]["STORAGE"][0] > 5 * 1024  # KiB in use, the 5 MiB message counted
    # reading changed nothing: no \Seen set, no \Recent taken, nothing else
    _manifest(tmp_path / "again.json")
    assert _diff(tmp_path / "m.json", tmp_path / "again.json").returncode == 0


class Stream(threading.Thread):
    """The sender submits a message to the recipients every interval (at most 30: the sender's
    sending limit is shared with the rest of the suite), until stopped: mail that arrives
    while a backup or restore runs."""

    def __init__(self, label: str, recipients: list[str], count: int = 30,
                 interval: float = 0.5):
        super().__init__(daemon=True)
        self.recipients, self.count, self.interval = recipients, count, interval
        self.label = f"{label} {RUN}"
        self.accepted: list[str] = []
        self.stop = threading.Event()

    def run(self):
        sender = _users()[1]
        smtp = None
        for n in range(self.count):
            if self.stop.is_set():
                break
            subject = f"{self.label} {n}"
            if smtp is None:
                try:
                    smtp = SMTP(_host(), 587)
                    smtp.starttls(context=tls_context(_host()))
                    smtp.login(sender.address, sender.password)
                except (smtplib.SMTPException, OSError):
                    # the server's answer to a client that comes back in the middle of a
                    # migration (the sender locked out too): this message is not sent
                    smtp = None
                    self.stop.wait(self.interval)
                    continue
            try:
                smtp.sendmail(sender.address, self.recipients,
                              f"From: {sender.address}\r\nTo: {', '.join(self.recipients)}\r\n"
                              f"Subject: {subject}\r\n\r\nsteady\r\n")
                self.accepted.append(subject)
            except smtplib.SMTPResponseException as exc:
                # a 4xx (a milter restarting in a deploy) is a "try later", as for any
                # client: that message was not accepted
                assert 400 <= exc.smtp_code < 500, exc
                smtp.rset()
            except smtplib.SMTPServerDisconnected:
                smtp = None
            self.stop.wait(self.interval)
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()


def _subjects(user, pattern: str) -> list[str]:
    with IMAPS(_host()) as imap:
        imap.login(user.address, user.password)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "HEADER", "Subject", f'"{pattern}"')
        uids = data[0].split()
        if not uids:
            return []
        _, data = imap.uid("FETCH", b",".join(uids).decode(),
                           "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [item[1].decode().split(":", 1)[1].strip() for item in data
                if isinstance(item, tuple)]


def _wait_all_once(user, stream: Stream, timeout: float = 60) -> None:
    """Every message the stream got accepted is in the user's INBOX exactly once."""
    accepted = stream.accepted
    deadline = time.monotonic() + timeout
    while True:
        got = _subjects(user, stream.label)
        if sorted(got) == sorted(accepted):
            return
        extra = [s for s in set(got) if got.count(s) > 1]
        assert not extra, f"{user.address}: delivered twice: {extra}"
        if time.monotonic() > deadline:
            missing = sorted(set(accepted) - set(got))
            pytest.fail(f"{user.address}: {len(missing)} accepted message(s) never arrived: "
                        f"{missing[:5]}")
        time.sleep(1)


def test_a_backup_taken_while_mail_arrives_restores_exactly(seeded, tmp_path):
    owner, sender = _users()
    stream = Stream("during the backup", [owner.address, sender.address])
    stream.start()
    time.sleep(1)
    done = _mailctl("backup", "--host", _host().name, "-u", owner.address,
                    "--to", str(tmp_path / "backups"))
    stream.stop.set()
    stream.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(stream.accepted) >= 3, "mail arrived while the backup ran"
    # every accepted message reached both users exactly once (a Cyrus backup pauses the
    # owner's delivery: that mail waited in the queue, then arrived)
    _wait_all_once(owner, stream)
    _wait_all_once(sender, stream)
    (backup,) = (tmp_path / "backups").iterdir()
    assert sorted(p.name for p in backup.iterdir()) == ["mail.tar.gz", "mailctl-backup.json",
                                                       "manifest.json"]

    # change the mailbox: delete one message, flag others, add a new one
    with IMAPS(_host()) as imap:
        imap.login(owner.address, owner.password)
        imap.select("Archive")
        imap.uid("STORE", "1:*", "+FLAGS", r"(\Flagged)")
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", "HEADER", "Subject", f'"seed {RUN} 0 "')
        imap.uid("STORE", data[0].split()[0].decode(), "+FLAGS", r"(\Deleted)")
        imap.expunge()
        imap.append("INBOX", None, None, _message(99, 1024, f"after the backup {RUN}"))
    _manifest(tmp_path / "before.json")

    refused = _mailctl("restore", "--from", str(tmp_path / "backups"), "--host", _host().name,
                       "-u", owner.address)
    assert refused.returncode == 1
    assert "holds mail the backup does not have" in refused.stderr
    assert "nothing was changed" in refused.stderr
    _manifest(tmp_path / "unchanged.json")
    assert _diff(tmp_path / "before.json", tmp_path / "unchanged.json").returncode == 0

    # the sender's mail flows while the owner's is paused by the restore
    stream = Stream("during the restore", [sender.address])
    stream.start()
    forced = _mailctl("restore", "--from", str(tmp_path / "backups"), "--host", _host().name,
                      "-u", owner.address, "--force")
    stream.stop.set()
    stream.join(timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert "the host's manifest equals the backup's" in forced.stdout
    assert "is kept on" in forced.stdout  # the replaced mail, with the newer message
    _wait_all_once(sender, stream)
    assert len(stream.accepted) >= 3
    _manifest(tmp_path / "after.json")
    assert _diff(backup / "manifest.json", tmp_path / "after.json").returncode == 0


def test_a_user_whose_mail_is_gone_gets_all_of_it_back(seeded, tmp_path):
    owner = _users()[0]
    backups = tmp_path / "backups"
    assert _mailctl("backup", "--host", _host().name, "-u", owner.address,
                    "--to", str(backups)).returncode == 0
    _wipe(owner.address)
    done = _mailctl("restore", "--from", str(backups), "-u", owner.address)
    assert done.returncode == 0, done.stderr
    (backup,) = backups.iterdir()
    _manifest(tmp_path / "back.json")
    assert _diff(backup / "manifest.json", tmp_path / "back.json").returncode == 0
    assert _client_view_now(owner) == seeded_view_of(backup, owner)
    if _host().backend == "cyrus":  # Cyrus makes new mailboxes in the directories put back
        assert _on_host("find", "/var/spool/cyrus", "-user", "root").stdout == ""


def _client_view_now(owner) -> dict:
    with IMAPS(_host()) as imap:
        imap.login(owner.address, owner.password)
        return _client_view(imap)


def seeded_view_of(backup: Path, owner) -> dict:
    users = json.loads((backup / "manifest.json").read_text())["users"][owner.address]
    return {box: sorted((m["sha256"], m["flags"]) for m in users["mailboxes"][box]["messages"])
            for box in ["INBOX", *FOLDERS]}


def _wipe(user: str) -> None:
    """Remove every trace of the user's mail on the host, as a lost disk would."""
    if _host().backend == "dovecot":
        local, domain = user.split("@")
        script = f"rm -rf /var/vmail/{domain}/{local}"
    else:
        script = ("python3 - <<'EOF'\nimport imaplib, ssl\n"
                  "c = ssl.create_default_context(); c.check_hostname = False; "
                  "c.verify_mode = ssl.CERT_NONE\n"
                  "pw = open('/etc/mailctl/cyrus-admin.pw').read().strip()\n"
                  "i = imaplib.IMAP4('127.0.0.1', 143); i.starttls(c); i.login('cyrus', pw)\n"
                  f"box = 'user/{user}'\n"
                  "i.setacl(box, 'cyrus', 'lrswipkxtecda'); print(i.delete(box))\nEOF")
    done = subprocess.run(["docker", "exec", _host().name, "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_bad_input_is_one_line_and_touches_nothing(tmp_path):
    owner = _users()[0]
    not_backup = tmp_path / "empty"
    not_backup.mkdir()
    done = _mailctl("restore", "--from", str(not_backup), "--host", _host().name)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --from") and done.stderr.count("\n") == 1
    done = _mailctl("mailbox", "manifest", "--host", _host().name, "-u", "nobody@sandbox.test")
    assert done.returncode == 2 and "nobody@sandbox.test" in done.stderr
    done = _mailctl("mailbox", "diff", str(not_backup), str(not_backup))
    assert done.returncode == 2
    assert owner.password not in done.stdout + done.stderr


SERVICES = {"dovecot": "dovecot", "cyrus": "cyrus-imapd"}  # the registry's Debian units


def _on_host(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", _host().name, *argv], capture_output=True,
                          text=True, timeout=120, check=False)


def _paused() -> list[str]:
    return _on_host("cat", "/etc/mailctl/paused-users").stdout.split()[::2]


def test_a_restore_whose_store_dies_fails_in_one_line_and_a_rerun_completes(seeded, tmp_path):
    """The store is SIGKILLed as soon as the restore has paused the owner's delivery: the
    restore ends in one line (nothing changed, or the delivery stays paused); the store
    comes back, and running the same restore again completes, proves itself and lets mail
    in again."""
    owner = _users()[0]
    backups = tmp_path / "backups"
    assert _mailctl("backup", "--host", _host().name, "-u", owner.address,
                    "--to", str(backups)).returncode == 0
    service = SERVICES[_host().backend]
    killed = threading.Event()

    def kill_when_paused():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and owner.address not in _paused():
            time.sleep(0.1)
        _on_host("systemctl", "kill", "-s", "KILL", service)
        killed.set()

    killer = threading.Thread(target=kill_when_paused, daemon=True)
    killer.start()
    failed = _mailctl("restore", "--from", str(backups), "-u", owner.address)
    killer.join(timeout=130)
    assert killed.is_set()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: ")
    # killed before the first change: released; after it: the owner's mail stays queued
    if "nothing was changed" in failed.stderr:
        assert owner.address not in _paused()
    else:
        assert "stays paused" in failed.stderr and owner.address in _paused(), failed.stderr
    assert _on_host("systemctl", "restart", service).returncode == 0
    done = _mailctl("restore", "--from", str(backups), "-u", owner.address, "--force")
    assert done.returncode == 0, done.stderr
    assert "the host's manifest equals the backup's" in done.stdout
    assert owner.address not in _paused()
    stream = Stream("after the failed restore", [owner.address], count=3)
    stream.run()  # a few messages, in this thread
    _wait_all_once(owner, stream)
