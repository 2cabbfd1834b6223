"""`mailctl migrate --host H --domain D`: the controller's plan and order of steps
(domain_move.py), the deploy-time check that refuses to route a domain away from the store
holding its mail (ansible_bridge.departing_domains and roles/mail_common), and the facts the
two share (the stored-domains file).

Nothing reaches a host: the agent, the deploy, the file copies and the shell commands are
replaced by a recorder that keeps each host's state (what stored-domains says, the archives
in /var/tmp) the way the real steps would change it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HOST, REPO, Echo

from mailctl import ansible_bridge
from mailctl import domain_move as dm
from mailctl import mailbox as mb
from mailctl.errors import InputError, MailctlError
from mailctl.inventory import Inventory
from mailctl.platforms import names
from mailctl.runner import CommandResult

MX = "mx1.example.test"
STORE1 = "store1.example.test"  # the domain's old store (dovecot)
STORE2 = "store2.example.test"  # its new store (cyrus)
DOMAIN = "other.test"
USERS = ["dave@other.test", "erin@other.test"]
INCOMING = f"/var/tmp/mailctl-move-{DOMAIN}.tar.gz"
SOURCE_ARCHIVE = "/var/tmp/mailctl-move-k2j4h1.tar.gz"  # what `export --pack` answers
ARCHIVE = b"\x1f\x8b the packed stage of dave and erin"
STATE_DIR = names("debian")["state_dir"]
STORED = mb.STORED_DOMAINS.format(state_dir=STATE_DIR)


# =========================================================================== inventories

def _store(name: str, backend: str, domains: list[str], users: list[str],
           aliases: list[dict] | None = None) -> dict:
    return {"mail_hostname": name, "mail_backend": backend, "mail_domains": domains,
            "mail_users": [{"address": u, "password": f"pw-{u.split('@')[0]}-1"}
                           for u in users],
            "mail_aliases": aliases or []}


def _topology(make_inventory, *, moved: bool = True, domain_users: list[str] | None = None,
              domain: str = DOMAIN) -> Inventory:
    """mx1 in front of store1 (example.test, Dovecot) and store2 (corp.test, Cyrus); `domain`
    is on store2 (moved) or still on store1, with its users and an alias."""
    own = USERS if domain_users is None else domain_users
    alias = [{"address": f"postmaster@{domain}", "to": own[0] if own else "carol@corp.test"}]
    store1 = _store(STORE1, "dovecot", ["example.test"], ["alice@example.test"])
    store2 = _store(STORE2, "cyrus", ["corp.test"], ["carol@corp.test"])
    keeper = store2 if moved else store1
    keeper["mail_domains"].append(domain)
    keeper["mail_users"] += [{"address": u, "password": "pw-moved-1"} for u in own]
    keeper["mail_aliases"] += alias
    hosts = {"all": {"children": {"mx": {"hosts": {MX: None}},
                                  "mailstore": {"hosts": {STORE1: None, STORE2: None}}}}}
    return Inventory(make_inventory(
        hosts=hosts, all_vars={"mail_tls": {"mode": "selfsigned"}},
        host_vars={MX: {"mail_hostname": MX}, STORE1: store1, STORE2: store2}))


@pytest.fixture
def moved(make_inventory) -> Inventory:
    """The inventory as the administrator leaves it: other.test now on store2."""
    return _topology(make_inventory)


# =========================================================================== plan

def test_plan_who_moves_where(moved: Inventory) -> None:
    """Source = --host, target = the mailstore that now lists the domain (any case given),
    the users = the target's users of that domain only, sorted, and every mx and mailstore
    routes it."""
    run = dm.plan(moved, STORE1, "Other.TEST", (), print)
    assert run.domain == DOMAIN
    assert (run.source.name, run.source.backend) == (STORE1, "dovecot")
    assert (run.target.name, run.target.backend) == (STORE2, "cyrus")
    assert run.users == USERS  # not carol@corp.test, who stays
    assert sorted(run.routers) == sorted([MX, STORE1, STORE2])
    assert run.incoming == INCOMING


def test_plan_takes_the_options(moved: Inventory) -> None:
    run = dm.plan(moved, STORE1, DOMAIN, (), print, vault="v.txt", verbose=True,
                  ca_dir=Path("/ca"))
    assert (run.vault, run.verbose, run.ca_dir) == ("v.txt", True, Path("/ca"))


def test_plan_refuses_an_allinone_host(make_inventory) -> None:
    """--host an all-in-one host: its store changes with --to, not by moving domains."""
    inv = Inventory(make_inventory())
    with pytest.raises(InputError) as caught:
        dm.plan(inv, HOST, "example.test", (), print)
    assert str(caught.value).startswith(f"{inv.source}: --host {HOST}: a domain moves between")
    assert "this host is all-in-one (to change its store: --to dovecot|cyrus)" in \
        str(caught.value)


def test_plan_refuses_an_mx_host(moved: Inventory) -> None:
    with pytest.raises(InputError, match=r"an mx host keeps no mailboxes"):
        dm.plan(moved, MX, DOMAIN, (), print)


def test_plan_refuses_a_domain_on_no_mailstore(moved: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        dm.plan(moved, STORE1, "nowhere.test", (), print)
    assert str(caught.value) == (f"{moved.source}: --domain nowhere.test: no mailstore has it "
                                 "in mail_domains; put it on the mailstore it moves to first")


def test_plan_refuses_a_domain_still_on_the_host(make_inventory) -> None:
    """The inventory not changed yet: the error names the file to change."""
    inv = _topology(make_inventory, moved=False)
    with pytest.raises(InputError) as caught:
        dm.plan(inv, STORE1, DOMAIN, (), print)
    text = str(caught.value)
    assert text.startswith(f"{inv.file_of(STORE1, 'mail_domains')}: {STORE1}: mail_domains: "
                           f"{DOMAIN} is still stored here;")
    assert "host_vars/store1.example.test.yml" in text
    assert text.endswith("then run this again")


IDN = "xn--bcher-kva.test"  # bücher.test


@pytest.mark.parametrize("given", ["bücher.test", "BÜCHER.test", IDN, f"{IDN}.", "Bücher.Test."])
def test_plan_takes_the_domain_as_mail_domains_writes_it(make_inventory, given: str) -> None:
    """--domain names the domain however mail_domains may write it (a U-label, any case, a
    final dot): it is normalised as the inventory's domains are (the A-label).

    Fails with the current plan(): --domain is only lower-cased, so "bücher.test", written so
    in mail_domains, is refused as "no mailstore has it in mail_domains"."""
    inv = _topology(make_inventory, domain="bücher.test", domain_users=["dave@bücher.test"])
    run = dm.plan(inv, STORE1, given, (), print)
    assert (run.domain, run.target.name) == (IDN, STORE2)
    assert run.users == [f"dave@{IDN}"]
    assert run.incoming == f"/var/tmp/mailctl-move-{IDN}.tar.gz"


@pytest.mark.parametrize("given", ["not a domain", "x;rm -rf /", "other"])
def test_plan_refuses_a_malformed_domain(moved: Inventory, given: str) -> None:
    with pytest.raises(InputError, match=rf"^{re.escape(str(moved.source))}: --domain"):
        dm.plan(moved, STORE1, given, (), print)


@pytest.mark.parametrize("users", [("dave@other.test",), tuple(USERS)])
def test_plan_refuses_user(moved: Inventory, users: tuple[str, ...]) -> None:
    """--user, even naming every user: a domain moves whole."""
    with pytest.raises(InputError) as caught:
        dm.plan(moved, STORE1, DOMAIN, users, print)
    assert str(caught.value) == (f"{moved.source}: --user: a domain moves with all its 2 "
                                 "users (mail to them is routed per domain); leave --user out")


# =========================================================================== move: fakes

SHA = [hashlib.sha256(b"message %d" % n).hexdigest() for n in range(3)]


def _manifest(store: str, host: str, *, uids: tuple[int, ...] = (1, 2),
              uidvalidity: int = 1700000000) -> dict:
    messages = [{"uid": uid, "sha256": SHA[n], "size": 100 + n, "flags": ["\\Seen"],
                 "internaldate": f"2026-12-0{n + 1}T10:00:00Z"} for n, uid in enumerate(uids)]
    box = {"subscribed": True, "uidvalidity": uidvalidity, "uidnext": max(uids) + 1,
           "count": len(uids), "messages": messages}
    return {"mailctl_manifest": 1, "taken": "2026-12-02T12:00:00Z", "host": host,
            "store": store,
            "users": {u: {"mailboxes": {"INBOX": copy.deepcopy(box)},
                          "quota": {"STORAGE": [10, 1024]},
                          "pop3_uidls": [f"{uidvalidity}.{u}" for u in uids],
                          "sieve": None} for u in USERS}}


def _imported(before: dict | None = None, **kwargs: Any) -> dict:
    """The target's answer to `import --archive`: its manifest (new UIDs), and `before`, the
    manifests the archive held (the agent leaves its store None)."""
    after = _manifest("cyrus", STORE2, uids=(1001, 1002), uidvalidity=1800000000, **kwargs)
    held = before or _manifest("dovecot", STORE1)
    return dict(after, before=dict(after, users=held["users"], store=None))


def _packed() -> dict:
    return {"manifest": _manifest("dovecot", STORE1), "archive": SOURCE_ARCHIVE,
            "bytes": len(ARCHIVE), "sha256": hashlib.sha256(ARCHIVE).hexdigest()}


class _Hosts:
    """Records, in order, what move_domain asks of the hosts and answers as they would.

    answers: {(host, command): answer}, the answer a dict, an exception to raise, or a
    function of the extra arguments returning either; {} when not given.
    stored: what each store's stored-domains file says (a deploy of the routers records the
    new list on the mailstores, as roles/mail_common's last task does).
    files: which host holds which file under /var/tmp (bytes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, inv: Inventory,
                 answers: dict | None = None, *, stored: dict[str, str] | None = None,
                 files: dict[tuple[str, str], bytes] | None = None,
                 fetched: bytes = ARCHIVE, copy_fails: dict[str, str] | None = None,
                 deploy_fails: MailctlError | None = None,
                 shell_fails: dict[str, str] | None = None) -> None:
        self.inv = inv
        self.answers = {("store2.example.test", "import"): _imported(),
                        ("store1.example.test", "export"): lambda extra:
                            _packed() if "--pack" in extra else _manifest("dovecot", STORE1),
                        **(answers or {})}
        self.stored = stored if stored is not None else {
            STORE1: f"example.test\n{DOMAIN}\n", STORE2: "corp.test\n"}
        self.files = dict(files or {})
        self.fetched = fetched
        self.copy_fails = dict(copy_fails or {})
        self.deploy_fails = deploy_fails
        self.shell_fails = dict(shell_fails or {})
        self.calls: list[tuple] = []
        self.deploys: list[dict] = []
        monkeypatch.setattr(mb, "run_agent", self.run_agent)
        monkeypatch.setattr(dm, "deploy", self.deploy)
        monkeypatch.setattr(dm, "copy_file", self.copy_file)
        monkeypatch.setattr(dm, "run_commands", self.run_commands)

    # the agent (mailbox.run_agent)
    def run_agent(self, inv, host, users, command, *extra, vault=None, verbose=False) -> dict:
        assert inv is self.inv and users == USERS and vault == "vault.txt" and not verbose
        self.calls.append((host.name, command, *extra))
        if command == "export" and "--pack" in extra:
            self.files[(host.name, SOURCE_ARCHIVE)] = ARCHIVE
        if command == "import":
            assert extra == ("--archive", INCOMING)
            assert self.files.get((host.name, INCOMING)) == ARCHIVE, "imported what?"
        answer = self.answers.get((host.name, command), {})
        if callable(answer):
            answer = answer(extra)
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    # the switch
    def deploy(self, inv, echo, **kwargs) -> None:
        assert inv is self.inv
        self.calls.append(("deploy", kwargs["limit"]))
        self.deploys.append(kwargs)
        echo(f"deploying 3 host(s): {kwargs['limit']}\n  {STORE2}: [1 ok] a task")
        if self.deploy_fails:
            raise self.deploy_fails
        for name, host in ((h.name, h) for h in inv.mail_plan()[0]):
            if host.kind == "mailstore" and name in kwargs["limit"].split(":"):
                self.stored[name] = "".join(f"{d}\n" for d in host.domains)

    # runner.copy_file
    def copy_file(self, inventory, host, src, dest, *, fetch, vault_password_file=None,
                  verbose=False) -> str | None:
        assert inventory == self.inv.source and vault_password_file == "vault.txt"
        self.calls.append(("fetch" if fetch else "send", host, src if fetch else dest))
        why = self.copy_fails.get("fetch" if fetch else "send")
        if why:
            return why
        if fetch:
            assert (host, src) in self.files, f"{host} has no {src}"
            Path(dest).write_bytes(self.fetched)
        else:
            self.files[(host, dest)] = Path(src).read_bytes()
        return None

    # runner.run_commands: the three shell commands move_domain runs
    def run_commands(self, inventory, command_by_host, *, vault_password_file=None,
                     verbose=False) -> dict:
        assert inventory == self.inv.source and vault_password_file == "vault.txt"
        if set(command_by_host.values()) == {"postqueue -f"}:  # the flush: every router at once
            self.calls.append(("flush", *sorted(command_by_host)))
            return {host: CommandResult(0, "", "") for host in command_by_host}
        [(host, command)] = command_by_host.items()
        self.calls.append(("shell", host, command))
        if host in self.shell_fails:
            return {host: self.shell_fails[host]}
        if command == f"cat {STORED} 2>/dev/null || echo NO-RECORD":
            return {host: CommandResult(0, self.stored.get(host, "NO-RECORD\n"), "")}
        if command == f"test -f {INCOMING} && echo kept || true":
            kept = (host, INCOMING) in self.files
            return {host: CommandResult(0, "kept\n" if kept else "", "")}
        removed = re.fullmatch(r"rm -f -- (\S+)", command)
        if removed:
            self.files.pop((host, removed.group(1)), None)
            return {host: CommandResult(0, "", "")}
        raise AssertionError(f"unexpected command on {host}: {command}")

    def agent_calls(self) -> list[tuple]:
        return [c for c in self.calls if c[0] != "shell"]


