"""A domain moves to another mailstore ([6/8]): gamma.test goes from store1 (Dovecot) to
store2 (Cyrus) with `mailctl migrate --domain`, and back, while the internet keeps sending to
a moved user and to a user of beta.test through the mx hosts. Every accepted message ends up
exactly once in the store that serves the domain afterwards; the moved user's own client sees
the same folders, subscriptions, messages, flags and keywords. Before the move, a plain deploy
of the edited inventory is refused for the whole play.

The edited inventory is a copy of the scenario's (this run's directory), with gamma.test and
its user moved into store2's host_vars (store1 keeps alpha.test: a mailstore stores at least
one domain). The test ends as it began (gamma.test on store1), so the other tests of the
scenario see the inventory's layout.
"""

from __future__ import annotations

import hashlib
import imaplib
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import _IMAPS, PREFIX, inventory_file

DOMAIN = "gamma.test"
MX = ["172.30.77.11", "172.30.77.12"]
FOLDERS = {"Projekte/2026": True, "Archiv": False}  # name -> subscribed


def _mailctl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", "from mailctl.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    print(f"$ mailctl {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


@pytest.fixture(scope="module")
def original() -> Path:
    return Path(inventory_file()).parent


@pytest.fixture(scope="module")
def moved(original: Path, tmp_path_factory) -> Path:
    """A copy of the inventory with alpha.test (domain, users, aliases) on store2."""
    copy = tmp_path_factory.mktemp("moved") / "inventory"
    shutil.copytree(original, copy, symlinks=False, ignore=shutil.ignore_patterns(".mailctl-ca"))
    files = {short: copy / "host_vars" / f"{PREFIX}{short}" / "main.yml"
             for short in ("store1", "store2")}
    src, dst = (yaml.safe_load(files[s].read_text()) for s in ("store1", "store2"))
    for key in ("mail_users", "mail_aliases"):
        going = [e for e in src.get(key, []) if e["address"].endswith("@" + DOMAIN)]
        src[key] = [e for e in src.get(key, []) if e not in going]
        dst[key] = dst.get(key, []) + going
    src["mail_domains"].remove(DOMAIN)
    dst["mail_domains"].append(DOMAIN)
    for short, data in (("store1", src), ("store2", dst)):
        files[short].write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def _login(store, user: str, ca_file: str) -> imaplib.IMAP4:
    imap = _IMAPS(store.address, store.hostname, ssl.create_default_context(cafile=ca_file))
    imap.login(user, store.users[user])
    return imap


def _view(store, user: str, ca_file: str) -> dict:
    """{folder: (subscribed, Counter of (sha256, flags))} as the user's own client reads it."""
    imap = _login(store, user, ca_file)
    try:
        _, lsub = imap.lsub('""', "*")
        subscribed = {line.decode().rsplit(' "/" ', 1)[-1].strip('"') for line in lsub if line}
        view = {}
        for box in ["INBOX", *FOLDERS]:
            imap.select(f'"{box}"', readonly=True)
            _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[])") if int(
                imap.response("EXISTS")[1][0] or 0) else ("OK", [])
            seen = Counter()
            for item in data:
                if isinstance(item, tuple):
                    flags = imaplib.ParseFlags(item[0])
                    flags = tuple(sorted(f.decode() for f in flags if f != rb"\Recent"))
                    seen[(hashlib.sha256(item[1]).hexdigest(), flags)] += 1
            view[box] = (box in subscribed or box == "INBOX", seen)
            imap.close()
        return view
    finally:
        imap.logout()


def _seed(store, user: str, ca_file: str) -> None:
    imap = _login(store, user, ca_file)
    try:
        for box, subscribed in FOLDERS.items():
            imap.create(f'"{box}"')
            (imap.subscribe if subscribed else imap.unsubscribe)(f'"{box}"')
        old = datetime.now(UTC) - timedelta(days=3 * 365)
        for n, (box, flags) in enumerate([("INBOX", r"(\Seen $Label1)"),
                                          ("INBOX", r"(\Flagged \Answered)"),
                                          ("Projekte/2026", "(project-x)"),
                                          ("Archiv", r"(\Seen)")]):
            body = (f"From: alt@outside.test\r\nTo: {user}\r\nSubject: Grüße {n}\r\n"
                    f"Message-ID: <seed-{n}@outside.test>\r\n\r\n"
                    + "Inhalt äöü\r\n" * (1 + n * 20000)).encode()  # up to ~1 MiB
            imap.append(f'"{box}"', flags, imaplib.Time2Internaldate(old + timedelta(days=n)),
                        body)
    finally:
        imap.logout()


