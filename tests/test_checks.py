"""`mailctl check`: the real validators (postfix check, postconf -n, doveconf -n,
cyr_info conf-lint, opendkim -n, opendmarc -n) accept good renders and reject broken ones;
missing tools are reported."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import BASE_ALL, BASE_HOST, DATA, EXAMPLE, HOST, patched

import mailctl.checks
from mailctl.checks import CheckResult, check_tree, find_tool
from mailctl.render import render_host, write_tree
from mailctl.validate import check_host

EXAMPLE_HOSTS = ("mail1.example.test", "mail2.example.test")
MULTIHOST = EXAMPLE.parent / "multihost"
# what an all-in-one host runs after its store: OpenDKIM (signs and verifies), OpenDMARC
MAIL_AUTH = ("opendkim -n", "opendmarc -n")


@pytest.mark.parametrize("tool", ["postfix", "postconf", "doveconf", "cyr_info", "opendkim",
                                  "opendmarc", "sievec"])
def test_validators_are_installed_here(tool):
    """The suite runs the real tools; make a missing one an obvious failure, not a skip."""
    assert find_tool(tool), f"{tool} is not installed on this machine"


@pytest.mark.parametrize(("args", "validators"), [
    ((), {"mail1.example.test": "doveconf -n", "mail2.example.test": "cyr_info conf-lint"}),
    (("--backend", "cyrus"), {h: "cyr_info conf-lint" for h in EXAMPLE_HOSTS}),
    (("--backend", "dovecot"), {h: "doveconf -n" for h in EXAMPLE_HOSTS}),
], ids=["inventory-backends", "cyrus", "dovecot"])
def test_example_inventory_passes(mailctl, tmp_path, args, validators):
    res = mailctl("check", "-i", EXAMPLE, *args, cwd=tmp_path)
    res.assert_clean()
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stderr == ""
    expected = []
    for host in EXAMPLE_HOSTS:
        expected += [f"{host}: postfix check: ok", f"{host}: postconf -n: ok",
                     f"{host}: {validators[host]}: ok",
                     *(f"{host}: {v}: ok" for v in MAIL_AUTH)]
    assert res.stdout.splitlines() == expected


@pytest.mark.parametrize("backend", ["dovecot", "cyrus"])
def test_golden_inventory_passes(mailctl, tmp_path, backend):
    """Overrides, IDNA domains, relayhost, quotas and all three platforms' paths."""
    res = mailctl("check", "-i", DATA / "golden-inventory", "--backend", backend, "--json",
                  cwd=tmp_path)
    res.assert_clean()
    assert res.exit_code == 0, res.stdout + res.stderr
    results = json.loads(res.stdout)
    assert len(results) == 15  # 3 hosts x (postfix check, postconf, store, DKIM, DMARC)
    assert all(r["ok"] is True for r in results), results
    assert [r["validator"] for r in results].count("opendkim -n") == 3


def _broken(make_inventory, **host_patch):
    return make_inventory(host_vars={HOST: patched(BASE_HOST, host_patch)})


def test_rejects_unknown_postfix_parameter(make_inventory, mailctl):
    inv = _broken(make_inventory, mail_postfix_overrides={"smtpd_bogus_knob": "yes"})
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    postconf = [line for line in lines if line.startswith(f"{HOST}: postconf -n: FAILED: ")]
    assert len(postconf) == 1, res.stderr
    assert "unused parameter: smtpd_bogus_knob=yes" in postconf[0]
    assert f"{HOST}: doveconf -n: ok" in res.stdout
    assert lines[-1] == "error: 2 validator run(s) failed"  # postfix check warns as well


def test_rejects_unknown_dovecot_setting(make_inventory, mailctl):
    inv = _broken(make_inventory, mail_dovecot_overrides={"imap_bogus_knob": "yes"})
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 1
    failed = [line for line in res.stderr.splitlines() if "doveconf -n: FAILED" in line]
    assert len(failed) == 1, res.stderr
    assert "Unknown setting: imap_bogus_knob" in failed[0]
    assert res.stdout.splitlines() == [f"{HOST}: postfix check: ok", f"{HOST}: postconf -n: ok",
                                       *(f"{HOST}: {v}: ok" for v in MAIL_AUTH)]
    assert res.stderr.splitlines()[-1] == "error: 1 validator run(s) failed"


def test_rejects_bad_dovecot_value(make_inventory, mailctl):
    """An override replaces the template's value in place; doveconf rejects a bad enum."""
    inv = _broken(make_inventory, mail_dovecot_overrides={"ssl": "maybe"})
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 1
    assert "doveconf -n: FAILED" in res.stderr and "Invalid value: maybe" in res.stderr


def test_rejects_unknown_cyrus_option(make_inventory, mailctl):
    inv = _broken(make_inventory, mail_backend="cyrus",
                  mail_cyrus_overrides={"bogus_cyrus_knob": "yes"})
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 1
    failed = [line for line in res.stderr.splitlines() if "cyr_info conf-lint: FAILED" in line]
    assert failed == [f"{HOST}: cyr_info conf-lint: FAILED: bogus_cyrus_knob: yes"], res.stderr