def _move(inv: Inventory, echo: Echo | None = None) -> dm.DomainMove:
    return dm.move_domain(inv, STORE1, DOMAIN, (), echo or Echo(), vault="vault.txt",
                          ca_dir=Path("/ca"))


READ_STORED = ("shell", STORE1, f"cat {STORED} 2>/dev/null || echo NO-RECORD")
# after a failure before the switch: did an earlier run switch the new store already?
READ_TARGET_STORED = ("shell", STORE2, f"cat {STORED} 2>/dev/null || echo NO-RECORD")
BEFORE_THE_SWITCH = [
    (STORE1, "export", "--fresh"),
    (STORE2, "pause"),
    (STORE1, "pause"),
    (STORE2, "lock"),
    (STORE1, "lock"),
    (STORE1, "export", "--pack"),
    ("fetch", STORE1, SOURCE_ARCHIVE),
    ("send", STORE2, INCOMING),
]
# the new store first, then every other router (in the inventory's order)
SWITCH = [("deploy", STORE2), ("deploy", f"{MX}:{STORE1}")]
FLUSH = ("flush", "mx1.example.test", STORE1, STORE2)  # every router's queue, at once
AFTER_THE_SWITCH = [
    (STORE2, "lock"),
    (STORE2, "import", "--archive", INCOMING),
]


