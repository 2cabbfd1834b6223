"""The controller side of mailbox backups: finding and checking backups (backup.py), and
choosing users, building the agent's command line and reading its answer (mailbox.py).

Backups are built by hand in tmp_path; hosts and inventories are SimpleNamespaces with just
what the code reads. Nothing reaches a host: the runner's functions are replaced.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from mailctl import backup as bk
from mailctl import mailbox as mb
from mailctl.errors import InputError, MailctlError
from mailctl.runner import CommandResult

HOST = "mail.example.test"
OTHER = "store2.example.test"
ARCHIVE_BYTES = b"\x1f\x8b\x08\x00 not really a tarball"


def _manifest(host: str, taken: str, users: list[str]) -> dict:
    box = {"subscribed": True, "uidvalidity": 1, "uidnext": 2, "count": 1,
           "messages": [{"uid": 1, "flags": ["\\Seen"], "size": 5, "sha256": "ab" * 32,
                         "internaldate": "2026-12-02T10:00:00Z"}]}
    return {"mailctl_manifest": 1, "taken": taken, "host": host, "store": "dovecot",
            "users": {u: {"mailboxes": {"INBOX": box}, "quota": {}, "pop3_uidls": ["u1"],
                          "sieve": None} for u in users}}


def make_backup(parent: Path, host: str, taken: str, *, store: str = "dovecot",
                users: tuple[str, ...] = ("alice@example.test", "bob@corp.test"),
                name: str | None = None, archive: bytes | None = ARCHIVE_BYTES,
                fmt: int = 1) -> Path:
    """A backup directory as take_backup writes it."""
    path = parent / (name or bk.version_name(host, taken))
    path.mkdir(parents=True)
    meta = {"mailctl_backup": fmt, "host": host, "store": store, "platform": "debian",
            "taken": taken, "users": list(users), "archive": bk.ARCHIVE,
            "sha256": hashlib.sha256(ARCHIVE_BYTES).hexdigest(), "bytes": len(ARCHIVE_BYTES)}
    (path / bk.META).write_text(json.dumps(meta), encoding="utf-8")
    (path / bk.MANIFEST).write_text(json.dumps(_manifest(host, taken, list(users))),
                                    encoding="utf-8")
    if archive is not None:
        (path / bk.ARCHIVE).write_bytes(archive)
    return path


# --------------------------------------------------------------------------- version_name

@pytest.mark.parametrize(("host", "taken", "name"), [
    (HOST, "2026-12-02T12:00:00Z", "mail.example.test-20261202T120000Z"),
    ("mx-1.example.test", "2027-01-09T03:04:05Z", "mx-1.example.test-20270109T030405Z"),
])
def test_version_name(host: str, taken: str, name: str) -> None:
    """HOST-YYYYmmddTHHMMSSZ: the time's dashes and colons go, the host's dashes stay."""
    assert bk.version_name(host, taken) == name


# --------------------------------------------------------------------------- find_backup

def test_find_backup_dir_is_a_backup(tmp_path: Path) -> None:
    """A directory that is itself a backup is that backup, whatever host is asked."""
    path = make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z")
    for host in (None, HOST, OTHER):
        found = bk.find_backup(path, host)
        assert found.path == path
        assert found.meta["host"] == HOST
    assert found.manifest["users"].keys() == {"alice@example.test", "bob@corp.test"}


@pytest.fixture
def backups(tmp_path: Path) -> dict[str, Path]:
    """Several backups of two hosts, a leftover partial one, and things that are none."""
    made = {
        "host_old": make_backup(tmp_path, HOST, "2026-11-30T23:59:59Z"),
        "host_new": make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z"),
        "host_mid": make_backup(tmp_path, HOST, "2026-12-01T08:00:00Z"),
        "other_old": make_backup(tmp_path, OTHER, "2026-12-01T00:00:00Z"),
        "other_new": make_backup(tmp_path, OTHER, "2026-12-03T09:00:00Z"),
    }
    # newer than all, but hidden: a run that did not finish
    make_backup(tmp_path, HOST, "2027-01-01T00:00:00Z",
                name=f".{bk.version_name(HOST, '2027-01-01T00:00:00Z')}.partial")
    make_backup(tmp_path, OTHER, "2027-01-01T00:00:00Z", name=".x.partial")
    make_backup(tmp_path, HOST, "2028-01-01T00:00:00Z", name="future-format", fmt=2)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / bk.META).write_text("{not json", encoding="utf-8")
    (tmp_path / "listy").mkdir()
    (tmp_path / "listy" / bk.META).write_text("[1]", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("a file, not a backup\n", encoding="utf-8")
    return made


def test_find_backup_newest_of_the_host(tmp_path: Path, backups: dict[str, Path]) -> None:
    """Under a parent: the newest backup of the asked host, by its time."""
    assert bk.find_backup(tmp_path, HOST).path == backups["host_new"]
    assert bk.find_backup(tmp_path, OTHER).path == backups["other_new"]
    assert bk.find_backup(tmp_path, HOST).meta["taken"] == "2026-12-02T12:00:00Z"


def test_find_backup_newest_of_any_host(tmp_path: Path, backups: dict[str, Path]) -> None:
    """No host asked: the newest of all; hidden .partial directories never count."""
    found = bk.find_backup(tmp_path, None)
    assert found.path == backups["other_new"]
    assert found.meta["host"] == OTHER


@pytest.mark.parametrize("host", [None, HOST])
def test_find_backup_none_there(tmp_path: Path, host: str | None) -> None:
    """A directory holding no backup: InputError starting with --from."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    with pytest.raises(InputError) as caught:
        bk.find_backup(tmp_path / "empty", host)
    message = str(caught.value)
    assert message.startswith(f"--from {tmp_path / 'empty'}: ")
    assert (f"of host {host}" in message) == bool(host)


