"""The host-side mailbox agent's pure parts: IMAP/POP3 parsing, names, the Postfix pause.

The agent is a stdlib-only script run on the mail hosts, so it is loaded from its file. The data
fed to it is what Python's imaplib returns (bytes lines; a literal as a (head, bytes) tuple
followed by the rest of its line), and nothing real is run: subprocess, postfix and the clock
are replaced.
"""

from __future__ import annotations

import json
import re
import subprocess
import types
from pathlib import Path

import pytest

from mailctl.hostside import mailbox_agent as agent

# --------------------------------------------------------------------------- astrings

@pytest.mark.parametrize(("raw", "text"), [
    (b"INBOX", "INBOX"),
    (b'"INBOX"', "INBOX"),
    (b'"Sent Items"', "Sent Items"),
    (b'"My \\"Folder\\""', 'My "Folder"'),
    (b'"back\\\\slash"', "back\\slash"),
    (b'""', ""),
    (b'"', '"'),  # one quote is no quoted string
    (b"Archive/2026", "Archive/2026"),
])
def test_unquote(raw: bytes, text: str) -> None:
    """Quoted strings lose their quotes and escapes; atoms stay as they are."""
    assert agent.unquote(raw) == text


def test_unquote_keeps_undecodable_bytes() -> None:
    """Bytes that are not UTF-8 survive (surrogateescape) instead of failing."""
    assert agent.unquote(b"caf\xe9").encode("utf-8", errors="surrogateescape") == b"caf\xe9"


@pytest.mark.parametrize("name", ["INBOX", "Sent Items", 'My "Folder"', "back\\slash",
                                  'a\\"b', ""])
def test_quote_round_trip(name: str) -> None:
    """quote() makes a quoted string that unquote() reads back exactly."""
    quoted = agent.quote(name)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert agent.unquote(quoted.encode()) == name


def test_quote_escapes() -> None:
    """Backslashes and double quotes are escaped, nothing else."""
    assert agent.quote('a"b\\c d') == '"a\\"b\\\\c d"'


# --------------------------------------------------------------------------- LIST

def test_list_lines_as_imaplib_returns_them() -> None:
    """Quoted names with escapes, atoms, a NIL delimiter, a literal name and None entries."""
    data = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren \\Sent) "/" "Sent Items"',
        b'(\\HasNoChildren) "/" "My \\"Folder\\""',
        b'(\\Noselect \\HasChildren) "/" Archive',
        b'(\\HasNoChildren) "/" Archive/2026',
        b'(\\Noselect) NIL "Flat"',
        b'(\\HasNoChildren) "\\\\" "Back\\\\Slash"',
        (b'(\\HasNoChildren) "/" {5}', b'a"b\\c'),
        b"",  # the rest of the literal's line
        None,
        b"garbage that is no LIST answer",
    ]
    assert agent.list_lines(data) == [
        ("INBOX", b"\\HasNoChildren"),
        ("Sent Items", b"\\HasNoChildren \\Sent"),
        ('My "Folder"', b"\\HasNoChildren"),
        ("Archive", b"\\Noselect \\HasChildren"),
        ("Archive/2026", b"\\HasNoChildren"),
        ("Flat", b"\\Noselect"),
        ("Back\\Slash", b"\\HasNoChildren"),
        ('a"b\\c', b"\\HasNoChildren"),
    ]


def test_list_lines_empty_answers() -> None:
    """No mailboxes (imaplib gives [None]) is an empty list."""
    assert agent.list_lines([None]) == []
    assert agent.list_lines([]) == []


def test_list_lines_literal_with_utf8_name() -> None:
    """A literal's bytes are the name, whatever they hold."""
    data = [(b'() "." {7}', "Bücher".encode()), b""]
    assert agent.list_lines(data) == [("Bücher", b"")]


class _FakeList:
    """An IMAP session that answers LIST with these lines and records what was asked."""

    def __init__(self, lines: list) -> None:
        self.lines = lines
        self.asked: list[tuple[str, str]] = []

    def list(self, ref: str, pattern: str) -> tuple[str, list]:
        self.asked.append((ref, pattern))
        return "OK", self.lines