def test_check_validates_first(make_inventory, mailctl):
    inv = _broken(make_inventory, mail_relayhost="192.0.2.1")
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "mail_relayhost" in res.stderr and "postfix check" not in res.stderr


# --------------------------------------------------------------------------- missing tools

@pytest.fixture
def without(monkeypatch):
    """Make some validators 'not installed' (find_tool also searches /usr/sbin, so PATH
    tricks cannot hide them)."""
    real = mailctl.checks.find_tool

    def hide(*names):
        monkeypatch.setattr(mailctl.checks, "find_tool",
                            lambda name: None if name in names else real(name))

    return hide


def test_missing_validator_fails(make_inventory, mailctl, without):
    without("doveconf")
    inv = make_inventory()
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert f"{HOST}: doveconf -n: NOT RUN: doveconf is not installed on this machine" in (
        res.stderr.splitlines())
    assert res.stderr.splitlines()[-1] == (
        "error: 1 validator(s) not installed here; install them or pass --skip-missing")
    assert "not installed" in res.stderr
    assert res.stdout.splitlines() == [f"{HOST}: postfix check: ok", f"{HOST}: postconf -n: ok",
                                       *(f"{HOST}: {v}: ok" for v in MAIL_AUTH)]


def test_missing_validator_skipped(make_inventory, mailctl, without):
    without("doveconf")
    inv = make_inventory()
    res = mailctl("check", "-i", inv, "--skip-missing", cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 0
    assert res.stderr.splitlines() == [
        f"{HOST}: doveconf -n: NOT RUN: doveconf is not installed on this machine"]


def test_all_validators_missing(make_inventory, mailctl, without):
    without("postfix", "postconf", "cyr_info")
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {"mail_backend": "cyrus"})})
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert res.stderr.count("NOT RUN") == 3
    assert "error: 3 validator(s) not installed here" in res.stderr
    res = mailctl("check", "-i", inv, "--skip-missing", "--json", cwd=inv.parent)
    assert res.exit_code == 0
    assert [(r["validator"], r["ok"]) for r in json.loads(res.stdout)] == [
        ("postfix check", None), ("postconf -n", None), ("cyr_info conf-lint", None),
        ("opendkim -n", True), ("opendmarc -n", True)]
    without("postfix", "postconf", "cyr_info", "opendkim", "opendmarc")
    res = mailctl("check", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert res.stderr.count("NOT RUN") == 5
    assert f"{HOST}: opendmarc -n: NOT RUN: opendmarc is not installed on this machine" in (
        res.stderr.splitlines())


def test_failure_wins_over_missing(make_inventory, mailctl, without):
    """A real failure is exit 1 even with --skip-missing."""
    without("postfix")
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_dovecot_overrides": {"imap_bogus_knob": 1}})})
    res = mailctl("check", "-i", inv, "--skip-missing", cwd=inv.parent)
    assert res.exit_code == 1
    assert "NOT RUN" in res.stderr and "doveconf -n: FAILED" in res.stderr


def test_check_json_and_cleanup(mailctl, tmp_path, monkeypatch):
    # a temp dir of our own (world-traversable, for cyr_info running as cyrus) to see that
    # check removes its rendered tree; /tmp itself is shared with other processes
    own_tmp = Path(tempfile.mkdtemp(prefix="mailctl-test-", dir="/tmp"))
    own_tmp.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    try:
        res = mailctl("check", "-i", EXAMPLE, "--limit", "mail2.example.test", "--json",
                      cwd=tmp_path)
        leftovers = list(own_tmp.iterdir())
    finally:
        shutil.rmtree(own_tmp)
    assert res.exit_code == 0, res.stderr
    assert leftovers == []
    assert json.loads(res.stdout) == [
        {"host": "mail2.example.test", "validator": "postfix check", "ok": True, "output": ""},
        {"host": "mail2.example.test", "validator": "postconf -n", "ok": True, "output": ""},
        {"host": "mail2.example.test", "validator": "cyr_info conf-lint", "ok": True,
         "output": ""},
        {"host": "mail2.example.test", "validator": "opendkim -n", "ok": True, "output": ""},
        {"host": "mail2.example.test", "validator": "opendmarc -n", "ok": True, "output": ""},
    ]


def test_check_cyrus_with_private_tmpdir(mailctl_subprocess, tmp_path):
    """As root, cyr_info drops to the cyrus user. check() opens up only its own temporary
    directory (0755); with TMPDIR inside a private (0700) directory, as is common for
    per-user temp dirs, the cyrus user cannot reach the files and conf-lint 'fails' with
    'Permission denied' although the configuration is fine."""
    private = tmp_path / "private"
    (private / "tmp").mkdir(parents=True)
    private.chmod(0o700)
    res = mailctl_subprocess("check", "-i", EXAMPLE, "--limit", "mail2.example.test",
                             cwd=tmp_path, env={"TMPDIR": str(private / "tmp")})
    assert res.exit_code == 0, res.stdout + res.stderr


def test_check_result_lines():
    assert CheckResult("h", "v", True, "noise").line() == "h: v: ok"
    assert CheckResult("h", "v", False, "bad").line() == "h: v: FAILED: bad"
    assert CheckResult("h", "v", False, "").line() == "h: v: FAILED"
    assert CheckResult("h", "v", None, "x is not installed").line() == (
        "h: v: NOT RUN: x is not installed")


# --------------------------------------------------------------------------- mail authentication

def test_multihost_inventory_passes_for_every_kind(mailctl, tmp_path):
    """mx: OpenDKIM verifies only (no tables) and OpenDMARC judges; a mailstore signs and
    runs no OpenDMARC. The real tools accept each of those configurations."""
    res = mailctl("check", "-i", MULTIHOST, "--json", cwd=tmp_path)
    res.assert_clean()
    assert res.exit_code == 0, res.stdout + res.stderr
    ran = {}
    for r in json.loads(res.stdout):
        assert r["ok"] is True, r
        ran.setdefault(r["host"], []).append(r["validator"])
    mx = ["postfix check", "postconf -n", "opendkim -n", "opendmarc -n"]
    assert ran == {
        "mx1.example.test": mx, "mx2.example.test": mx,
        "store1.example.test": ["postfix check", "postconf -n", "doveconf -n", "opendkim -n"],
        "store2.example.test": ["postfix check", "postconf -n", "cyr_info conf-lint",
                                "opendkim -n"],
    }


@pytest.mark.parametrize(("groups", "validators"), [
    ([], ["postfix check", "postconf -n", "doveconf -n", "opendkim -n", "opendmarc -n"]),
    (["mailstore"], ["postfix check", "postconf -n", "doveconf -n"]),
], ids=["allinone", "mailstore"])
def test_dkim_off_passes(tmp_path, groups, validators):
    """mail_dkim mode off: an all-in-one host's OpenDKIM only verifies (no tables), and a
    mailstore runs no OpenDKIM at all."""
    host, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL, "mail_dkim": {"mode": "off"}},
                                groups)
    assert not findings
    write_tree(render_host(host), tmp_path)
    results = check_tree(host, tmp_path)
    assert [(r.validator, r.ok) for r in results] == [(v, True) for v in validators], results


