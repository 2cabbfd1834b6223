"""Mail across hosts: the internet -> either mx -> the store of the recipient's domain ->
IMAP; a store that is down; refusals; and how Ansible reached the hosts (SSH)."""

from __future__ import annotations

import ast
import hashlib
import json
import smtplib
import ssl
import time
from dataclasses import replace

import pytest

from mailctl.names import resolv_conf_nameservers
from mailctl.render import render_host

MX = {"mx1": "172.30.77.11", "mx2": "172.30.77.12"}


def test_ansible_reaches_every_mail_host_over_ssh(node):
    for short in ("mx1", "mx2", "store1", "store2"):
        host = node(short)
        assert host.backend.get_connection_type() == "ansible"
        assert host.ansible.get_variables()["ansible_connection"] == "ssh"
        # sshd sets SSH_CONNECTION for the session: this command did come in over SSH
        _, _, server, port = host.run("echo $SSH_CONNECTION").stdout.split()
        assert port == "22" and server == host.ansible.get_variables()["ansible_host"]


@pytest.mark.parametrize("short", ["mx1", "mx2", "store1", "store2"])
def test_installed_files_are_what_mailctl_renders(short, inv, node):
    """`mailctl render` of the same inventory (with its topology) gives the exact bytes, owner,
    group and mode that the deploy installed on every host."""
    hosts, topology = inv.mail_plan(f"mailctl-molecule-multihost-{short}")
    # with the fact a deploy adds: the resolvers OpenDKIM's configuration names
    resolv_conf = node(short).file("/etc/resolv.conf").content_string
    files = render_host(replace(hosts[0], resolvers=resolv_conf_nameservers(resolv_conf)),
                        topology)
    paths = " ".join(f.path for f in files)
    # one command per host: every command is an Ansible run here
    out = node(short).run(f"for f in {paths}; do stat -c '%n %U %G %a' $f; "
                          "sha256sum < $f; done").stdout.split("\n")
    installed = {}
    for stat_line, sum_line in zip(out[0::2], out[1::2], strict=False):
        path, owner, group, mode = stat_line.split()
        installed[path] = (sum_line.split()[0], owner, group, mode)
    for f in files:
        expected = (hashlib.sha256(f.content.encode()).hexdigest(), f.owner, f.group,
                    f.mode.lstrip("0"))
        assert installed.get(f.path) == expected, f.path


def test_mx_hosts_run_postfix_only(node):
    for short in ("mx1", "mx2"):
        host = node(short)
        assert host.service("postfix").is_running
        assert not host.package("dovecot-core").is_installed
        assert not host.package("cyrus-imapd").is_installed
        assert not host.socket("tcp://0.0.0.0:587").is_listening


@pytest.mark.parametrize("mx", sorted(MX))
@pytest.mark.parametrize("store_key", ["store1", "store2"])
def test_mail_from_the_internet_reaches_the_right_store(mx, store_key, stores, sender, msgid,
                                                        wait_for, node):
    store = stores[store_key]
    user = sorted(store.users)[0]
    mid = msgid(f"route-{mx}-{store_key}")
    result = sender(server=MX[mx], helo="sender.outside.test", **{"from": "x@outside.test"},
                    messages=[{"to": [user], "msgid": mid}])["results"][0]
    assert result["code"] == 250, result
    box = wait_for(store, user, [mid])
    assert mid in box, f"{mid} did not reach {user} on {store.hostname}"
    assert len(box[mid]) == 1
    # the store's Received header for the hop from the mx: TLS, and the mx's client
    # certificate from the deployment CA verified (what permit_tls_all_clientcerts needs)
    received = [" ".join(h.split()) for h in box[mid][0].split("\nReceived:")]
    hop = [h for h in received if h.removeprefix("Received: ").startswith(f"from {mx}.multi.test")]
    assert len(hop) == 1, received
    assert "(using TLSv1.3" in hop[0] or "(using TLSv1.2" in hop[0], hop[0]
    assert f'(Client CN "{mx}.multi.test", Issuer "mailctl local CA" (verified OK))' in hop[0]
    # and the mx verified the store's certificate for its name (smtp_tls_policy_maps: secure)
    log = node(mx).run("journalctl -q --no-pager -t postfix/smtp").stdout
    assert f"Verified TLS connection established to {store.hostname}[{store.address}]:25" in log


def test_the_other_store_never_sees_the_domain(stores, sender, msgid, mailbox):
    """alpha.test mail lands only on store1: store2 has no mailbox for it and its mail log
    shows no delivery for the Message-ID."""
    user = sorted(stores["store1"].users)[0]
    mid = msgid("only-store1")
    sender(server=MX["mx1"], helo="sender.outside.test", **{"from": "x@outside.test"},
           messages=[{"to": [user], "msgid": mid}])
    time.sleep(3)
    other = stores["store2"]
    assert all(mid not in mailbox(other, u) for u in other.users)


@pytest.mark.parametrize("mx", sorted(MX))
def test_a_domain_nobody_serves_is_refused_at_rcpt(mx, sender, msgid):
    result = sender(server=MX[mx], helo="sender.outside.test", **{"from": "x@outside.test"},
                    messages=[{"to": ["someone@nowhere.test"], "msgid": msgid("unserved")}])
    result = result["results"][0]
    assert (result["stage"], result["code"]) == ("rcpt", 554), result
    assert "Relay access denied" in result["reply"]