def test_selectable_skips_noselect_and_nonexistent() -> None:
    """\\Noselect and \\NonExistent names (any case) cannot be opened; the rest is sorted."""
    imap = _FakeList([
        b'(\\HasNoChildren) "/" Trash',
        b'(\\Noselect \\HasChildren) "/" Archive',
        b'(\\NonExistent) "/" Gone',
        b'(\\noselect) "/" lower',
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren) "/" "Sent Items"',
    ])
    assert agent.selectable(imap) == ["INBOX", "Sent Items", "Trash"]
    assert imap.asked == [('""', "*")]


def test_check_raises_failure_with_text() -> None:
    """A NO answer is the module's Failure naming the command."""
    assert agent.check(("OK", [b"x"]), "LIST") == [b"x"]
    with pytest.raises(agent.Failure, match=r"IMAP SELECT x: NO \[NONEXISTENT\] no such"):
        agent.check(("NO", [b"[NONEXISTENT] no such", None]), "SELECT x")


# --------------------------------------------------------------------------- dates, FETCH

@pytest.mark.parametrize(("text", "utc"), [
    ("02-Dec-2026 12:00:00 +0200", "2026-12-02T10:00:00Z"),
    ("02-Dec-2026 22:30:05 -0500", "2026-12-03T03:30:05Z"),
    (" 2-Dec-2026 01:15:00 +0200", "2026-12-01T23:15:00Z"),
    ("31-Dec-2026 23:59:59 -0100", "2027-01-01T00:59:59Z"),
    ("01-Jan-2027 00:00:00 +0000", "2027-01-01T00:00:00Z"),
])
def test_internaldate_utc(text: str, utc: str) -> None:
    """IMAP INTERNALDATE (with its offset, a day may start with a space) as UTC ISO time."""
    assert agent.internaldate_utc(text) == utc


def test_fetch_meta_any_order() -> None:
    """FLAGS before or after UID; \\Recent dropped in any case; keywords kept; flags sorted."""
    data = [
        b'1 (UID 5 RFC822.SIZE 1234 FLAGS (\\Seen \\Recent) '
        b'INTERNALDATE "02-Dec-2026 12:00:00 +0200")',
        b'2 (FLAGS ($Label1 \\Flagged \\recent \\Answered) UID 7 '
        b'INTERNALDATE " 3-Dec-2026 08:00:00 -0500" RFC822.SIZE 99)',
        b'3 (INTERNALDATE "04-Dec-2026 00:00:00 +0000" RFC822.SIZE 10 UID 12 FLAGS ())',
    ]
    assert agent.fetch_meta(data) == [
        {"uid": 5, "size": 1234, "flags": ["\\Seen"], "internaldate": "2026-12-02T10:00:00Z"},
        {"uid": 7, "size": 99, "flags": ["$Label1", "\\Answered", "\\Flagged"],
         "internaldate": "2026-12-03T13:00:00Z"},
        {"uid": 12, "size": 10, "flags": [], "internaldate": "2026-12-04T00:00:00Z"},
    ]


def test_fetch_meta_skips_what_is_not_a_record() -> None:
    """Untagged flag updates without UID, None and stray lines are no messages."""
    data = [
        None,
        b"4 (FLAGS (\\Seen))",  # an unsolicited update: no UID
        b"not a fetch answer",
        (b'5 (UID 20 FLAGS (\\Deleted) RFC822.SIZE 3 INTERNALDATE "02-Dec-2026 12:00:00 +0000")',
         b""),
    ]
    assert agent.fetch_meta(data) == [
        {"uid": 20, "flags": ["\\Deleted"], "size": 3, "internaldate": "2026-12-02T12:00:00Z"},
    ]


def test_fetch_meta_keyword_that_looks_like_an_item() -> None:
    """A keyword inside FLAGS is a flag, not a UID or size."""
    data = [b"1 (FLAGS (UID RFC822.SIZE) UID 3 RFC822.SIZE 40)"]
    assert agent.fetch_meta(data) == [{"uid": 3, "size": 40, "flags": ["RFC822.SIZE", "UID"]}]


