"""mailctl bans: parsing what fail2ban-client 1.0.2 prints, the rows, the table and JSON, the
command line (runner.run_commands replaced), and the runner helper (ansible_runner.run
replaced). Nothing here contacts a host."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import BASE_HOST, HOST

from mailctl import bans
from mailctl.bans import Ban, HostBans, Until
from mailctl.errors import InputError
from mailctl.runner import CommandResult

# what fail2ban-client 1.0.2 prints (taken from a running fail2ban 1.0.2 server)
BANNED = ("[{'mailctl-postfix-sasl': ['192.0.2.61', '2001:db8::7']}, "
          "{'mailctl-dovecot': ['198.51.100.9']}, {'mailctl-postscreen': []}]")
SASL_TIMES = ("192.0.2.61 \t2026-12-02 09:10:11 + 3600 = 2026-12-02 10:10:11\n"
              "2001:db8::7 \t2026-12-02 09:20:00 + 3600 = 2026-12-02 10:20:00")
DOVECOT_TIMES = "198.51.100.9 \t2026-12-02 08:13:20 + -1 = 9999-12-31 23:59:59"
NOT_RUNNING = ("2026-12-02 08:13:12,849 fail2ban                [4286]: ERROR   Failed to "
               "access socket path: /var/run/fail2ban/fail2ban.sock. Is fail2ban running?")


def output(*, tz="+0000", unban=None, banned=BANNED, jails=None) -> str:
    """The remote command's stdout, section by section."""
    lines = [f"@@mailctl tz {tz}"]
    if unban is not None:
        lines += ["@@mailctl unban", unban]
    if banned is not None:
        lines += ["@@mailctl banned", banned]
    for jail, text in (jails if jails is not None else {
            "mailctl-dovecot": DOVECOT_TIMES, "mailctl-postfix-sasl": SASL_TIMES,
            "mailctl-postscreen": ""}).items():
        lines += [f"@@mailctl jail {jail}", text]
    return "\n".join(lines)


def ok(stdout: str) -> CommandResult:
    return CommandResult(0, stdout, "")


# --------------------------------------------------------------------------- the command

def test_remote_command_is_one_shell_line_with_every_section():
    assert bans.remote_command() == (
        'echo "@@mailctl tz $(date +%z)"; '
        "echo '@@mailctl banned'; fail2ban-client banned || exit; "
        "for j in $(fail2ban-client status | sed -n 's/^.*Jail list:[[:space:]]*//p' "
        "| tr ',' ' '); do echo \"@@mailctl jail $j\"; "
        'fail2ban-client get "$j" banip --with-time; done; true')
    with_unban = bans.remote_command("2001:0DB8::0007")
    assert ("echo '@@mailctl unban'; fail2ban-client unban 2001:db8::7 || exit; "
            "echo '@@mailctl banned'") in with_unban
    for mark in ("{{", "{%", "{#"):  # Ansible would expand them
        assert mark not in with_unban


@pytest.mark.parametrize("text,normal", [("192.0.2.61", "192.0.2.61"),
                                         ("2001:0DB8:0::7", "2001:db8::7")])
def test_unban_address_is_normalised(text, normal):
    assert bans.unban_address(text) == normal


@pytest.mark.parametrize("text", ["", "192.0.2", "192.0.2.0/24", "1.2.3.4; reboot",
                                  " 192.0.2.61", "mail.example.test", "$(id)"])
def test_unban_address_refuses_anything_else(text):
    with pytest.raises(InputError, match=r"^--unban: ") as exc:
        bans.unban_address(text)
    assert exc.value.exit_code == 2
    with pytest.raises(InputError):
        bans.remote_command(text)


# --------------------------------------------------------------------------- parsing

def test_parse_banned_reads_the_python_literal_in_order():
    assert bans.parse_banned(BANNED) == {
        "mailctl-postfix-sasl": ["192.0.2.61", "2001:db8::7"],
        "mailctl-dovecot": ["198.51.100.9"], "mailctl-postscreen": []}
    assert bans.parse_banned("[]\n") == {}
    assert bans.parse_banned("{'sshd': ['192.0.2.1']}") == {"sshd": ["192.0.2.1"]}


@pytest.mark.parametrize("text", ["", "Sorry but the command is invalid", "[1, 2]",
                                  "[{'j': 'not a list'}]", "[{'j': [1]}]", "{'j'",
                                  "__import__('os').system('id')", "[{'j': ['a']}] + []"])
