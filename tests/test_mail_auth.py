"""DKIM signing and inbound SPF/DKIM/DMARC judgement (mail_dkim, mail_dmarc): what the
inventory must hold (files-mode keys, per-domain selectors), what each kind of host gets
(OpenDKIM signs on hosts with users and verifies on hosts facing the internet; OpenDMARC
judges on the latter), the header_checks rule against forged Authentication-Results fields,
and the keys a deploy copies (ansible_bridge.host_summary)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from conftest import BASE_ALL, BASE_HOST, HOST, patched, write

from mailctl import ansible_bridge, render
from mailctl.model import MailHost
from mailctl.topology import NO_TOPOLOGY, Topology, plan
from mailctl.validate import check_host

HOST_FILE = f"host_vars/{HOST}.yml"
MX = "mx1.example.test"
DKIM_SOCK = "unix:/run/opendkim/opendkim.sock"
DMARC_SOCK = "unix:/run/opendmarc/opendmarc.sock"
# the default selector changed, one domain with its own, and an old one still published
SELECTORS = {"selector": "feb", "selectors": {"corp.test": "s2024"}, "publish": ["old"]}
# what only a signing host gets
SIGNING_FILES = {"/etc/opendkim/internal_hosts", "/etc/opendkim/signing_table",
                 "/etc/opendkim/key_table"}
SIGNING_KEYS = {"SigningTable", "KeyTable", "InternalHosts"}


# --------------------------------------------------------------------------- helpers

def host_of(groups: list[str], **variables: Any) -> MailHost:
    base = {"mail_hostname": MX} if "mx" in groups else {**BASE_HOST, **BASE_ALL}
    host, findings = check_host(HOST if "mx" not in groups else MX, {**base, **variables},
                                groups)
    assert findings == [], findings
    assert host is not None
    return host


def files_of(host: MailHost, topology: Topology = NO_TOPOLOGY) -> dict[str, str]:
    return {f.path: f.content for f in render.render_host(host, topology)}


def multihost(**store_variables: Any) -> tuple[MailHost, MailHost, Topology]:
    """An mx in front of one mailstore (HOST, serving example.test and corp.test)."""
    mx, store = host_of(["mx"]), host_of(["mailstore"], **store_variables)
    topology, problems = plan([mx, store])
    assert problems == []
    return mx, store, topology


def conf(text: str) -> dict[str, str]:
    """An OpenDKIM/OpenDMARC configuration: `Key value` lines, comments left out."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split(None, 1)
            assert key not in out, f"{key} set twice"
            out[key] = value
    return out


