"""`mailctl migrate`: the controller's plan and order of steps (migrate.py), the host-side
agent's migration commands (mailbox_agent.py), and the facts the agent shares with the
templates and the sandbox.

Nothing reaches a host. On the controller, the agent and the deploy are replaced by
recorders. On the host side, the agent is loaded from its file and talks to FakeIMAP: a small
IMAP server's state behind imaplib's method names, answering with imaplib's data shapes
(bytes lines, a literal as a (head, bytes) tuple) and following RFC 3501 where it matters
(EXAMINE is read-only, CLOSE expunges \\Deleted messages of a read-write mailbox, UID EXPUNGE
removes only \\Deleted ones). subprocess, pwd and Postfix are replaced too.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import imaplib
import json
import os
import pwd
import re
import subprocess
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import BASE_HOST, HOST, REPO, Echo

from mailctl import mailbox as mb
from mailctl import migrate as mg
from mailctl import sandbox as sb
from mailctl.errors import InputError, MailctlError
from mailctl.hostside import mailbox_agent as agent
from mailctl.inventory import Inventory
from mailctl.manifest_diff import diff
from mailctl.platforms import names
from mailctl.render import render_host

USERS = ["alice@example.test", "bob@corp.test"]  # conftest's BASE_ALL
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# =========================================================================== controller

@pytest.fixture
def cyrus_inventory(make_inventory) -> Inventory:
    """One all-in-one host on Cyrus, its mail_backend in its host_vars file."""
    return Inventory(make_inventory(host_vars={HOST: {**BASE_HOST, "mail_backend": "cyrus"}}))


@pytest.fixture
def dovecot_inventory(make_inventory) -> Inventory:
    return Inventory(make_inventory(host_vars={HOST: {**BASE_HOST, "mail_backend": "dovecot"}}))


def _host_vars(inv: Inventory) -> str:
    return str(inv.source / "host_vars" / f"{HOST}.yml")


# --------------------------------------------------------------------------- plan

@pytest.mark.parametrize("store", ["cyrus", "dovecot"])
def test_plan_refuses_the_store_the_host_has(make_inventory, store: str) -> None:
    """--to the host's own store: InputError naming the file that sets mail_backend, the
    host and "already"."""
    inv = Inventory(make_inventory(host_vars={HOST: {**BASE_HOST, "mail_backend": store}}))
    with pytest.raises(InputError) as caught:
        mg.plan(inv, HOST, None, store, ())
    assert str(caught.value) == (f"{_host_vars(inv)}: {HOST}: mail_backend is already {store}; "
                                 "nothing to migrate")


def test_plan_refuses_a_user_subset(cyrus_inventory: Inventory) -> None:
    """One store per host: --user naming only some users is refused, saying how many move."""
    with pytest.raises(InputError, match=rf"^{re.escape(str(cyrus_inventory.source))}: {HOST}: "
                                         r"--user: .*moves all its 2 users; leave --user out$"):
        mg.plan(cyrus_inventory, HOST, None, "dovecot", ("alice@example.test",))


@pytest.mark.parametrize("users", [(), tuple(USERS), ("BOB@corp.test", "alice@example.test")])
def test_plan_accepts_all_users(cyrus_inventory: Inventory, users: tuple[str, ...]) -> None:
    """No --user, or every user (any order, any case): the host as it is and as it will be."""
    source, target, chosen = mg.plan(cyrus_inventory, HOST, None, "dovecot", users)
    assert (source.name, source.backend) == (HOST, "cyrus")
    assert (target.name, target.backend) == (HOST, "dovecot")
    assert chosen == USERS


def test_plan_store_given_on_the_command_line(dovecot_inventory: Inventory) -> None:
    """`now` (--backend) is the store the host runs, whatever the inventory says."""
    source, target, _ = mg.plan(dovecot_inventory, HOST, "cyrus", "dovecot", ())
    assert (source.backend, target.backend) == ("cyrus", "dovecot")


# --------------------------------------------------------------------------- migrate: fakes

SHA = [hashlib.sha256(b"message %d" % n).hexdigest() for n in range(4)]


def _manifest(store: str, *, uids: tuple[int, ...] = (1, 2), uidvalidity: int = 1700000000,
              uidls: list[str] | None = None, used: int = 10) -> dict:
    """Every user with one INBOX of two messages; the ids are the caller's."""
    messages = [{"uid": uid, "sha256": SHA[n], "size": 100 + n, "flags": ["\\Seen"],
                 "internaldate": f"2026-12-0{n + 1}T10:00:00Z"} for n, uid in enumerate(uids)]
    box = {"subscribed": True, "uidvalidity": uidvalidity, "uidnext": max(uids) + 1,
           "count": len(uids), "messages": messages}
    return {"mailctl_manifest": 1, "taken": "2026-12-02T12:00:00Z", "host": HOST,
            "store": store, "users": {u: {"mailboxes": {"INBOX": copy.deepcopy(box)},
                                          "quota": {"STORAGE": [used, 1024]},
                                          "pop3_uidls": uidls or [f"{uidvalidity}.{u}"
                                                                  for u in uids],
                                          "sieve": None} for u in USERS}}


class _Host:
    """Records what migrate() asks of the agent and the deploy, in order, and answers.

    answers: {(store, command): answer}, the answer being a dict, an exception to raise, or a
    function of the extra arguments returning either; {} when not given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict,
                 deploy_fails: dict[str, MailctlError] | None = None) -> None:
        self.answers = answers
        self.deploy_fails = dict(deploy_fails or {})
        self.calls: list[tuple] = []
        self.deploys: list[dict] = []
        monkeypatch.setattr(mb, "run_agent", self.run_agent)
        monkeypatch.setattr(mg, "deploy", self.deploy)

    def run_agent(self, inv, host, users, command, *extra, vault=None, verbose=False) -> dict:
        assert host.name == HOST and users == USERS and vault == "vault.txt" and not verbose
        self.calls.append((host.backend, command, *extra))
        answer = self.answers.get((host.backend, command), {})
        if callable(answer):
            answer = answer(extra)
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    def deploy(self, inv, echo, **kwargs) -> None:
        self.calls.append(("deploy", kwargs["backend"]))
        self.deploys.append(kwargs)
        echo(f"deploying 1 host(s): {kwargs['limit']}\n  {kwargs['limit']}: [1 ok] a task")
        if kwargs["backend"] in self.deploy_fails:
            raise self.deploy_fails.pop(kwargs["backend"])


def _run(inv: Inventory, to: str, echo: Echo) -> mg.Migration:
    return mg.migrate(inv, HOST, None, to, (), echo, vault="vault.txt",
                      ca_dir=Path("/ca"))


# --------------------------------------------------------------------------- Cyrus -> Dovecot

def test_cyrus_to_dovecot(cyrus_inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps in order, the switch a migrating deploy of Dovecot, the target's manifest
    equal by ids, the release on the target, and the last line saying what to set where."""
    before = _manifest("cyrus")
    host = _Host(monkeypatch, {
        ("cyrus", "pull-cyrus"): lambda extra: {
            "pulled": USERS,
            "kept_aside": {USERS[0]: "/var/vmail/example.test/alice/Maildir.before-x"}
            if extra == ("--fresh",) else {}},
        ("cyrus", "manifest"): before,
        ("dovecot", "manifest"): dict(before, store="dovecot"),
    })
    echo = Echo()
    done = _run(cyrus_inventory, "dovecot", echo)
    assert host.calls == [
        ("cyrus", "pull-cyrus", "--fresh"),
        ("cyrus", "pause"),
        ("cyrus", "lock"),
        ("cyrus", "pull-cyrus"),
        ("cyrus", "manifest"),
        ("deploy", "dovecot"),
        ("dovecot", "put-sieve"),  # dsync copied the mailboxes, the agent the scripts
        ("dovecot", "manifest"),
        ("dovecot", "release"),
    ]
    [deployed] = host.deploys
    assert deployed == {"limit": HOST, "backend": "dovecot", "vault": "vault.txt",
                        "verbose": False, "ca_dir": Path("/ca"), "migrating": True}
    assert done.keeps_ids
    assert done.kept_aside == {USERS[0]: "/var/vmail/example.test/alice/Maildir.before-x"}
    assert {"pull-cyrus", "deploy dovecot", "hold window"} <= set(done.timings)
    assert not any(err for _, err in echo.lines)
    assert "POP3 clients fetch" not in echo.text  # UIDs are kept
    assert f"{HOST}: the dovecot store's manifest equals the cyrus store's (UIDs, " in echo.text
    assert (f"{USERS[0]}: an older Dovecot copy of this mailbox was in the way; kept in "
            "/var/vmail/example.test/alice/Maildir.before-x") in echo.text
    # the deploy's own lines are indented under the migration's
    assert f"    deploying 1 host(s): {HOST}" in echo.text.splitlines()
    assert echo.lines[-1][0] == (f"{HOST}: set mail_backend: dovecot for {HOST} in "
                                 f"{_host_vars(cyrus_inventory)}; a deploy then changes "
                                 "nothing (the cyrus store's files stay on the host)")