def test_parse_banned_refuses_anything_else_without_evaluating_it(text):
    with pytest.raises(bans.BansError, match="not a fail2ban ban list"):
        bans.parse_banned(text)


def test_parse_with_time_reads_the_end_of_each_ban():
    assert bans.parse_with_time(SASL_TIMES) == {
        "192.0.2.61": Until(datetime(2026, 12, 2, 10, 10, 11)),
        "2001:db8::7": Until(datetime(2026, 12, 2, 10, 20, 0))}


def test_parse_with_time_converts_the_host_time_to_utc():
    got = bans.parse_with_time(SASL_TIMES, bans.parse_offset("+0100"))
    assert got["192.0.2.61"].at == datetime(2026, 12, 2, 9, 10, 11, tzinfo=UTC)
    got = bans.parse_with_time(SASL_TIMES, bans.parse_offset("-0530"))
    assert got["192.0.2.61"].at == datetime(2026, 12, 2, 15, 40, 11, tzinfo=UTC)


def test_parse_with_time_is_tolerant():
    text = ("\n"
            "Sorry but the jail 'x' does not exist\n"
            "192.0.2.1\n"  # an address without a time: skipped here, listed from `banned`
            "192.0.2.2\t2026-12-02T09:10:11 +3600= 2026-12-02T10:10:11  \n"
            "2001:0DB8::1 \t2026-12-02 09:10:11 + 3600 = 2026-13-40 10:10:11\n"  # no date
            "198.51.100.9 \t2026-12-02 08:13:20 + -1 = 9999-12-31 23:59:59\n"
            "198.51.100.10 \t2026-12-02 08:13:20 + 99999999999 = 9999-12-31 23:59:59\n")
    assert bans.parse_with_time(text) == {
        "192.0.2.2": Until(datetime(2026, 12, 2, 10, 10, 11)),
        "198.51.100.9": Until(None, permanent=True),
        "198.51.100.10": Until(None, permanent=True)}
    assert bans.parse_with_time("") == {}


@pytest.mark.parametrize("text,offset", [
    ("+0000", timedelta(0)), ("+0100", timedelta(hours=1)),
    ("-0530", -timedelta(hours=5, minutes=30)), ("+05:45", timedelta(hours=5, minutes=45)),
    ("", None), ("UTC", None), ("+1", None)])
def test_parse_offset(text, offset):
    got = bans.parse_offset(text)
    assert (got.utcoffset(None) if got else None) == offset


def test_sections_split_the_output():
    named, jails = bans.sections(output(unban="2"))
    assert named == {"tz": "+0000", "unban": "2", "banned": BANNED}
    assert jails == {"mailctl-dovecot": DOVECOT_TIMES, "mailctl-postfix-sasl": SASL_TIMES,
                     "mailctl-postscreen": ""}


# --------------------------------------------------------------------------- one host

def test_host_bans_joins_addresses_and_times():
    row = bans.host_bans("a", ok(output(tz="+0100")))
    assert row.ok and row.enabled and row.unbanned is None
    assert row.bans == (
        Ban("a", "mailctl-postfix-sasl", "192.0.2.61",
            Until(datetime(2026, 12, 2, 9, 10, 11, tzinfo=UTC))),
        Ban("a", "mailctl-postfix-sasl", "2001:db8::7",
            Until(datetime(2026, 12, 2, 9, 20, 0, tzinfo=UTC))),
        Ban("a", "mailctl-dovecot", "198.51.100.9", Until(None, permanent=True)))


def test_host_bans_without_time_data_keeps_the_addresses():
    row = bans.host_bans("a", ok(output(tz="", jails={})))
    assert row.ok and [(b.address, b.until) for b in row.bans] == [
        ("192.0.2.61", None), ("2001:db8::7", None), ("198.51.100.9", None)]
    # no offset: the host's own time, naive
    row = bans.host_bans("a", ok(output(tz="", jails={"mailctl-postfix-sasl": SASL_TIMES})))
    assert row.bans[0].until == Until(datetime(2026, 12, 2, 10, 10, 11))


def test_host_bans_none():
    row = bans.host_bans("a", ok(output(banned="[{'mailctl-postfix-sasl': []}]", jails={})))
    assert row.ok and row.bans == ()


@pytest.mark.parametrize("count,unbanned", [("2", 2), ("0", 0)])
def test_host_bans_reads_the_unban_count(count, unbanned):
    row = bans.host_bans("a", ok(output(unban=count)), "192.0.2.61")
    assert row.ok and row.unbanned == unbanned


