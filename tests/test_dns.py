"""`mailctl dns`: the records for each mail domain, checked against the key and certificate
files, openssl and a real zone checker (named-checkzone)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from mailctl.dns import SRV_SERVICES, srv_records, txt_strings
from mailctl.inventory import Inventory

INVENTORIES = REPO / "inventories"
STATE = ".mailctl-ca"
SRV_PORTS = {"_submission._tcp": 587, "_submissions._tcp": 465, "_imap._tcp": 143,
             "_imaps._tcp": 993, "_pop3._tcp": 110, "_pop3s._tcp": 995}
MULTIHOST_IPS = {"mx1": ("192.0.2.21", "2001:db8::21"), "mx2": ("192.0.2.22", ""),
                 "store1": ("192.0.2.31", ""), "store2": ("", "2001:db8::32")}


# --------------------------------------------------------------------------- helpers

def copy_inventory(name: str, tmp_path: Path) -> Path:
    """A copy: `mailctl dns` makes keys and certificates inside the inventory directory."""
    target = tmp_path / name
    shutil.copytree(INVENTORIES / name, target)
    return target


def append_vars(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" + text)


def with_addresses(inv: Path) -> Path:
    """The multihost inventory with public addresses (one host IPv6 only)."""
    for host, (ipv4, ipv6) in MULTIHOST_IPS.items():
        lines = [f"mail_public_ipv4: {ipv4}" if ipv4 else "",
                 f'mail_public_ipv6: "{ipv6}"' if ipv6 else ""]
        append_vars(inv / "host_vars" / f"{host}.example.test.yml", "\n".join(lines) + "\n")
    return inv


def run_dns(mailctl, inv: Path, *args: str, cwd: Path):
    res = mailctl("dns", "-i", inv, *args, cwd=cwd)
    res.assert_clean()
    return res


def zone_records(text: str) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, rdata) of each record line; comments and blank lines skipped."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, ttl, klass, rtype, rdata = line.split("\t")
        assert klass == "IN", line
        records.append((name, int(ttl), rtype, rdata))
    return records


def rdata(records, name: str, rtype: str) -> list[str]:
    return [r[3] for r in records if r[0] == name and r[2] == rtype]


def txt_parts(data: str) -> list[str]:
    """The character-strings of a TXT rdata, unescaped."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', data)
    return [re.sub(r"\\(.)", r"\1", p) for p in parts]


def txt(records, name: str) -> list[str]:
    return ["".join(txt_parts(r)) for r in rdata(records, name, "TXT")]


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def public_key_b64(key: Path) -> str:
    return base64.b64encode(openssl("pkey", "-in", str(key), "-pubout", "-outform",
                                    "DER")).decode()


def tlsa_by_openssl(cert: Path) -> str:
    """openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256"""
    pem = openssl("x509", "-in", str(cert), "-pubkey", "-noout")
    der = openssl("pkey", "-pubin", "-outform", "DER", data=pem)
    return openssl("dgst", "-sha256", "-r", data=der).split()[0].decode()


def make_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
            str(path))
    return path


def assert_no_private_material(output: str, key: Path) -> None:
    """Neither the PEM armour nor any line of the key's body (unless that line is also part
    of the public key: the modulus is in both)."""
    assert "PRIVATE KEY" not in output
    text = key.read_text()
    assert "PRIVATE KEY" in text  # the right kind of file
    public = public_key_b64(key)
    body = [line for line in text.splitlines() if line and not line.startswith("-----")]
    assert body
    for line in body:
        assert line not in output or line in public, "a line of the private key was printed"


# --------------------------------------------------------------------------- all-in-one