def test_opendkim_check_reads_the_rendered_tables(tmp_path):
    """`rebase`: offline, opendkim -n reads the tables of the render, not the host paths its
    configuration names (which do not exist here, or are this machine's own); the rendered
    configuration itself is left as a deploy installs it."""
    host, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL}, [])
    assert not findings
    write_tree(render_host(host), tmp_path)
    conf = tmp_path / "etc/opendkim.conf"
    before = conf.read_text()
    assert {r.validator: r.ok for r in check_tree(host, tmp_path)}["opendkim -n"] is True
    assert conf.read_text() == before
    assert "\nSigningTable            refile:/etc/opendkim/signing_table\n" in before
    (tmp_path / "etc/opendkim/signing_table").unlink()
    failed = {r.validator: r for r in check_tree(host, tmp_path)}["opendkim -n"]
    assert failed.ok is False
    assert f"{tmp_path}/etc/opendkim/signing_table" in failed.output
    assert "No such file or directory" in failed.output


@pytest.mark.parametrize(("path", "validator"), [
    ("etc/opendkim.conf", "opendkim -n"), ("etc/opendmarc.conf", "opendmarc -n")])
def test_mail_auth_validators_reject_a_broken_configuration(tmp_path, path, validator):
    host, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL}, [])
    assert not findings
    write_tree(render_host(host), tmp_path)
    with (tmp_path / path).open("a") as f:
        f.write("BogusKnob               yes\n")
    results = {r.validator: r for r in check_tree(host, tmp_path)}
    assert results[validator].ok is False
    assert "unrecognized parameter" in results[validator].output
    assert all(r.ok for name, r in results.items() if name != validator), results


SANDBOX = EXAMPLE.parent / "sandbox"


@pytest.mark.parametrize("backend", ["dovecot", "cyrus"])
def test_a_sieve_script_that_does_not_compile_is_one_line_and_exit_2(mailctl, tmp_path,
                                                                     backend):
    """Each store's own compiler judges the rendered scripts: dave's filters compile as
    rendered; a raw script without its ';' fails, naming the file, the host and the user."""
    res = mailctl("check", "-i", SANDBOX, "--backend", backend, cwd=tmp_path)
    res.assert_clean()
    assert "sievec dave@sandbox.test" in res.stdout
    inventory = tmp_path / "inv"
    shutil.copytree(SANDBOX, inventory)
    main = inventory / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text().replace(
        "      vacation:\n", '      script: |\n        require "fileinto";\n'
        '        fileinto "x"\n      vacation:\n', 1))
    res = mailctl("check", "-i", inventory, "--backend", backend, cwd=tmp_path)
    assert res.exit_code == 2, res.stdout + res.stderr
    [line] = [line for line in res.stderr.splitlines() if "FAILED" in line]
    assert line.startswith("mailctl-sandbox: sievec dave@sandbox.test "
                           "(inv/group_vars/all/main.yml: mail_users, sieve): FAILED: "
                           "the rendered script: "), line
    assert "line 23" in line, line  # the raw script's line, counted in the whole script
