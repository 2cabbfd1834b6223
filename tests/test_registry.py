"""The component registry (templates/components.yml): what each component is, per platform
and host kind, and the proof that a new component is one registry entry and a template —
rendered, validated offline and planned for the roles with no other change."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mailctl import ansible_bridge, components, platforms, render
from mailctl.checks import check_tree
from mailctl.model import BACKENDS, MailHost
from mailctl.paths import templates_dir
from mailctl.validate import check_host

HOST_VARS = {"mail_hostname": "mail.example.test", "mail_domains": ["example.test"],
             "mail_users": [{"address": "alice@example.test", "password": "pw-alice"}]}

# A made-up fourth component: a file, a service and a validator, nothing else.
MOTD_ENTRY = {
    "kinds": ["allinone", "mailstore"],
    "packages": {"debian": ["mailctl-motd"], "redhat": ["mailctl-motd-rpm"],
                 "suse": ["mailctl-motd"]},
    "service": {"name": "motd", "action": "restarted", "process": "/usr/sbin/motd",
                "journal": ["motd"]},
    "validators": [{"name": "motd says who manages it",
                    "argv": ["sh", "-c", 'grep -q "Managed by mailctl" "$0"',
                             "{state_dir}/motd"]}],
    "smoke": [{"port": 2525, "expect": "^motd"}],
    "files": [{"template": "motd/motd.j2", "dest": "{state_dir}/motd", "mode": "0640"}],
}
MOTD_TEMPLATE = "# {{ header }}\nWelcome to {{ host.hostname }}.\n"


@pytest.fixture
def with_motd(tmp_path, monkeypatch):
    """A copy of templates/ with the motd entry and its template; the package reads it."""
    share = tmp_path / "templates"
    shutil.copytree(templates_dir(), share)
    registry = yaml.safe_load((share / "components.yml").read_text())
    registry["motd"] = MOTD_ENTRY
    (share / "components.yml").write_text(yaml.safe_dump(registry, sort_keys=False))
    (share / "motd").mkdir()
    (share / "motd" / "motd.j2").write_text(MOTD_TEMPLATE)
    for module in (components, render):
        monkeypatch.setattr(module, "templates_dir", lambda: share)
    components.registry.cache_clear()
    render._environment.cache_clear()
    yield share
    components.registry.cache_clear()
    render._environment.cache_clear()


def _host(groups=(), **variables):
    host, findings = check_host("h1", {**HOST_VARS, **variables}, list(groups))
    assert not findings, findings
    return host


def test_backends_are_the_registry_stores():
    assert BACKENDS == ("dovecot", "cyrus")


def test_components_per_kind_and_platform():
    def names(host):
        return [c.name for c in render.host_components(host)]

    assert names(_host()) == ["ratelimit", "postfix", "dovecot", "sieve", "opendkim",
                              "opendmarc", "fail2ban"]
    assert names(_host(mail_backend="cyrus")) == [
        "ratelimit", "postfix", "cyrus", "sieve", "opendkim", "opendmarc", "fail2ban"]
    # an mx has no users to rate-limit, even when the stores' group_vars turn limits on
    assert names(_host(["mx"], mail_domains=None, mail_users=None)) == [
        "postfix", "opendkim", "opendmarc", "fail2ban"]
    assert names(_host(["mx"], mail_domains=None, mail_users=None,
                       mail_send_limits={"enabled": True})) == [
        "postfix", "opendkim", "opendmarc", "fail2ban"]
    # a mailstore signs but does not judge inbound mail; with DKIM off it runs no milter
    assert names(_host(["mailstore"])) == [
        "ratelimit", "postfix", "dovecot", "sieve", "opendkim", "fail2ban"]
    assert names(_host(["mailstore"], mail_dkim={"mode": "off"})) == [
        "ratelimit", "postfix", "dovecot", "sieve", "fail2ban"]
    assert names(_host(mail_dkim={"mode": "off"})) == [
        "ratelimit", "postfix", "dovecot", "sieve", "opendkim", "opendmarc",
        "fail2ban"]  # an all-in-one host still verifies
    # policyd-rate-limit is packaged for Debian only: off by default elsewhere
    for platform in ("redhat", "suse"):
        assert names(_host(mail_platform=platform)) == [
            "postfix", "dovecot", "sieve", "opendkim", "opendmarc", "fail2ban"], platform
    # each defence can be turned off on its own
    assert "ratelimit" not in names(_host(mail_send_limits={"enabled": False}))
    assert "fail2ban" not in names(_host(mail_bans={"enabled": False}))
    assert "fail2ban" not in names(_host(["mx"], mail_domains=None, mail_users=None,
                                         mail_bans={"enabled": False}))
    # fail2ban reads the systemd journal, and Debian's SysV script cannot stop
    # policyd-rate-limit: a host without systemd (facts at deploy) runs neither
    assert not {"fail2ban", "ratelimit"} & set(names(replace(_host(), systemd=False)))

    debian = {c.name: c for c in render.host_components(_host())}
    ratelimit = debian["ratelimit"]
    assert ratelimit.packages == ("policyd-rate-limit",)
    assert (ratelimit.service, ratelimit.action) == ("policyd-rate-limit", "restarted")
    assert ratelimit.after_store is False  # Postfix asks it: it is up before Postfix
    assert ratelimit.socket == "/var/spool/postfix/ratelimit/policy"
    assert ratelimit.mta_groups == ("policyd-rate-limit",)  # Postfix reaches its socket
    assert [(f["dest"], f["group"], f["mode"]) for f in ratelimit.files] == [
        ("/etc/policyd-rate-limit.yaml", "policyd-rate-limit", "0640")]
    fail2ban = debian["fail2ban"]
    assert fail2ban.after_store is True  # it follows the logs of the services above
    assert (fail2ban.service, fail2ban.action) == ("fail2ban", "reloaded")
    assert fail2ban.packages == ("fail2ban", "python3-systemd", "nftables")
    assert [f["dest"] for f in fail2ban.files] == [
        "/etc/fail2ban/jail.d/mailctl.local", "/etc/fail2ban/filter.d/mailctl-postscreen.conf",
        "/etc/fail2ban/filter.d/mailctl-dovecot.conf"]
    fail2ban_packages = {"redhat": ("fail2ban-server", "fail2ban-systemd", "nftables"),
                         "suse": ("fail2ban", "python3-systemd", "nftables")}
    for platform, packages in fail2ban_packages.items():
        picked = {c.name: c for c in render.host_components(_host(mail_platform=platform))}
        assert picked["fail2ban"].packages == packages, platform

    # the postscreen filter only where postscreen runs (hosts that receive from the internet),
    # the Dovecot filter only where Dovecot takes logins
    def fail2ban_files(host):
        return [f["dest"].rsplit("/", 1)[1] for c in render.host_components(host)
                if c.name == "fail2ban" for f in c.files]

    assert fail2ban_files(_host(["mx"], mail_domains=None, mail_users=None)) == [
        "mailctl.local", "mailctl-postscreen.conf"]
    assert fail2ban_files(_host(["mailstore"])) == ["mailctl.local", "mailctl-dovecot.conf"]
    assert fail2ban_files(_host(["mailstore"], mail_backend="cyrus")) == ["mailctl.local"]
    assert fail2ban_files(_host(mail_postscreen={"enabled": False})) == [
        "mailctl.local", "mailctl-dovecot.conf"]
    cyrus_suse = {c.name: c for c in render.host_components(
        _host(mail_backend="cyrus", mail_platform="suse"))}
    assert cyrus_suse["cyrus"].service == "cyrus"
    assert cyrus_suse["cyrus"].journal == ("cyrus",)
    assert cyrus_suse["postfix"].process == "/usr/lib/postfix/bin/master"
    assert cyrus_suse["cyrus"].validators[0].argv[0] == "/usr/lib/cyrus/bin/cyr_info"
    assert cyrus_suse["opendkim"].validators[0].argv == (
        "opendkim", "-n", "-x", "/etc/opendkim/opendkim.conf")
    assert cyrus_suse["opendkim"].validators[0].rebase is True


def test_when_selects_components_and_files_by_a_host_property():
    """`when` (component or file) is answered by a MailHost property: OpenDKIM runs where it
    signs or verifies, and only a signing host gets its signing tables."""
    def files(host):
        return {c.name: sorted(f["dest"] for f in c.files) for c in render.host_components(host)}

    signing = {"/etc/opendkim/internal_hosts", "/etc/opendkim/key_table",
               "/etc/opendkim/signing_table"}  # the files with `when: signs`
    for signer in (_host(), _host(["mailstore"])):
        assert signing | {"/etc/opendkim.conf"} <= set(files(signer)["opendkim"])
    for verifier in (_host(["mx"], mail_domains=None, mail_users=None),
                     _host(mail_dkim={"mode": "off"})):
        assert "/etc/opendkim.conf" in files(verifier)["opendkim"]
        assert not signing & set(files(verifier)["opendkim"])
    assert "opendkim" not in files(_host(["mailstore"], mail_dkim={"mode": "off"}))
    # components.for_host itself: `enabled` answers each `when` by the property's name
    debian = platforms.names("debian", None)
    asked = []
    picked = components.for_host("debian", "mailstore", "dovecot", debian,
                                 lambda flag: asked.append(flag) or False)
    assert "opendkim" not in [c.name for c in picked] and "runs_opendkim" in asked
    picked = components.for_host("debian", "mailstore", "dovecot", debian,
                                 lambda flag: flag == "runs_opendkim")
    dests = {f["dest"] for c in picked if c.name == "opendkim" for f in c.files}
    assert "/etc/opendkim.conf" in dests and not signing & dests  # `signs` is not enabled


def test_every_registry_file_has_its_template_and_a_known_kind():
    for name, entry in components.registry().items():
        assert set(entry.get("kinds", [])) <= set(components.KINDS), name
        for f in entry.get("files", []):
            assert (templates_dir() / f["template"]).is_file(), (name, f["template"])
            assert set(f.get("kinds", [])) <= set(components.KINDS), (name, f)
            assert set(f.get("backends", [])) <= set(BACKENDS), (name, f)
            if "when" in f:
                assert isinstance(getattr(MailHost, f["when"], None), property), (name, f)
        if "when" in entry:  # a MailHost property answers it
            assert isinstance(getattr(MailHost, entry["when"], None), property), name


def test_a_fourth_component_is_one_entry_and_a_template(with_motd, tmp_path):
    host = _host()
    files = {f.path: f for f in render.render_host(host)}
    motd = files["/etc/mailctl/motd"]
    assert motd.component == "motd" and motd.mode == "0640"
    assert motd.content == ("# Managed by mailctl from motd/motd.j2 — local edits are "
                            "overwritten on the next deploy.\nWelcome to mail.example.test.\n")
    # mailctl check runs its validator on the render ...
    root = tmp_path / "tree"
    render.write_tree(list(files.values()), root)
    results = {r.validator: r for r in check_tree(host, root)}
    assert results["motd says who manages it"].ok is True
    # ... which fails when the file is wrong
    (root / "etc/mailctl/motd").write_text("hand-edited\n")
    assert {r.validator: r.ok for r in check_tree(host, root)}["motd says who manages it"] \
        is False
    # the roles get its packages, service, validator and smoke test, applied before Postfix
    summary = ansible_bridge.host_summary({"name": "h1", "groups": [],
                                           "os_family": "RedHat", "variables": HOST_VARS})
    planned = {c["name"]: c for c in summary["components"]}
    # registry order, the store first and Postfix and fail2ban (after_store) last; no
    # policyd-rate-limit on RedHat
    assert [c["name"] for c in summary["components"]] == [
        "dovecot", "opendkim", "opendmarc", "motd", "postfix", "sieve", "fail2ban"]
    assert planned["motd"]["service"] == "motd"
    assert planned["motd"]["action"] == "restarted"
    assert planned["motd"]["validators"][0]["argv"][-1] == "/etc/mailctl/motd"
    assert planned["motd"]["smoke"] == [{"port": 2525, "expect": "^motd"}]
    assert planned["motd"]["role"] is None  # mail_common's apply_component applies it
    assert "mailctl-motd-rpm" in summary["packages"]
    # not on an mx host (kinds)
    mx = _host(["mx"], mail_domains=None, mail_users=None)
    assert "motd" not in [c.name for c in render.host_components(mx)]


def test_the_roles_take_everything_about_a_component_from_the_registry():
    """No role or task file names a component's service, packages or validator itself."""
    roles = Path(__file__).resolve().parents[1] / "roles"
    text = "\n".join(line for p in roles.rglob("*.yml")
                     if p.parent.name in ("tasks", "vars", "handlers", "defaults")
                     for line in p.read_text().splitlines()
                     if not line.lstrip().startswith("#"))  # comments may explain
    for needle in ("doveconf", "cyr_info", "postfix check", "dovecot-core", "cyrus-pop3d",
                   "services.", "journal_units", "service_patterns", "store_packages",
                   "opendkim -n", "opendmarc -n", "publicsuffix-list"):
        assert needle not in text, needle