def test_sandbox_records(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    records = zone_records(res.stdout)
    d, host = "sandbox.test.", "mail.sandbox.test"
    assert "; --- sandbox.test" in res.stdout and "; --- hosts" in res.stdout
    assert rdata(records, d, "MX") == [f"10 {host}."]
    assert txt(records, d) == [f"v=spf1 a:{host} -all"]
    assert txt(records, "_dmarc.sandbox.test.") == [
        "v=DMARC1; p=quarantine; rua=mailto:postmaster@sandbox.test"]
    assert txt(records, "_smtp._tls.sandbox.test.") == [
        "v=TLSRPTv1; rua=mailto:postmaster@sandbox.test"]
    assert re.fullmatch(r"v=STSv1; id=[0-9a-f]{16}", txt(records, "_mta-sts.sandbox.test.")[0])
    for owner, port in SRV_PORTS.items():
        assert rdata(records, f"{owner}.sandbox.test.", "SRV") == [f"0 1 {port} {host}."]
    assert len(txt(records, "mail._domainkey.sandbox.test.")) == 1
    assert len(rdata(records, f"_25._tcp.{host}.", "TLSA")) == 1
    assert {r[1] for r in records} == {3600}
    assert all(r[0].endswith(".") for r in records)
    # the policy file, as comments naming where it is served
    assert "https://mta-sts.sandbox.test/.well-known/mta-sts.txt" in res.stdout
    assert f";   mx: {host}" in res.stdout and ";   mode: testing" in res.stdout


def test_example_two_hosts_serve_both_domains(mailctl, tmp_path):
    inv = copy_inventory("example", tmp_path)
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    records = zone_records(res.stdout)
    hosts = ["mail1.example.test", "mail2.example.test"]
    for domain in ("example.test", "corp.test"):
        assert rdata(records, f"{domain}.", "MX") == [f"10 {h}." for h in hosts]
        assert txt(records, f"{domain}.") == [f"v=spf1 a:{hosts[0]} a:{hosts[1]} -all"]
        # one key per domain and selector, shared by the hosts: one record
        assert len(txt(records, f"mail._domainkey.{domain}.")) == 1
        assert rdata(records, f"_imaps._tcp.{domain}.", "SRV") == [f"0 1 993 {h}." for h in hosts]
    for host in hosts:  # host records once, not per domain
        assert len(rdata(records, f"_25._tcp.{host}.", "TLSA")) == 1


def test_missing_addresses_are_reported_not_guessed(mailctl, tmp_path):
    inv = copy_inventory("example", tmp_path)
    append_vars(inv / "host_vars" / "mail1.example.test.yml", "mail_public_ipv4: 198.51.100.7\n")
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0
    records = zone_records(res.stdout)
    assert rdata(records, "mail1.example.test.", "A") == ["198.51.100.7"]
    assert not [r for r in records if r[0] == "mail2.example.test." and r[2] in ("A", "AAAA")]
    missing = ("A/AAAA for mail2.example.test: set mail_public_ipv4 / mail_public_ipv6 on "
               "host mail2.example.test")
    assert res.stdout.count(f"; missing: {missing}") == 1
    assert res.stderr.splitlines() == [f"warning: missing: {missing}"]
    # the known address instead of a lookup
    assert txt(records, "example.test.") == ["v=spf1 ip4:198.51.100.7 a:mail2.example.test -all"]

    res = run_dns(mailctl, inv, "--format", "json", cwd=tmp_path)
    data = json.loads(res.stdout)
    assert data["hosts"]["missing"] == [missing]
    for domain in ("example.test", "corp.test"):
        assert data["domains"][domain]["missing"] == [missing]
    assert {"name": "mail1.example.test", "type": "A", "ttl": 3600,
            "value": "198.51.100.7"} in data["hosts"]["records"]


# --------------------------------------------------------------------------- multi-host

def test_multihost_mx_srv_spf(mailctl, tmp_path):
    inv = with_addresses(copy_inventory("multihost", tmp_path))
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""  # every address known
    records = zone_records(res.stdout)
    stores = {"example.test": "store1.example.test", "corp.test": "store2.example.test"}
    for domain, store in stores.items():
        assert rdata(records, f"{domain}.", "MX") == ["10 mx1.example.test.",
                                                      "10 mx2.example.test."]
        for owner, port in SRV_PORTS.items():
            assert rdata(records, f"{owner}.{domain}.", "SRV") == [f"0 1 {port} {store}."]
    # the stores send directly; the mx hosts do not send the domains' mail
    assert txt(records, "example.test.") == ["v=spf1 ip4:192.0.2.31 -all"]
    assert txt(records, "corp.test.") == ["v=spf1 ip6:2001:db8::32 -all"]
    assert rdata(records, "mx1.example.test.", "A") == ["192.0.2.21"]
    assert rdata(records, "mx1.example.test.", "AAAA") == ["2001:db8::21"]
    assert rdata(records, "store2.example.test.", "AAAA") == ["2001:db8::32"]
    tlsa = sorted(r[0] for r in records if r[2] == "TLSA")
    assert tlsa == ["_25._tcp.mx1.example.test.", "_25._tcp.mx2.example.test."]
    policy = json.loads(run_dns(mailctl, inv, "--format", "json", cwd=tmp_path).stdout)[
        "domains"]["example.test"]["mta_sts_policy"]
    assert policy == ("version: STSv1\nmode: testing\nmx: mx1.example.test\n"
                      "mx: mx2.example.test\nmax_age: 604800\n")


def test_domain_option_selects_one_domain_and_its_hosts(mailctl, tmp_path):
    inv = with_addresses(copy_inventory("multihost", tmp_path))
    res = run_dns(mailctl, inv, "--domain", "Corp.Test", cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    names = {r[0] for r in zone_records(res.stdout)}
    assert "corp.test." in names and "example.test." not in names
    assert "store2.example.test." in names and "store1.example.test." not in names
    assert "_25._tcp.mx1.example.test." in names


def test_unknown_domain_is_one_line_exit_2(mailctl, tmp_path):
    inv = copy_inventory("multihost", tmp_path)
    res = run_dns(mailctl, inv, "--domain", "x.test", cwd=tmp_path)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1
    assert res.stderr.rstrip().endswith(
        ": no host serves domain 'x.test' (served: example.test, corp.test)")


# --------------------------------------------------------------------------- keys and certs

def test_dkim_record_holds_the_generated_public_key(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    outputs = [run_dns(mailctl, inv, *fmt, cwd=tmp_path) for fmt in ([], ["--format", "json"])]
    key = inv / STATE / "dkim" / "sandbox.test.mail.key"
    assert key.stat().st_mode & 0o777 == 0o600
    expected = f"v=DKIM1; k=rsa; p={public_key_b64(key)}"
    assert txt(zone_records(outputs[0].stdout), "mail._domainkey.sandbox.test.") == [expected]
    records = json.loads(outputs[1].stdout)["domains"]["sandbox.test"]["records"]
    assert {"name": "mail._domainkey.sandbox.test", "type": "TXT", "ttl": 3600,
            "value": expected} in records  # JSON: one unsplit string
    for res in outputs:
        assert_no_private_material(res.stdout + res.stderr, key)
    # a second run keeps the key
    before = key.read_bytes()
    run_dns(mailctl, inv, cwd=tmp_path)
    assert key.read_bytes() == before


def test_txt_values_split_into_strings_of_at_most_255_bytes(mailctl, tmp_path):
    value = "v=DKIM1; k=rsa; p=" + "A" * 600
    parts = txt_strings(value)
    assert "".join(parts) == value and [len(p) for p in parts] == [255, 255, 108]
    assert txt_strings("short") == ["short"]

    inv = copy_inventory("sandbox", tmp_path)
    zone = run_dns(mailctl, inv, cwd=tmp_path).stdout
    data = json.loads(run_dns(mailctl, inv, "--format", "json", cwd=tmp_path).stdout)
    values = {(r["name"] + "."): r["value"] for r in data["domains"]["sandbox.test"]["records"]
              if r["type"] == "TXT"}
    dkim = rdata(zone_records(zone), "mail._domainkey.sandbox.test.", "TXT")[0]
    assert dkim.startswith("( ") and dkim.endswith(" )")  # one record, several strings
    for name, value in values.items():
        for data_ in rdata(zone_records(zone), name, "TXT"):
            parts = txt_parts(data_)
            assert all(len(p.encode()) <= 255 for p in parts)
            assert "".join(parts) == value
    assert len(values["mail._domainkey.sandbox.test."]) > 255


def test_tlsa_matches_openssl(mailctl, tmp_path):
    inv = copy_inventory("multihost", tmp_path)
    records = zone_records(run_dns(mailctl, inv, cwd=tmp_path).stdout)
    for mx in ("mx1.example.test", "mx2.example.test"):
        cert = inv / STATE / f"{mx}.crt"  # issued by the local CA, as a deploy would
        assert rdata(records, f"_25._tcp.{mx}.", "TLSA") == [f"3 1 1 {tlsa_by_openssl(cert)}"]
    assert not (inv / STATE / "store1.example.test.crt").exists()  # not an MX target


def test_tlsa_of_a_files_mode_certificate(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=mail.sandbox.test", "-keyout", str(certs / "mail.key"), "-out",
            str(certs / "mail.crt"))
    append_vars(inv / "group_vars" / "all" / "main.yml",
                "mail_tls: {mode: files, cert: ../certs/mail.crt, key: ../certs/mail.key}\n")
    records = zone_records(run_dns(mailctl, inv, cwd=tmp_path).stdout)
    assert rdata(records, "_25._tcp.mail.sandbox.test.", "TLSA") == [
        f"3 1 1 {tlsa_by_openssl(certs / 'mail.crt')}"]
    assert not (inv / STATE / "mail.sandbox.test.crt").exists()


def test_dkim_files_mode_and_published_selectors(mailctl, tmp_path):
    inv = copy_inventory("example", tmp_path)
    keys = {(d, s): make_key(inv / "keys" / f"{d}.{s}.pem")
            for d in ("example.test", "corp.test") for s in ("mail", "old")}
    append_vars(inv / "group_vars" / "all" / "main.yml",
                'mail_dkim:\n  mode: files\n  key_file: "keys/{domain}.{selector}.pem"\n'
                "  publish: [old]\n")
    # the inventory as a file: Ansible would read a directory's keys/ as inventory sources
    res = run_dns(mailctl, inv / "hosts.yml", cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    records = zone_records(res.stdout)
    for (domain, selector), key in keys.items():
        assert txt(records, f"{selector}._domainkey.{domain}.") == [
            f"v=DKIM1; k=rsa; p={public_key_b64(key)}"]
        assert_no_private_material(res.stdout + res.stderr, key)
    assert not (inv / STATE / "dkim").exists()  # nothing generated


def test_dkim_files_mode_keys_inside_a_directory_inventory_are_refused(mailctl, tmp_path):
    """Ansible reads every file of an inventory directory as inventory (its warnings quote
    what it read): a private key there is refused before anything runs."""
    inv = copy_inventory("sandbox", tmp_path)
    (tmp_path / "keys").mkdir()
    make_key(tmp_path / "keys" / "sandbox.test.mail.pem")
    append_vars(inv / "group_vars" / "all" / "main.yml",
                'mail_dkim: {mode: files, key_file: "../keys/{domain}.{selector}.pem"}\n')
    assert run_dns(mailctl, inv, cwd=tmp_path).exit_code == 0  # outside the inventory: fine
    inside = copy_inventory("sandbox", tmp_path / "second")
    # (the key is not made: Ansible would warn about it while loading the inventory)
    append_vars(inside / "group_vars" / "all" / "main.yml",
                'mail_dkim: {mode: files, key_file: "dkim/{domain}.{selector}.pem"}\n')
    res = mailctl("validate", "-i", inside, cwd=tmp_path)
    assert res.exit_code == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "mail_dkim.key_file" in lines[0] and "inside the inventory directory" in lines[0]
    assert "mailctl-sandbox" in lines[0] and "main.yml" in lines[0]


def test_published_selectors_in_generate_mode(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    append_vars(inv / "group_vars" / "all" / "main.yml",
                "mail_dkim: {selector: s2, publish: [s1]}\n")
    records = zone_records(run_dns(mailctl, inv, cwd=tmp_path).stdout)
    dkim = [r[0] for r in records if "._domainkey." in r[0]]
    assert dkim == ["s2._domainkey.sandbox.test.", "s1._domainkey.sandbox.test."]
    for selector in ("s1", "s2"):
        key = inv / STATE / "dkim" / f"sandbox.test.{selector}.key"
        assert txt(records, f"{selector}._domainkey.sandbox.test.") == [
            f"v=DKIM1; k=rsa; p={public_key_b64(key)}"]


def test_dkim_off_omits_the_record_with_a_comment(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    append_vars(inv / "group_vars" / "all" / "main.yml", "mail_dkim: {mode: 'off'}\n")
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert "._domainkey." not in res.stdout
    assert "; no DKIM record" in res.stdout
    assert not (inv / STATE / "dkim").exists()


def test_ca_dir_option_holds_the_state(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    state = tmp_path / "state"
    res = run_dns(mailctl, inv, "--ca-dir", state, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert (state / "dkim" / "sandbox.test.mail.key").is_file()
    assert (state / "mail.sandbox.test.crt").is_file()
    assert not (inv / STATE).exists()


# --------------------------------------------------------------------------- policies

def test_dmarc_mta_sts_and_tls_rpt_settings(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    settings = inv / "group_vars" / "all" / "dns.yml"
    # made before the first run: Ansible caches, per process, which files a vars dir holds
    settings.write_text("---\n", encoding="utf-8")
    testing = json.loads(run_dns(mailctl, inv, "--format", "json", cwd=tmp_path).stdout)
    settings.write_text("mail_dmarc: {policy: reject, report_to: reports@elsewhere.test}\n"
                        "mail_dns: {ttl: 300, mta_sts: enforce}\n", encoding="utf-8")
    res = run_dns(mailctl, inv, "--format", "json", cwd=tmp_path)
    enforce = json.loads(res.stdout)["domains"]["sandbox.test"]
    values = {(r["name"], r["type"]): r for r in enforce["records"]}
    assert values[("_dmarc.sandbox.test", "TXT")]["value"] == (
        "v=DMARC1; p=reject; rua=mailto:reports@elsewhere.test")
    assert values[("_smtp._tls.sandbox.test", "TXT")]["value"] == (
        "v=TLSRPTv1; rua=mailto:reports@elsewhere.test")
    assert {r["ttl"] for r in enforce["records"]} == {300}
    assert "mode: enforce\n" in enforce["mta_sts_policy"]
    # a new policy, a new id
    old = next(r for r in testing["domains"]["sandbox.test"]["records"]
               if r["name"] == "_mta-sts.sandbox.test")
    assert values[("_mta-sts.sandbox.test", "TXT")]["value"] != old["value"]
    assert any("elsewhere.test" in note and "_report._dmarc" in note
               for note in enforce["notes"])
    # enforce with the local CA's certificate: senders would refuse, so say so
    assert "MTA-STS mode enforce" in res.stderr

    settings.write_text("mail_dns: {mta_sts: none}\n", encoding="utf-8")
    data = json.loads(run_dns(mailctl, inv, "--format", "json", cwd=tmp_path).stdout)
    entry = data["domains"]["sandbox.test"]
    assert entry["mta_sts_policy"] is None
    assert not [r for r in entry["records"] if r["name"].startswith("_mta-sts.")]
    assert [r for r in entry["records"] if r["name"].startswith("_smtp._tls.")]


def test_a_service_no_host_offers_is_published_as_not_available():
    host = Inventory(INVENTORIES / "sandbox").mail_hosts()[0]
    offered = {"_submissions._tcp", "_imaps._tcp"}
    records = srv_records("sandbox.test", [host], lambda h: frozenset(offered))
    assert [r.name.split(".sandbox.test")[0] for r in records] == [
        s.owner for s in SRV_SERVICES]
    for record in records:
        owner = record.name.removesuffix(".sandbox.test")
        expected = (f"0 1 {SRV_PORTS[owner]} mail.sandbox.test." if owner in offered
                    else "0 0 0 .")
        assert (record.type, record.value) == ("SRV", expected)


# --------------------------------------------------------------------------- a real checker

ZONE_HEAD = """$ORIGIN test.
$TTL 3600
@\tIN\tSOA\tns.test. hostmaster.test. 1 3600 600 86400 300
@\tIN\tNS\tns.test.
ns\tIN\tA\t192.0.2.53
"""


@pytest.mark.parametrize("name", ["multihost", "example"])
def test_named_checkzone_accepts_the_output(mailctl, tmp_path, name):
    checker = shutil.which("named-checkzone") or "/usr/bin/named-checkzone"
    assert Path(checker).is_file(), "named-checkzone (bind9-utils) is required for this test"
    inv = copy_inventory(name, tmp_path)
    if name == "multihost":
        with_addresses(inv)
    else:  # MX and SRV targets in the zone need addresses
        for i, host in enumerate(("mail1", "mail2")):
            append_vars(inv / "host_vars" / f"{host}.example.test.yml",
                        f'mail_public_ipv4: 192.0.2.{10 + i}\nmail_public_ipv6: "2001:db8::{i}"\n')
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    zone = tmp_path / "test.zone"
    zone.write_text(ZONE_HEAD + res.stdout, encoding="utf-8")
    proc = subprocess.run([checker, "test.", str(zone)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "OK", proc.stdout


def test_a_relayhost_is_named_next_to_the_spf_record(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    append_vars(inv / "group_vars" / "all" / "main.yml",
                'mail_relayhost: "[smarthost.example.net]:587"\n')
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert "; mailctl-sandbox sends through mail_relayhost [smarthost.example.net]:587" \
        in res.stdout
    assert "SPF: mailctl-sandbox sends through [smarthost.example.net]:587" in res.stderr


def test_limit_selects_the_domains_of_the_hosts(mailctl, tmp_path):
    inv = with_addresses(copy_inventory("multihost", tmp_path))
    res = run_dns(mailctl, inv, "--limit", "store2.example.test", cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert [line for line in res.stdout.splitlines() if line.startswith("; ---")] == [
        "; --- corp.test", "; --- hosts"]
    # an mx relays every mailstore domain
    res = run_dns(mailctl, inv, "--limit", "mx1.example.test", cwd=tmp_path)
    assert "; --- example.test" in res.stdout and "; --- corp.test" in res.stdout


def test_acme_host_records_follow_the_key(mailctl, tmp_path):
    """Mode acme: the TLSA record hashes the key made on the controller (the certificate
    comes later, from the CA, for the same key), the extra names get the host's addresses,
    and a switch from the local CA keeps the key and so the record."""
    inv = copy_inventory("sandbox", tmp_path)
    host, ca = "mail.sandbox.test", inv / ".mailctl-ca"
    append_vars(inv / "group_vars" / "all" / "main.yml", "mail_public_ipv4: 192.0.2.25\n")
    before = rdata(zone_records(run_dns(mailctl, inv, cwd=tmp_path).stdout),
                   f"_25._tcp.{host}.", "TLSA")
    append_vars(inv / "group_vars" / "all" / "main.yml",
                "mail_tls: {mode: acme, directory: letsencrypt, contact: hostmaster@sandbox.test,"
                " names: [imap.sandbox.test]}\n")
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    records = zone_records(res.stdout)
    spki = openssl("pkey", "-in", str(ca / f"{host}.key"), "-pubout", "-outform", "DER")
    assert rdata(records, f"_25._tcp.{host}.", "TLSA") == before == [
        f"3 1 1 {hashlib.sha256(spki).hexdigest()}"]
    assert rdata(records, "imap.sandbox.test.", "A") == ["192.0.2.25"]
    assert rdata(records, f"{host}.", "A") == ["192.0.2.25"]


def test_acme_key_is_made_when_missing(mailctl, tmp_path):
    inv = copy_inventory("sandbox", tmp_path)
    append_vars(inv / "group_vars" / "all" / "main.yml", "mail_tls: {mode: acme, directory: "
                "letsencrypt, contact: hostmaster@sandbox.test}\n")
    res = run_dns(mailctl, inv, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    ca = inv / ".mailctl-ca"
    assert (ca / "mail.sandbox.test.key").is_file()
    assert not (ca / "mail.sandbox.test.crt").exists()  # no local-CA certificate in mode acme
