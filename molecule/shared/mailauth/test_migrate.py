"""The mail moves between stores ([6/8]): `mailctl migrate` takes the host's mail from Cyrus
to Dovecot and back while a sender keeps submitting to the migrated user and to another user.
Every accepted message ends up in the store that serves afterwards, exactly once; the user's
own client sees the same folders, messages, flags and keywords after each switch, and on the
Cyrus -> Dovecot leg the same UIDs, UIDVALIDITY and POP3 UIDLs. Sieve scripts follow, with the
one that is active: the owner's own (uploaded over ManageSieve) and the inventory's. A store
killed in the middle of the final sync leaves delivery on the source, and the same command
run again completes.

Run by molecule's verifier in the cyrus scenario, after test_mailbox.py (whose seeded
mailbox it moves: folders, an unsubscribed one, a non-ASCII name, keywords, dates from years
ago, 1 KiB to 5 MiB, 8-bit headers). It ends where it began: on Cyrus, the inventory's store.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter

import pytest
from test_mailbox import (
    FOLDERS,
    IMAPS,
    Stream,
    _client_view,
    _host,
    _mailctl,
    _on_host,
    _pop3_uidls,
    _users,
    _wait_all_once,
    seed,
)
from test_sieve import listing, sieve_connect


@pytest.fixture(scope="module")
def owner():
    """The seeded owner (seeded here when this file runs on its own)."""
    user = _users()[0]
    with IMAPS(_host()) as imap:
        imap.login(user.address, user.password)
        _, listed = imap.list('""', "Archive")
    if not listed or listed == [None]:
        seed()
    return user


OWN_SCRIPT = 'require ["fileinto"];\nif header :contains "Subject" "[own]" { fileinto "INBOX"; }\n'


@pytest.fixture(scope="module")
def own_script(owner, tmp_path_factory):
    """A script the owner uploads and activates over ManageSieve: each migration carries it,
    and which script is active (as it does the inventory's script of dave@sandbox.test)."""
    path = tmp_path_factory.mktemp("sieve") / "own.sieve"
    path.write_text(OWN_SCRIPT)
    for action in (["--upload", "--localsieve", str(path)], ["--activate"]):
        done = sieve_connect(owner.address, owner.password, *action, "--remotesieve", "own")
        assert done.returncode == 0, done.stderr
    yield path
    sieve_connect(owner.address, owner.password, "--deactivate")
    sieve_connect(owner.address, owner.password, "--delete", "--remotesieve", "own")


def _scripts_carried(owner, own_script) -> None:
    assert listing(owner) == {"own": True}, "the owner's script or its activation was lost"
    copy = own_script.with_name("downloaded.sieve")
    done = sieve_connect(owner.address, owner.password, "--download", "--remotesieve", "own",
                         "--localsieve", str(copy))
    assert done.returncode == 0, done.stderr
    assert copy.read_text().replace("\r\n", "\n").rstrip("\n") == OWN_SCRIPT.rstrip("\n")
    dave = next(u for u in _host().users if u.address == "dave@sandbox.test")
    assert listing(dave).get("mailctl") is True, "the inventory's script did not follow"


def _view(user) -> tuple[dict, dict]:
    """The user's client view ({box: [(sha256, flags)]}) and {box: (UIDVALIDITY, {uid:
    sha256})}, read over IMAPS with the user's password."""
    with IMAPS(_host()) as imap:
        imap.login(user.address, user.password)
        view = _client_view(imap)
        ids = {}
        for box in ["INBOX", *FOLDERS]:
            imap.select(f'"{box}"', readonly=True)
            validity = int(imap.response("UIDVALIDITY")[1][0])
            _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
            ids[box] = (validity, {int(re.search(rb"UID (\d+)", item[0]).group(1)):
                                   hashlib.sha256(item[1]).hexdigest()
                                   for item in data if isinstance(item, tuple)})
            imap.close()
    return view, ids


def _migrate(to: str, now: str | None, stream: Stream) -> str:
    """Run the migration while the stream sends; its output."""
    stream.start()
    time.sleep(2)
    args = ["migrate", "--host", _host().name, "--to", to, *(["--backend", now] if now else [])]
    done = _mailctl(*args, timeout=900)
    stream.stop.set()
    stream.join(timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert len(stream.accepted) >= 5, "mail arrived while the migration ran"
    return done.stdout


def _same_mail_plus_stream(before: dict, after: dict, stream: Stream) -> None:
    """The same messages and flags in every folder; INBOX also holds the stream's mail."""
    for box in before:
        was = Counter((sha, tuple(flags)) for sha, flags in before[box])
        now = Counter((sha, tuple(flags)) for sha, flags in after[box])
        added, lost = now - was, was - now
        assert not lost, f"{box}: lost or changed: {list(lost)[:3]}"
        assert sum(added.values()) == (len(stream.accepted) if box == "INBOX" else 0), box


def test_bad_input_is_refused_before_any_host_is_touched(owner):
    same = _mailctl("migrate", "--host", _host().name, "--to", "cyrus")
    assert same.returncode == 2 and "already cyrus" in same.stderr
    assert same.stderr.count("\n") == 1
    some = _mailctl("migrate", "--host", _host().name, "--to", "dovecot", "-u", owner.address)
    assert some.returncode == 2 and "moves all its" in some.stderr


def _locked() -> list[str]:
    return _on_host("cat", "/etc/mailctl/locked-users").stdout.split()


def test_a_store_killed_in_the_final_sync_leaves_delivery_on_the_source(owner):
    """Cyrus is SIGKILLed once the users are locked out for the final sync: the migration
    stops in one line, nothing was switched, the users are let in again, and once Cyrus is
    back the owner receives there as before."""
    killed, ended = threading.Event(), threading.Event()

    def kill_when_locked():
        while not ended.is_set():
            if owner.address in _locked():
                _on_host("systemctl", "kill", "-s", "KILL", "cyrus-imapd")
                killed.set()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_locked, daemon=True)
    killer.start()
    failed = _mailctl("migrate", "--host", _host().name, "--to", "dovecot", timeout=900)
    ended.set()  # a migration that failed before the lock kills nothing
    killer.join(timeout=30)
    assert killed.is_set(), failed.stdout + failed.stderr
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.count("\n") == 1, failed.stderr
    assert "nothing was switched, delivery stays on cyrus" in failed.stderr
    assert owner.address not in _locked()
    assert owner.address not in _on_host("cat", "/etc/mailctl/paused-users").stdout
    assert _on_host("systemctl", "restart", "cyrus-imapd").returncode == 0
    stream = Stream("after the failed migration", [owner.address], count=2)
    stream.run()
    _wait_all_once(owner, stream)  # read over IMAP from Cyrus: delivery never left it


def test_cyrus_to_dovecot_keeps_uids_and_uidls_while_mail_flows(owner, own_script):
    sender = _users()[1]
    before, ids_before = _view(owner)
    uidls_before = _pop3_uidls(owner)
    stream = Stream("during the move to dovecot", [owner.address, sender.address], count=25,
                    interval=2)
    out = _migrate("dovecot", None, stream)
    assert "the dovecot store's manifest equals the cyrus store's" in out
    assert "set mail_backend: dovecot" in out
    _wait_all_once(owner, stream)
    _wait_all_once(sender, stream)
    after, ids_after = _view(owner)
    _same_mail_plus_stream(before, after, stream)
    for box, (validity, uids) in ids_before.items():
        assert ids_after[box][0] == validity, box
        assert uids.items() <= ids_after[box][1].items(), f"{box}: UIDs changed"
    uidls_after = _pop3_uidls(owner)
    assert uidls_after[:len(uidls_before)] == uidls_before
    _scripts_carried(owner, own_script)


def test_dovecot_to_cyrus_keeps_folders_flags_and_dates_while_mail_flows(owner, own_script):
    sender = _users()[1]
    before, _ = _view(owner)
    stream = Stream("during the move to cyrus", [owner.address, sender.address], count=25,
                    interval=2)
    out = _migrate("cyrus", "dovecot", stream)
    assert "the cyrus store's manifest equals the dovecot store's" in out
    assert "new UIDs" in out  # said before it starts
    _wait_all_once(owner, stream)
    _wait_all_once(sender, stream)
    after, _ = _view(owner)
    _same_mail_plus_stream(before, after, stream)
    _scripts_carried(owner, own_script)