def test_fail2ban_not_running_is_one_line():
    ran = CommandResult(255, "@@mailctl tz +0000\n@@mailctl banned", NOT_RUNNING)
    row = bans.host_bans("a", ran)
    assert not row.ok and row.bans == ()
    assert row.error == ("fail2ban is not running: Failed to access socket path: "
                         "/var/run/fail2ban/fail2ban.sock. Is fail2ban running?")
    # the unban is the first call: it fails the same way, and nothing was unbanned
    ran = CommandResult(255, "@@mailctl tz +0000\n@@mailctl unban", NOT_RUNNING)
    row = bans.host_bans("a", ran, "192.0.2.61")
    assert row.error.startswith("fail2ban is not running: ") and row.unbanned is None


@pytest.mark.parametrize("rc,stdout,stderr,error", [
    (127, "", "/bin/sh: 1: fail2ban-client: not found",
     "fail2ban-client not found: /bin/sh: 1: fail2ban-client: not found"),
    (255, "", "", "fail2ban is not running: no output"),
    (255, "", "ERROR  Permission denied to socket: /run/fail2ban/fail2ban.sock, (you must "
              "be root)",
     "fail2ban-client failed (exit 255): Permission denied to socket: "
     "/run/fail2ban/fail2ban.sock, (you must be root)"),
    (1, "Sorry but the command is invalid", "",
     "fail2ban-client failed (exit 1): Sorry but the command is invalid"),
])
def test_client_errors(rc, stdout, stderr, error):
    assert bans.host_bans("a", CommandResult(rc, stdout, stderr)).error == error


def test_unbanned_then_the_listing_failed():
    ran = CommandResult(255, "@@mailctl tz +0000\n@@mailctl unban\n1\n@@mailctl banned",
                        NOT_RUNNING)
    row = bans.host_bans("a", ran, "192.0.2.61")
    assert row.unbanned == 1 and row.error.startswith("fail2ban is not running")


@pytest.mark.parametrize("ran,error", [
    ("unreachable: ssh: timed out", "unreachable: ssh: timed out"),
    (ok("@@mailctl tz +0000"), "no output from fail2ban-client banned: "),
    (ok(output(banned="Sorry but the command is invalid")),
     "fail2ban-client banned: not a fail2ban ban list: 'Sorry but the command is invalid'"),
    (ok(output(unban="Sorry")), "unexpected output of fail2ban-client unban: 'Sorry'"),
])
def test_unreadable_hosts(ran, error):
    row = bans.host_bans("a", ran, "192.0.2.61")
    assert not row.ok and row.error.startswith(error)


def test_collect_contacts_only_hosts_with_bans_on_in_one_run():
    asked = []

    def run(commands):
        asked.append(commands)
        return {"a": ok(output()), "c": "unreachable: ssh: timed out"}

    rows = bans.collect({"a": True, "b": False, "c": True, "d": True}, run, "192.0.2.61")
    command = bans.remote_command("192.0.2.61")
    assert asked == [{"a": command, "c": command, "d": command}]
    assert [(r.host, r.enabled, r.ok) for r in rows] == [
        ("a", True, True), ("b", False, True), ("c", True, False), ("d", True, False)]
    assert rows[3].error == "no answer from Ansible"
    # every host off: no Ansible run at all
    assert [r.enabled for r in bans.collect({"b": False}, run)] == [False]
    assert len(asked) == 1


# --------------------------------------------------------------------------- output

ROWS = [bans.host_bans("a.example.test", ok(output()), "192.0.2.9"),
        HostBans("b.example.test"),
        HostBans("off.example.test", enabled=False),
        HostBans("down.example.test", error="fail2ban is not running: socket")]


def test_table_is_aligned_with_one_row_per_address():
    assert bans.table(ROWS) == (
        "HOST               JAIL                  ADDRESS       BANNED UNTIL\n"
        "a.example.test     mailctl-postfix-sasl  192.0.2.61    2026-12-02 10:10:11 UTC\n"
        "a.example.test     mailctl-postfix-sasl  2001:db8::7   2026-12-02 10:20:00 UTC\n"
        "a.example.test     mailctl-dovecot       198.51.100.9  never\n"
        "b.example.test     -                     none          -\n"
        "off.example.test   -                     bans off      -\n"
        "down.example.test  error: fail2ban is not running: socket\n")


