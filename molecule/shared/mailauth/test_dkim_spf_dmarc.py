"""Mail that lands and mail that is judged ([3/8]), against real DNS: the outside container
of the scenario (harness.py) serves the zone `mailctl dns` printed, receives outbound mail
and sends inbound mail. Run by molecule's verifier in the scenarios that import
molecule/shared/mailauth/up.yml (default, cyrus, multihost)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import time
import uuid

import pytest
from world import IMAPS, SMTP, address, inventory_dir, outside, outside_json, state, tls_context

from mailctl.inventory import Inventory
from mailctl.model import MailHost


@functools.cache
def _hosts() -> tuple[tuple[MailHost, ...], object]:
    hosts, topology = Inventory(inventory_dir()).mail_plan()
    return tuple(hosts), topology


def _by_name(name: str) -> MailHost:
    return next(h for h in _hosts()[0] if h.name == name)


def pytest_generate_tests(metafunc):
    if not os.environ.get("MOLECULE_INVENTORY_FILE"):
        return  # collected outside molecule: nothing to parametrize over
    hosts = _hosts()[0]
    if "signer" in metafunc.fixturenames:
        metafunc.parametrize("signer", [h.name for h in hosts if h.signs])
    if "receiver" in metafunc.fixturenames:
        metafunc.parametrize("receiver", [h.name for h in hosts if h.receives_from_internet])


# ------------------------------------------------------------------ the outside container

def sink_message(subject: str, timeout: float = 60) -> tuple[str, dict]:
    """The path (in the outside container) of the message with this subject, and its
    envelope, once it has arrived."""
    deadline = time.monotonic() + timeout
    sink = state()["sink_dir"]
    while True:
        proc = outside("sh", "-c", f"grep -l -F 'Subject: {subject}' {sink}/*.eml || true")
        found = proc.stdout.split()
        if found:
            meta = outside("cat", found[0][:-4] + ".json").stdout
            return found[0], json.loads(meta)
        if time.monotonic() > deadline:
            pytest.fail(f"no message {subject!r} reached the sink in {timeout:.0f} s")
        time.sleep(1)


# ------------------------------------------------------------------ the mail hosts

def user_of(host: MailHost):
    users = [u for u in host.users if u.password]
    assert users, f"{host.name}: no user with a clear password"
    return users[0]


def store_for(receiver: MailHost) -> MailHost:
    """Where mail that `receiver` takes in ends up: itself, or (an mx) a mailstore."""
    if receiver.kind == "allinone":
        return receiver
    route = _hosts()[1].routes[0]
    return _by_name(route.store_name)


def stored_headers(store: MailHost, subject: str, timeout: float = 60) -> str:
    """The headers of the message with this subject in the first user's INBOX, as the
    store keeps them (IMAP)."""
    user = user_of(store)
    deadline = time.monotonic() + timeout
    while True:
        with IMAPS(store, timeout=20) as imap:
            imap.login(user.address, user.password)
            imap.select("INBOX", readonly=True)
            _, data = imap.search(None, "SUBJECT", f'"{subject}"')
            if data[0].split():
                _, parts = imap.fetch(data[0].split()[-1], "(BODY.PEEK[HEADER])")
                return parts[0][1].decode("utf-8", "replace")
        if time.monotonic() > deadline:
            pytest.fail(f"{store.name}: no message {subject!r} in {user.address}'s INBOX")
        time.sleep(2)


def auth_results(headers: str, authserv_id: str) -> str:
    """Every Authentication-Results field naming authserv_id, unfolded, joined."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", headers)
    fields = re.findall(r"(?im)^Authentication-Results:\s*(.*)$", unfolded)
    return " | ".join(f for f in fields if f.split(";")[0].strip() == authserv_id)


def submit(host: MailHost, rcpt: str, subject: str) -> str:
    """Send over submission (587, STARTTLS, AUTH) as the host's first user, the certificate
    verified for the host's name; returns the envelope sender."""
    user = user_of(host)
    with SMTP(host, 587, local_hostname="mua.example.test") as s:
        s.starttls(context=tls_context(host))
        s.login(user.address, user.password)
        body = f"Subject: {subject}\r\nFrom: {user.address}\r\nTo: {rcpt}\r\n\r\nhello\r\n"
        s.sendmail(user.address, [rcpt], body.encode())
    return user.address


def send_from_outside(receiver: MailHost, rcpt: str, subject: str, sender: str,
                      sign: bool) -> dict:
    request = {"host": address(receiver), "rcpt": rcpt, "mail_from": sender,
               "from_header": sender, "subject": subject, "body": "from the outside",
               "helo": "mx.sink.example"}
    if sign:
        request["sign"] = {"domain": "sink.example", "selector": "s1",
                           "key": state()["sink_key"]}
    return outside_json("send", stdin=json.dumps(request))


def probe_subject(tag: str) -> str:
    return f"mailauth-{tag}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ outbound