def test_fetch_bodies() -> None:
    """Literal bodies keyed by the UID in their header, wherever it stands there."""
    body1 = b"From: a@x.test\r\nSubject: one\r\n\r\nHello\r\n"
    body2 = b"From: b@x.test\r\n\r\n)\r\nUID 99\r\n"  # parentheses and "UID" inside the body
    body3 = b"\r\n"
    data = [
        (b"1 (UID 5 BODY[] {%d}" % len(body1), body1), b")",
        (b"2 (FLAGS (\\Seen) UID 7 BODY[] {%d}" % len(body2), body2), b")",
        (b"3 (RFC822.SIZE 2 FLAGS () UID 12 BODY[] {%d}" % len(body3), body3), b")",
        b"4 (FLAGS (\\Seen))",
        None,
    ]
    assert agent.fetch_bodies(data) == {5: body1, 7: body2, 12: body3}


def test_fetch_bodies_empty() -> None:
    """Nothing fetched (all expunged meanwhile) is an empty map."""
    assert agent.fetch_bodies([None]) == {}


class _FakeFetch:
    """uid('FETCH', uids, '(BODY.PEEK[])') answering with imaplib's shapes."""

    def __init__(self, bodies: dict[int, bytes]) -> None:
        self.bodies = bodies
        self.asked: list[str] = []

    def uid(self, command: str, uids: str, items: str) -> tuple[str, list]:
        assert (command, items) == ("FETCH", "(BODY.PEEK[])")
        self.asked.append(uids)
        data: list = []
        for n, uid in enumerate(int(u) for u in uids.split(",")):
            if uid in self.bodies:
                body = self.bodies[uid]
                data += [(b"%d (UID %d BODY[] {%d}" % (n + 1, uid, len(body)), body), b")"]
        return "OK", data


def test_hash_bodies_drops_expunged() -> None:
    """Each record gets its body's sha256; a message gone meanwhile leaves the batch."""
    import hashlib

    imap = _FakeFetch({1: b"one", 3: b"three"})
    batch = [{"uid": 1}, {"uid": 2}, {"uid": 3}]
    agent.hash_bodies(imap, "INBOX", batch)
    assert imap.asked == ["1,2,3"]
    assert batch == [{"uid": 1, "sha256": hashlib.sha256(b"one").hexdigest()},
                     {"uid": 3, "sha256": hashlib.sha256(b"three").hexdigest()}]


# --------------------------------------------------------------------------- QUOTA

def test_quota_resources_several() -> None:
    """Every (resource used limit) triple of the QUOTA answer, names upper-cased."""
    lines = [b'"" (STORAGE 10 1024 MESSAGE 3 100)']
    assert agent.quota_resources(lines) == {"STORAGE": [10, 1024], "MESSAGE": [3, 100]}


def test_quota_resources_root_name_and_case() -> None:
    """A quoted root with spaces before the list, and lower-case resources."""
    lines = [b'"user/bob@x.test" (storage 0 2048)', b'"other root" (X-ANNOTATION-STORAGE 5 9)']
    assert agent.quota_resources(lines) == {"STORAGE": [0, 2048],
                                            "X-ANNOTATION-STORAGE": [5, 9]}


@pytest.mark.parametrize("lines", [[None], [], [b'""'], [b'"" ()'], ["str (STORAGE 1 2)"]])
def test_quota_resources_none(lines: list) -> None:
    """No quota, an empty list or what is no bytes line: no resources."""
    assert agent.quota_resources(lines) == {}


class _FakeQuota:
    def __init__(self, answer: tuple[str, list]) -> None:
        self.answer = answer

    def getquotaroot(self, name: str) -> tuple[str, list]:
        assert name == "INBOX"
        return self.answer

    def getquota(self, root: str) -> tuple[str, list]:
        return self.answer


def test_quota_from_getquotaroot() -> None:
    """GETQUOTAROOT's second list holds the QUOTA lines; none or NO is {}."""
    with_quota = ("OK", [[b'INBOX ""'], [b'"" (STORAGE 10 1024 MESSAGE 3 100)']])
    assert agent.quota(_FakeQuota(with_quota)) == {"STORAGE": [10, 1024], "MESSAGE": [3, 100]}
    assert agent.quota(_FakeQuota(("OK", [[b"INBOX"], [None]]))) == {}
    assert agent.quota(_FakeQuota(("NO", [b"not supported"]))) == {}