def entries(text: str) -> list[str]:
    """A table's lines without its comment header."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def main_cf(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split(" =", 1)
            out[name] = value.strip()
    return out


def services(master_cf: str) -> dict[str, list[str]]:
    """master.cf: service name -> its `-o name=value` overrides."""
    out: dict[str, list[str]] = {}
    current = None
    for line in master_cf.splitlines():
        if not line or line.startswith("#"):
            continue
        if line[0].isspace():
            assert current is not None
            out[current].append(line.strip().removeprefix("-o "))
        else:
            current = line.split()[0]
            out[current] = []
    return out


# --------------------------------------------------------------------------- the inventory

def test_files_mode_missing_key_is_one_line(make_inventory, mailctl):
    """mode files: every key of every served domain must exist, relative to the inventory
    directory; the one missing is named with its domain and selector."""
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {"mail_dkim": {
        "mode": "files", "key_file": "../keys/{domain}.{selector}.key"}})})
    write(inv.parent / "keys" / "example.test.mail.key", "-----BEGIN PRIVATE KEY-----\n")
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2, res.stdout + res.stderr
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"{inv.name}/{HOST_FILE}: {HOST}: mail_dkim.key_file: '../keys/corp.test.mail.key' "
        "(domain corp.test, selector mail): no such file"]
    # with the second key in place the inventory is valid
    write(inv.parent / "keys" / "corp.test.mail.key", "-----BEGIN PRIVATE KEY-----\n")
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 0, res.stderr


def test_files_mode_refuses_keys_inside_the_inventory_directory(make_inventory, mailctl):
    """Ansible reads every file of an inventory directory (and quotes what it cannot parse):
    a key path there is refused before any key is put there."""
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {"mail_dkim": {
        "mode": "files", "key_file": "dkim/{domain}.{selector}.key"}})})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert sorted(res.stderr.splitlines()) == [
        f"{inv.name}/{HOST_FILE}: {HOST}: mail_dkim.key_file: 'dkim/{domain}.mail.key' is "
        "inside the inventory directory: keep private keys outside it"
        for domain in ("corp.test", "example.test")]


def test_files_mode_needs_the_keys_of_published_selectors_too(make_inventory, mailctl, tmp_path):
    """`publish` (rotation) selectors are printed by `mailctl dns`: their keys must exist as
    well. An absolute key_file is taken as it is."""
    keys = tmp_path / "abs-keys"
    for name in ("example.test.feb.key", "corp.test.s2024.key", "example.test.old.key"):
        write(keys / name, "key\n")
    dkim = {**SELECTORS, "mode": "files", "key_file": f"{keys}/{{domain}}.{{selector}}.key"}
    inv = make_inventory(all_vars=patched(BASE_ALL, {"mail_dkim": dkim}))
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        f"{inv.name}/group_vars/all/main.yml: {HOST}: mail_dkim.key_file: "
        f"'{keys}/corp.test.old.key' (domain corp.test, selector old): no such file"]


def test_files_mode_keys_are_not_needed_on_an_mx(make_inventory, mailctl):
    """An mx signs nothing: its mail_dkim (often shared through group_vars/all) asks for no
    key file."""
    inv = make_inventory(
        hosts={"all": {"children": {"mx": {"hosts": {MX: None}},
                                    "mailstore": {"hosts": {HOST: None}}}}},
        all_vars={"mail_dkim": {"mode": "files", "key_file": "../keys/{domain}.key"}},
        host_vars={HOST: {**BASE_HOST, **BASE_ALL}, MX: {"mail_hostname": MX}})
    for domain in BASE_ALL["mail_domains"]:
        write(inv.parent / "keys" / f"{domain}.key", "key\n")
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 0, res.stderr
    (inv.parent / "keys" / "corp.test.key").unlink()
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert [line.split(": ")[1:3] for line in res.stderr.splitlines()] == [
        [HOST, "mail_dkim.key_file"]]


def test_selector_for_a_domain_on_no_host(make_inventory, mailctl):
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {"mail_dkim": {
        "selectors": {"example.test": "s1", "Other.TEST": "s2"}}})})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"{inv.name}/{HOST_FILE}: {HOST}: mail_dkim.selectors.other.test: 'other.test' is a "
        "domain on no host of this inventory"]


def test_selectors_may_name_the_domains_of_other_hosts(make_inventory, mailctl, tmp_path):
    """group_vars/all may hold every host's selectors: a domain served by another host of the
    inventory (IDNA or not) is fine, and each host signs its own domains with them."""
    other = "mail2.example.test"
    inv = make_inventory(
        hosts={"all": {"hosts": {HOST: None, other: None}}},
        all_vars=patched(BASE_ALL, {"mail_dkim": {"selectors": {"corp.test": "c1",
                                                                "Bücher.test": "b1"}}}),
        host_vars={HOST: BASE_HOST,
                   other: {"mail_hostname": other, "mail_domains": ["bücher.test"],
                           "mail_users": [], "mail_aliases": []}})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "out"
    res = mailctl("render", "-i", inv, "-o", out, cwd=inv.parent)
    assert res.exit_code == 0, res.stderr
    assert entries((out / HOST / "etc/opendkim/key_table").read_text()) == [
        "example.test example.test:mail:/etc/opendkim/keys/example.test.mail.key",
        "corp.test corp.test:c1:/etc/opendkim/keys/corp.test.c1.key"]
    assert entries((out / other / "etc/opendkim/key_table").read_text()) == [
        "xn--bcher-kva.test xn--bcher-kva.test:b1:/etc/opendkim/keys/xn--bcher-kva.test.b1.key"]


def test_invalid_selector_is_one_line_naming_file_host_and_field(make_inventory, mailctl,
                                                                  tmp_path):
    inv = make_inventory(all_vars=patched(BASE_ALL, {"mail_dkim": {"selector": "Bad_Sel"}}))
    for command, extra in (("validate", ()), ("render", ("-o", tmp_path / "out"))):
        res = mailctl(command, "-i", inv, *extra, cwd=inv.parent)
        res.assert_clean()
        assert res.exit_code == 2
        assert res.stdout == ""
        assert res.stderr.splitlines() == [
            f"{inv.name}/group_vars/all/main.yml: {HOST}: mail_dkim.selector: 'Bad_Sel' is not "
            "a valid selector (one DNS label: lower-case letters, digits and '-', at most 63)"]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- what each kind runs

def test_allinone_signs_every_domain_and_judges_inbound_mail():
    host = host_of([], mail_dkim=SELECTORS)
    assert [c.name for c in render.host_components(host)] == [
        "ratelimit", "postfix", "dovecot", "sieve", "opendkim", "opendmarc", "fail2ban"]
    files = files_of(host)
    opendkim = conf(files["/etc/opendkim.conf"])
    assert opendkim["Mode"] == "sv"
    assert opendkim["AuthservID"] == HOST
    assert set(files) >= SIGNING_FILES
    assert opendkim["SigningTable"] == "refile:/etc/opendkim/signing_table"
    assert opendkim["KeyTable"] == "/etc/opendkim/key_table"
    assert opendkim["InternalHosts"] == "/etc/opendkim/internal_hosts"
    assert entries(files["/etc/opendkim/signing_table"]) == [
        "*@example.test example.test", "*@corp.test corp.test"]
    # each domain with its own selector, else the default; a published one is not signed with
    assert entries(files["/etc/opendkim/key_table"]) == [
        "example.test example.test:feb:/etc/opendkim/keys/example.test.feb.key",
        "corp.test corp.test:s2024:/etc/opendkim/keys/corp.test.s2024.key"]
    assert entries(files["/etc/opendkim/internal_hosts"]) == ["127.0.0.0/8", "::1/128"]
    opendmarc = conf(files["/etc/opendmarc.conf"])
    assert opendmarc["AuthservID"] == opendmarc["TrustedAuthservIDs"] == HOST
    assert opendmarc["RejectFailures"] == "true"
    assert opendmarc["IgnoreHosts"] == "/etc/opendmarc/ignore_hosts"
    cf = main_cf(files["/etc/postfix/main.cf"])
    assert cf["milter_default_action"] == "tempfail"
    assert cf["smtpd_milters"] == f"{DKIM_SOCK} {DMARC_SOCK}"
    assert cf["non_smtpd_milters"] == DKIM_SOCK  # local mail and bounces are signed too
    assert cf["internal_mail_filter_classes"] == "bounce"
    assert cf["header_checks"] == "regexp:${config_directory}/header_checks"
    assert "/etc/postfix/header_checks" in files
    master = services(files["/etc/postfix/master.cf"])
    for service in ("submission", "submissions"):  # signed, never judged by OpenDMARC
        assert [o for o in master[service] if o.startswith("smtpd_milters=")] == [
            f"smtpd_milters={DKIM_SOCK}"], service
    # port 25 is postscreen's; the smtpd it hands clients to takes main.cf's milters
    assert master["smtp"] == [] and master["smtpd"] == []


def test_mx_verifies_and_judges_but_never_signs():
    mx, _, topology = multihost()
    assert [c.name for c in render.host_components(mx)] == [
        "postfix", "opendkim", "opendmarc", "fail2ban"]
    files = files_of(mx, topology)
    opendkim = conf(files["/etc/opendkim.conf"])
    assert opendkim["Mode"] == "v"
    assert opendkim["AuthservID"] == MX
    assert not SIGNING_KEYS & set(opendkim)
    assert not SIGNING_FILES & set(files)
    assert conf(files["/etc/opendmarc.conf"])["AuthservID"] == MX
    assert "/etc/opendmarc/ignore_hosts" in files
    cf = main_cf(files["/etc/postfix/main.cf"])
    assert cf["smtpd_milters"] == f"{DKIM_SOCK} {DMARC_SOCK}"
    assert "non_smtpd_milters" not in cf and "internal_mail_filter_classes" not in cf
    assert cf["header_checks"] == "regexp:${config_directory}/header_checks"
    assert MX.replace(".", r"\.") in files["/etc/postfix/header_checks"]
    master = services(files["/etc/postfix/master.cf"])
    assert "submission" not in master and "submissions" not in master


def test_mailstore_signs_and_does_not_judge():
    _, store, topology = multihost(mail_dkim=SELECTORS)
    assert [c.name for c in render.host_components(store)] == [
        "ratelimit", "postfix", "dovecot", "sieve", "opendkim", "fail2ban"]
    files = files_of(store, topology)
    opendkim = conf(files["/etc/opendkim.conf"])
    assert opendkim["Mode"] == "s"
    assert "AlwaysAddARHeader" not in opendkim  # it adds no verification results
    assert entries(files["/etc/opendkim/key_table"]) == [
        "example.test example.test:feb:/etc/opendkim/keys/example.test.feb.key",
        "corp.test corp.test:s2024:/etc/opendkim/keys/corp.test.s2024.key"]
    assert not [p for p in files if "opendmarc" in p]
    cf = main_cf(files["/etc/postfix/main.cf"])
    assert cf["smtpd_milters"] == DKIM_SOCK
    assert cf["non_smtpd_milters"] == DKIM_SOCK
    assert "header_checks" not in cf and "/etc/postfix/header_checks" not in files
    master = services(files["/etc/postfix/master.cf"])
    for service in ("submission", "submissions"):
        assert f"smtpd_milters={DKIM_SOCK}" in master[service], service


def test_mailstore_with_dkim_off_runs_no_milter():
    _, store, topology = multihost(mail_dkim={"mode": "off"})
    assert [c.name for c in render.host_components(store)] == [
        "ratelimit", "postfix", "dovecot", "sieve", "fail2ban"]
    files = files_of(store, topology)
    assert not [p for p in files if "opendkim" in p or "opendmarc" in p]
    assert "milter" not in files["/etc/postfix/main.cf"]
    master = services(files["/etc/postfix/master.cf"])
    for service in ("submission", "submissions"):
        # empty: main.cf sets none, but an explicit empty value keeps it that way
        assert [o for o in master[service] if o.startswith("smtpd_milters")] == [
            "smtpd_milters="], service


def test_allinone_with_dkim_off_still_verifies_and_judges():
    host = host_of([], mail_dkim={"mode": "off"})
    files = files_of(host)
    opendkim = conf(files["/etc/opendkim.conf"])
    assert opendkim["Mode"] == "v"
    assert not SIGNING_KEYS & set(opendkim)
    assert not SIGNING_FILES & set(files)
    assert "/etc/opendmarc.conf" in files
    cf = main_cf(files["/etc/postfix/main.cf"])
    assert cf["smtpd_milters"] == f"{DKIM_SOCK} {DMARC_SOCK}"
    assert "non_smtpd_milters" not in cf
    master = services(files["/etc/postfix/master.cf"])
    for service in ("submission", "submissions"):
        assert [o for o in master[service] if o.startswith("smtpd_milters")] == [
            "smtpd_milters="], service


@pytest.mark.parametrize(("dmarc", "expected"), [
    ({}, "true"), ({"reject": True}, "true"), ({"reject": False}, "false")])
def test_dmarc_reject_decides_reject_failures(dmarc, expected):
    variables = {"mail_dmarc": dmarc} if dmarc else {}
    host = host_of([], **variables)
    assert conf(files_of(host)["/etc/opendmarc.conf"])["RejectFailures"] == expected
    mx = host_of(["mx"], **variables)
    topology, _ = plan([mx, host_of(["mailstore"])])
    assert conf(files_of(mx, topology)["/etc/opendmarc.conf"])["RejectFailures"] == expected


# --------------------------------------------------------------------------- header_checks

FORGED = [
    "Authentication-Results: mail.example.test; dkim=pass",
    "Authentication-Results:mail.example.test;spf=pass",
    "Authentication-Results: mail.example.test 1; dmarc=pass",  # with a version
    "Authentication-Results: MAIL.Example.TEST; dkim=pass",  # Postfix regexps ignore case
    "authentication-results: mail.example.test; dkim=pass",
    "Authentication-Results:\n\tmail.example.test;\n\tdkim=pass header.d=example.test",
    "Authentication-Results: mail.example.test",
]
OTHERS = [
    "Authentication-Results: mail.example.testX; dkim=pass",
    "Authentication-Results: mx.other.test; dkim=pass",
    "Authentication-Results: mailXexample.test; dkim=pass",  # the dots are escaped
    "Authentication-Results: sub.mail.example.test; dkim=pass",
    "Authentication-Results: mail.example.test.evil.test; dkim=pass",
    "X-Authentication-Results: mail.example.test; dkim=pass",
    "Subject: Authentication-Results: mail.example.test; dkim=pass",
    "ARC-Authentication-Results: i=1; mail.example.test; dkim=pass",
]


def header_rule(host: MailHost) -> tuple[str, str]:
    """The rendered rule of header_checks: (pattern, action)."""
    text = files_of(host)["/etc/postfix/header_checks"]
    rules = entries(text)
    assert len(rules) == 1, text
    match = re.fullmatch(r"/(.*)/ (\w+)", rules[0])
    assert match, rules[0]
    return match[1], match[2]


def test_header_checks_drops_forged_results_in_this_hosts_name():
    pattern, action = header_rule(host_of([]))
    assert action == "IGNORE"
    # POSIX classes as Python knows them; Postfix regexp tables match case-insensitively
    compiled = re.compile(pattern.replace("[:space:]", r"\s"), re.IGNORECASE)
    for header in FORGED:
        assert compiled.search(header), header
    for header in OTHERS:
        assert not compiled.search(header), header


@pytest.mark.skipif(not shutil.which("postmap") and not shutil.which("/usr/sbin/postmap"),
                    reason="postmap is not installed")
def test_header_checks_as_postfix_reads_it(tmp_path):
    """The same rule through Postfix's own regexp table (postmap -q answers the action)."""
    files = files_of(host_of([]))
    table = tmp_path / "header_checks"
    table.write_text(files["/etc/postfix/header_checks"])
    (tmp_path / "main.cf").write_text(files["/etc/postfix/main.cf"])
    postmap = shutil.which("postmap") or "/usr/sbin/postmap"

    def lookup(header: str) -> str | None:
        proc = subprocess.run([postmap, "-c", str(tmp_path), "-q", header, f"regexp:{table}"],
                              capture_output=True, text=True, check=False)
        assert proc.stderr == "", proc.stderr
        return proc.stdout.strip() if proc.returncode == 0 else None

    for header in FORGED:
        assert lookup(header) == "IGNORE", header
    for header in OTHERS:
        assert lookup(header) is None, header