def test_a_release_with_other_syntax_is_a_profile_entry_not_a_new_family(tmp_path, monkeypatch):
    """The platform profile's version axis: "RedHat 10" (say, with Postfix 3.8) gets the 3.6
    syntax from `releases` while RedHat 9 keeps its own — one family, no new profile."""
    from dataclasses import replace

    roles = tmp_path / "roles"
    shutil.copytree(platforms.roles_dir() / "mail_common" / "vars",
                    roles / "mail_common" / "vars")
    redhat = roles / "mail_common" / "vars" / "RedHat.yml"
    data = yaml.safe_load(redhat.read_text())
    data["__mail_common_platform"]["releases"] = {"RedHat 10": {"postfix_syntax": {
        "compatibility_level": "3.6", "tls_protocols": ">=TLSv1.2"}}}
    redhat.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(platforms, "roles_dir", lambda: roles)
    platforms.profile.cache_clear()
    platforms.names.cache_clear()
    try:
        host = _host(mail_platform="redhat")

        def main_cf(h):
            return next(f.content for f in render.render_host(h) if f.path.endswith("main.cf"))

        assert "compatibility_level = 2\n" in main_cf(host)
        assert "compatibility_level = 2\n" in main_cf(replace(host, release="RedHat 9"))
        ten = main_cf(replace(host, release="RedHat 10"))
        assert "compatibility_level = 3.6\n" in ten and ">=TLSv1.2" in ten
        # the bridge takes the release from the host's facts
        summary = ansible_bridge.host_files({"name": "h1", "groups": [], "os_family": "RedHat",
                                             "os_release": "RedHat 10",
                                             "variables": HOST_VARS})
        assert "compatibility_level = 3.6\n" in next(
            f["content"] for f in summary if f["path"].endswith("main.cf"))
    finally:
        platforms.profile.cache_clear()
        platforms.names.cache_clear()