class Stream(threading.Thread):
    """The internet sends to the recipients through the mx hosts in turn, one message every
    interval (at most `count`), until stopped; the Message-IDs the mx accepted."""

    def __init__(self, sender, recipients: list[str], label: str, count: int = 25):
        super().__init__(daemon=True)
        self.sender, self.recipients, self.label, self.count = sender, recipients, label, count
        self.accepted: list[str] = []
        self.stop = threading.Event()

    def run(self):
        for n in range(self.count):
            if self.stop.is_set():
                break
            mid = f"<{self.label}-{n}-{time.time_ns()}@sender.outside.test>"
            result = self.sender(server=MX[n % 2], helo="sender.outside.test",
                                 **{"from": "x@outside.test"},
                                 messages=[{"to": self.recipients, "msgid": mid}])
            if result["results"][0]["code"] == 250:
                self.accepted.append(mid)
            self.stop.wait(2)


def _move(inventory: Path, source: str, stream: Stream, ca_dir: Path) -> str:
    stream.start()
    time.sleep(3)
    done = _mailctl("migrate", "-i", str(inventory), "--host", PREFIX + source, "--domain",
                    DOMAIN, "--ca-dir", str(ca_dir))
    stream.stop.set()
    stream.join(timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert len(stream.accepted) >= 5, "mail was sent while the domain moved"
    return done.stdout


def _all_once(store, user: str, ids: list[str], wait_for) -> None:
    box = wait_for(store, user, ids, timeout=120)
    assert {i: len(box.get(i, [])) for i in ids} == dict.fromkeys(ids, 1)


def _same_plus_stream(before: dict, after: dict, stream: Stream) -> None:
    for box, (subscribed, was) in before.items():
        now_subscribed, now = after[box]
        assert now_subscribed == subscribed, f"{box}: subscription changed"
        assert not was - now, f"{box}: lost or changed: {list(was - now)[:3]}"
        added = sum((now - was).values())
        assert added == (len(stream.accepted) if box == "INBOX" else 0), box


def test_a_domain_moves_to_another_store_and_back_while_mail_flows(
        original, moved, stores, sender, ca_file, wait_for, node):
    user = sorted(u for u in stores["store1"].users if u.endswith("@" + DOMAIN))[0]
    other = sorted(stores["store2"].users)[0]  # beta.test: stays on store2 throughout
    home = stores["store1"]
    away = replace(stores["store2"], users={**stores["store2"].users, **home.users})
    ca_dir = Path(ca_file).parent
    _seed(home, user, ca_file)
    before = _view(home, user, ca_file)

    # the edited inventory is refused as a plain deploy, for the whole play, before any change
    refused = _mailctl("deploy", "-i", str(moved), "--ca-dir", str(ca_dir))
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert f"moves {DOMAIN} from {PREFIX}store1 to {PREFIX}store2" in said, said[-2000:]
    assert f"mailctl migrate --host {PREFIX}store1 --domain {DOMAIN}" in said
    assert not re.search(r"changed=[1-9]", said), said[-2000:]

    # there: Dovecot -> Cyrus, across hosts
    there = Stream(sender, [user, other], "move-there")
    out = _move(moved, "store1", there, ca_dir)
    assert f"{PREFIX}store2's manifest equals {PREFIX}store1's" in out
    assert "new UIDs" in out
    _all_once(away, user, there.accepted, wait_for)
    _all_once(stores["store2"], other, there.accepted, wait_for)
    moved_view = _view(away, user, ca_file)
    _same_plus_stream(before, moved_view, there)
    assert node("store1").file("/etc/mailctl/stored-domains").content_string.split() == [
        "alpha.test"]

    # and back: Cyrus -> Dovecot, into store1's old copy, which the import makes equal
    back = Stream(sender, [user, other], "move-back")
    out = _move(original, "store2", back, ca_dir)
    assert f"{PREFIX}store1's manifest equals {PREFIX}store2's" in out
    _all_once(home, user, there.accepted + back.accepted, wait_for)
    _all_once(stores["store2"], other, back.accepted, wait_for)
    _same_plus_stream(moved_view, _view(home, user, ca_file), back)
    assert DOMAIN in node("store1").file("/etc/mailctl/stored-domains").content_string.split()