def test_header_checks_names_each_host_itself():
    mx, _, _ = multihost()
    pattern, _ = header_rule(mx)
    compiled = re.compile(pattern.replace("[:space:]", r"\s"), re.IGNORECASE)
    assert compiled.search(f"Authentication-Results: {MX}; dkim=pass")
    assert not compiled.search(f"Authentication-Results: {HOST}; dkim=pass")


# --------------------------------------------------------------------------- the deploy's keys

def bridge_input(groups=(), os_family="Debian", **variables):
    base = {"mail_hostname": MX} if "mx" in groups else {**BASE_HOST, **BASE_ALL}
    return {"name": "h1", "groups": list(groups), "os_family": os_family, "backend": "",
            "inventory_dir": "/srv/inv", "ca_dir": "/srv/inv/.mailctl-ca",
            "variables": {**base, **variables}}


def test_summary_generate_mode_keys_come_from_the_local_ca_dir():
    summary = ansible_bridge.host_summary(bridge_input(mail_dkim=SELECTORS))
    assert summary["dkim_mode"] == "generate"
    # only the selector each domain signs with goes to the host, not the published ones
    assert summary["dkim_keys"] == [
        {"domain": "example.test", "selector": "feb",
         "src": "/srv/inv/.mailctl-ca/dkim/example.test.feb.key",
         "dest": "/etc/opendkim/keys/example.test.feb.key"},
        {"domain": "corp.test", "selector": "s2024",
         "src": "/srv/inv/.mailctl-ca/dkim/corp.test.s2024.key",
         "dest": "/etc/opendkim/keys/corp.test.s2024.key"},
    ]