def test_table_shows_missing_and_host_local_times():
    row = HostBans("a", bans=(Ban("a", "j", "192.0.2.1"),
                              Ban("a", "j", "192.0.2.2", Until(datetime(2026, 1, 2, 3, 4, 5))),
                              Ban("a", "j", "192.0.2.3", Until(datetime(
                                  2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))))))
    assert [line.split("  ")[-1] for line in bans.table([row]).splitlines()[1:]] == [
        "-", "2026-01-02 03:04:05", "2026-01-02 01:04:05 UTC"]


def test_unban_lines():
    rows = [dataclasses.replace(ROWS[0], unbanned=2), dataclasses.replace(ROWS[1], unbanned=0),
            *ROWS[2:]]
    assert bans.unban_lines(rows, "192.0.2.9") == (
        "a.example.test: 192.0.2.9 unbanned from 2 jail(s)\n"
        "b.example.test: 192.0.2.9 not banned\n")


def test_json():
    rows = [dataclasses.replace(ROWS[0], unbanned=1), *ROWS[1:]]
    assert json.loads(bans.to_json(rows, "192.0.2.9")) == [
        {"host": "a.example.test", "unban": "192.0.2.9", "jails": 1},
        {"host": "a.example.test", "jail": "mailctl-postfix-sasl", "address": "192.0.2.61",
         "until": "2026-12-02T10:10:11+00:00"},
        {"host": "a.example.test", "jail": "mailctl-postfix-sasl", "address": "2001:db8::7",
         "until": "2026-12-02T10:20:00+00:00"},
        {"host": "a.example.test", "jail": "mailctl-dovecot", "address": "198.51.100.9",
         "until": "never"},
        {"host": "down.example.test", "error": "fail2ban is not running: socket"}]
    assert json.loads(bans.to_json([HostBans("a", bans=(Ban("a", "j", "192.0.2.1"),))])) == [
        {"host": "a", "jail": "j", "address": "192.0.2.1", "until": None}]


# --------------------------------------------------------------------------- mailctl bans

def run_bans(mailctl, monkeypatch, tmp_path, inventory, answer, *args):
    """`mailctl bans` with runner.run_commands replaced: answer(command) is each host's."""
    from mailctl import runner

    asked = []

    def run_commands(inv, commands, *, vault_password_file=None, verbose=False):
        asked.append((inv, dict(commands)))
        return {h: answer(c) for h, c in commands.items()}

    monkeypatch.setattr(runner, "run_commands", run_commands)
    return mailctl("bans", "-i", inventory, *args, cwd=tmp_path), asked


def test_cli_lists_bans(mailctl, monkeypatch, tmp_path, make_inventory):
    inventory = make_inventory()
    res, asked = run_bans(mailctl, monkeypatch, tmp_path, inventory, lambda c: ok(output()))
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    assert asked == [(inventory, {HOST: bans.remote_command()})]
    out = res.stdout.splitlines()
    assert out[0].split() == ["HOST", "JAIL", "ADDRESS", "BANNED", "UNTIL"]
    assert out[1].split() == [HOST, "mailctl-postfix-sasl", "192.0.2.61", "2026-12-02",
                              "10:10:11", "UTC"]
    assert len(out) == 4 and out[3].split()[1:] == ["mailctl-dovecot", "198.51.100.9", "never"]


def test_cli_unban(mailctl, monkeypatch, tmp_path, make_inventory):
    inventory = make_inventory()
    res, asked = run_bans(mailctl, monkeypatch, tmp_path, inventory,
                          lambda c: ok(output(unban="0", banned="[{'mailctl-dovecot': []}]",
                                              jails={})),
                          "--unban", "2001:DB8::0:1")
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    [(_, commands)] = asked
    assert "fail2ban-client unban 2001:db8::1 || exit" in commands[HOST]
    assert res.stdout.splitlines()[0] == f"{HOST}: 2001:db8::1 not banned"
    assert res.stdout.splitlines()[2].split() == [HOST, "-", "none", "-"]


def test_cli_bad_unban_touches_no_host(mailctl, monkeypatch, tmp_path, make_inventory):
    res, asked = run_bans(mailctl, monkeypatch, tmp_path, make_inventory(),
                          lambda c: ok(output()), "--unban", "192.0.2.1; reboot")
    res.assert_clean()
    assert res.exit_code == 2 and asked == [] and res.stdout == ""
    assert res.stderr == "error: --unban: '192.0.2.1; reboot' is not an IP address\n"