def test_submitted_mail_is_dkim_signed_and_spf_passes(signer):
    host = _by_name(signer)
    subject = probe_subject("out")
    sender = submit(host, "probe@sink.example", subject)
    path, meta = sink_message(subject)
    verify = outside("sh", "-c", f"dkimverify < {path}")
    assert verify.returncode == 0 and "signature ok" in verify.stdout, verify.stdout + verify.stderr
    signature = outside("sh", "-c", f"grep -A3 '^DKIM-Signature:' {path}").stdout
    domain = sender.split("@")[1]
    assert f"d={domain};" in signature.replace(" ", "")
    assert f"s={host.dkim.selector_for(domain)};" in signature.replace(" ", "")
    spf = outside_json("spf", meta["client"], meta["mail_from"], meta["helo"])
    assert spf["spf"] == "pass", spf
    assert meta["client"] == address(host)


def test_mail_from_a_local_service_is_signed(signer):
    """What a service on the host hands to sendmail (cron, a vacation reply) is signed too
    (non_smtpd_milters)."""
    host = _by_name(signer)
    subject = probe_subject("local")
    sender = f"postmaster@{host.domains[0]}"
    message = f"From: {sender}\nTo: probe@sink.example\nSubject: {subject}\n\nfrom cron\n"
    sent = subprocess.run(["docker", "exec", "-i", host.name, "/usr/sbin/sendmail", "-f",
                           sender, "probe@sink.example"], input=message, capture_output=True,
                          text=True, timeout=60, check=False)
    assert sent.returncode == 0, sent.stderr
    path, _ = sink_message(subject)
    verify = outside("sh", "-c", f"dkimverify < {path}")
    assert verify.returncode == 0 and "signature ok" in verify.stdout, verify.stdout + verify.stderr


def test_one_changed_body_byte_breaks_the_signature(signer):
    host = _by_name(signer)
    subject = probe_subject("tamper")
    submit(host, "probe@sink.example", subject)
    path, _ = sink_message(subject)
    tampered = outside("sh", "-c", f"sed 's/^hello/hellp/' {path} | dkimverify")
    assert tampered.returncode != 0, "a changed body still verifies"


def test_tlsa_record_matches_the_certificate_on_port_25(receiver):
    host = _by_name(receiver)
    records = [r for r in state()["dns"]["hosts"]["records"]
               if r["type"] == "TLSA" and r["name"].rstrip(".") == f"_25._tcp.{host.hostname}"]
    assert len(records) == 1, records
    usage, selector, matching, digest = records[0]["value"].split()
    assert (usage, selector, matching) == ("3", "1", "1")
    cert = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{address(host)}:25",
         "-servername", host.hostname], input="", capture_output=True, text=True,
        timeout=30, check=False).stdout
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", cert, re.S)
    assert pem, "no certificate from port 25"
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem.group(0),
                            capture_output=True, text=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                         input=pubkey.encode(), capture_output=True, check=True).stdout
    assert hashlib.sha256(der).hexdigest() == digest.lower()


# ------------------------------------------------------------------ inbound

def delivered_verdicts(receiver: str, tag: str, sender: str, sign: bool) -> str:
    """Send from the outside through receiver; the Authentication-Results fields naming it
    in the copy its store keeps (read over IMAPS)."""
    host = _by_name(receiver)
    store = store_for(host)
    subject = probe_subject(tag)
    result = send_from_outside(host, user_of(store).address, subject, sender, sign=sign)
    assert result["code"] == 250, result
    return auth_results(stored_headers(store, subject), host.authserv_id)


def test_signed_mail_from_outside_passes_dkim_spf_and_dmarc(receiver):
    results = delivered_verdicts(receiver, "in", "news@sink.example", sign=True)
    for verdict in ("dkim=pass", "spf=pass", "dmarc=pass"):
        assert verdict in results, f"{verdict} not in {results!r}"


def test_reject_policy_failure_is_refused_at_end_of_data(receiver):
    host = _by_name(receiver)
    store = store_for(host)
    result = send_from_outside(host, user_of(store).address, probe_subject("reject"),
                               "ceo@reject.example", sign=False)
    assert 500 <= result["code"] < 600, result
    assert "dmarc" in result["message"].lower(), result


def test_unsigned_mail_without_dmarc_is_delivered_with_dkim_none(receiver):
    results = delivered_verdicts(receiver, "none", "info@nodmarc.example", sign=False)
    assert "dkim=none" in results and "spf=pass" in results, results
    assert "dmarc=pass" not in results and "dmarc=fail" not in results, results


def test_forged_results_in_this_hosts_name_are_dropped(receiver):
    """An Authentication-Results field the sender wrote in the receiving host's name does
    not reach the store (RFC 8601 section 5)."""
    host = _by_name(receiver)
    store = store_for(host)
    subject = probe_subject("forged")
    request = {"host": address(host), "rcpt": user_of(store).address,
               "mail_from": "info@nodmarc.example", "from_header": "info@nodmarc.example",
               "subject": f"{subject}\r\nAuthentication-Results: {host.authserv_id}; "
                          "dkim=pass header.d=forged.test",
               "body": "forged", "helo": "mx.sink.example"}
    assert outside_json("send", stdin=json.dumps(request))["code"] == 250
    assert "forged.test" not in stored_headers(store, subject)