def test_find_backup_only_other_hosts(tmp_path: Path) -> None:
    """Backups of other hosts only: InputError naming the host asked."""
    make_backup(tmp_path, OTHER, "2026-12-01T00:00:00Z")
    make_backup(tmp_path, HOST, "2027-01-01T00:00:00Z", name=".partial-of-host")
    with pytest.raises(InputError, match=rf"^--from .*of host {HOST}$"):
        bk.find_backup(tmp_path, HOST)


@pytest.mark.parametrize("name", ["missing", "notes.txt"])
def test_find_backup_not_a_directory(tmp_path: Path, name: str) -> None:
    """A path that does not exist, or a file: InputError, no traceback."""
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match=r"^--from "):
        bk.find_backup(tmp_path / name, None)


# --------------------------------------------------------------------------- check_restore

def _target(backend: str = "dovecot", name: str = HOST) -> SimpleNamespace:
    return SimpleNamespace(name=name, backend=backend)


def test_check_restore_good(tmp_path: Path) -> None:
    """Same store, known users, the archive matches its hash: nothing raised."""
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z"), None)
    bk.check_restore(found, _target(), ["alice@example.test", "bob@corp.test"])
    bk.check_restore(found, _target(name=OTHER), ["bob@corp.test"])  # into another host


def test_check_restore_store_mismatch(tmp_path: Path) -> None:
    """A Dovecot backup is not restored into a Cyrus host."""
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z"), None)
    with pytest.raises(InputError, match=rf"^--from {tmp_path}.*: a dovecot backup cannot be "
                                         rf"restored into {OTHER}, which runs cyrus$"):
        bk.check_restore(found, _target("cyrus", OTHER), ["alice@example.test"])


def test_check_restore_user_not_in_backup(tmp_path: Path) -> None:
    """A user the backup does not hold is named."""
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z",
                                       users=("alice@example.test",)), None)
    with pytest.raises(InputError, match=r"--user bob@corp\.test: not in this backup$"):
        bk.check_restore(found, _target(), ["alice@example.test", "bob@corp.test"])


@pytest.mark.parametrize("archive", [None, b"", ARCHIVE_BYTES + b"x", ARCHIVE_BYTES[:-1]])
def test_check_restore_archive_missing_or_changed(tmp_path: Path,
                                                  archive: bytes | None) -> None:
    """A missing, empty, grown or truncated archive is refused before any host is touched."""
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z",
                                       archive=archive), None)
    with pytest.raises(InputError, match=r"mail\.tar\.gz is missing or does not match the hash "
                                         r"in mailctl-backup\.json$"):
        bk.check_restore(found, _target(), ["alice@example.test"])