def test_cli_fail2ban_not_running(mailctl, monkeypatch, tmp_path, make_inventory):
    res, _ = run_bans(mailctl, monkeypatch, tmp_path, make_inventory(),
                      lambda c: CommandResult(255, "@@mailctl tz +0000\n@@mailctl banned",
                                              NOT_RUNNING))
    res.assert_clean()
    assert res.exit_code == 1
    assert res.stdout.splitlines()[1] == (
        f"{HOST}  error: fail2ban is not running: Failed to access socket path: "
        "/var/run/fail2ban/fail2ban.sock. Is fail2ban running?")
    assert res.stderr == f"error: cannot read the bans on 1 host(s): {HOST}\n"


def test_cli_json(mailctl, monkeypatch, tmp_path, make_inventory):
    res, _ = run_bans(mailctl, monkeypatch, tmp_path, make_inventory(),
                      lambda c: "unreachable: ssh: timed out", "--json")
    res.assert_clean()
    assert res.exit_code == 1
    assert json.loads(res.stdout) == [{"host": HOST, "error": "unreachable: ssh: timed out"}]


def test_cli_bans_off_host_is_not_contacted(mailctl, monkeypatch, tmp_path, make_inventory):
    from mailctl.inventory import Inventory
    from mailctl.model import Bans

    other = "mx.example.test"
    inventory = make_inventory(hosts={"all": {"hosts": {HOST: None, other: None}}},
                               host_vars={HOST: BASE_HOST, other: {"mail_hostname": other}})
    real = Inventory.mail_hosts

    def mail_hosts(self, limit=None, backend=None):  # bans off on `other`, whatever the
        return [dataclasses.replace(h, bans=Bans(enabled=False)) if h.name == other else h
                for h in real(self, limit, backend)]  # inventory variables say

    monkeypatch.setattr(Inventory, "mail_hosts", mail_hosts)
    res, asked = run_bans(mailctl, monkeypatch, tmp_path, inventory, lambda c: ok(output()))
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    assert [list(commands) for _, commands in asked] == [[HOST]]
    assert res.stdout.splitlines()[-1].split() == [other, "-", "bans", "off", "-"]
    res, asked = run_bans(mailctl, monkeypatch, tmp_path, inventory, lambda c: ok(output()),
                          "--limit", other)
    assert res.exit_code == 0 and asked == []


# --------------------------------------------------------------------------- the runner

def test_run_commands_turns_events_into_results_or_reasons(monkeypatch, tmp_path):
    """run_commands with ansible_runner.run replaced: what it asks Ansible for, and how the
    event stream becomes {host: CommandResult | reason}."""
    import io
    from types import SimpleNamespace

    import ansible_runner

    from mailctl.runner import run_commands

    calls = []

    def run(**kwargs):
        calls.append(kwargs)
        handler = kwargs["event_handler"]
        handler({"event": "runner_on_ok", "event_data": {
            "host": "a", "res": {"rc": 0, "stdout": "out", "stderr": ""}}})
        handler({"event": "runner_on_failed", "event_data": {  # a non-zero exit: a result
            "host": "b", "res": {"rc": 255, "stdout": "", "stderr": "no socket",
                                 "msg": "non-zero return code"}}})
        handler({"event": "runner_on_failed", "event_data": {  # the module did not run
            "host": "c", "task": "ansible.builtin.shell",
            "res": {"msg": "Missing sudo password"}}})
        handler({"event": "runner_on_unreachable", "event_data": {
            "host": "d", "res": {"msg": "ssh: timed out"}}})
        return SimpleNamespace(status="failed", stdout=io.StringIO("PLAY RECAP\n"))

    monkeypatch.setattr(ansible_runner, "run", run)
    commands = {h: f"echo {h}" for h in "abcde"}
    got = run_commands(tmp_path, commands, vault_password_file="vault.pw")
    assert got == {"a": CommandResult(0, "out", ""), "b": CommandResult(255, "", "no socket"),
                   "c": "Missing sudo password", "d": "unreachable: ssh: timed out",
                   "e": "no answer from Ansible (PLAY RECAP)"}
    [kw] = calls
    assert kw["module"] == "ansible.builtin.shell"
    assert kw["host_pattern"] == "a,b,c,d,e"
    assert kw["extravars"] == {"mailctl_commands": commands}
    assert json.loads(kw["module_args"]) == {
        "cmd": "{{ mailctl_commands[inventory_hostname] }}"}
    assert kw["cmdline"].startswith("--become --vault-password-file ")
    assert run_commands(tmp_path, {}) == {}
    with pytest.raises(ValueError, match="Jinja2"):
        run_commands(tmp_path, {"a": "echo {{ x }}"})