def test_storage_limits() -> None:
    """{resource: limit} of a root; {} without one."""
    found = _FakeQuota(("OK", [b'"user/bob@x.test" (STORAGE 10 1024 MESSAGE 3 100)']))
    assert agent.storage_limits(found, "user/bob@x.test") == {"STORAGE": 1024, "MESSAGE": 100}
    assert agent.storage_limits(_FakeQuota(("NO", [b"no such root"])), "r") == {}


# --------------------------------------------------------------------------- newer_mail

def _box(*hashes: str) -> dict:
    return {"messages": [{"uid": n + 1, "sha256": h} for n, h in enumerate(hashes)]}


def test_newer_mail_nothing_newer() -> None:
    """Live mail that is all in the backup (UIDs aside) removes nothing."""
    live = {"mailboxes": {"INBOX": _box("a", "b"), "Sent": _box()}}
    saved = {"mailboxes": {"INBOX": _box("b", "a", "c"), "Sent": _box("d")}}
    assert agent.newer_mail(live, saved) == []


def test_newer_mail_counts_copies_and_missing_boxes() -> None:
    """Extra copies count as a multiset; a mailbox the backup lacks counts whole."""
    live = {"mailboxes": {
        "INBOX": _box("a", "a", "a", "b"),
        "Archive": _box("x", "y"),
        "Drafts": _box(),
        "Sent": _box("s"),
    }}
    saved = {"mailboxes": {"INBOX": _box("a", "b"), "Sent": _box("s"), "Old": _box("o")}}
    assert agent.newer_mail(live, saved) == ["Archive (2)", "INBOX (2)"]


def test_newer_mail_saved_box_without_messages_key() -> None:
    """A saved mailbox record without messages holds nothing."""
    live = {"mailboxes": {"INBOX": _box("a")}}
    assert agent.newer_mail(live, {"mailboxes": {"INBOX": {}}}) == ["INBOX (1)"]


# --------------------------------------------------------------------------- Cyrus names

@pytest.mark.parametrize(("intname", "external"), [
    ("sandbox.test!user.bob", "user/bob@sandbox.test"),
    ("sandbox.test!user.bob.Archive", "user/bob/Archive@sandbox.test"),
    ("sandbox.test!user.bob.Archive.2026", "user/bob/Archive/2026@sandbox.test"),
    ("ex.test!user.jo^doe.A^B", "user/jo.doe/A.B@ex.test"),
    ("ex.test!user.bob.Sent Items", "user/bob/Sent Items@ex.test"),
])
def test_cyrus_external(intname: str, external: str) -> None:
    """Internal names (dots, ^ for a dot) as the external names with / and @domain."""
    assert agent.Cyrus.external(intname) == external