def test_check_restore_archive_is_a_directory(tmp_path: Path) -> None:
    """A directory where the archive should be is no archive."""
    path = make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z", archive=None)
    (path / bk.ARCHIVE).mkdir()
    with pytest.raises(InputError, match=r"missing or does not match"):
        bk.check_restore(bk.find_backup(path, None), _target(), [])


# --------------------------------------------------------------------------- take_backup, restore

class _Hosts:
    """The runner's functions, recorded: what was copied and which commands ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answer: dict | Exception,
                 fetched: bytes = ARCHIVE_BYTES, copy_error: str | None = None) -> None:
        self.answer, self.fetched, self.copy_error = answer, fetched, copy_error
        self.agent: list[tuple] = []
        self.copies: list[tuple] = []
        self.commands: list[dict] = []
        monkeypatch.setattr(bk.mb, "run_agent", self.run_agent)
        monkeypatch.setattr(bk, "copy_file", self.copy_file)
        monkeypatch.setattr(bk, "run_commands", self.run_commands)

    def run_agent(self, inv, host, users, command, *extra, vault=None, verbose=False) -> dict:
        self.agent.append((host.name, list(users), command, extra))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def copy_file(self, inventory, host, src, dest, *, fetch, vault_password_file=None,
                  verbose=False) -> str | None:
        self.copies.append((host, src, dest, fetch))
        if self.copy_error:
            return self.copy_error
        if fetch:
            Path(dest).write_bytes(self.fetched)
        return None

    def run_commands(self, inventory, command_by_host, *, vault_password_file=None,
                     verbose=False) -> dict:
        self.commands.append(dict(command_by_host))
        return {}


def _store_host(backend: str = "dovecot") -> SimpleNamespace:
    return SimpleNamespace(name=HOST, backend=backend, platform="debian", release=None)


def _backup_answer(taken: str = "2026-12-02T12:00:00Z") -> dict:
    return {"archive": "/var/tmp/mailctl-backup-abc123.tar.gz", "bytes": len(ARCHIVE_BYTES),
            "sha256": hashlib.sha256(ARCHIVE_BYTES).hexdigest(), "seconds": 1.5,
            "manifest": _manifest(HOST, taken, ["alice@example.test"])}


def test_take_backup_writes_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete version directory (0600 files), found again by find_backup; the host's
    archive is removed."""
    hosts = _Hosts(monkeypatch, _backup_answer())
    inv = SimpleNamespace(source=tmp_path / "hosts.yml")
    to_dir = tmp_path / "backups" / "new"
    got = bk.take_backup(inv, _store_host(), ["alice@example.test"], to_dir, vault=None,
                         verbose=False)
    assert got.path == to_dir / "mail.example.test-20261202T120000Z"
    assert sorted(p.name for p in to_dir.iterdir()) == [got.path.name]
    assert sorted(p.name for p in got.path.iterdir()) == [bk.ARCHIVE, bk.META, bk.MANIFEST]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in got.path.iterdir())
    assert got.meta == json.loads((got.path / bk.META).read_text(encoding="utf-8"))
    assert got.meta["users"] == ["alice@example.test"]
    assert got.meta["store"] == "dovecot"
    assert got.manifest == _backup_answer()["manifest"]
    assert hosts.agent == [(HOST, ["alice@example.test"], "backup", ())]
    assert hosts.commands == [{HOST: "rm -f -- /var/tmp/mailctl-backup-abc123.tar.gz"}]
    assert bk.find_backup(to_dir, HOST) == got
    bk.check_restore(got, _store_host(), ["alice@example.test"])


@pytest.mark.parametrize(("fetched", "copy_error", "message"), [
    (b"corrupted", None, "the fetched backup does not match its hash"),
    (ARCHIVE_BYTES, "unreachable", "fetching the backup failed: unreachable"),
])
def test_take_backup_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   fetched: bytes, copy_error: str | None, message: str) -> None:
    """A bad or failed fetch leaves no version and no partial directory behind, and the
    host's archive is still removed."""
    hosts = _Hosts(monkeypatch, _backup_answer(), fetched=fetched, copy_error=copy_error)
    with pytest.raises(MailctlError, match=rf"^{HOST}: {message}$"):
        bk.take_backup(SimpleNamespace(source=tmp_path / "hosts.yml"), _store_host(),
                       ["alice@example.test"], tmp_path / "b", vault=None, verbose=False)
    assert list((tmp_path / "b").iterdir()) == []
    assert len(hosts.commands) == 1