def test_summary_files_mode_keys_are_relative_to_the_inventory():
    summary = ansible_bridge.host_summary(bridge_input(mail_dkim={
        "mode": "files", "key_file": "../keys/{domain}-{selector}.pem"}))
    assert summary["dkim_mode"] == "files"
    assert [(k["src"], k["dest"]) for k in summary["dkim_keys"]] == [
        ("/srv/inv/../keys/example.test-mail.pem", "/etc/opendkim/keys/example.test.mail.key"),
        ("/srv/inv/../keys/corp.test-mail.pem", "/etc/opendkim/keys/corp.test.mail.key")]
    absolute = ansible_bridge.host_summary(bridge_input(mail_dkim={
        "mode": "files", "key_file": "/etc/keys/{domain}.{selector}"}))
    assert [k["src"] for k in absolute["dkim_keys"]] == [
        "/etc/keys/example.test.mail", "/etc/keys/corp.test.mail"]


@pytest.mark.parametrize(("groups", "variables"), [
    (["mx"], {}),
    (["mx"], {"mail_dkim": {"mode": "files", "key_file": "keys/{domain}.key"}}),
    ([], {"mail_dkim": {"mode": "off"}}),
    (["mailstore"], {"mail_dkim": {"mode": "off"}}),
], ids=["mx", "mx-files", "allinone-off", "mailstore-off"])
def test_summary_has_no_keys_where_nothing_is_signed(groups, variables):
    summary = ansible_bridge.host_summary(bridge_input(groups, **variables))
    assert summary["dkim_keys"] == []