def test_new_uniqueid() -> None:
    """24 characters of [a-z0-9], a new one each time."""
    ids = {agent.new_uniqueid() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[a-z0-9]{24}", i) for i in ids)


def test_deleted_inbox_newest_of_the_user() -> None:
    """The highest hex stamp of this user's INBOX; subfolders, other users and domains not."""
    admin = _FakeList([
        b'(\\HasNoChildren) "/" DELETED/user/bob/6B1009A9@sandbox.test',
        b'(\\HasChildren) "/" DELETED/user/bob/6B100A00@sandbox.test',
        b'(\\HasNoChildren) "/" DELETED/user/bob/Archive/6B10FFFF@sandbox.test',
        b'(\\HasNoChildren) "/" DELETED/user/bob/6B10FFFF/Archive@sandbox.test',
        b'(\\HasNoChildren) "/" DELETED/user/bobby/7FFFFFFF@sandbox.test',
        b'(\\HasNoChildren) "/" DELETED/user/bob/7FFFFFFF@other.test',
        b'(\\HasNoChildren) "/" DELETED/user/bob/7FFFFFFF@sandbox.test.evil',
        b'(\\HasNoChildren) "/" "DELETED/user/bob/6B0FFFFF@sandbox.test"',
        b'(\\HasNoChildren) "/" DELETED/user/bob/9A@sandbox.test',  # shorter, smaller number
        None,
    ])
    assert agent.deleted_inbox(admin, "bob", "sandbox.test") == \
        "DELETED/user/bob/6B100A00@sandbox.test"
    assert admin.asked == [('""', "DELETED/*")]


def test_deleted_inbox_compares_numbers_not_strings() -> None:
    """A longer hex stamp is newer even where its text sorts lower."""
    admin = _FakeList([
        b'(\\HasNoChildren) "/" DELETED/user/bob/FFFFFFF@x.test',
        b'(\\HasNoChildren) "/" DELETED/user/bob/10000000@x.test',
    ])
    assert agent.deleted_inbox(admin, "bob", "x.test") == "DELETED/user/bob/10000000@x.test"


def test_deleted_inbox_dotted_local_part() -> None:
    """A local part with a dot is matched literally (the dot is no wildcard)."""
    admin = _FakeList([
        b'(\\HasNoChildren) "/" DELETED/user/joXdoe/7FFFFFFF@x.test',
        b'(\\HasNoChildren) "/" DELETED/user/jo.doe/6B1009A9@x.test',
    ])
    assert agent.deleted_inbox(admin, "jo.doe", "x.test") == "DELETED/user/jo.doe/6B1009A9@x.test"


@pytest.mark.parametrize("lines", [
    [None],
    [],
    [b'(\\HasNoChildren) "/" DELETED/user/alice/6B1009A9@sandbox.test',
     b'(\\HasNoChildren) "/" DELETED/user/bob/Archive/6B1009A9@sandbox.test'],
])
def test_deleted_inbox_none(lines: list) -> None:
    """None when the user has no deleted INBOX."""
    assert agent.deleted_inbox(_FakeList(lines), "bob", "sandbox.test") is None


# --------------------------------------------------------------------------- POP3 UIDL

def _fake_subprocess(monkeypatch: pytest.MonkeyPatch, handler) -> list:
    """Replace the agent's subprocess module: handler(argv, kwargs) -> CompletedProcess."""
    calls: list = []

    def run(argv, **kwargs):
        calls.append((list(argv), kwargs))
        return handler(list(argv), kwargs)

    fake = types.SimpleNamespace(run=run, CompletedProcess=subprocess.CompletedProcess,
                                 SubprocessError=subprocess.SubprocessError)
    monkeypatch.setattr(agent, "subprocess", fake)
    return calls


def _pop3(stdout: bytes, stderr: bytes = b"", rc: int = 0):
    return lambda argv, kwargs: subprocess.CompletedProcess(argv, rc, stdout, stderr)


def test_dovecot_uidls_without_greeting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing between UIDL's +OK and the "." line; nothing of the user in argv but -u."""
    calls = _fake_subprocess(monkeypatch, _pop3(
        b"+OK\r\n1 00000001abc\r\n2 00000002abc\r\n.\r\n+OK Logging out.\r\n"))
    assert agent.dovecot_uidls("bob@x.test", []) == ["00000001abc", "00000002abc"]
    [(argv, kwargs)] = calls
    assert argv == ["doveadm", "exec", "pop3", "-u", "bob@x.test"]
    assert kwargs["input"] == b"UIDL\r\nQUIT\r\n"


def test_dovecot_uidls_with_greeting_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """A greeting line before UIDL's +OK is skipped; options go after the user."""
    calls = _fake_subprocess(monkeypatch, _pop3(
        b"+OK Dovecot ready.\r\n+OK 2 messages:\r\n1 UID1-x\r\n2 UID2-y\r\n.\r\n"
        b"+OK Logging out.\r\n"))
    options = ["-o", "mail_location=maildir:/var/tmp/s/bob@x.test/Maildir"]
    assert agent.dovecot_uidls("bob@x.test", options) == ["UID1-x", "UID2-y"]
    assert calls[0][0][5:] == options


def test_dovecot_uidls_empty_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """No messages: an empty listing."""
    _fake_subprocess(monkeypatch, _pop3(b"+OK\r\n.\r\n+OK Logging out.\r\n"))
    assert agent.dovecot_uidls("bob@x.test", []) == []


def test_dovecot_uidls_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No "." line: the module's Failure, with what POP3 said."""
    _fake_subprocess(monkeypatch, _pop3(b"-ERR [SYS/TEMP] Internal error\r\n",
                                        b"doveadm: fatal\n", 89))
    with pytest.raises(agent.Failure, match=r"bob@x\.test: POP3 UIDL failed: .*Internal error"):
        agent.dovecot_uidls("bob@x.test", [])


# --------------------------------------------------------------------------- run

def test_run_retries_exit_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """dsync's 2 is retried up to the limit; the last stderr line is the reason."""
    codes = iter([2, 2, 0])
    calls = _fake_subprocess(monkeypatch, lambda argv, kw: subprocess.CompletedProcess(
        argv, next(codes), "", "changed\n"))
    agent.run(["doveadm", "backup"], "backup", retries=3)
    assert len(calls) == 3

    _fake_subprocess(monkeypatch, lambda argv, kw: subprocess.CompletedProcess(
        argv, 2, "", "first\nlast line\n"))
    with pytest.raises(agent.Failure, match=r"^backup: last line$"):
        agent.run(["doveadm", "backup"], "backup", retries=2)

    calls = _fake_subprocess(monkeypatch, lambda argv, kw: subprocess.CompletedProcess(
        argv, 75, "", ""))
    with pytest.raises(agent.Failure, match=r"^tar: exit code 75$"):
        agent.run(["tar"], "tar", retries=3)
    assert len(calls) == 1  # only 2 is retried


# --------------------------------------------------------------------------- Paused

USERS = ["bob@x.test", "carol@y.test"]


def _queue_entry(queue_id: str, queue_name: str, *rcpts: str) -> str:
    return json.dumps({"queue_name": queue_name, "queue_id": queue_id, "arrival_time": 1,
                       "message_size": 100, "sender": "s@z.test",
                       "recipients": [{"address": r, "delay_reason": "x"} for r in rcpts]})


class _Postfix:
    """postqueue -j answers (one list of JSON lines per call, the last one repeated)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.reloads = 0
        self.released: list[str] = []
        self.listed = 0
        _fake_subprocess(monkeypatch, self.handle)
        monkeypatch.setattr(agent, "run", self.run)

    def run(self, argv: list[str], what: str, retries: int = 1) -> None:
        assert argv == ["postfix", "reload"]
        self.reloads += 1

    def handle(self, argv: list[str], kwargs: dict) -> subprocess.CompletedProcess:
        if argv == ["postqueue", "-j"]:
            self.listed += 1
            lines = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return subprocess.CompletedProcess(argv, 0, "".join(x + "\n" for x in lines), "")
        assert argv[:2] == ["postqueue", "-i"] and len(argv) == 3, argv
        self.released.append(argv[2])
        return subprocess.CompletedProcess(argv, 0, b"", b"")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def _map(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


MIXED_QUEUE = [
    _queue_entry("A1", "active", "alice@x.test"),
    _queue_entry("D1", "deferred", "Bob@X.test"),
    _queue_entry("D2", "deferred", "alice@x.test", "dave@y.test"),
    _queue_entry("D3", "deferred", "alice@x.test", "carol@y.test"),
    _queue_entry("I1", "incoming", "carol@y.test"),
    _queue_entry("H1", "hold", "bob@x.test"),
    _queue_entry("M1", "maildrop", "bob@x.test"),
    _queue_entry("E1", "deferred"),
]


def test_paused_enter_and_leave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering adds the users to the map (keeping others), leaving removes only them and
    releases only the queued mail of theirs (not held mail)."""
    paused_map = tmp_path / "paused-users"
    paused_map.write_text(f"erin@z.test {agent.Paused.REASON}\n", encoding="utf-8")
    postfix = _Postfix(monkeypatch, MIXED_QUEUE)
    clock = _Clock()
    monkeypatch.setattr(agent, "time", clock)

    with agent.Paused([*USERS, "bob@x.test"], str(paused_map)) as paused:
        assert paused.users == USERS
        assert _map(paused_map) == {u: agent.Paused.REASON for u in
                                    ["bob@x.test", "carol@y.test", "erin@z.test"]}
        assert paused_map.read_text(encoding="utf-8").splitlines()[0].startswith("bob@x.test ")
        assert oct(paused_map.stat().st_mode & 0o777) == "0o644"
        assert postfix.reloads == 1
        assert postfix.released == []
        assert clock.sleeps == 0  # the active entry is alice's: nothing to wait for
    assert _map(paused_map) == {"erin@z.test": agent.Paused.REASON}
    assert postfix.reloads == 2
    assert sorted(postfix.released) == ["D1", "D3", "I1"]
    assert not (tmp_path / "paused-users.tmp").exists()


def test_paused_map_missing_and_emptied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No map yet: it is created; leaving with nobody else paused leaves it empty."""
    paused_map = tmp_path / "paused-users"
    _Postfix(monkeypatch, [])
    monkeypatch.setattr(agent, "time", _Clock())
    with agent.Paused(["bob@x.test"], str(paused_map)):
        assert _map(paused_map) == {"bob@x.test": agent.Paused.REASON}
    assert paused_map.read_text(encoding="utf-8") == ""


def test_paused_leaves_on_error_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the block still releases the users."""
    paused_map = tmp_path / "paused-users"
    postfix = _Postfix(monkeypatch, MIXED_QUEUE)
    monkeypatch.setattr(agent, "time", _Clock())
    with pytest.raises(agent.Failure), agent.Paused(USERS, str(paused_map)):
        raise agent.Failure("restore failed")
    assert _map(paused_map) == {}
    assert sorted(postfix.released) == ["D1", "D3", "I1"]


def test_paused_waits_for_active_deliveries(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """__enter__ waits while the store is still handed mail of a paused user."""
    busy = [_queue_entry("A9", "active", "carol@y.test"), _queue_entry("A1", "active", "a@x.test")]
    idle = [_queue_entry("A1", "active", "a@x.test"), _queue_entry("D9", "deferred", "bob@x.test")]
    postfix = _Postfix(monkeypatch, busy, busy, idle)
    clock = _Clock()
    monkeypatch.setattr(agent, "time", clock)
    paused = agent.Paused(USERS, str(tmp_path / "paused-users"))
    assert paused.__enter__() is paused
    assert clock.sleeps == 2
    assert postfix.listed == 3
    paused.__exit__(None, None, None)
    assert postfix.released == ["D9"]


def test_paused_enter_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery that never finishes: Failure once TIMEOUT has passed."""
    _Postfix(monkeypatch, [_queue_entry("A9", "active", "bob@x.test")])
    clock = _Clock()
    monkeypatch.setattr(agent, "time", clock)
    monkeypatch.setattr(agent, "TIMEOUT", 2)
    with pytest.raises(agent.Failure, match=r"did not finish within 2 s"):
        agent.Paused(USERS, str(tmp_path / "paused-users")).__enter__()
    assert 4 <= clock.sleeps <= 6  # 0.5 s steps, bounded by the deadline


def test_paused_enter_giving_up_releases_the_users(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """When __enter__ gives up, no `with` block ran and __exit__ is never called: the users
    it paused must not stay paused (their mail would wait until someone re-runs mailctl).

    Fails with the current agent: Paused.__enter__ raises without undoing its _write.
    """
    paused_map = tmp_path / "paused-users"
    paused_map.write_text(f"erin@z.test {agent.Paused.REASON}\n", encoding="utf-8")
    _Postfix(monkeypatch, [_queue_entry("A9", "active", "bob@x.test")])
    monkeypatch.setattr(agent, "time", _Clock())
    monkeypatch.setattr(agent, "TIMEOUT", 1)
    with pytest.raises(agent.Failure), agent.Paused(USERS, str(paused_map)):
        pytest.fail("the block must not run")
    assert _map(paused_map) == {"erin@z.test": agent.Paused.REASON}