@pytest.mark.parametrize("mx", sorted(MX))
def test_an_unknown_recipient_is_refused_at_rcpt(mx, stores, sender, msgid):
    result = sender(server=MX[mx], helo="sender.outside.test", **{"from": "x@outside.test"},
                    messages=[{"to": [f"nobody-here@{stores['store1'].domain}"],
                               "msgid": msgid("unknown")}])["results"][0]
    assert (result["stage"], result["code"]) == ("rcpt", 550), result
    assert "User unknown" in result["reply"]


@pytest.mark.parametrize("store_key", ["store1", "store2"])
def test_a_store_takes_port_25_mail_only_from_the_mx_hosts(store_key, stores, sender, msgid):
    store = stores[store_key]
    result = sender(server=store.address, helo="sender.outside.test",
                    **{"from": "x@outside.test"},
                    messages=[{"to": [sorted(store.users)[0]], "msgid": msgid("direct")}])
    result = result["results"][0]
    assert result["code"] == 554 and result["stage"] in ("rcpt", "mail"), result
    assert "Access denied" in result["reply"]


def test_submission_on_one_store_reaches_a_user_of_the_other(stores, ca_file, msgid, wait_for):
    """A user of store1 (Dovecot) submits on 587 with STARTTLS and AUTH; the message for a
    store2 (Cyrus) user goes store1 -> store2 over TLS with store1's certificate."""
    src, dst = stores["store1"], stores["store2"]
    user, password = sorted(src.users.items())[0]
    rcpt = sorted(dst.users)[0]
    mid = msgid("submission")
    ctx = ssl.create_default_context(cafile=ca_file)
    with smtplib.SMTP(src.address, 587, local_hostname="mua.outside.test", timeout=20) as smtp:
        smtp._host = src.hostname  # verify the certificate for the store's name
        smtp.starttls(context=ctx)
        smtp.login(user, password)
        smtp.sendmail(user, [rcpt], (f"From: {user}\r\nTo: {rcpt}\r\nMessage-ID: {mid}\r\n"
                                     "Subject: across stores\r\n\r\nhello\r\n").encode())
    box = wait_for(dst, rcpt, [mid])
    assert len(box.get(mid, [])) == 1


def queued_for(host, domain: str) -> int:
    """How many queued recipients of `domain` Postfix holds on this host."""
    out = host.run("postqueue -j").stdout
    return sum(1 for line in out.splitlines() if line.strip()
               for r in json.loads(line)["recipients"] if r["address"].endswith("@" + domain))


def test_a_stopped_store_gets_all_its_mail_once_it_is_back(node, stores, sender, msgid,
                                                           mailbox, wait_for):
    """Stop store2's Postfix: both mx hosts accept and queue its mail; start it again and
    flush: every message arrives exactly once. 20 messages, 10 through each mx."""
    store, store_node = stores["store2"], node("store2")
    user = sorted(store.users)[0]
    ids = {mx: [msgid(f"down-{mx}-{n:02d}") for n in range(10)] for mx in MX}
    store_node.run_test("systemctl stop postfix")
    try:
        for mx, address in MX.items():
            results = sender(server=address, helo="sender.outside.test",
                             **{"from": "x@outside.test"},
                             messages=[{"to": [user], "msgid": i} for i in ids[mx]])["results"]
            assert [r["code"] for r in results] == [250] * 10, results
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(queued_for(node(mx), store.domain) < 10
                                                  for mx in MX):
            time.sleep(2)
        queued = {mx: queued_for(node(mx), store.domain) for mx in MX}
        print(f"\n[mailctl-multihost] store2 down: sent 20, queued per mx {queued}")
        assert queued == {"mx1": 10, "mx2": 10}
        assert all(i not in mailbox(store, user) for i in ids["mx1"] + ids["mx2"])
    finally:
        store_node.run_test("systemctl start postfix")
    for mx in MX:
        node(mx).run_test("postqueue -f")
    every = ids["mx1"] + ids["mx2"]
    box = wait_for(store, user, every, timeout=120)
    missing = [i for i in every if i not in box]
    duplicated = [i for i in every if len(box.get(i, [])) > 1]
    print(f"[mailctl-multihost] store2 back: delivered {len(every) - len(missing)} of 20, "
          f"missing {len(missing)}, duplicated {len(duplicated)}")
    assert missing == [] and duplicated == []
    assert all(queued_for(node(mx), store.domain) == 0 for mx in MX)


def test_the_mx_hosts_never_trip_a_stores_limits_or_bans(node, stores):
    """After all the mail above (a burst of 20 from each mx when a store came back included),
    no store's Postfix held a client back for a per-client limit, and no host banned
    anyone: the mx → store path is exempt from the limits and never looks like an attack."""
    for short in (*stores, *MX):
        held = node(short).run("journalctl -q --no-pager -u postfix@- | grep -E "
                               "'limit exceeded|too many connections' || true").stdout
        assert not held.strip(), f"{short}: {held[-600:]}"
        banned = ast.literal_eval(node(short).check_output("fail2ban-client banned"))
        addresses = [ip for jail in banned for ips in jail.values() for ip in ips]
        assert not addresses, f"{short} banned {addresses}"