def test_summary_mailstore_keys():
    summary = ansible_bridge.host_summary(bridge_input(["mailstore"]))
    assert [k["dest"] for k in summary["dkim_keys"]] == [
        "/etc/opendkim/keys/example.test.mail.key", "/etc/opendkim/keys/corp.test.mail.key"]


@pytest.mark.parametrize("os_family", ["Debian", "RedHat", "Suse"])
def test_key_table_names_the_keys_the_deploy_installs(os_family):
    data = bridge_input(os_family=os_family, mail_dkim=SELECTORS)
    dests = [k["dest"] for k in ansible_bridge.host_summary(data)["dkim_keys"]]
    files = {f["path"]: f["content"] for f in ansible_bridge.host_files(data)}
    table = next(content for path, content in files.items() if path.endswith("/key_table"))
    assert [line.split(":", 2)[2] for line in entries(table)] == dests


def test_resolvers_from_the_facts_reach_opendkim():
    """OpenDKIM's resolver (libunbound) does not read /etc/resolv.conf: a deploy tells it
    the host's servers (the facts); offline there are none to tell."""
    def nameservers(data):
        files = {f["path"]: f["content"] for f in ansible_bridge.host_files(data)}
        return conf(files["/etc/opendkim.conf"]).get("Nameservers")

    assert nameservers(bridge_input()) is None
    deployed = nameservers({**bridge_input(), "resolvers": ["192.0.2.53", "2001:db8::53"]})
    assert deployed == "192.0.2.53,2001:db8::53"


def test_unquoted_yaml_off_turns_signing_off():
    """`mail_dkim: {mode: off}` in YAML is the boolean false: it means off, as written."""
    host = host_of([], mail_dkim=yaml.safe_load("{mode: off}"))
    assert host.dkim.mode == "off" and not host.signs