def test_cyrus_to_dovecot_compares_by_ids(cyrus_inventory: Inventory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """dsync keeps UIDs: the same mail under other UIDs is a difference, and rolls back."""
    host = _Host(monkeypatch, {
        ("cyrus", "manifest"): _manifest("cyrus"),
        ("dovecot", "manifest"): _manifest("dovecot", uids=(5, 6)),
    })
    echo = Echo()
    with pytest.raises(MailctlError, match=r"the manifests differ .*rolled back, delivery "
                                           r"stays on cyrus$"):
        _run(cyrus_inventory, "dovecot", echo)
    assert host.calls[-3:] == [("dovecot", "manifest"), ("deploy", "cyrus"),
                               ("cyrus", "release")]
    assert f"{USERS[0]}: mailbox 'INBOX': uid 1: only in A" in echo.text


# --------------------------------------------------------------------------- Dovecot -> Cyrus

def test_dovecot_to_cyrus(dovecot_inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export twice (fresh, then paused), the switch, Cyrus locked before the import, the
    release; other UIDs, UIDVALIDITY, POP3 UIDLs and quota usage are no difference."""
    exported = _manifest("dovecot")
    imported = _manifest("cyrus", uids=(1001, 1002), uidvalidity=1800000000,
                         uidls=["x.1", "x.2"], used=12)
    host = _Host(monkeypatch, {("dovecot", "export"): exported,
                               ("cyrus", "import"): imported})
    echo = Echo()
    done = _run(dovecot_inventory, "cyrus", echo)
    assert host.calls == [
        ("dovecot", "export", "--fresh"),
        ("dovecot", "pause"),
        ("dovecot", "lock"),
        ("dovecot", "export"),
        ("deploy", "cyrus"),
        ("cyrus", "lock"),
        ("cyrus", "import"),
        ("cyrus", "release"),
    ]
    assert host.deploys[0]["migrating"] is True
    assert not done.keeps_ids
    assert diff(exported, imported) != []  # by ids they differ: only the ids
    assert "(IMAP hands out new UIDs: POP3 clients fetch their mail once more)" in \
        echo.lines[0][0]
    assert "manifest equals the dovecot store's (content, flags, keywords, dates" in echo.text
    assert echo.lines[-1][0].startswith(f"{HOST}: set mail_backend: cyrus for {HOST} in "
                                        f"{_host_vars(dovecot_inventory)};")


def test_dovecot_to_cyrus_content_differs(dovecot_inventory: Inventory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A message lost in the import: its finding is shown, the host goes back to Dovecot, the
    release runs there, and the error says so."""
    imported = _manifest("cyrus", uids=(1001, 1002))
    for entry in imported["users"].values():
        entry["mailboxes"]["INBOX"]["messages"].pop()
        entry["mailboxes"]["INBOX"]["count"] = 1
    host = _Host(monkeypatch, {("dovecot", "export"): _manifest("dovecot"),
                               ("cyrus", "import"): imported})
    echo = Echo()
    with pytest.raises(MailctlError) as caught:
        _run(dovecot_inventory, "cyrus", echo)
    assert str(caught.value) == (f"{HOST}: the manifests differ (4 finding(s)); rolled back, "
                                 "delivery stays on dovecot")
    assert host.calls[-4:] == [("cyrus", "lock"), ("cyrus", "import"),
                               ("deploy", "dovecot"), ("dovecot", "release")]
    assert [d["backend"] for d in host.deploys] == ["cyrus", "dovecot"]
    assert all(d["migrating"] for d in host.deploys)
    assert (f"{USERS[0]}: mailbox 'INBOX': message {SHA[1][:12]} (101 bytes, "
            "2026-12-02T10:00:00Z): only in A") in echo.text
    assert (f"{HOST}: the manifests differ (4 finding(s)): rolling back to dovecot", True) \
        in echo.lines
    assert "set mail_backend" not in echo.text


# --------------------------------------------------------------------------- failures

@pytest.mark.parametrize(("store", "to", "failing"), [
    ("cyrus", "dovecot", ("cyrus", "pull-cyrus")),
    ("cyrus", "dovecot", ("cyrus", "manifest")),
    ("cyrus", "dovecot", ("cyrus", "lock")),
    ("dovecot", "cyrus", ("dovecot", "export")),
    ("dovecot", "cyrus", ("dovecot", "lock")),
])
def test_failure_before_the_switch(make_inventory, monkeypatch: pytest.MonkeyPatch, store: str,
                                   to: str, failing: tuple[str, str]) -> None:
    """A failure once delivery is paused (the lock, the final sync, the source's manifest):
    released on the source, no deploy, and the error says delivery stays there."""
    inv = Inventory(make_inventory(host_vars={HOST: {**BASE_HOST, "mail_backend": store}}))

    def fails_when_paused(extra: tuple) -> object:
        if extra == ("--fresh",):
            return {}
        return MailctlError(f"{HOST}: mailbox {failing[1]} failed: IMAP FETCH: NO gone")

    host = _Host(monkeypatch, {failing: fails_when_paused})
    with pytest.raises(MailctlError) as caught:
        _run(inv, to, Echo())
    assert str(caught.value) == (f"{HOST}: mailbox {failing[1]} failed: IMAP FETCH: NO gone; "
                                 f"nothing was switched, delivery stays on {store}")
    assert host.deploys == []
    assert host.calls[-1] == (store, "release")
    assert host.calls.count((store, "pause")) == 1
    assert failing in host.calls


def test_failure_of_the_pre_sync_touches_nothing(cyrus_inventory: Inventory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The first copy fails before anything is paused: the error as it is, nothing else."""
    host = _Host(monkeypatch, {("cyrus", "pull-cyrus"): MailctlError("pull failed")})
    with pytest.raises(MailctlError, match=r"^pull failed$"):
        _run(cyrus_inventory, "dovecot", Echo())
    assert host.calls == [("cyrus", "pull-cyrus", "--fresh")]


@pytest.mark.parametrize(("store", "to"), [("cyrus", "dovecot"), ("dovecot", "cyrus")])
def test_deploy_failure_rolls_back(make_inventory, monkeypatch: pytest.MonkeyPatch, store: str,
                                   to: str) -> None:
    """The switch's deploy failing half-way: a deploy of the source store, then the release
    there; nothing is asked of the target store."""
    inv = Inventory(make_inventory(host_vars={HOST: {**BASE_HOST, "mail_backend": store}}))
    host = _Host(monkeypatch, {}, deploy_fails={to: MailctlError(f"deploy failed on {HOST}")})
    echo = Echo()
    with pytest.raises(MailctlError) as caught:
        _run(inv, to, echo)
    assert str(caught.value) == (f"{HOST}: deploy failed on {HOST}; rolled back, delivery "
                                 f"stays on {store}")
    assert host.calls[-3:] == [("deploy", to), ("deploy", store), (store, "release")]
    assert not any(call[0] == to for call in host.calls if call[0] != "deploy")
    assert [d["migrating"] for d in host.deploys] == [True, True]
    assert (f"{HOST}: deploy failed on {HOST}: rolling back to {store}", True) in echo.lines


def test_rollback_failure_keeps_the_pause(dovecot_inventory: Inventory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollback's deploy failing as well: no release into a store in an unknown state;
    the error gives both reasons and says how to let the mail in afterwards."""
    host = _Host(monkeypatch, {("dovecot", "export"): _manifest("dovecot")},
                 deploy_fails={"cyrus": MailctlError("cyrus failed to start"),
                               "dovecot": MailctlError("dovecot failed to start")})
    with pytest.raises(MailctlError) as caught:
        _run(dovecot_inventory, "cyrus", Echo())
    text = str(caught.value)
    assert text.startswith(f"{HOST}: cyrus failed to start; the rollback failed too "
                           "(dovecot failed to start)")
    assert f"`mailctl mailbox release --host {HOST}`" in text
    assert host.calls[-2:] == [("deploy", "cyrus"), ("deploy", "dovecot")]
    assert not any(call[1] == "release" for call in host.calls)


def test_import_failure_rolls_back(dovecot_inventory: Inventory,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The import failing after the switch: back to Dovecot, released there."""
    host = _Host(monkeypatch, {("dovecot", "export"): _manifest("dovecot"),
                               ("cyrus", "import"): MailctlError("import failed: NO quota")})
    with pytest.raises(MailctlError, match=r"^mail\.example\.test: import failed: NO quota; "
                                           r"rolled back, delivery stays on dovecot$"):
        _run(dovecot_inventory, "cyrus", Echo())
    assert host.calls[-3:] == [("cyrus", "import"), ("deploy", "dovecot"),
                               ("dovecot", "release")]


def test_bad_input_touches_no_host(cyrus_inventory: Inventory,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """plan() refusing: no agent command and no deploy."""
    host = _Host(monkeypatch, {})
    with pytest.raises(InputError):
        mg.migrate(cyrus_inventory, HOST, None, "cyrus", (), Echo())
    with pytest.raises(InputError):
        mg.migrate(cyrus_inventory, HOST, None, "dovecot", ("bob@corp.test",), Echo())
    assert host.calls == []


# =========================================================================== agent: pure parts

@pytest.mark.parametrize(("utc", "imap"), [
    ("2011-03-13T07:06:40Z", '"13-Mar-2011 07:06:40 +0000"'),
    ("2026-01-02T00:00:00Z", '"02-Jan-2026 00:00:00 +0000"'),
    ("1999-12-31T23:59:59Z", '"31-Dec-1999 23:59:59 +0000"'),
])
def test_imap_date(utc: str, imap: str) -> None:
    """A manifest's UTC time as an IMAP date-time (quoted, two-digit day, +0000)."""
    assert agent.imap_date(utc) == imap


GERMAN = ("Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez")


class _GermanDatetime(datetime):
    """datetime as under a German LC_TIME: strftime's %b names the months in German."""

    def strftime(self, fmt: str) -> str:
        return super().strftime(fmt.replace("%b", GERMAN[self.month - 1]))

    def __format__(self, fmt: str) -> str:
        return self.strftime(fmt) if fmt else str(self)


def test_imap_date_months_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAP's month names are English whatever the locale (no strftime %b), and the agent
    reads its own dates back as the same instant."""
    for month in range(1, 13):
        utc = f"2026-{month:02d}-15T08:09:10Z"
        assert agent.internaldate_utc(agent.imap_date(utc).strip('"')) == utc
    monkeypatch.setattr(agent, "datetime", _GermanDatetime)
    for month, name in enumerate(MONTHS, 1):
        assert agent.imap_date(f"2026-{month:02d}-15T08:09:10Z") == \
            f'"15-{name}-2026 08:09:10 +0000"'


def _body(n: int) -> bytes:
    return b"From: a@x.test\r\nSubject: %d\r\n\r\nbody %d\r\n" % (n, n)


def _bodies_dir(tmp_path: Path, *bodies: bytes) -> str:
    where = tmp_path / "messages"
    where.mkdir(exist_ok=True)
    for body in bodies:
        (where / hashlib.sha256(body).hexdigest()).write_bytes(body)
    return str(where)


def _record(body: bytes, uid: int = 1, flags: list[str] | None = None,
            date: str = "2026-12-02T10:00:00Z") -> dict:
    return {"uid": uid, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
            "flags": ["\\Seen"] if flags is None else flags, "internaldate": date}


class _AppendOnly:
    """Just the imaplib internals append_many uses; answers the tagged completion."""

    def __init__(self, answer: tuple | Exception = ("OK", [b"[APPENDUID 9 1:2] done"])):
        self.answer = answer
        self.sent: list[bytes] = []
        self.completed: list[tuple[str, bytes]] = []

    def _new_tag(self) -> bytes:
        return b"MCTL7"

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def _command_complete(self, name: str, tag: bytes) -> tuple:
        self.completed.append((name, tag))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_append_many_one_command_with_literal_plus(tmp_path: Path) -> None:
    """One APPEND for the batch: each message as ' (flags) "date" {N+}' CRLF and its bytes,
    \\Recent left out, the command ended by CRLF and its completion awaited under its tag."""
    one, two = _body(1), b"binary \x00\xff and a lone ) {5}\r\n"
    batch = [_record(one, flags=["\\Seen", "\\Recent", "$Label1"]),
             _record(two, uid=2, flags=[], date="2011-03-13T07:06:40Z")]
    imap = _AppendOnly()
    agent.append_many(imap, 'Lists/"dev"', batch, _bodies_dir(tmp_path, one, two))
    assert imap.sent == [
        b'MCTL7 APPEND "Lists/\\"dev\\""'
        + b' (\\Seen $Label1) "02-Dec-2026 10:00:00 +0000" {%d+}\r\n' % len(one) + one
        + b' () "13-Mar-2011 07:06:40 +0000" {%d+}\r\n' % len(two) + two
        + b"\r\n"]
    assert imap.completed == [("APPEND", b"MCTL7")]


def test_append_many_empty_batch_sends_nothing(tmp_path: Path) -> None:
    imap = _AppendOnly()
    agent.append_many(imap, "INBOX", [], str(tmp_path))
    assert imap.sent == [] and imap.completed == []


@pytest.mark.parametrize(("answer", "message"), [
    (("NO", [b"[OVERQUOTA] Over quota"]),
     r"^IMAP APPEND of 1 message\(s\) to INBOX: NO \[OVERQUOTA\] Over quota$"),
    (imaplib.IMAP4.error("APPEND command error: BAD [b'Invalid literal']"),
     r"^IMAP APPEND INBOX: APPEND command error: BAD"),
])
def test_append_many_refused(tmp_path: Path, answer: object, message: str) -> None:
    """NO, or BAD (imaplib raises): the agent's Failure naming the mailbox."""
    with pytest.raises(agent.Failure, match=message):
        agent.append_many(_AppendOnly(answer), "INBOX", [_record(_body(1))],
                          _bodies_dir(tmp_path, _body(1)))


# --------------------------------------------------------------------------- FakeIMAP

def _imap_time(utc: str, offset_hours: int = 0) -> str:
    """A UTC ISO time as INTERNALDATE in a chosen zone ("02-Dec-2026 12:00:00 +0200")."""
    when = datetime.strptime(utc, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=offset_hours)
    sign = "-" if offset_hours < 0 else "+"
    return (f"{when.day:02d}-{MONTHS[when.month - 1]}-{when.year} {when:%H:%M:%S} "
            f"{sign}{abs(offset_hours):02d}00")


def _utc(imap_time: str) -> str:
    """INTERNALDATE as the manifest's UTC ISO time (the test's own reading)."""
    day, month, rest = imap_time.strip().split("-", 2)
    year, clock, zone = rest.split(" ")
    hour, minute, second = (int(x) for x in clock.split(":"))
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    when = datetime(int(year), MONTHS.index(month) + 1, int(day), hour, minute, second,
                    tzinfo=timezone(offset if zone[0] == "+" else -offset))
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Message:
    uid: int
    body: bytes
    flags: set[str]
    date: str  # INTERNALDATE as the server writes it


@dataclass
class _Box:
    uidvalidity: int
    uidnext: int = 1
    messages: list[_Message] = field(default_factory=list)


APPEND_HEAD = re.compile(rb'(?P<tag>\S+) APPEND "(?P<name>(?:[^"\\]|\\.)*)"')
APPEND_PART = re.compile(rb' \((?P<flags>[^)]*)\) "(?P<date>[^"]+)" \{(?P<size>\d+)\+\}\r\n')


class FakeIMAP:
    """A user's mail behind imaplib's methods. boxes: {name: [(body, flags, INTERNALDATE)]}.
    noselect: names LIST shows \\Noselect (Dovecot's parents). parents_made: CREATE of a/b
    also makes a real, empty, unsubscribed "a" (Cyrus). log: what changed, in order."""

    def __init__(self, boxes: dict[str, list[tuple]], *, subscribed: tuple[str, ...] = (),
                 noselect: tuple[str, ...] = (), parents_made: bool = False,
                 append_answer: tuple = ("OK", [b"[APPENDUID 1 1] Completed"])) -> None:
        self.boxes: dict[str, _Box] = {}
        self.validity = 1700000000
        for name, messages in boxes.items():
            self._make(name)
            for body, flags, date in messages:
                self._add(name, body, set(flags), date)
        self.subscribed = set(subscribed)
        self.noselect = set(noselect)
        self.parents_made = parents_made
        self.append_answer = append_answer
        self.log: list[str] = []
        self.selected: str | None = None
        self.readonly = True
        self.tags = 0
        self.pending: tuple | None = None
        self.logged_out = False

    # -- state
    def _make(self, name: str) -> None:
        self.validity += 1
        self.boxes[name] = _Box(self.validity)

    def _add(self, name: str, body: bytes, flags: set[str], date: str) -> None:
        box = self.boxes[name]
        box.messages.append(_Message(box.uidnext, body, flags, date))
        box.uidnext += 1

    def contents(self, name: str) -> list[tuple[bytes, tuple[str, ...], str]]:
        """What a mailbox holds, UIDs aside: (body, sorted flags, UTC date), sorted."""
        return sorted((m.body, tuple(sorted(m.flags)), _utc(m.date))
                      for m in self.boxes[name].messages)

    def changes(self) -> list[str]:
        return [entry for entry in self.log if not entry.startswith("CLOSE")]

    @staticmethod
    def _name(mailbox: str) -> str:
        assert mailbox.startswith('"') and mailbox.endswith('"'), mailbox  # always quoted
        return agent.unquote(mailbox.encode())

    def _open(self) -> _Box:
        assert self.selected is not None, "no mailbox selected"
        return self.boxes[self.selected]

    def _uids(self, uids: str) -> set[int]:
        return {int(u) for u in uids.split(",")}

    # -- imaplib's methods
    def list(self, ref: str, pattern: str) -> tuple[str, list]:
        assert (ref, pattern) == ('""', "*")
        lines = [b'(\\HasNoChildren) "/" "%s"' % n.encode() for n in sorted(self.boxes)]
        lines += [b'(\\Noselect \\HasChildren) "/" "%s"' % n.encode()
                  for n in sorted(self.noselect)]
        return "OK", lines or [None]

    def lsub(self, ref: str, pattern: str) -> tuple[str, list]:
        assert (ref, pattern) == ('""', "*")
        return "OK", [b'() "/" "%s"' % n.encode() for n in sorted(self.subscribed)] or [None]

    def select(self, mailbox: str, readonly: bool = False) -> tuple[str, list]:
        name = self._name(mailbox)
        if name not in self.boxes:
            return "NO", [b"[NONEXISTENT] Mailbox does not exist"]
        self.selected, self.readonly = name, readonly
        return "OK", [b"%d" % len(self.boxes[name].messages)]

    def status(self, mailbox: str, items: str) -> tuple[str, list]:
        assert items == "(MESSAGES UIDNEXT UIDVALIDITY)"
        box = self.boxes[self._name(mailbox)]
        return "OK", [b'%s (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)'
                      % (mailbox.encode(), len(box.messages), box.uidnext, box.uidvalidity)]

    def uid(self, command: str, *args: str) -> tuple[str, list]:
        box = self._open()
        if command == "FETCH" and args == ("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)"):
            return "OK", [b'%d (UID %d RFC822.SIZE %d FLAGS (%s) INTERNALDATE "%s")'
                          % (n, m.uid, len(m.body), " ".join(sorted(m.flags)).encode(),
                             m.date.encode()) for n, m in enumerate(box.messages, 1)]
        if command == "FETCH" and args[1] == "(BODY.PEEK[])":
            wanted, data = self._uids(args[0]), []
            for n, m in enumerate(box.messages, 1):
                if m.uid in wanted:
                    data += [(b"%d (UID %d BODY[] {%d}" % (n, m.uid, len(m.body)), m.body), b")"]
            return "OK", data
        if self.readonly:
            return "NO", [b"[READ-ONLY] Mailbox is read-only"]
        if command == "STORE":
            uids, mode, flag_list = args
            assert mode in ("FLAGS.SILENT", "+FLAGS.SILENT"), mode
            flags = set(flag_list.strip("()").split())
            for m in box.messages:
                if m.uid in self._uids(uids):
                    m.flags = flags if mode == "FLAGS.SILENT" else m.flags | flags
            self.log.append(f"STORE {self.selected} {uids} {mode} {flag_list}")
            return "OK", [None]
        if command == "EXPUNGE":
            (uids,) = args
            box.messages = [m for m in box.messages
                            if not (m.uid in self._uids(uids) and "\\Deleted" in m.flags)]
            self.log.append(f"EXPUNGE {self.selected} {uids}")
            return "OK", [None]
        raise AssertionError(f"unexpected UID {command} {args}")

    def close(self) -> tuple[str, list]:
        box = self._open()
        if not self.readonly:  # RFC 3501 6.4.2: CLOSE expunges a read-write mailbox
            gone = [m.uid for m in box.messages if "\\Deleted" in m.flags]
            box.messages = [m for m in box.messages if "\\Deleted" not in m.flags]
            self.log.append(f"CLOSE {self.selected} expunged {gone}")
        self.selected = None
        return "OK", [b"Completed"]

    def unselect(self) -> tuple[str, list]:
        self._open()  # RFC 3691: leaves the mailbox without expunging anything
        self.selected = None
        return "OK", [b"Completed"]

    def create(self, mailbox: str) -> tuple[str, list]:
        name = self._name(mailbox)
        if name in self.boxes:
            return "NO", [b"[ALREADYEXISTS] Mailbox already exists"]
        parts = name.split("/")
        for i in range(1, len(parts) if self.parents_made else 1):
            if "/".join(parts[:i]) not in self.boxes:
                self._make("/".join(parts[:i]))
        self._make(name)
        self.log.append(f"CREATE {name}")
        return "OK", [b"Completed"]

    def delete(self, mailbox: str) -> tuple[str, list]:
        name = self._name(mailbox)
        if name not in self.boxes or any(n.startswith(name + "/") for n in self.boxes):
            return "NO", [b"cannot delete"]
        del self.boxes[name]
        self.log.append(f"DELETE {name}")
        return "OK", [b"Completed"]

    def subscribe(self, mailbox: str) -> tuple[str, list]:
        self.subscribed.add(self._name(mailbox))
        self.log.append(f"SUBSCRIBE {self._name(mailbox)}")
        return "OK", [b"Completed"]

    def unsubscribe(self, mailbox: str) -> tuple[str, list]:
        self.subscribed.discard(self._name(mailbox))
        self.log.append(f"UNSUBSCRIBE {self._name(mailbox)}")
        return "OK", [b"Completed"]

    def getquotaroot(self, mailbox: str) -> tuple[str, list]:
        return "NO", [b"no quota"]

    def logout(self) -> tuple[str, list]:
        self.logged_out = True
        return "BYE", [b"bye"]

    # imaplib's internals, as append_many drives them
    def _new_tag(self) -> bytes:
        self.tags += 1
        return b"MCTL%d" % self.tags

    def send(self, data: bytes) -> None:
        head = APPEND_HEAD.match(data)
        assert head, data[:80]
        pos, parts = head.end(), []
        while data[pos:] != b"\r\n":
            part = APPEND_PART.match(data, pos)
            assert part, data[pos:pos + 80]  # flags, date and a LITERAL+ literal, or CRLF
            end = part.end() + int(part.group("size"))
            parts.append((set(part.group("flags").decode().split()),
                          part.group("date").decode(), data[part.end():end]))
            pos = end
        self.pending = (head.group("tag"), agent.unquote(b'"' + head.group("name") + b'"'),
                        parts)

    def _command_complete(self, name: str, tag: bytes) -> tuple[str, list]:
        assert self.pending and (name, tag) == ("APPEND", self.pending[0])
        _, box, parts = self.pending
        self.pending = None
        if self.append_answer[0] != "OK":
            return self.append_answer
        if box not in self.boxes:
            return "NO", [b"[TRYCREATE] Mailbox does not exist"]
        for flags, date, body in parts:
            self._add(box, body, flags, date)
        self.log.append(f"APPEND {box} {len(parts)}")
        return self.append_answer


def _saved(fake: FakeIMAP) -> dict:
    """The fake's mailboxes as a manifest records them (what cmd_export saves)."""
    return agent.user_manifest(_Store({"u": fake}, "dovecot"), "u")["mailboxes"]


class _Store:
    """The agent's Store, for fakes: users' IMAP sessions, and no POP3."""

    def __init__(self, sessions: dict[str, FakeIMAP], kind: str) -> None:
        self.sessions, self.kind = sessions, kind

    def imap(self, user: str) -> FakeIMAP:
        return self.sessions[user]

    def uidls(self, user: str) -> list[str]:
        return []

    def sieve(self, user: str) -> _NoScripts:
        return _NoScripts()


class _NoScripts:
    """A user without Sieve scripts (tests/test_sieve_agent.py has the scripts' own)."""

    def listing(self) -> tuple[list[str], None]:
        return [], None

    def close(self) -> None:
        pass


def _msg(n: int, flags: tuple[str, ...] = ("\\Seen",), day: int = 1,
         offset: int = 0) -> tuple[bytes, tuple[str, ...], str]:
    return _body(n), flags, _imap_time(f"2026-12-{day:02d}T10:00:00Z", offset)


# --------------------------------------------------------------------------- copy_messages

def test_copy_messages_expunges_appends_and_fixes_flags(tmp_path: Path) -> None:
    """Matched by content and date: a copy with other flags gets the saved ones (STORE on
    its UID), the extra message and the surplus copy are STOREd \\Deleted and UID EXPUNGEd,
    the two missing copies come in one APPEND."""
    source = FakeIMAP({"INBOX": [_msg(1), _msg(2, ("$Label1", "\\Seen")), _msg(3, ()),
                                 _msg(3, ()), _msg(4, ("\\Answered",), day=3)]})
    wanted = _saved(source)["INBOX"]["messages"]
    target = FakeIMAP({"INBOX": [
        _msg(1, offset=2),      # uid 1: equal (the same instant in another zone)
        _msg(2, ()),            # uid 2: flags differ
        _msg(5),                # uid 3: not wanted
        _msg(1),                # uid 4: a copy too many
        _msg(3, (), day=9),     # uid 5: same content, another date: not the same message
    ]})
    agent.copy_messages(target, "INBOX", wanted,
                        _bodies_dir(tmp_path, *(_body(n) for n in range(1, 5))))
    assert target.changes() == [
        "STORE INBOX 2 FLAGS.SILENT ($Label1 \\Seen)",
        "STORE INBOX 3,4,5 +FLAGS.SILENT (\\Deleted)",
        "EXPUNGE INBOX 3,4,5",
        "APPEND INBOX 3",
    ]
    assert target.contents("INBOX") == source.contents("INBOX")


def test_copy_messages_equal_mailbox_changes_nothing(tmp_path: Path) -> None:
    """A mailbox already equal (a re-run): no STORE, EXPUNGE or APPEND."""
    messages = [_msg(1), _msg(2, ("\\Flagged",))]
    source = FakeIMAP({"INBOX": messages})
    target = FakeIMAP({"INBOX": list(reversed(messages))})
    agent.copy_messages(target, "INBOX", _saved(source)["INBOX"]["messages"], str(tmp_path))
    assert target.changes() == []
    assert target.contents("INBOX") == source.contents("INBOX")


def test_copy_messages_keeps_saved_deleted_messages(tmp_path: Path) -> None:
    """A message the user flagged \\Deleted but did not expunge is part of the mailbox: the
    manifest has it, so the copy must keep it, on a re-run too (the target has it already).

    Fails with the current agent: copy_messages ends its read-write SELECT with CLOSE, which
    expunges every \\Deleted message of the mailbox (RFC 3501 6.4.2), not only the extra
    ones it just marked; the matched copy is then gone and is not appended again."""
    messages = [_msg(1), _msg(2, ("\\Deleted", "\\Seen"))]
    source = FakeIMAP({"INBOX": messages})
    target = FakeIMAP({"INBOX": messages})  # a re-run: everything is there already
    agent.copy_messages(target, "INBOX", _saved(source)["INBOX"]["messages"], str(tmp_path))
    assert target.contents("INBOX") == source.contents("INBOX")


def test_copy_messages_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing messages go in batches of at most APPEND_BATCH messages (or bytes), each one
    APPEND command, in UID order."""
    source = FakeIMAP({"INBOX": [_msg(n, day=n) for n in range(1, 6)]})
    target = FakeIMAP({"INBOX": []})
    monkeypatch.setattr(agent, "APPEND_BATCH", (2, 10**9))
    agent.copy_messages(target, "INBOX", _saved(source)["INBOX"]["messages"],
                        _bodies_dir(tmp_path, *(_body(n) for n in range(1, 6))))
    assert target.changes() == ["APPEND INBOX 2", "APPEND INBOX 2", "APPEND INBOX 1"]
    assert [m.body for m in target.boxes["INBOX"].messages] == [_body(n) for n in range(1, 6)]

    target = FakeIMAP({"INBOX": []})
    monkeypatch.setattr(agent, "APPEND_BATCH", (200, len(_body(1)) * 3))
    agent.copy_messages(target, "INBOX", _saved(source)["INBOX"]["messages"],
                        _bodies_dir(tmp_path))
    assert target.changes() == ["APPEND INBOX 3", "APPEND INBOX 2"]


def test_copy_messages_append_refused(tmp_path: Path) -> None:
    """An APPEND answered NO stops the copy with the agent's Failure."""
    source = FakeIMAP({"INBOX": [_msg(1)]})
    target = FakeIMAP({"INBOX": []}, append_answer=("NO", [b"[OVERQUOTA] Over quota"]))
    with pytest.raises(agent.Failure, match=r"APPEND of 1 message\(s\) to INBOX: NO"):
        agent.copy_messages(target, "INBOX", _saved(source)["INBOX"]["messages"],
                            _bodies_dir(tmp_path, _body(1)))
    assert target.contents("INBOX") == []


# --------------------------------------------------------------------------- make_equal

def test_make_equal_folders_and_subscriptions(tmp_path: Path) -> None:
    """Folders the manifest lacks are deleted, children first; INBOX and the parents of
    saved folders stay; missing folders are created; subscriptions are fixed both ways."""
    source = FakeIMAP({"INBOX": [_msg(1)], "Reports/2019": [_msg(2)], "Sent": [],
                       "Trash": [], "Archive": [_msg(3)]},
                      subscribed=("INBOX", "Sent", "Reports/2019"), noselect=("Reports",))
    saved = _saved(source)
    assert "Reports" not in saved
    target = FakeIMAP({"INBOX": [], "Old": [_msg(9)], "Old/Child": [], "Reports": [],
                       "Trash": [], "Archive": [_msg(3)]},
                      subscribed=("Trash", "Old"))
    agent.make_equal(target, saved, _bodies_dir(tmp_path, *(_body(n) for n in range(1, 4))))
    changes = target.changes()
    assert changes[:2] == ["DELETE Old/Child", "DELETE Old"]
    assert {"CREATE Reports/2019", "CREATE Sent", "SUBSCRIBE INBOX", "SUBSCRIBE Sent",
            "SUBSCRIBE Reports/2019", "UNSUBSCRIBE Trash"} <= set(changes)
    assert not any(c.startswith(("DELETE INBOX", "DELETE Reports", "CREATE Archive",
                                 "CREATE Trash", "CREATE INBOX", "APPEND Archive"))
                   for c in changes)
    assert sorted(target.boxes) == ["Archive", "INBOX", "Reports", "Reports/2019", "Sent",
                                    "Trash"]
    assert target.subscribed >= {"INBOX", "Sent", "Reports/2019"}
    assert "Trash" not in target.subscribed
    for name in saved:
        assert target.contents(name) == source.contents(name), name


def test_make_equal_empties_a_kept_parent(tmp_path: Path) -> None:
    """A parent kept for a saved child (Reports for Reports/2019) but holding older mail
    (Cyrus's copy from before; on Dovecot the user deleted Reports, which left it \\Noselect
    above its child) must not keep that mail: the target's manifest must equal the saved
    one, or every migration rolls back on "Reports: only in B".

    Fails with the current agent: make_equal keeps such a parent as it is, messages and all
    (it is neither deleted nor given copy_messages)."""
    source = FakeIMAP({"INBOX": [], "Reports/2019": [_msg(2)]},
                      subscribed=("INBOX",), noselect=("Reports",))
    saved = _saved(source)
    target = FakeIMAP({"INBOX": [], "Reports": [_msg(7)], "Reports/2019": [_msg(2)]},
                      subscribed=("INBOX",))
    agent.make_equal(target, saved, str(tmp_path))
    after = {"store": "cyrus", "users": {"u": {"mailboxes": _saved(target)}}}
    assert diff({"store": "dovecot", "users": {"u": {"mailboxes": saved}}}, after,
                ignore_ids=True) == []


def test_make_equal_never_deletes_inbox(tmp_path: Path) -> None:
    """INBOX is kept (in any case) even if the manifest does not list it."""
    target = FakeIMAP({"INBOX": [], "Other": []})
    agent.make_equal(target, {}, str(tmp_path))
    assert sorted(target.boxes) == ["INBOX"]
    assert target.changes() == ["DELETE Other"]


# --------------------------------------------------------------------------- export, import

def _args(**kwargs: object) -> argparse.Namespace:
    defaults = {"store": "dovecot", "user": ["alice@example.test"], "fresh": False,
                "pack": False, "archive": None,
                "admin_user": "cyrus", "vmail_user": "vmail"}
    return argparse.Namespace(**{**defaults, **kwargs})


def test_export_then_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot's mail exported to the stage (one file per distinct message and the
    manifest) and imported into a Cyrus holding older mail: the two manifests agree but for
    the ids and the user's stage is removed; a re-run (exported again) changes nothing, and
    a fresh export starts over."""
    user = "alice@example.test"
    source = FakeIMAP({"INBOX": [_msg(1, ("\\Seen", "\\Recent")), _msg(2, ("$Label1",)),
                                 _msg(2, ("$Label1",))],
                       "Reports/2019": [_msg(3, day=2, offset=-5)], "Sent": []},
                      subscribed=("INBOX", "Reports/2019"), noselect=("Reports",))
    target = FakeIMAP({"INBOX": [_msg(7), _msg(1, ())], "Stale": [_msg(8)]},
                      subscribed=("Stale",), parents_made=True)
    stage = tmp_path / "stage"
    stage.mkdir()
    stage.chmod(0o755)  # as an earlier run or an admin may have left it
    monkeypatch.setattr(agent, "Store", lambda args: _Store(
        {user: source if args.store == "dovecot" else target}, args.store))

    exported = agent.cmd_export(_args(stage=str(stage), fresh=True))
    assert oct(stage.stat().st_mode & 0o777) == "0o700"
    kept = sorted(p.name for p in (stage / user / "messages").iterdir())
    assert kept == sorted(hashlib.sha256(_body(n)).hexdigest() for n in (1, 2, 3))
    for name in kept:
        assert hashlib.sha256((stage / user / "messages" / name).read_bytes()).hexdigest() \
            == name
    assert json.loads((stage / user / "manifest.json").read_text()) == \
        exported["users"][user]
    assert source.changes() == []  # reading changes nothing

    imported = agent.cmd_import(_args(store="cyrus", stage=str(stage)))
    assert diff(exported, imported, ignore_ids=True) == []
    assert diff(exported, imported) != []  # other UIDs: equal by content only
    assert "Reports" in imported["users"][user]["mailboxes"]  # Cyrus made the parent
    assert "DELETE Stale" in target.changes()
    assert target.logged_out
    assert not (stage / user).exists()  # the copy in transit is gone

    agent.cmd_export(_args(stage=str(stage)))
    target.log.clear()
    agent.cmd_import(_args(store="cyrus", stage=str(stage)))
    assert target.changes() == []
    agent.cmd_export(_args(stage=str(stage)))

    (stage / user / "messages" / "leftover").write_bytes(b"x")
    agent.cmd_export(_args(stage=str(stage)))
    assert (stage / user / "messages" / "leftover").exists()  # a second pass only adds
    agent.cmd_export(_args(stage=str(stage), fresh=True))
    assert not (stage / user / "messages" / "leftover").exists()


# --------------------------------------------------------------------------- lists

def test_write_list_and_listed_round_trip(tmp_path: Path) -> None:
    """Entries sorted one a line (in the given line format), mode 0644; listed() reads the
    first word of each non-blank line; a missing file lists nobody."""
    path = str(tmp_path / "locked-users")
    assert agent.listed(path) == set()
    agent.write_list(path, {"bob@x.test", "alice@x.test"})
    assert Path(path).read_text() == "alice@x.test\nbob@x.test\n"
    assert oct(Path(path).stat().st_mode & 0o777) == "0o644"
    assert agent.listed(path) == {"alice@x.test", "bob@x.test"}
    agent.write_list(path, {"carol@y.test"}, "{} retry:4.2.0 paused\n")
    assert Path(path).read_text() == "carol@y.test retry:4.2.0 paused\n"
    assert agent.listed(path) == {"carol@y.test"}
    Path(path).write_text("\n  \nerin@z.test  whatever\n\n")
    assert agent.listed(path) == {"erin@z.test"}
    agent.write_list(path, set())
    assert Path(path).read_text() == "" and agent.listed(path) == set()


def test_write_list_replaces_the_file_whole(tmp_path: Path) -> None:
    """A new file is renamed over the old one: a reader that opened the old one reads it
    whole, a leftover .tmp is overwritten, and none remains."""
    path = tmp_path / "paused-users"
    agent.write_list(str(path), {"a@x.test"})
    (tmp_path / "paused-users.tmp").write_text("half a line from a crash")
    with path.open() as reader:
        before = os.fstat(reader.fileno()).st_ino
        agent.write_list(str(path), {"b@x.test", "c@x.test"})
        assert reader.read() == "a@x.test\n"
    assert path.stat().st_ino != before
    assert path.read_text() == "b@x.test\nc@x.test\n"
    assert not (tmp_path / "paused-users.tmp").exists()


# --------------------------------------------------------------------------- lock, unlock

def _fake_subprocess(monkeypatch: pytest.MonkeyPatch, rc: int = 0, stdout: str = "") -> list:
    """The agent's subprocess.run records argv and keywords and succeeds (or exits rc)."""
    calls: list = []

    def run(argv, **kwargs):
        calls.append((list(argv), kwargs))
        return subprocess.CompletedProcess(argv, rc, stdout, "")

    monkeypatch.setattr(agent, "subprocess", types.SimpleNamespace(
        run=run, CompletedProcess=subprocess.CompletedProcess,
        SubprocessError=subprocess.SubprocessError))
    return calls


def test_lock_cyrus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cyrus: the users join the locked list (for Dovecot, once it takes over) and cyr_deny
    locks each out of the clients' four services, with a message."""
    locked = tmp_path / "locked-users"
    locked.write_text("erin@z.test\n")
    ran: list = []
    monkeypatch.setattr(agent, "run", lambda argv, what, retries=1: ran.append((argv, what)))
    calls = _fake_subprocess(monkeypatch)
    answer = agent.cmd_lock(_args(store="cyrus", user=["bob@x.test", "alice@x.test",
                                                       "bob@x.test"],
                                  locked_list=str(locked), cyrus_bin="/usr/lib/cyrus/bin"))
    assert answer == {"locked": ["alice@x.test", "bob@x.test"]}
    assert agent.listed(str(locked)) == {"alice@x.test", "bob@x.test", "erin@z.test"}
    assert agent.CYRUS_CLIENT_SERVICES == "imap,imaps,pop3,pop3s,sieve"
    assert [argv[:4] + argv[5:] for argv, _ in ran] == [
        ["/usr/lib/cyrus/bin/cyr_deny", "-s", "imap,imaps,pop3,pop3s,sieve", "-m", user]
        for user in ("alice@x.test", "bob@x.test")]
    assert all(argv[5] for argv, _ in ran)  # the message users see
    assert [what for _, what in ran] == ["alice@x.test: cyr_deny", "bob@x.test: cyr_deny"]
    assert calls == []  # no doveadm on a Cyrus host


def test_lock_dovecot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot: the locked list (its passdb denies them), then each user's sessions kicked."""
    locked = tmp_path / "locked-users"
    monkeypatch.setattr(agent, "run", lambda *a, **k: pytest.fail("no cyr_deny on Dovecot"))
    calls = _fake_subprocess(monkeypatch)
    agent.cmd_lock(_args(store="dovecot", user=["bob@x.test"], locked_list=str(locked),
                         cyrus_bin="/usr/lib/cyrus/bin"))
    assert locked.read_text() == "bob@x.test\n"
    assert [argv for argv, _ in calls] == [["doveadm", "kick", "bob@x.test"]]


def test_lock_cyrus_deny_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cyr_deny failing is the agent's Failure (the migration then releases the pause)."""
    _fake_subprocess(monkeypatch, rc=75)
    with pytest.raises(agent.Failure, match=r"^bob@x\.test: cyr_deny: exit code 75$"):
        agent.cmd_lock(_args(store="cyrus", user=["bob@x.test"],
                             locked_list=str(tmp_path / "l"), cyrus_bin="/cyrus/bin"))


def test_unlock_only_the_given_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The given users leave the locked list (others stay); where cyr_deny is installed each
    is allowed again (-a)."""
    locked = tmp_path / "locked-users"
    locked.write_text("alice@x.test\nbob@x.test\nerin@z.test\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "cyr_deny").write_text("#!/bin/sh\n")
    calls = _fake_subprocess(monkeypatch)
    agent.unlock(_args(user=["bob@x.test", "alice@x.test"], locked_list=str(locked),
                       cyrus_bin=str(tmp_path / "bin")))
    assert locked.read_text() == "erin@z.test\n"
    deny = str(tmp_path / "bin" / "cyr_deny")
    assert [argv for argv, _ in calls] == [[deny, "-a", "alice@x.test"],
                                           [deny, "-a", "bob@x.test"]]


def test_unlock_without_list_or_cyrus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No locked list and no Cyrus tools: nothing is created and nothing is run."""
    calls = _fake_subprocess(monkeypatch)
    agent.unlock(_args(user=["bob@x.test"], locked_list=str(tmp_path / "locked-users"),
                       cyrus_bin=str(tmp_path / "none")))
    assert calls == []
    assert not (tmp_path / "locked-users").exists()


def test_pause_then_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pause leaves the users paused (the map holds them); release lifts the pause, lets
    their queued mail in and unlocks them."""
    paused_map, locked = tmp_path / "paused-users", tmp_path / "locked-users"
    locked.write_text("bob@x.test\n")
    reloads: list = []
    monkeypatch.setattr(agent, "run", lambda argv, what, retries=1: reloads.append(argv))
    queue = ('{"queue_name": "deferred", "queue_id": "Q1", '
             '"recipients": [{"address": "bob@x.test"}]}\n')
    calls = _fake_subprocess(monkeypatch, stdout=queue)
    args = _args(user=["bob@x.test"], paused_map=str(paused_map), locked_list=str(locked),
                 cyrus_bin=str(tmp_path / "none"))
    assert agent.cmd_pause(args) == {"paused": ["bob@x.test"]}
    assert agent.listed(str(paused_map)) == {"bob@x.test"}
    assert agent.cmd_release(args) == {"released": ["bob@x.test"]}
    assert agent.listed(str(paused_map)) == set()
    assert agent.listed(str(locked)) == set()
    assert reloads == [["postfix", "reload"]] * 2
    assert ["postqueue", "-i", "Q1"] in [argv for argv, _ in calls]


# --------------------------------------------------------------------------- pull-cyrus

def _config(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def test_imapc_config() -> None:
    """dsync reads Cyrus through the agent's loopback IMAP service with STARTTLS, as the
    Cyrus admin on the user's behalf, and writes where mailctl's Dovecot reads."""
    text = agent.imapc_config(_args(admin_user="cyrus"), "s3cret pw", "/var/tmp/w")
    config = _config(text)
    assert config["imapc_host"] == "127.0.0.1"
    assert config["imapc_port"] == str(agent.CYRUS_AGENT_IMAP) == "2143"
    assert config["imapc_ssl"] == "starttls"
    assert config["imapc_user"] == "%u"
    assert config["imapc_master_user"] == "cyrus"
    assert config["imapc_password"] == "s3cret pw"
    assert config["mail_location"] == agent.DOVECOT_MAILDIR == "maildir:~/Maildir"
    assert config["base_dir"] == "/var/tmp/w"
    assert re.search(r"namespace inbox \{\n  inbox = yes\n  separator = /\n", text)


@pytest.fixture
def pull_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """cmd_pull_cyrus's surroundings: doveadm there, the Cyrus admin's password, the mail
    user being whoever runs the tests."""
    installs: list = []
    monkeypatch.setattr(agent, "install_doveadm", lambda: installs.append(1))
    scripts = _OneScript()
    monkeypatch.setattr(agent, "Store", lambda args: types.SimpleNamespace(
        admin_pw="s3cret", sieve=lambda user: scripts))
    me = types.SimpleNamespace(pw_uid=os.getuid(), pw_gid=os.getgid())
    monkeypatch.setattr(agent.pwd, "getpwnam", lambda name: me)
    (tmp_path / "work").mkdir()
    return types.SimpleNamespace(installs=installs, me=me, tmp=tmp_path)


class _OneScript(_NoScripts):
    """Cyrus's scripts of every user: one, active."""

    def listing(self) -> tuple[list[str], str]:
        return ["vacation"], "vacation"

    def get(self, name: str) -> str:
        return "keep;\r\n"


def _pull_args(tmp: Path, fresh: bool) -> argparse.Namespace:
    return _args(store="cyrus", user=["bob@corp.test", "alice@example.test"], fresh=fresh,
                 work_dir=str(tmp / "work"), vmail_dir=str(tmp / "vmail"),
                 stage=str(tmp / "stage"))


def test_pull_cyrus(pull_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per user, dsync as the mail user into the user's home, Cyrus's other users' and
    shared folders left out, exit 2 retried; --fresh moves an older Maildir aside; the
    config (with the password) is 0600 and removed afterwards."""
    tmp = pull_env.tmp
    old = tmp / "vmail" / "example.test" / "alice" / "Maildir"
    old.mkdir(parents=True)
    (old / "dovecot-uidlist").write_text("old")
    seen: list = []
    codes = iter([2, 0, 0])

    def run(argv, **kwargs):
        conf = Path(argv[2])
        seen.append((argv, kwargs, conf.read_text(), oct(conf.stat().st_mode & 0o777)))
        return subprocess.CompletedProcess(argv, next(codes), "", "")

    monkeypatch.setattr(agent, "subprocess", types.SimpleNamespace(
        run=run, SubprocessError=subprocess.SubprocessError))
    answer = agent.cmd_pull_cyrus(_pull_args(tmp, fresh=True))
    assert pull_env.installs == [1]
    [aside] = answer["kept_aside"].values()
    assert list(answer["kept_aside"]) == ["alice@example.test"]
    assert re.fullmatch(re.escape(str(old)) + r"\.before-migration-\d{8}T\d{6}Z", aside)
    assert (Path(aside) / "dovecot-uidlist").read_text() == "old"
    assert not old.exists()
    assert answer["pulled"] == ["alice@example.test", "bob@corp.test"]
    assert [kw["env"]["USER"] for _, kw, _, _ in seen] == ["alice@example.test"] * 2 + \
        ["bob@corp.test"]
    argv, kwargs, conf_text, mode = seen[0]
    assert argv[:2] == ["doveadm", "-c"] and argv[3:] == [
        "backup", "-R", "-x", "Other Users", "-x", "Other Users/*", "-x", "Shared Folders",
        "-x", "Shared Folders/*", "imapc:"]
    assert kwargs["env"]["HOME"] == str(tmp / "vmail" / "example.test" / "alice")
    assert (kwargs["user"], kwargs["group"]) == (pull_env.me.pw_uid, pull_env.me.pw_gid)
    assert mode == "0o600" and "imapc_password = s3cret" in conf_text
    assert (tmp / "vmail" / "corp.test" / "bob").is_dir()
    assert list((tmp / "work").iterdir()) == []  # the config is gone
    # dsync copies no Sieve: the scripts wait in the stage for put-sieve, after the switch
    assert json.loads((tmp / "stage" / "bob@corp.test" / "sieve.json").read_text()) == {
        "active": "vacation", "scripts": {"vacation": "keep;\n"}}


def test_pull_cyrus_again_keeps_the_maildir(pull_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second pass (no --fresh) syncs into the same Maildir; a failure other than 2 is
    the agent's Failure with dsync's last line, and the config is removed all the same."""
    tmp = pull_env.tmp
    maildir = tmp / "vmail" / "example.test" / "alice" / "Maildir"
    maildir.mkdir(parents=True)
    _fake_subprocess(monkeypatch)
    assert agent.cmd_pull_cyrus(_pull_args(tmp, fresh=False))["kept_aside"] == {}
    assert maildir.is_dir()

    monkeypatch.setattr(agent, "subprocess", types.SimpleNamespace(
        run=lambda argv, **kw: subprocess.CompletedProcess(argv, 75, "", "x\nimapc: refused\n"),
        SubprocessError=subprocess.SubprocessError))
    with pytest.raises(agent.Failure, match=r"^alice@example\.test: doveadm backup from "
                                            r"Cyrus: imapc: refused$"):
        agent.cmd_pull_cyrus(_pull_args(tmp, fresh=False))
    assert list((tmp / "work").iterdir()) == []


def test_install_doveadm_present_or_impossible(monkeypatch: pytest.MonkeyPatch) -> None:
    """doveadm already there: nothing to do; no apt-get: a Failure saying what to install."""
    calls = _fake_subprocess(monkeypatch)
    monkeypatch.setattr(agent.shutil, "which", lambda name: "/usr/bin/doveadm"
                        if name == "doveadm" else None)
    agent.install_doveadm()
    monkeypatch.setattr(agent.shutil, "which", lambda name: None)
    with pytest.raises(agent.Failure, match=r"install Dovecot's core package"):
        agent.install_doveadm()
    assert calls == []


# =========================================================================== facts in two places

def _rendered(backend: str, template: str) -> str:
    host = Inventory(sb.inventory()).mail_hosts(backend=backend)[0]
    [found] = [f.content for f in render_host(host) if f.template == template]
    return found


def test_dovecot_conf_matches_the_agent() -> None:
    """The Maildir dsync writes (DOVECOT_MAILDIR, separator /) is where mailctl's Dovecot
    reads, and its deny passdb reads the locked list the controller names."""
    conf = _rendered("dovecot", "dovecot/dovecot.conf.j2")
    assert re.findall(r"^mail_location = (.*)$", conf, re.M) == [agent.DOVECOT_MAILDIR]
    namespace = re.search(r"^namespace inbox \{\n(.*?)^\}", conf, re.M | re.S)
    assert namespace and "  separator = /\n" in namespace.group(1)
    assert _config(agent.imapc_config(_args(), "pw", "/w"))["mail_location"] == \
        agent.DOVECOT_MAILDIR
    host = Inventory(sb.inventory()).mail_hosts(backend="dovecot")[0]
    locked = mb.LOCKED_USERS.format(**names(host.platform, host.release))
    blocks = re.findall(r"^passdb \{\n(.*?)^\}", conf, re.M | re.S)
    [deny] = [block for block in blocks if re.search(r"^\s*deny = yes$", block, re.M)]
    assert re.search(r"^\s*driver = passwd-file$", deny, re.M)
    assert re.search(rf"^\s*args = {re.escape(locked)}$", deny, re.M)
    assert blocks.index(deny) == 0  # asked before the users' own passdb
    assert f"--locked-list {locked}" in mb.agent_args(host, ["a@sandbox.test"], "lock")


def test_cyrus_conf_matches_the_agent() -> None:
    """cyrus.conf serves the agent on 127.0.0.1 at CYRUS_AGENT_IMAP, CYRUS_AGENT_POP3 and
    CYRUS_AGENT_SIEVE, under names the lock leaves alone; every other IMAP, POP3 or
    ManageSieve service is one it locks."""
    conf = _rendered("cyrus", "cyrus/cyrus.conf.j2")
    services = re.search(r"^SERVICES \{\n(.*?)^\}", conf, re.M | re.S)
    assert services
    found = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
        r'^  (\w+)\s+cmd="([^"]+)" listen="([^"]+)"', services.group(1), re.M)}
    locked = set(agent.CYRUS_CLIENT_SERVICES.split(","))
    ours = {name: listen for name, (cmd, listen) in found.items()
            if listen.startswith("127.0.0.1:")}
    assert sorted(ours.values()) == [f"127.0.0.1:{agent.CYRUS_AGENT_POP3}",
                                     f"127.0.0.1:{agent.CYRUS_AGENT_IMAP}",
                                     f"127.0.0.1:{agent.CYRUS_AGENT_SIEVE}"]
    by_listen = {listen: cmd for cmd, listen in found.values()}
    assert by_listen[f"127.0.0.1:{agent.CYRUS_AGENT_IMAP}"] == "imapd"
    assert by_listen[f"127.0.0.1:{agent.CYRUS_AGENT_POP3}"] == "pop3d"
    assert by_listen[f"127.0.0.1:{agent.CYRUS_AGENT_SIEVE}"] == "timsieved"
    assert not set(ours) & locked
    clients = {name for name, (cmd, _) in found.items()
               if cmd.split()[0] in ("imapd", "pop3d", "timsieved") and name not in ours}
    assert clients == locked


# =========================================================================== sandbox

def test_ca_dir_for_the_sandbox(tmp_path: Path) -> None:
    """The sandbox's inventory (however it is reached) uses the sandbox's CA directory."""
    assert sb.ca_dir_for(sb.inventory(), None) == sb.CA_DIR
    assert sb.ca_dir_for(str(sb.inventory()), None) == sb.CA_DIR
    (tmp_path / "link").symlink_to(sb.inventory())
    assert sb.ca_dir_for(tmp_path / "link", None) == sb.CA_DIR


def test_ca_dir_for_another_inventory(tmp_path: Path) -> None:
    """Any other inventory, even a copy of the sandbox's: None (the deploy's default)."""
    assert sb.ca_dir_for(tmp_path, None) is None
    assert sb.ca_dir_for(REPO / "inventories" / "example", None) is None


@pytest.mark.parametrize("source", ["sandbox", "other"])
def test_ca_dir_given_wins(tmp_path: Path, source: str) -> None:
    """--ca-dir is used whatever the inventory."""
    inventory = sb.inventory() if source == "sandbox" else tmp_path
    assert sb.ca_dir_for(inventory, tmp_path / "my-ca") == tmp_path / "my-ca"


def test_vmail_user_is_made_on_a_host_that_never_ran_dovecot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Cyrus host has no mail user: it is made with the profile's uid (as roles/dovecot
    makes it), and the mail root with it; a host that has one is left alone."""
    me = pwd.getpwuid(os.getuid())
    made: list[list[str]] = []
    known: dict[str, object] = {}

    def getpwnam(name: str):
        if name not in known:
            raise KeyError(name)
        return known[name]

    def run(argv, **kwargs):
        made.append(argv)
        if argv[0] == "useradd":
            known["vmail"] = me
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(agent.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(agent, "subprocess", types.SimpleNamespace(
        run=run, SubprocessError=subprocess.SubprocessError))
    args = types.SimpleNamespace(vmail_user="vmail", vmail_uid=5000,
                                 vmail_dir=str(tmp_path / "vmail"))
    assert agent.vmail_user(args) is me
    assert made[0] == ["groupadd", "-r", "-g", "5000", "vmail"]
    assert made[1][:7] == ["useradd", "-r", "-u", "5000", "-g", "vmail", "-d"]
    assert (tmp_path / "vmail").is_dir()
    assert oct((tmp_path / "vmail").stat().st_mode & 0o777) == "0o770"
    made.clear()
    assert agent.vmail_user(args) is me and made == []


# =========================================================================== agent: pack, archive
# `mailctl migrate --domain` (cli/mailctl/domain_move.py): `export --pack` puts the users'
# stage in one archive for another host, `import --archive` takes it there.

PACKED_USERS = ["alice@example.test", "bob@corp.test"]


def _pack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict, Path]:
    """Each user's mail on the Dovecot host (source) and an older copy on the Cyrus host
    (target); the work directory where the archive is made."""
    source = {PACKED_USERS[0]: FakeIMAP({"INBOX": [_msg(1), _msg(2, ("$Label1",))],
                                         "Sent": [_msg(3, day=2)]},
                                        subscribed=("INBOX", "Sent")),
              PACKED_USERS[1]: FakeIMAP({"INBOX": [_msg(4, ("\\Flagged",))]},
                                        subscribed=("INBOX",))}
    target = {PACKED_USERS[0]: FakeIMAP({"INBOX": [_msg(9)]}, parents_made=True),
              PACKED_USERS[1]: FakeIMAP({"INBOX": []}, parents_made=True)}
    monkeypatch.setattr(agent, "Store", lambda args: _Store(
        source if args.store == "dovecot" else target, args.store))
    work = tmp_path / "work"
    work.mkdir()
    return source, target, work


def _members(archive: str) -> list[str]:
    import tarfile

    with tarfile.open(archive) as packed:
        return sorted(m.name for m in packed.getmembers())


def test_export_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export --pack: the export as usual, and the given users' stage directories (only
    theirs) in one gzipped tar in the work directory, mode 0600; the answer is {manifest,
    archive, bytes, sha256}."""
    _, _, work = _pack_env(tmp_path, monkeypatch)
    stage = tmp_path / "stage"
    (stage / "carol@other.test").mkdir(parents=True)  # another migration's user
    (stage / "carol@other.test" / "manifest.json").write_text("{}")
    packed = agent.cmd_export(_args(user=list(reversed(PACKED_USERS)), stage=str(stage),
                                    fresh=True, pack=True, work_dir=str(work)))
    assert sorted(packed) == ["archive", "bytes", "manifest", "sha256"]
    archive = Path(packed["archive"])
    assert archive.parent == work
    assert archive.name.startswith("mailctl-move-") and archive.name.endswith(".tar.gz")
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert packed["bytes"] == archive.stat().st_size
    assert packed["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert packed["sha256"] == agent.sha256_file(str(archive))
    manifest = packed["manifest"]
    assert (manifest["mailctl_manifest"], manifest["store"]) == (1, "dovecot")
    assert sorted(manifest["users"]) == PACKED_USERS
    for user in PACKED_USERS:
        assert json.loads((stage / user / "manifest.json").read_text()) == \
            manifest["users"][user]
    members = _members(str(archive))
    assert {m.split("/")[0] for m in members} == set(PACKED_USERS)  # not carol, not "."
    for user, numbers in ((PACKED_USERS[0], (1, 2, 3)), (PACKED_USERS[1], (4,))):
        assert f"{user}/manifest.json" in members
        assert sorted(m for m in members if m.startswith(f"{user}/messages/")) == sorted(
            f"{user}/messages/{hashlib.sha256(_body(n)).hexdigest()}" for n in numbers)


def _watch_tar(monkeypatch: pytest.MonkeyPatch, fails: bool = False) -> list[str]:
    """The agent's run() as it is, noting the archive's mode once tar has written it (and
    then failing, as a full disk would, when asked)."""
    real_run, modes = agent.run, []

    def run(argv: list[str], what: str, retries: int = 1) -> None:
        real_run(argv, what, retries)
        if argv[0] == "tar":
            modes.append(oct(os.stat(argv[argv.index("-czf") + 1]).st_mode & 0o777))
            if fails:
                raise agent.Failure(f"{what}: No space left on device")

    monkeypatch.setattr(agent, "run", run)
    return modes


def test_export_pack_never_leaves_the_mail_readable(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive holds the users' mail, in /var/tmp: it is 0600 while tar writes it (a big
    domain packs for minutes), not only once it is done, and a failed pack leaves no archive
    behind (the controller never learns its name, so nobody would remove it).

    Fails with the current agent: tempfile.mktemp only names the file, tar creates it with
    the umask's mode (0644) and the chmod to 0600 comes after; a failed tar leaves it."""
    _, _, work = _pack_env(tmp_path, monkeypatch)
    umask = os.umask(0o022)  # root's usual umask
    try:
        modes = _watch_tar(monkeypatch)
        packed = agent.cmd_export(_args(user=PACKED_USERS, stage=str(tmp_path / "stage"),
                                        fresh=True, pack=True, work_dir=str(work)))
        assert modes == ["0o600"]
        Path(packed["archive"]).unlink()
        _watch_tar(monkeypatch, fails=True)
        with pytest.raises(agent.Failure, match=r"^packing the export: No space left"):
            agent.cmd_export(_args(user=PACKED_USERS, stage=str(tmp_path / "stage"),
                                   pack=True, work_dir=str(work)))
    finally:
        os.umask(umask)
    assert list(work.iterdir()) == []


def test_export_without_pack_makes_no_archive(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, work = _pack_env(tmp_path, monkeypatch)
    exported = agent.cmd_export(_args(user=PACKED_USERS, stage=str(tmp_path / "stage"),
                                      work_dir=str(work)))
    assert sorted(exported["users"]) == PACKED_USERS and "archive" not in exported
    assert list(work.iterdir()) == []


def test_import_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """import --archive on another host: the archive's users replace their stage there (a
    stale one from an earlier run included; other users' stages stay), the mail is imported,
    and the answer carries "before", the manifests the archive held, equal to the target's
    by content; the archive stays, so a re-run imports it again and changes nothing."""
    source, target, work = _pack_env(tmp_path, monkeypatch)
    packed = agent.cmd_export(_args(user=PACKED_USERS, stage=str(tmp_path / "stage"),
                                    fresh=True, pack=True, work_dir=str(work)))
    stage = tmp_path / "elsewhere"
    stale = stage / PACKED_USERS[0]
    (stale / "messages").mkdir(parents=True)
    (stale / "messages" / "stale").write_bytes(b"x")
    (stale / "manifest.json").write_text(json.dumps({"mailboxes": {}}))
    (stage / "zed@other.test").mkdir()
    stage.chmod(0o755)

    imported = agent.cmd_import(_args(store="cyrus", user=PACKED_USERS, stage=str(stage),
                                      archive=packed["archive"]))
    before = imported.pop("before")
    assert before["users"] == packed["manifest"]["users"]
    assert before["store"] is None  # the controller names the source's store
    assert (before["mailctl_manifest"], before["host"]) == (1, imported["host"])
    assert imported["store"] == "cyrus" and sorted(imported["users"]) == PACKED_USERS
    assert diff(dict(before, store="dovecot"), imported, ignore_ids=True) == []
    assert diff(packed["manifest"], imported, ignore_ids=True) == []
    for user in PACKED_USERS:
        for name in source[user].boxes:
            assert target[user].contents(name) == source[user].contents(name), (user, name)
        assert not (stage / user).exists()  # the copy in transit is gone
    assert "DELETE" not in " ".join(target[PACKED_USERS[0]].changes())
    assert (stage / "zed@other.test").is_dir()
    assert oct(stage.stat().st_mode & 0o777) == "0o700"
    assert Path(packed["archive"]).is_file()

    for fake in target.values():
        fake.log.clear()
    again = agent.cmd_import(_args(store="cyrus", user=PACKED_USERS, stage=str(stage),
                                   archive=packed["archive"]))
    assert all(fake.changes() == [] for fake in target.values())
    assert again["before"]["users"] == packed["manifest"]["users"]


def test_import_archive_lacking_a_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive without one of the users: the agent's Failure, nothing imported."""
    _, target, work = _pack_env(tmp_path, monkeypatch)
    packed = agent.cmd_export(_args(user=PACKED_USERS[:1], stage=str(tmp_path / "stage"),
                                    fresh=True, pack=True, work_dir=str(work)))
    with pytest.raises(agent.Failure, match=r"^unpacking the export: "):
        agent.cmd_import(_args(store="cyrus", user=PACKED_USERS,
                               stage=str(tmp_path / "elsewhere"), archive=packed["archive"]))
    assert all(fake.changes() == [] for fake in target.values())


def test_import_without_archive_has_no_before(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The same host's migration (no archive) answers the plain manifest, as before."""
    _, _, work = _pack_env(tmp_path, monkeypatch)
    stage = str(tmp_path / "stage")
    agent.cmd_export(_args(user=PACKED_USERS, stage=stage, work_dir=str(work)))
    imported = agent.cmd_import(_args(store="cyrus", user=PACKED_USERS, stage=stage))
    assert "before" not in imported and sorted(imported["users"]) == PACKED_USERS


@pytest.mark.parametrize(("argv", "pack", "archive"), [
    (["export", "--pack"], True, None),
    (["export"], False, None),
    (["import", "--archive", "/var/tmp/mailctl-move-other.test.tar.gz"], None,
     "/var/tmp/mailctl-move-other.test.tar.gz"),
    (["import"], None, None),
])
def test_agent_command_line_pack_and_archive(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture, argv: list[str],
                                             pack: bool | None, archive: str | None) -> None:
    """--pack is export's, --archive import's; the work directory defaults to /var/tmp,
    where the controller removes the archives it fetched (mailctl-move-*.tar.gz)."""
    def answer(args: argparse.Namespace) -> dict:
        return {"pack": getattr(args, "pack", None), "archive": getattr(args, "archive", None),
                "work_dir": args.work_dir}

    monkeypatch.setattr(agent, "cmd_export", answer)
    monkeypatch.setattr(agent, "cmd_import", answer)
    monkeypatch.setattr(agent.sys, "argv", ["mailbox_agent.py", *argv, "--store", "dovecot",
                                            "--user", "alice@example.test"])
    assert agent.main() == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["pack"], out["archive"], out["work_dir"]) == (pack, archive, "/var/tmp")


@pytest.mark.parametrize("argv", [["manifest", "--pack"], ["export", "--archive", "x"]])
def test_agent_refuses_pack_and_archive_elsewhere(monkeypatch: pytest.MonkeyPatch,
                                                  argv: list[str]) -> None:
    monkeypatch.setattr(agent.sys, "argv", ["mailbox_agent.py", *argv, "--store", "dovecot",
                                            "--user", "alice@example.test"])
    with pytest.raises(SystemExit) as caught:
        agent.main()
    assert caught.value.code == 2