def test_take_backup_unusable_to_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--to under a file: InputError before the host is asked anything."""
    hosts = _Hosts(monkeypatch, _backup_answer())
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match=r"^--to .*: cannot create it"):
        bk.take_backup(SimpleNamespace(source=tmp_path / "hosts.yml"), _store_host(),
                       ["alice@example.test"], tmp_path / "file" / "b", vault=None,
                       verbose=False)
    assert hosts.agent == []


def test_restore_checks_before_touching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused restore copies nothing and runs nothing."""
    hosts = _Hosts(monkeypatch, {})
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z"), None)
    with pytest.raises(InputError):
        bk.restore(SimpleNamespace(source=tmp_path / "h.yml"), found, _store_host("cyrus"),
                   ["alice@example.test"], force=False, vault=None, verbose=False)
    assert (hosts.copies, hosts.agent, hosts.commands) == ([], [], [])


def test_restore_proven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive goes to /var/tmp/mailctl-*.tar.gz, the agent gets it (and --force), the
    copy is removed, and a host manifest equal to the backup's gives no findings."""
    path = make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z")
    found = bk.find_backup(path, None)
    after = dict(found.manifest, taken="2026-12-05T00:00:00Z", kept_aside={})
    hosts = _Hosts(monkeypatch, after)
    findings, answer = bk.restore(SimpleNamespace(source=tmp_path / "h.yml"), found,
                                  _store_host(), ["alice@example.test"], force=True,
                                  vault=None, verbose=False)
    assert findings == []
    assert answer is after
    [(host, src, remote, fetch)] = hosts.copies
    assert (host, src, fetch) == (HOST, str(path / bk.ARCHIVE), False)
    assert remote.startswith("/var/tmp/mailctl-restore-") and remote.endswith(".tar.gz")
    [(_, users, command, extra)] = hosts.agent
    assert (users, command, extra) == (["alice@example.test"], "restore",
                                       ("--archive", remote, "--force"))
    assert hosts.commands == [{HOST: f"rm -f -- {remote}"}]