# =========================================================================== move: in order

def test_move_domain(moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps in order; the archive goes store1 -> here -> store2 (the source's copy
    removed once carried), the switch is a migrating deploy of every mx and mailstore, the
    manifests are compared by content (new UIDs are no difference), store2 is released
    before store1, and the archive kept on store2 is removed last."""
    hosts = _Hosts(monkeypatch, moved)
    echo = Echo()
    done = _move(moved, echo)
    others = ":".join(h.name for h in moved.mail_plan()[0] if h.name != STORE2)
    assert hosts.calls == [
        READ_STORED,
        *BEFORE_THE_SWITCH,
        ("shell", STORE1, f"rm -f -- {SOURCE_ARCHIVE}"),
        *SWITCH,
        *AFTER_THE_SWITCH,
        (STORE2, "release"),
        (STORE1, "release"),
        FLUSH,
        ("shell", STORE2, f"rm -f -- {INCOMING}"),
    ]
    assert sorted(others.split(":")) == sorted([MX, STORE1])
    # the new store first: an mx routing the domain to a store not yet taking it bounces mail
    assert hosts.deploys == [{"limit": limit, "vault": "vault.txt", "verbose": False,
                              "ca_dir": Path("/ca"), "migrating": True}
                             for limit in (STORE2, others)]
    assert hosts.files == {}  # neither archive is left behind
    assert done.users == USERS and done.target.name == STORE2
    assert {"export (store1.example.test)", "carry", "deploy (new store)",
            "deploy (the other routers)", "import (store2.example.test)",
            "hold window"} <= set(done.timings)
    assert not any(err for _, err in echo.lines)
    assert echo.lines[0][0] == (f"{DOMAIN}: moving 2 user(s) from {STORE1} (dovecot) to "
                                f"{STORE2} (cyrus); IMAP hands out new UIDs: POP3 clients "
                                "fetch their mail once more")
    assert f"    deploying 3 host(s): {others}" in echo.text.splitlines()  # indented
    assert (f"{DOMAIN}: {STORE2}'s manifest equals {STORE1}'s (content, flags, keywords, "
            "dates, folders and subscriptions); held mail released") in echo.text
    assert echo.lines[-1][0].startswith(f"{DOMAIN}: now stored on {STORE2};")
    assert echo.lines[-1][0].endswith(f"should now connect to {STORE2}")


def test_move_domain_compares_with_the_source(moved: Inventory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest compared is the one the archive held, named after the source (its host
    and store), against the target's: a message only in the archive is a finding "only in
    A"."""
    held = _manifest("dovecot", STORE1, uids=(1, 2, 3))
    _Hosts(monkeypatch, moved, {(STORE2, "import"): _imported(held)})
    echo = Echo()
    with pytest.raises(MailctlError, match=r"the manifests differ \(4 finding\(s\)\)"):
        _move(moved, echo)
    assert (f"{USERS[0]}: mailbox 'INBOX': message {SHA[2][:12]} (102 bytes, "
            "2026-12-03T10:00:00Z): only in A") in echo.text


def test_move_domain_of_aliases_only(make_inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A domain with no users: nothing to copy, the switch alone."""
    inv = _topology(make_inventory, domain_users=[])
    hosts = _Hosts(monkeypatch, inv)
    echo = Echo()
    run = dm.move_domain(inv, STORE1, DOMAIN, (), echo, vault="vault.txt")
    assert [c[0] for c in hosts.calls] == ["deploy", "deploy"]
    assert all(d["migrating"] for d in hosts.deploys)
    assert run.users == []
    assert echo.lines[-1][0] == f"{DOMAIN}: now routed to {STORE2}"


def test_bad_input_touches_no_host(make_inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = _topology(make_inventory, moved=False)
    hosts = _Hosts(monkeypatch, inv)
    with pytest.raises(InputError):
        _move(inv)
    with pytest.raises(InputError):
        dm.move_domain(inv, STORE1, "nowhere.test", (), Echo())
    assert hosts.calls == []


# =========================================================================== before the switch

def test_failure_of_the_pre_sync_touches_nothing(moved: Inventory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The first export fails while mail flows: nothing is paused, the error as it is."""
    hosts = _Hosts(monkeypatch, moved, {(STORE1, "export"): MailctlError("export failed")})
    with pytest.raises(MailctlError, match=r"^export failed$"):
        _move(moved)
    assert hosts.calls == [READ_STORED, (STORE1, "export", "--fresh")]


def _fails_when_paused(error: MailctlError):
    return lambda extra: _manifest("dovecot", STORE1) if extra == ("--fresh",) else error


@pytest.mark.parametrize(("failing", "steps"), [
    ((STORE2, "pause"), 2),
    ((STORE1, "pause"), 3),
    ((STORE2, "lock"), 4),
    ((STORE1, "lock"), 5),
    ((STORE1, "export"), 6),
])
def test_agent_failure_before_the_switch(moved: Inventory, monkeypatch: pytest.MonkeyPatch,
                                         failing: tuple[str, str], steps: int) -> None:
    """Any failure once delivery is being paused: both stores released (the target first),
    no deploy, and the error says delivery stays on the source."""
    error = MailctlError(f"{failing[0]}: mailbox {failing[1]} failed: NO gone")
    hosts = _Hosts(monkeypatch, moved, {failing: _fails_when_paused(error)})
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    assert str(caught.value) == (f"{error}; nothing was switched, delivery stays on {STORE1}")
    assert hosts.calls[1:] == [*BEFORE_THE_SWITCH[:steps], READ_TARGET_STORED,
                               (STORE2, "release"), (STORE1, "release")]
    assert hosts.deploys == []


@pytest.mark.parametrize(("copy_fails", "fetched", "message", "steps"), [
    ({"fetch": "UNREACHABLE"}, ARCHIVE,
     f"{STORE1}: fetching the export failed: UNREACHABLE", 7),
    ({}, ARCHIVE + b"!", f"{STORE1}: the fetched export does not match its hash", 7),
    ({"send": "No space left on device"}, ARCHIVE,
     f"{STORE2}: sending the export failed: No space left on device", 8),
])
def test_carry_failure_before_the_switch(moved: Inventory, monkeypatch: pytest.MonkeyPatch,
                                         copy_fails: dict, fetched: bytes, message: str,
                                         steps: int) -> None:
    """The packed export lost on its way (not fetched, not what was packed, not sent): the
    source's archive is removed all the same, both stores are released, no deploy."""
    hosts = _Hosts(monkeypatch, moved, copy_fails=copy_fails, fetched=fetched)
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    assert str(caught.value) == f"{message}; nothing was switched, delivery stays on {STORE1}"
    assert hosts.calls[1:] == [*BEFORE_THE_SWITCH[:steps],
                               ("shell", STORE1, f"rm -f -- {SOURCE_ARCHIVE}"),
                               READ_TARGET_STORED, (STORE2, "release"), (STORE1, "release")]
    assert (STORE1, SOURCE_ARCHIVE) not in hosts.files
    assert hosts.deploys == []


def test_release_failure_before_the_switch(moved: Inventory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The release fails too: both reasons, and the commands that let the mail in."""
    hosts = _Hosts(monkeypatch, moved, {
        (STORE1, "lock"): MailctlError("lock failed"),
        (STORE2, "release"): MailctlError("release failed")})
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    text = str(caught.value)
    assert text.startswith("lock failed; nothing was switched, but the release failed too "
                           "(release failed)")
    assert f"`mailctl mailbox release --host {STORE1}` and `--host {STORE2}`" in text
    assert hosts.deploys == []


# =========================================================================== after the switch

RESUMES = "fix the cause and run the same command again (it resumes)"


def _assert_held(hosts: _Hosts) -> None:
    """Nothing released after the switch, the archive kept on the target for a re-run."""
    assert not any(c[1] == "release" for c in hosts.calls)
    assert hosts.files.get((STORE2, INCOMING)) == ARCHIVE


def test_deploy_failure_after_the_switch(moved: Inventory,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = _Hosts(monkeypatch, moved, deploy_fails=MailctlError("deploy failed on: mx1"))
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    assert str(caught.value) == (
        f"{DOMAIN}: deploy failed on: mx1; the users' mail waits in Postfix's queues on "
        f"{STORE1} and {STORE2}, and {STORE1}'s copy is untouched: {RESUMES}")
    assert hosts.calls[-1][0] == "deploy"
    _assert_held(hosts)


@pytest.mark.parametrize("failing", [(STORE2, "import")])
def test_agent_failure_after_the_switch(moved: Inventory, monkeypatch: pytest.MonkeyPatch,
                                        failing: tuple[str, str]) -> None:
    hosts = _Hosts(monkeypatch, moved, {failing: MailctlError(f"{failing[1]} failed: NO")})
    with pytest.raises(MailctlError, match=rf"^{DOMAIN}: {failing[1]} failed: NO; .*"
                                           rf"{re.escape(RESUMES)}$"):
        _move(moved)
    assert hosts.calls[-1] == (*failing, *(("--archive", INCOMING)
                                           if failing[1] == "import" else ()))
    _assert_held(hosts)


def test_manifests_differ_after_the_switch(moved: Inventory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A message lost in the import: the findings are shown, nothing is released."""
    after = _imported()
    for entry in after["users"].values():
        entry["mailboxes"]["INBOX"]["messages"].pop()
        entry["mailboxes"]["INBOX"]["count"] = 1
    hosts = _Hosts(monkeypatch, moved, {(STORE2, "import"): after})
    echo = Echo()
    with pytest.raises(MailctlError) as caught:
        _move(moved, echo)
    assert str(caught.value) == (
        f"{DOMAIN}: the manifests differ (4 finding(s)); the users' mail waits in Postfix's "
        f"queues on {STORE1} and {STORE2}, and {STORE1}'s copy is untouched: {RESUMES}")
    assert (f"{USERS[0]}: mailbox 'INBOX': message {SHA[1][:12]} (101 bytes, "
            "2026-12-02T10:00:00Z): only in A") in echo.text
    assert hosts.calls[-1] == (STORE2, "import", "--archive", INCOMING)
    _assert_held(hosts)
    assert "held mail released" not in echo.text


# =========================================================================== resume

def test_resume_after_the_switch(moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that got past the switch failed: store1 no longer stores the domain and store2
    holds the archive, so a re-run does not export (store1's copy may be unreadable) and
    does not pause again: the switch, the import, the release."""
    hosts = _Hosts(monkeypatch, moved, {(STORE2, "import"): MailctlError("import failed")})
    with pytest.raises(MailctlError, match=re.escape(RESUMES)):
        _move(moved)
    assert hosts.stored[STORE1] == "example.test\n"  # the switch's deploy recorded it

    hosts.calls.clear()
    hosts.answers[(STORE2, "import")] = _imported()
    echo = Echo()
    _move(moved, echo)
    assert hosts.calls == [
        READ_STORED,
        ("shell", STORE2, f"test -f {INCOMING} && echo kept || true"),
        *SWITCH,
        *AFTER_THE_SWITCH,
        (STORE2, "release"),
        (STORE1, "release"),
        FLUSH,
        ("shell", STORE2, f"rm -f -- {INCOMING}"),
    ]
    assert hosts.deploys[-1]["migrating"] is True
    assert (f"{DOMAIN}: {STORE1} no longer stores it (an earlier run got past the switch): "
            f"importing the export kept on {STORE2}") in echo.text
    assert hosts.files == {}


def test_resume_with_nothing_to_import(moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """store1 no longer stores the domain, and store2 has no archive of it: refused before
    anything is paused or deployed."""
    hosts = _Hosts(monkeypatch, moved, stored={STORE1: "example.test\n"})
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    assert str(caught.value) == (
        f"{STORE1}: no longer stores {DOMAIN}, and {STORE2} holds no export of it "
        f"({INCOMING}): the domain was taken off this store without mailctl migrate")
    assert [c[0] for c in hosts.calls] == ["shell", "shell"]
    assert hosts.deploys == []


def test_a_source_deployed_before_the_record_is_moved_in_full(
        moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stored-domains on either store (deployed by a mailctl without it): the source still
    holds the mail, so the whole move runs, and a failure before the switch releases both."""
    hosts = _Hosts(monkeypatch, moved, stored={})
    _move(moved)
    assert hosts.calls[1] == (STORE1, "export", "--fresh")
    failing = _Hosts(monkeypatch, moved, {(STORE1, "lock"): MailctlError("lock failed")},
                     stored={})
    with pytest.raises(MailctlError, match="nothing was switched, delivery stays on"):
        _move(moved)
    assert failing.calls[-2:] == [(STORE2, "release"), (STORE1, "release")]


def test_a_stored_list_naming_another_domain_is_not_this_one(
        moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """stored-domains is read word by word: "sub.other.test" is not "other.test"."""
    hosts = _Hosts(monkeypatch, moved, stored={STORE1: f"sub.{DOMAIN}\n{DOMAIN}x\n"},
                   files={(STORE2, INCOMING): ARCHIVE})
    _move(moved)
    assert (STORE1, "export", "--fresh") not in hosts.calls


def test_reading_stored_domains_fails(moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source cannot be asked: the error names it, nothing else happens."""
    hosts = _Hosts(monkeypatch, moved, shell_fails={STORE1: "UNREACHABLE! ssh: timeout"})
    with pytest.raises(MailctlError, match=rf"^{STORE1}: cat failed: UNREACHABLE! ssh: "):
        _move(moved)
    assert hosts.calls == [READ_STORED]


@pytest.mark.parametrize("path", [
    "/etc/mailctl/stored-domains",
    "/var/tmp/mailctl-move-x/../../../etc/passwd.tar.gz",
    "/var/tmp/other.tar.gz",
    "/var/tmp/mailctl-move-x.tar",
])
def test_remove_only_the_agents_archives(moved: Inventory, monkeypatch: pytest.MonkeyPatch,
                                         path: str) -> None:
    hosts = _Hosts(monkeypatch, moved)
    run = dm.plan(moved, STORE1, DOMAIN, (), Echo(), vault="vault.txt")
    run.remove(run.source, path)
    run.remove(run.target, INCOMING)
    assert hosts.calls == [("shell", STORE2, f"rm -f -- {INCOMING}")]


# =========================================================================== departing_domains

ROUTES = {"routes": [{"domain": "example.test", "store": "dovecot", "store_name": STORE1},
                     {"domain": DOMAIN, "store": "cyrus", "store_name": STORE2},
                     {"domain": "corp.test", "store": "cyrus", "store_name": STORE2}]}


def _read(item: str, *lines: str, rc: int = 0) -> dict:
    """One loop result of the role's read task (ansible.builtin.command, cat)."""
    return {"item": item, "rc": rc, "changed": False, "stdout": "\n".join(lines),
            "stdout_lines": list(lines), "failed": False, "ansible_loop_var": "item"}


def test_departing_domains() -> None:
    """A domain a store recorded that the topology now routes to another store moves."""
    stored = [_read(STORE1, "example.test", DOMAIN), _read(STORE2, "corp.test")]
    assert ansible_bridge.departing_domains(stored, ROUTES) == [
        {"domain": DOMAIN, "from": STORE1, "to": STORE2}]


def test_departing_domains_none_when_nothing_moved() -> None:
    stored = [_read(STORE1, "example.test"), _read(STORE2, "corp.test", DOMAIN)]
    assert ansible_bridge.departing_domains(stored, ROUTES) == []


def test_departing_domains_a_dropped_domain_is_not_moving() -> None:
    """A domain in no store's mail_domains any more: its mail stays where it is."""
    stored = [_read(STORE1, "example.test", DOMAIN, "gone.test"), _read(STORE2, "corp.test")]
    assert [m["domain"] for m in ansible_bridge.departing_domains(stored, ROUTES)] == [DOMAIN]
    assert ansible_bridge.departing_domains([_read(STORE1, "gone.test")], ROUTES) == []


def test_departing_domains_without_a_record() -> None:
    """No file (cat exits 1: never deployed by this version), a store that is down, a
    skipped read, blank lines: nothing moves."""
    stored = [
        {**_read(STORE1, rc=1), "stderr": "cat: /etc/mailctl/stored-domains: No such file"},
        {"item": STORE2, "unreachable": True, "msg": "ssh: timeout", "changed": False},
        {"item": STORE2, "skipped": True, "changed": False},
        _read(STORE2, "", "  ", "corp.test"),
    ]
    assert ansible_bridge.departing_domains(stored, ROUTES) == []
    assert ansible_bridge.departing_domains([], ROUTES) == []
    assert ansible_bridge.departing_domains([_read(STORE1, DOMAIN)], {}) == []


def test_departing_domains_several() -> None:
    stored = [_read(STORE1, "example.test", DOMAIN, " corp.test "), _read(STORE2)]
    assert ansible_bridge.departing_domains(stored, ROUTES) == [
        {"domain": DOMAIN, "from": STORE1, "to": STORE2},
        {"domain": "corp.test", "from": STORE1, "to": STORE2}]


def test_departing_is_an_ansible_filter() -> None:
    path = REPO / "roles" / "mail_common" / "filter_plugins" / "mailctl_filters.py"
    spec = importlib.util.spec_from_file_location("mailctl_filters_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.FilterModule().filters()["mailctl_departing"] is \
        ansible_bridge.departing_domains


# =========================================================================== the role's guard

TASKS = REPO / "roles" / "mail_common" / "tasks" / "main.yml"
# modules that change nothing on a host (a command only with changed_when: false)
READ_ONLY = {"ansible.builtin.include_vars", "ansible.builtin.set_fact", "ansible.builtin.assert"}


def _module(task: dict) -> str:
    [module] = [k for k in task if k.startswith("ansible.builtin.")]
    return module


def _tasks() -> list[dict]:
    tasks = yaml.safe_load(TASKS.read_text(encoding="utf-8"))
    assert isinstance(tasks, list) and all(isinstance(t, dict) for t in tasks)
    return tasks


def _index(tasks: list[dict], test) -> int:
    [found] = [n for n, task in enumerate(tasks) if test(task)]
    return found


def _reads_stored(task: dict) -> bool:
    argv = (task.get("ansible.builtin.command") or {}).get("argv") or []
    return argv[:1] == ["cat"] and str(argv[-1]).endswith("/stored-domains")


def test_the_guard_reads_every_mailstore_before_any_host_changes() -> None:
    tasks = _tasks()
    read = _index(tasks, _reads_stored)
    task = tasks[read]
    assert task["loop"].replace(" ", "") == "{{groups['mailstore']|default([])}}"
    assert task["delegate_to"] == "{{ item }}"
    assert task["run_once"] is True
    assert task["failed_when"] is False
    assert task["changed_when"] is False
    assert task["check_mode"] is False
    assert task["when"] == "not mail_common_migrating"
    # the same file as the controller reads (domain_move.switched)
    path = task["ansible.builtin.command"]["argv"][-1]
    assert path.replace("{{ __mail_common_platform.paths.state_dir }}", "{state_dir}") == \
        mb.STORED_DOMAINS

    refresh = _index(tasks, lambda t: (t.get("ansible.builtin.apt") or {}).get("update_cache"))
    assert read < refresh
    # nothing before the guard changes a host
    for before in tasks[:read]:
        assert _module(before) in READ_ONLY, before["name"]

    check = _index(tasks, lambda t: "__mail_common_departing" in
                   str((t.get("ansible.builtin.assert") or {}).get("that")))
    task = tasks[check]
    assert read < check < refresh
    assert all(_module(t) in READ_ONLY for t in tasks[read + 1:check])
    assert task["any_errors_fatal"] is True
    assert task["run_once"] is True
    assert task["when"] == "not mail_common_migrating"
    assert task["ansible.builtin.assert"]["that"].replace(" ", "") == \
        "__mail_common_departing|length==0"
    departing = task["vars"]["__mail_common_departing"]
    assert re.search(r"\b" + re.escape(tasks[read]["register"]) + r"\.results\b", departing)
    assert re.search(r"\|\s*mailctl_departing\(\s*__mail_common_topology\b", departing)


def _template(text: str, **variables: Any) -> Any:
    """text templated as Ansible does it (its Templar; the role's strings are trusted)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    trusted = {k: trust_as_template(v) if isinstance(v, str) else v
               for k, v in variables.items()}
    return Templar(loader=DataLoader(), variables=trusted).template(trust_as_template(text))


def test_the_record_is_the_last_task_and_only_on_mailstores() -> None:
    tasks = _tasks()
    task = tasks[-1]
    copied = task["ansible.builtin.copy"]
    assert copied["dest"].replace("{{ __mail_common_platform.paths.state_dir }}",
                                  "{state_dir}") == mb.STORED_DOMAINS
    assert task["when"].replace(" ", "") == "__mail_host.kind=='mailstore'"
    assert (copied["owner"], copied["mode"]) == ("root", "0644")
    # what it writes, one domain a line: what the read task's stdout_lines and
    # domain_move.switched (split on whitespace) read back
    written = _template(copied["content"], __mail_host={"domains": ["example.test", DOMAIN]})
    assert written == f"example.test\n{DOMAIN}\n"
    assert DOMAIN in written.split()
    stored = [_read(STORE1, *written.splitlines())]
    assert ansible_bridge.departing_domains(stored, ROUTES) == [
        {"domain": DOMAIN, "from": STORE1, "to": STORE2}]
    assert _template(copied["content"], __mail_host={"domains": []}).split() == []


def _guard_texts(departing: list[dict]) -> str:
    tasks = _tasks()
    task = tasks[_index(tasks, lambda t: "__mail_common_departing" in
                        str((t.get("ansible.builtin.assert") or {}).get("that")))]
    return _template(task["ansible.builtin.assert"]["fail_msg"],
                     __mail_common_departing=departing,
                     __mail_common_first=task["vars"]["__mail_common_first"])


def test_the_guard_names_a_command_mailctl_has() -> None:
    """The refusal names every domain that moves, and how to move the first: a command line
    `mailctl migrate` parses (the old store is --host), with that domain and store."""
    from mailctl.cli import main

    departing = [{"domain": DOMAIN, "from": STORE1, "to": STORE2},
                 {"domain": "corp.test", "from": STORE2, "to": STORE1}]
    message = _guard_texts(departing)
    assert message.startswith(f"the inventory moves {DOMAIN} from {STORE1} to {STORE2}, "
                              f"corp.test from {STORE2} to {STORE1} while the mail is still "
                              "on the old store")
    [command] = re.findall(r"`mailctl ([^`]*)`", message)
    words = command.split()
    assert words[0] == "migrate"
    context = main.commands["migrate"].make_context("migrate", [*words[1:], "-i", "inv"])
    assert (context.params["domain"], context.params["limit"]) == (DOMAIN, STORE1)


def test_the_guard_message_templates_when_nothing_moves() -> None:
    """fail_msg is templated even when the assertion holds: no departing domain is no error."""
    assert _guard_texts([]).startswith("the inventory moves while the mail")


def test_failure_before_the_switch_after_an_earlier_partial_switch(
        moved: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier run's switch reached the new store (its stored-domains has the domain) but
    not the source: a failure before this run's switch releases nothing, since mail let in on
    the new store would be removed by the import that makes it equal to the source's copy."""
    error = MailctlError(f"{STORE1}: mailbox lock failed: NO gone")
    hosts = _Hosts(monkeypatch, moved, {(STORE1, "lock"): error},
                   stored={STORE1: f"example.test\n{DOMAIN}\n", STORE2: f"corp.test\n{DOMAIN}\n"})
    with pytest.raises(MailctlError) as caught:
        _move(moved)
    assert str(caught.value) == (
        f"{error}; an earlier run already switched some hosts to {STORE2}: the users' mail "
        f"stays held on {STORE1} and {STORE2}; fix the cause and run the same command again")
    assert not any(c[1] == "release" for c in hosts.calls)
    assert hosts.deploys == []
