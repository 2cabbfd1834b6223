"""The pieces deploy relies on that need no host: the Ansible bridge (what the roles call)
and the runner's diff rendering."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mailctl import ansible_bridge
from mailctl.cli import main
from mailctl.runner import _diff_text

BASE = {
    "mail_hostname": "mail.example.test",
    "mail_domains": ["example.test"],
    "mail_users": [{"address": "alice@example.test", "password": "pw-alice"}],
}


def bridge_input(**variables):
    return {"name": "h1", "groups": [], "os_family": "Debian", "backend": "",
            "inventory_dir": "/srv/inv", "variables": {**BASE, **variables}}


def test_bridge_resolves_tls_files_against_the_inventory_directory():
    tls = {"mode": "files", "cert": "certs/mail.crt", "key": "/abs/mail.key"}
    summary = ansible_bridge.host_summary(bridge_input(mail_tls=tls))
    assert [(f["src"], f["dest"], f["group"], f["mode"]) for f in summary["tls_files"]] == [
        ("/srv/inv/certs/mail.crt", "/etc/mailctl/tls/mail.example.test.crt", "root", "0644"),
        ("/abs/mail.key", "/etc/mailctl/tls/mail.example.test.key", "root", "0640"),
        # no ca: the cert itself
        ("/srv/inv/certs/mail.crt", "/etc/mailctl/tls/ca.crt", "root", "0644")]


def test_bridge_takes_selfsigned_tls_files_from_the_local_ca_and_cyrus_reads_the_key():
    summary = ansible_bridge.host_summary({**bridge_input(mail_backend="cyrus"),
                                           "ca_dir": "/srv/ca"})
    assert [(f["src"], f["group"]) for f in summary["tls_files"]] == [
        ("/srv/ca/mail.example.test.crt", "root"), ("/srv/ca/mail.example.test.key", "mail"),
        ("/srv/ca/ca.crt", "root")]
    # Postfix reads the rate limiter's policy socket, the SASL and Cyrus sockets, and the
    # OpenDKIM and OpenDMARC milter sockets
    assert summary["mta_groups"] == ["policyd-rate-limit", "sasl", "mail", "opendkim",
                                     "opendmarc"]
    # policyd-rate-limit is Debian's: elsewhere sending limits are off, and so is its group
    redhat = ansible_bridge.host_summary({**bridge_input(mail_backend="cyrus"),
                                          "os_family": "RedHat", "ca_dir": "/srv/ca"})
    assert redhat["mta_groups"] == ["saslauth", "mail", "opendkim", "opendmarc"]


def test_bridge_plans_the_components_in_apply_order():
    summary = ansible_bridge.host_summary(bridge_input())
    # the rate limiter and the store first, then the milters, Postfix (which talks to all of
    # them), the users' Sieve scripts (into the running store), and last fail2ban (which
    # follows all of their logs)
    assert [c["name"] for c in summary["components"]] == [
        "ratelimit", "dovecot", "opendkim", "opendmarc", "postfix", "sieve", "fail2ban"]
    assert summary["packages"] == ["ca-certificates", "openssl", "policyd-rate-limit",
                                   "postfix", "dovecot-core", "dovecot-imapd", "dovecot-pop3d",
                                   "dovecot-lmtpd", "dovecot-sieve", "dovecot-managesieved",
                                   "opendkim", "opendmarc", "publicsuffix",
                                   "fail2ban", "python3-systemd", "nftables"]
    planned = {c["name"]: c for c in summary["components"]}
    assert planned["opendkim"]["role"] == "opendkim"  # the role that installs the keys
    assert planned["fail2ban"]["after_store"] is True
    assert planned["ratelimit"]["after_store"] is False  # up before Postfix asks it
    assert planned["opendkim"]["validators"][0]["argv"] == [
        "opendkim", "-n", "-x", "/etc/opendkim.conf"]
    assert [s["name"] for s in summary["other_stores"]] == ["cyrus"]
    assert ansible_bridge.installed_stores(summary["other_stores"], ["postfix"]) == \
        summary["other_stores"]
    assert ansible_bridge.installed_stores(summary["other_stores"], ["cyrus-imapd"]) == []
    # a store is there when its IMAP server is, not its tools alone (doveadm for migrate)
    assert ansible_bridge.installed_stores(summary["other_stores"],
                                           ["cyrus-imapd", "postfix"]) == []
    mx = ansible_bridge.host_summary({**bridge_input(), "groups": ["mx"],
                                      "variables": {"mail_hostname": "mx.example.test"}})
    # an mx has no users: no sending limits
    assert [c["name"] for c in mx["components"]] == ["opendkim", "opendmarc", "postfix",
                                                     "fail2ban"]
    mx_planned = {c["name"]: c for c in mx["components"]}
    assert [s["port"] for s in mx_planned["postfix"]["smoke"]] == [25]  # no submission
    # a SysV host (no systemd journal for fail2ban to read) runs no fail2ban
    sysv = ansible_bridge.host_summary({**bridge_input(), "service_manager": "sysvinit"})
    assert [c["name"] for c in sysv["components"]] == [
        "dovecot", "opendkim", "opendmarc", "postfix", "sieve"]
    assert not {"fail2ban", "nftables", "policyd-rate-limit"} & set(sysv["packages"])
    master = next(f for f in ansible_bridge.host_files(
        {**bridge_input(), "service_manager": "sysvinit"}) if f["path"].endswith("master.cf"))
    assert "check_policy_service" not in master["content"]


def test_bridge_uses_the_host_facts_for_the_platform():
    files = ansible_bridge.host_files({**bridge_input(), "os_family": "RedHat"})
    main_cf = next(f for f in files if f["path"].endswith("/main.cf"))
    assert "compatibility_level = 2\n" in main_cf["content"]


def test_bridge_refuses_a_platform_that_contradicts_the_facts():
    with pytest.raises(ansible_bridge.BridgeError, match="host reports 'Debian'"):
        ansible_bridge.host_files(bridge_input(mail_platform="suse"))


def test_bridge_refuses_an_unsupported_os_family():
    with pytest.raises(ansible_bridge.BridgeError, match="'Gentoo' is not supported"):
        ansible_bridge.host_files({**bridge_input(), "os_family": "Gentoo"})


def test_bridge_reports_every_problem_without_secrets():
    data = bridge_input(mail_users=[{"address": "bob@", "password": "pw-secret"}],
                        mail_backend="exim")
    with pytest.raises(ansible_bridge.BridgeError) as err:
        ansible_bridge.host_files(data)
    text = str(err.value)
    assert "mail_backend" in text and "mail_users[0].address" in text
    assert "pw-secret" not in text


def test_missing_tls_file_is_bad_input(tmp_path):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n")
    (inv / "group_vars" / "all.yml").write_text(
        "mail_hostname: mail.example.test\nmail_domains: [example.test]\n"
        "mail_tls: {mode: files, cert: ../certs/mail.crt, key: ../certs/mail.key}\n")
    res = CliRunner().invoke(main, ["validate", "-i", str(inv)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("h1: mail_tls.cert: '../certs/mail.crt': no such file")
    assert "group_vars/all.yml" in lines[0]


def test_diff_text_is_a_unified_diff_of_changed_files_only():
    res = {"diff": [{"before": "a = 1\nb = 2\n", "after": "a = 1\nb = 3\n",
                     "before_header": "/etc/x", "after_header": "/etc/x"},
                    {"before": "same\n", "after": "same\n"}]}
    text = _diff_text(res)
    assert "-b = 2\n" in text and "+b = 3\n" in text and text.count("---") == 1
    assert _diff_text({}) == ""
    assert _diff_text({"diff": {"prepared": "binary"}}) == ""


def test_stale_files_are_those_whose_content_owner_group_or_mode_differ():
    import hashlib

    def f(path, content, mode="0644", group="root"):
        return {"path": path, "content": content, "owner": "root", "group": group,
                "mode": mode, "secret": False}

    def line(content, mode="644", group="root"):
        return f"root:{group}:{mode} {hashlib.sha256(content.encode()).hexdigest()}"

    files = [f("/a", "same\n"), f("/b", "new\n"), f("/c", "x"), f("/d", "y", "0640", "dovecot"),
             f("/e", "z")]
    installed = [line("same\n"), line("old\n"), "missing", line("y", "644", "dovecot"),
                 line("z")]
    stale = ansible_bridge.stale_files(files, installed)
    assert [s["path"] for s in stale] == ["/b", "/c", "/d"]
    assert ansible_bridge.stale_files(files, installed[:2]) == files[1:]  # short output
    assert ansible_bridge.stale_files([f("/é", "ü\n")], [line("ü\n")]) == []


def test_stale_sources_reads_the_controller_files(tmp_path):
    import hashlib

    cert = tmp_path / "h.crt"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAA\n")
    files = [{"src": str(cert), "dest": "h.crt", "group": "root", "mode": "0644"},
             {"src": str(tmp_path / "gone.key"), "dest": "h.key", "group": "root",
              "mode": "0640"}]
    same = f"root:root:644 {hashlib.sha256(cert.read_bytes()).hexdigest()}"
    # the installed cert matches; a source that cannot be read is left to the copy task
    assert ansible_bridge.stale_sources(files, [same, "missing"]) == files[1:]
    assert ansible_bridge.stale_sources(files, [same.replace("644", "600"), "x"]) == files


def test_summary_and_files_of_one_host_share_one_validation(monkeypatch):
    """The roles ask for both in one task: the schema runs once for them, not twice."""
    calls = []
    real = ansible_bridge.check_host
    monkeypatch.setattr(ansible_bridge, "check_host",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    data = bridge_input(mail_users=[{"address": "bob@example.test", "password": "pw-bob"}])
    ansible_bridge.host_summary(data)
    ansible_bridge.host_files(data)
    assert calls == ["h1"]
    ansible_bridge.host_files(bridge_input())  # another input is validated afresh
    assert calls == ["h1", "h1"]


ACME = {"mode": "acme", "directory": "letsencrypt", "contact": "hostmaster@example.test"}


def test_bridge_acme_copies_the_key_and_the_given_files_but_never_a_certificate():
    tls = {**ACME, "challenge": "dns-01", "dns_hook": "hooks/dns.sh", "ca": "roots/r.pem",
           "directory_ca": "/abs/dir-ca.pem"}
    summary = ansible_bridge.host_summary({**bridge_input(mail_tls=tls), "ca_dir": "/srv/ca"})
    assert [(f["src"], f["dest"], f["mode"]) for f in summary["tls_files"]] == [
        ("/srv/ca/mail.example.test.key", "/etc/mailctl/tls/mail.example.test.key", "0640"),
        ("/srv/inv/roots/r.pem", "/etc/mailctl/tls/ca.crt", "0644"),
        ("/abs/dir-ca.pem", "/etc/mailctl/tls/acme-directory-ca.crt", "0644"),
        ("/srv/inv/hooks/dns.sh", "/etc/mailctl/acme-dns-hook", "0700")]
    # applied first: the services that serve the certificate start with it in place
    assert summary["components"][0]["name"] == "acme"
    assert {"certbot", "cron"} <= set(summary["packages"])
    assert summary["acme_retired"] == []


def test_bridge_retires_the_acme_files_when_the_mode_is_not_acme():
    summary = ansible_bridge.host_summary(bridge_input())
    assert "acme" not in [c["name"] for c in summary["components"]]
    assert summary["acme_retired"] == [
        "/etc/mailctl/acme.conf", "/usr/local/sbin/mailctl-acme",
        "/etc/systemd/system/mailctl-acme.service", "/etc/systemd/system/mailctl-acme.timer",
        "/etc/cron.d/mailctl-acme"]


def test_acme_render_names_the_services_to_reload_and_the_schedule():
    from mailctl.render import cron_schedule, render_host
    from mailctl.validate import check_host

    for backend, reload in (("dovecot", "postfix:reload dovecot:reload"),
                            ("cyrus", "postfix:reload cyrus-imapd:hup")):
        host, problems = check_host("h1", {**BASE, "mail_backend": backend,
                                           "mail_tls": {**ACME, "renew_check": "30m"}}, [])
        assert not problems, problems
        files = {f.path: f.content for f in render_host(host)}
        conf = files["/etc/mailctl/acme.conf"]
        assert "DIRECTORY=https://acme-v02.api.letsencrypt.org/directory" in conf
        assert f"RELOAD='{reload}'" in conf
        assert "TRUST=/etc/ssl/certs/ca-certificates.crt" in conf  # a public CA: the bundle
        assert "OnUnitActiveSec=1800s" in files["/etc/systemd/system/mailctl-acme.timer"]
        assert "*/30 * * * * root" in files["/etc/cron.d/mailctl-acme"]
    assert cron_schedule(5, "h") == "*/1 * * * *"
    assert cron_schedule(45 * 60, "h") == "*/30 * * * *"
    assert cron_schedule(12 * 3600, "h").endswith(" */12 * * *")
    assert cron_schedule(5 * 3600, "h").endswith(" */4 * * *")  # a divisor of a day, shorter
    assert cron_schedule(7 * 86400, "h").endswith(" * * *")  # daily at most