def test_restore_agent_failure_still_removes_the_copy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent refusing (mail the backup lacks) leaves no archive copy on the host."""
    hosts = _Hosts(monkeypatch, MailctlError(f"{HOST}: mailbox restore failed: holds mail"))
    found = bk.find_backup(make_backup(tmp_path, HOST, "2026-12-02T12:00:00Z"), None)
    with pytest.raises(MailctlError, match="holds mail"):
        bk.restore(SimpleNamespace(source=tmp_path / "h.yml"), found, _store_host(),
                   ["alice@example.test"], force=False, vault=None, verbose=False)
    assert len(hosts.commands) == 1
    assert hosts.agent[0][3] == ("--archive", hosts.copies[0][2])


# --------------------------------------------------------------------------- chosen_users

def _inv_host(*addresses: str) -> tuple[SimpleNamespace, SimpleNamespace]:
    inv = SimpleNamespace(source=Path("inventories/prod/hosts.yml"))
    host = SimpleNamespace(name=HOST, users=[SimpleNamespace(address=a) for a in addresses])
    return inv, host


def test_chosen_users_default_all_sorted() -> None:
    """No --user: every user of the host, sorted."""
    inv, host = _inv_host("zoe@example.test", "alice@example.test", "bob@corp.test")
    assert mb.chosen_users(inv, host, ()) == ["alice@example.test", "bob@corp.test",
                                              "zoe@example.test"]


def test_chosen_users_case_insensitive() -> None:
    """--user matches whatever its case; duplicates collapse; the result is lower-case."""
    inv, host = _inv_host("alice@example.test", "bob@corp.test")
    assert mb.chosen_users(inv, host, ("Bob@Corp.TEST", "bob@corp.test")) == ["bob@corp.test"]


def test_chosen_users_unknown() -> None:
    """An address the host does not have: InputError naming the file, host and --user."""
    inv, host = _inv_host("alice@example.test")
    with pytest.raises(InputError) as caught:
        mb.chosen_users(inv, host, ("alice@example.test", "carol@example.test"))
    assert str(caught.value) == (f"inventories/prod/hosts.yml: {HOST}: --user carol@example.test:"
                                 " not a user of this host in mail_users")


def test_chosen_users_host_without_users() -> None:
    """A host with no users: nothing chosen, any --user refused."""
    inv, host = _inv_host()
    assert mb.chosen_users(inv, host, ()) == []
    with pytest.raises(InputError):
        mb.chosen_users(inv, host, ("alice@example.test",))


# --------------------------------------------------------------------------- agent_args

def _agent_host(backend: str) -> SimpleNamespace:
    return SimpleNamespace(name=HOST, platform="debian", release=None, backend=backend)


def _option(words: list[str], name: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == name]


def test_agent_args_dovecot() -> None:
    """Dovecot: no Cyrus admin; every user after --user; the paused map in the state dir."""
    users = ["alice@example.test", "o'neil@x.test", "bob@corp.test"]
    line = mb.agent_args(_agent_host("dovecot"), users)
    words = shlex.split(line)
    assert words[0] == "manifest"
    assert _option(words, "--store") == ["dovecot"]
    assert _option(words, "--user") == users
    assert _option(words, "--vmail-user") == ["vmail"]
    assert _option(words, "--paused-map") == ["/etc/mailctl/paused-users"]
    assert _option(words, "--locked-list") == ["/etc/mailctl/locked-users"]
    assert _option(words, "--vmail-dir") == ["/var/vmail"]
    # where Cyrus's tools are, for any store: a release after a migration unlocks either
    assert _option(words, "--cyrus-bin") == ["/usr/lib/cyrus/bin"]
    for cyrus_only in ("--admin-pw-file", "--admin-user"):
        assert cyrus_only not in words
    assert " ".join(shlex.quote(w) for w in words) == line


def test_agent_args_cyrus_with_extra() -> None:
    """Cyrus: the admin user, its tools and its password file (a path, no secret)."""
    users = ["o'neil@x.test", "a b@x.test"]
    line = mb.agent_args(_agent_host("cyrus"), users, "restore", "--archive",
                         "/var/tmp/mailctl-restore-1.tar.gz", "--force")
    words = shlex.split(line)
    assert words[0] == "restore"
    assert _option(words, "--store") == ["cyrus"]
    assert _option(words, "--user") == users
    assert _option(words, "--admin-user") == ["cyrus"]
    assert _option(words, "--cyrus-bin") == ["/usr/lib/cyrus/bin"]
    assert _option(words, "--admin-pw-file") == ["/etc/mailctl/cyrus-admin.pw"]
    assert _option(words, "--archive") == ["/var/tmp/mailctl-restore-1.tar.gz"]
    assert "--force" in words
    assert " ".join(shlex.quote(w) for w in words) == line


def test_agent_args_parse_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's own argument parser reads what the controller builds."""
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("mailbox_agent_args", mb.AGENT)
    assert spec and spec.loader
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    captured = {}

    def fake_manifest(args) -> dict:
        captured["args"] = args
        return {}

    line = mb.agent_args(_agent_host("cyrus"), ["o'neil@x.test", "bob@x.test"], "manifest")
    monkeypatch.setattr(agent, "cmd_manifest", fake_manifest)
    monkeypatch.setattr("sys.argv", ["mailbox_agent.py", *shlex.split(line)])
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert agent.main() == 0
    assert "seconds" in json.loads(out.getvalue())
    args = captured["args"]
    assert (args.store, args.user, args.admin_user) == ("cyrus", ["o'neil@x.test", "bob@x.test"],
                                                        "cyrus")
    assert args.admin_pw_file == "/etc/mailctl/cyrus-admin.pw"
    assert args.paused_map == "/etc/mailctl/paused-users"
    assert args.cyrus_bin == "/usr/lib/cyrus/bin"


# --------------------------------------------------------------------------- read_answer

def test_read_answer_not_run() -> None:
    """A host the runner could not reach: its reason, with the host name."""
    with pytest.raises(MailctlError, match=rf"^{HOST}: unreachable: ssh timed out$"):
        mb.read_answer(_agent_host("dovecot"), "unreachable: ssh timed out", "mailbox manifest")


