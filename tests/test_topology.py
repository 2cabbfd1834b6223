"""Multi-host topology: groups mx and mailstore, per-domain routes, the rendered relay
configuration, the same result through the Ansible filters, and rolling waves."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO, VENV_BIN, write

from mailctl import ansible_bridge
from mailctl.inventory import Inventory
from mailctl.render import render_host
from mailctl.validate import check_host

MULTIHOST = REPO / "inventories" / "multihost"


def files_of(host_name: str) -> dict[str, str]:
    hosts, topology = Inventory(MULTIHOST).mail_plan(host_name)
    return {f.path: f.content for f in render_host(hosts[0], topology)}


def setting(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{name} = "):
            return line.split(" = ", 1)[1]
    raise AssertionError(f"{name} not set")


# --------------------------------------------------------------------------- validation

def test_mx_needs_only_a_hostname_and_has_no_store():
    host, findings = check_host("mx1", {"mail_hostname": "mx1.example.test",
                                        "mail_backend": "cyrus"}, ["mx"])
    assert findings == []
    assert (host.kind, host.backend, host.domains, host.users) == ("mx", None, (), ())


@pytest.mark.parametrize("key,value", [("mail_domains", ["example.test"]),
                                       ("mail_users", [{"address": "a@example.test",
                                                        "password": "x"}]),
                                       ("mail_aliases", [{"address": "b@example.test",
                                                          "to": "a@example.test"}])])
def test_mx_refuses_its_own_domains_users_and_aliases(key, value):
    variables = {"mail_hostname": "mx1.example.test", "mail_domains": ["example.test"], key: value}
    if key == "mail_domains":
        variables = {"mail_hostname": "mx1.example.test", key: value}
    _, findings = check_host("mx1", variables, ["mx"])
    assert any(f.field == key and "must not be set on an 'mx' host" in f.message
               for f in findings), findings


def test_topology_hosts_with_user_certificates_need_a_private_ca():
    tls = {"mode": "files", "cert": "c.pem", "key": "k.pem"}
    _, findings = check_host("mx1", {"mail_hostname": "mx1.example.test", "mail_tls": tls},
                             ["mx"])
    assert [f.field for f in findings] == ["mail_tls.ca"]
    _, findings = check_host("mx1", {"mail_hostname": "mx1.example.test",
                                     "mail_tls": {**tls, "ca": "ca.pem"}}, ["mx"])
    assert findings == []


def copy_multihost(tmp_path):
    target = tmp_path / "inv"
    shutil.copytree(MULTIHOST, target)
    return target


def test_a_domain_lives_on_one_mailstore(tmp_path, mailctl):
    inv = copy_multihost(tmp_path)
    path = inv / "host_vars" / "store2.example.test.yml"
    path.write_text(path.read_text().replace("mail_domains: [corp.test]",
                                             "mail_domains: [corp.test, example.test]"))
    res = mailctl("validate", "-i", inv, cwd=tmp_path)
    assert res.exit_code == 2
    assert ("host_vars/store2.example.test.yml: store2.example.test: mail_domains[1]: "
            "'example.test' is already stored on store1.example.test; a domain lives on one "
            "mailstore host") in res.stderr
    # even when only an mx is deployed: it would route by this table
    assert mailctl("render", "-i", inv, "--limit", "mx1*", cwd=tmp_path).exit_code == 2


def test_mx_without_a_mailstore(tmp_path, mailctl):
    inv = tmp_path / "inv"
    write(inv / "hosts.yml", "all:\n  children:\n    mx:\n      hosts:\n        mx1:\n")
    write(inv / "host_vars" / "mx1.yml", {"mail_hostname": "mx1.example.test"})
    res = mailctl("validate", "-i", inv, cwd=tmp_path)
    assert res.exit_code == 2
    assert "mx1: groups: is in group 'mx' but no host is in group 'mailstore'" in res.stderr


def test_allinone_hosts_ignore_the_topology():
    hosts, topology = Inventory(REPO / "inventories" / "example").mail_plan()
    assert topology.routes == ()
    assert all(h.kind == "allinone" for h in hosts)


# --------------------------------------------------------------------------- rendering

def test_mx_relays_every_domain_to_its_store_over_verified_tls():
    files = files_of("mx1.example.test")
    # Postfix's own files, the milters that judge inbound mail (no signing tables: an mx
    # signs nothing) and fail2ban with its postscreen filter (no sending limits: an mx has
    # no users)
    assert sorted(files) == ["/etc/fail2ban/filter.d/mailctl-postscreen.conf",
                             "/etc/fail2ban/jail.d/mailctl.local",
                             "/etc/opendkim.conf", "/etc/opendmarc.conf",
                             "/etc/opendmarc/ignore_hosts",
                             "/etc/postfix/header_checks", "/etc/postfix/main.cf",
                             "/etc/postfix/master.cf", "/etc/postfix/peers.cidr",
                             "/etc/postfix/relay_recipients",
                             "/etc/postfix/tls_policy", "/etc/postfix/transport"]
    # each mx drops forged Authentication-Results in the name of any mx of the deployment
    checks = files["/etc/postfix/header_checks"]
    assert "mx1\\.example\\.test(" in checks and "mx2\\.example\\.test(" in checks
    main = files["/etc/postfix/main.cf"]
    assert setting(main, "relay_domains") == "example.test, corp.test"
    assert "virtual_mailbox_domains" not in main and "smtpd_sasl_type" not in main
    assert setting(main, "smtp_tls_CAfile") == "/etc/mailctl/tls/ca.crt"
    assert setting(main, "smtp_tls_cert_file") == "/etc/mailctl/tls/mx1.example.test.crt"
    body = [line for line in files["/etc/postfix/transport"].splitlines()
            if not line.startswith("#")]
    assert body == ["example.test smtp:[store1.example.test]:25",
                    "corp.test smtp:[store2.example.test]:25"]
    policy = [line for line in files["/etc/postfix/tls_policy"].splitlines()
              if not line.startswith("#")]
    assert policy == ["[store1.example.test]:25 secure match=store1.example.test",
                      "[store2.example.test]:25 secure match=store2.example.test"]
    recipients = {line.split()[0] for line in files["/etc/postfix/relay_recipients"].splitlines()
                  if not line.startswith("#")}
    assert recipients == {"alice@example.test", "a.smith@example.test", "bob@example.test",
                          "postmaster@example.test", "carol@corp.test", "postmaster@corp.test",
                          "@corp.test"}
    master = files["/etc/postfix/master.cf"]
    assert "submission" not in master.replace("# Source", "")


def test_mailstore_takes_port_25_mail_only_from_certified_peers():
    files = files_of("store1.example.test")
    main = files["/etc/postfix/main.cf"]
    assert setting(main, "smtpd_client_restrictions") == \
        "permit_mynetworks, permit_tls_all_clientcerts, reject"
    assert setting(main, "smtpd_tls_ask_ccert") == "yes"
    assert setting(main, "smtpd_tls_CAfile") == "/etc/mailctl/tls/ca.crt"
    assert setting(main, "virtual_mailbox_domains") == "example.test"
    # mail for the other store's domain goes straight there, with this host's certificate
    body = [line for line in files["/etc/postfix/transport"].splitlines()
            if not line.startswith("#")]
    assert body == ["corp.test smtp:[store2.example.test]:25"]
    master = files["/etc/postfix/master.cf"]
    # submission overrides the port-25 client restriction: users log in there
    assert "-o smtpd_client_restrictions=permit_sasl_authenticated,reject" in master


def test_peers_are_the_public_addresses_of_the_mx_and_mailstore_hosts(tmp_path):
    """postscreen, the anvil limits and fail2ban never hold up another host of the
    deployment: the mx and mailstore hosts' mail_public_ipv4/6 are the topology's peers."""
    inv = copy_multihost(tmp_path)
    for name, extra in (("mx1", "mail_public_ipv4: 192.0.2.21\n"
                                'mail_public_ipv6: "2001:db8::21"\n'),
                        ("mx2", "mail_public_ipv4: 192.0.2.22\n"),
                        ("store2", 'mail_public_ipv6: "2001:DB8::32"\n')):
        path = inv / "host_vars" / f"{name}.example.test.yml"
        path.write_text(path.read_text() + extra)
    # store1 publishes no address: it adds none
    hosts, topology = Inventory(inv).mail_plan()
    assert topology.peers == ("192.0.2.21", "192.0.2.22", "2001:db8::21", "2001:db8::32")
    names = Inventory(inv).host_names()
    groups = {"mx": [n for n in names if n.startswith("mx")],
              "mailstore": [n for n in names if n.startswith("store")]}
    hostvars = {n: Inventory(inv).host_vars(n).variables for n in names}
    assert ansible_bridge.plan_topology(hostvars, groups)["peers"] == list(topology.peers)
    for host in hosts:
        files = {f.path: f.content for f in render_host(host, topology)}
        cidr = [line for line in files["/etc/postfix/peers.cidr"].splitlines()
                if not line.startswith("#")]
        assert cidr == ["192.0.2.21/32 permit", "192.0.2.22/32 permit",
                        "2001:db8::21/128 permit", "2001:db8::32/128 permit"], host.name
        ignored = setting(files["/etc/fail2ban/jail.d/mailctl.local"], "ignoreip").split()
        assert set(topology.peers) <= set(ignored), host.name
    # without public addresses there are no peers, and an empty table
    assert Inventory(MULTIHOST).mail_plan()[1].peers == ()
    assert [line for line in files_of("mx1.example.test")["/etc/postfix/peers.cidr"]
            .splitlines() if not line.startswith("#")] == []


def test_roles_install_what_render_writes_for_every_topology_host():
    """The Ansible filters (fed like roles/mail_common/vars/main.yml feeds them) produce the
    same files as `mailctl render`."""
    inv = Inventory(MULTIHOST)
    names = inv.host_names()
    hostvars = {n: inv.host_vars(n).variables for n in names}
    groups = {"mx": [n for n in names if n.startswith("mx")],
              "mailstore": [n for n in names if n.startswith("store")]}
    topology = ansible_bridge.plan_topology(hostvars, groups)
    for name in names:
        hv = inv.host_vars(name)
        via_ansible = ansible_bridge.host_files({"name": name, "groups": hv.groups,
                                                 "variables": hv.variables,
                                                 "topology": topology, "os_family": "Debian"})
        assert {f["path"]: f["content"] for f in via_ansible} == files_of(name), name


def test_the_real_validators_accept_the_topology(mailctl, tmp_path):
    res = mailctl("check", "-i", MULTIHOST, "--skip-missing", cwd=tmp_path)
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stdout.count(": postfix check: ok") == 4


# --------------------------------------------------------------------------- rolling waves

def test_serial_stops_the_roll_at_the_first_failed_wave(tmp_path):
    """Three hosts that refuse SSH (a closed port on loopback): with --serial 1 the first
    wave fails and the other two are never touched, and the error says so."""
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories" / "example", inv)
    hosts = "".join(f"    mail{i}.example.test:\n      ansible_host: 127.0.0.1\n"
                    f"      ansible_port: 9\n      ansible_user: nobody\n" for i in (1, 2, 3))
    (inv / "hosts.yml").write_text("all:\n  hosts:\n" + hosts)
    write(inv / "host_vars" / "mail3.example.test.yml", {"mail_hostname": "mail3.example.test"})
    proc = subprocess.run([str(VENV_BIN / "mailctl"), "deploy", "-i", str(inv), "--serial", "1",
                           "--ca-dir", str(tmp_path / "ca")],
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "deploying 3 host(s) in waves of 1" in out
    assert "mail1.example.test: UNREACHABLE" in out
    assert "mail2.example.test: NOT RUN" in out and "mail3.example.test: NOT RUN" in out
    assert ("error: deploy failed on: mail1.example.test; the roll stopped there, not deployed: "
            "mail2.example.test, mail3.example.test") in proc.stderr
    assert "3 host(s): 0 ok (0 changed), 0 failed, 1 unreachable, 2 not run" in out
    assert "Traceback" not in out


def test_validate_describes_each_place_in_the_topology(mailctl, tmp_path):
    res = mailctl("validate", "-i", MULTIHOST, cwd=tmp_path)
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        "mx1.example.test: ok (mx edge relay, debian, 2 domains relayed)",
        "mx2.example.test: ok (mx edge relay, debian, 2 domains relayed)",
        "store1.example.test: ok (dovecot, mailstore, debian, 1 domains, 2 users)",
        "store2.example.test: ok (cyrus, mailstore, debian, 1 domains, 1 users)"]


def test_a_broken_allinone_host_outside_the_limit_does_not_block_the_topology(tmp_path,
                                                                              mailctl):
    inv = copy_multihost(tmp_path)
    hosts = inv / "hosts.yml"
    hosts.write_text(hosts.read_text()
                     + "    ungrouped:\n      hosts:\n        other.example.test:\n")
    res = mailctl("render", "-i", inv, "--limit", "mx1*", "-o", tmp_path / "out", cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    res = mailctl("validate", "-i", inv, cwd=tmp_path)  # but it is reported when selected
    assert res.exit_code == 2 and "other.example.test: mail_hostname: is required" in res.stderr