def test_read_answer_failed() -> None:
    """Non-zero exit: the last line of stderr is the reason."""
    answer = CommandResult(1, "", "Traceback?\nno\nbob@x.test: POP3 UIDL failed: b''\n\n")
    with pytest.raises(MailctlError, match=rf"^{HOST}: mailbox backup failed: "
                                           r"bob@x\.test: POP3 UIDL failed: b''$"):
        mb.read_answer(_agent_host("dovecot"), answer, "mailbox backup")


def test_read_answer_failed_silently() -> None:
    """Non-zero exit and nothing said: the exit code."""
    with pytest.raises(MailctlError, match=rf"^{HOST}: mailbox manifest failed: exit code 127$"):
        mb.read_answer(_agent_host("dovecot"), CommandResult(127, "\r\n", " \n"),
                       "mailbox manifest")


def test_read_answer_over_a_terminal() -> None:
    """Over SSH with become, the host's stderr arrives within stdout (a terminal): the answer
    is the last line, and so is the error; ssh's own closing line is not the reason."""
    logged = "imap(a@x.test)<1><x>: Info: Disconnected: Logged out in=1 out=2\r\n"
    found = mb.read_answer(_agent_host("dovecot"),
                           CommandResult(0, logged + '{"released": []}\r\n', ""), "release")
    assert found == {"released": []}
    failed = CommandResult(1, logged + "a@x.test: the admin cannot open the mailbox\r\n",
                           "Shared connection to 10.0.0.5 closed.\r\n")
    with pytest.raises(MailctlError, match=rf"^{HOST}: release failed: a@x\.test: the admin "
                                           "cannot open the mailbox$"):
        mb.read_answer(_agent_host("dovecot"), failed, "release")


@pytest.mark.parametrize("stdout", ["", "not json", '{"users": ', "{}\nWarning: x"])
def test_read_answer_bad_json(stdout: str) -> None:
    """Output that is no JSON: MailctlError, no traceback."""
    with pytest.raises(MailctlError, match=rf"^{HOST}: the mailbox agent's answer is not JSON"):
        mb.read_answer(_agent_host("dovecot"), CommandResult(0, stdout, ""), "mailbox manifest")


def test_read_answer_manifest_gets_the_inventory_name() -> None:
    """A manifest answer carries the inventory's host name, not the host's own."""
    manifest = _manifest("localhost.localdomain", "2026-12-02T12:00:00Z", ["a@x.test"])
    found = mb.read_answer(_agent_host("dovecot"), CommandResult(0, json.dumps(manifest), ""),
                           "mailbox manifest")
    assert found == dict(manifest, host=HOST)


def test_read_answer_backup_manifest_gets_the_inventory_name() -> None:
    """A backup answer's manifest inside carries it too; the rest is untouched."""
    answer = _backup_answer()
    answer["manifest"]["host"] = "localhost"
    found = mb.read_answer(_agent_host("cyrus"), CommandResult(0, json.dumps(answer) + "\n", ""),
                           "mailbox backup")
    assert found["manifest"]["host"] == HOST
    assert "host" not in found
    assert found["sha256"] == answer["sha256"]


# --------------------------------------------------------------------------- write_atomically

def test_write_atomically(tmp_path: Path) -> None:
    """The text lands (replacing what was there) and no temporary file is left."""
    path = tmp_path / "manifest.json"
    mb.write_atomically(path, '{"a": 1}\n')
    mb.write_atomically(path, '{"b": "é"}\n')
    assert path.read_text(encoding="utf-8") == '{"b": "é"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_atomically_unwritable_dir(tmp_path: Path) -> None:
    """A directory that cannot be written to (here: missing): InputError naming the path."""
    path = tmp_path / "missing" / "manifest.json"
    with pytest.raises(InputError, match=rf"^{path}: cannot write: No such file or directory$"):
        mb.write_atomically(path, "{}\n")


def test_write_atomically_leaves_no_temp_on_failure(tmp_path: Path) -> None:
    """A rename that fails (a directory in the way) removes the temporary file."""
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match=r"out: cannot write: "):
        mb.write_atomically(tmp_path / "out", "{}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert list((tmp_path / "out").iterdir()) == []
