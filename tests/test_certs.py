"""Certificate expiry and names (mailctl.certs) and `mailctl certs`, on certificates made here
with chosen dates and names; the reader of the installed files is replaced, no host is used."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import BASE_HOST, HOST, patched
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailctl import certs
from mailctl.certs import CertInfo, judge, left_text, parse_pem, threshold

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NAMES = ("mail.example.test", "smtp.example.test")
KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(names=NAMES, *, lifetime: timedelta = 90 * DAY, left: timedelta = 60 * DAY,
              issuer: tuple[str, str] = ("Test CA", "mailctl tests"), key=KEY,
              cn: str = "mail.example.test", at: datetime = NOW) -> bytes:
    """A PEM certificate valid for `lifetime` with `left` of it remaining at `at`."""
    not_after = (at + left).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0]),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer[1])])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(0x1A2B3C)
               .not_valid_before(not_after - lifetime).not_valid_after(not_after))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def info(**kwargs) -> CertInfo:
    return parse_pem(make_cert(**kwargs))


# --------------------------------------------------------------------------- parsing

def test_parse_reads_names_issuer_dates_and_key():
    i = info()
    assert i.names == NAMES
    assert i.issuer == "CN=Test CA, O=mailctl tests"
    assert i.subject == "CN=mail.example.test"
    assert i.not_after == NOW + 60 * DAY and i.not_after.tzinfo is not None
    assert i.not_before == NOW - 30 * DAY
    assert i.lifetime == 90 * DAY
    assert i.serial == "1a2b3c"
    public_pem = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    assert certs.public_key_sha256(public_pem) == i.spki_sha256
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert certs.public_key_sha256(other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ) != i.spki_sha256


def test_chain_parsing_takes_the_leaf():
    leaf = make_cert(("leaf.example.test",), issuer=("Intermediate", "mailctl tests"),
                     cn="leaf.example.test")
    ca = make_cert((), issuer=("Root", "mailctl tests"), cn="Intermediate", left=3000 * DAY,
                   lifetime=3650 * DAY)
    i = parse_pem(leaf + ca)
    assert i.names == ("leaf.example.test",) and i.issuer == "CN=Intermediate, O=mailctl tests"
    assert parse_pem((leaf + ca).decode()) == i  # text works as well as bytes


def test_no_subject_alt_name_means_no_names():
    assert info(names=()).names == ()
    problems = judge(info(names=()), ("mail.example.test",), 14, NOW)
    assert problems == ["does not cover mail.example.test"]  # the CN does not count


@pytest.mark.parametrize("data", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nxx\n"
                                  b"-----END CERTIFICATE-----\n"])
def test_garbage_is_a_cert_error(data):
    with pytest.raises(certs.CertError):
        parse_pem(data)
    with pytest.raises(certs.CertError):
        certs.public_key_sha256(data)


# --------------------------------------------------------------------------- the rules

def test_ok():
    assert judge(info(), NAMES, 14, NOW) == []


def test_expired():
    problems = judge(info(left=-2 * DAY), NAMES, 14, NOW)
    assert problems == ["expired 2026-05-30 12:00:00 UTC (2.0 d ago)"]
    assert judge(info(left=timedelta(0)), NAMES, 14, NOW)[0].startswith("expired")


def test_not_yet_valid():
    i = info(left=100 * DAY)  # 90-day certificate starting in 10 days
    assert judge(i, NAMES, 14, NOW) == ["not valid before 2026-06-11 12:00:00 UTC"]


def test_ninety_day_cert_below_fourteen_days_fails():
    assert judge(info(left=15 * DAY), NAMES, 14, NOW) == []
    assert judge(info(left=10 * DAY), NAMES, 14, NOW) == ["10.0 d left, below 14 d"]
    assert judge(info(left=10 * DAY), NAMES, 7, NOW) == []  # mail_tls.min_days_left: 7


def test_six_day_cert_uses_a_sixth_of_its_lifetime():
    i = info(lifetime=6 * DAY, left=2 * DAY)  # renewed at two thirds: 2 days left is normal
    assert threshold(i, 14) == DAY
    assert judge(i, NAMES, 14, NOW) == []
    late = info(lifetime=6 * DAY, left=DAY / 2)
    assert judge(late, NAMES, 14, NOW) == [
        "12.0 h left, below 1.0 d, a sixth of its 6.0 d lifetime"]


def test_ninety_second_cert():
    i = info(lifetime=timedelta(seconds=90), left=timedelta(seconds=30))  # just renewed
    assert threshold(i, 14) == timedelta(seconds=15)
    assert judge(i, NAMES, 14, NOW) == []
    late = info(lifetime=timedelta(seconds=90), left=timedelta(seconds=10))
    assert judge(late, NAMES, 14, NOW) == [
        "10 s left, below 15 s, a sixth of its 1 min lifetime"]


def test_missing_name():
    problems = judge(info(names=("mail.example.test",)), NAMES, 14, NOW)
    assert problems == ["does not cover smtp.example.test"]


def test_several_problems_are_all_reported():
    problems = judge(info(names=("other.test",), left=-DAY), NAMES, 14, NOW)
    assert len(problems) == 2
    assert problems[1] == "does not cover mail.example.test, smtp.example.test"


@pytest.mark.parametrize(("pattern", "name", "covered"), [
    ("*.example.test", "mail.example.test", True),
    ("*.example.test", "MAIL.Example.Test.", True),
    ("*.example.test", "example.test", False),  # not the apex
    ("*.example.test", "a.mail.example.test", False),  # one label only
    ("*.example.test", "mail.example.org", False),
    ("mail.example.test", "mail.example.test", True),
    ("mail.example.test", "smtp.example.test", False),
    ("*.example.test", "*.example.test", True),  # a wildcard name asked for as such
])
def test_wildcard(pattern, name, covered):
    assert certs.covers(pattern, name) is covered


def test_wildcard_cert_covers_the_host():
    assert judge(info(names=("*.example.test",)), NAMES, 14, NOW) == []


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=60), "60.0 d"),
    (timedelta(days=13, hours=23), "13.9 d"),  # rounded down, never up to the threshold
    (DAY, "1.0 d"),
    (timedelta(hours=2, minutes=30), "2.5 h"),
    (timedelta(minutes=40, seconds=59), "40 min"),
    (timedelta(seconds=35), "35 s"),
    (timedelta(seconds=0), "0 s"),
    (-timedelta(hours=3), "-3.0 h"),
])
def test_left_text(delta, text):
    assert left_text(delta) == text


# --------------------------------------------------------------------------- the listing

def fake_read(data: dict[str, bytes | str]):
    asked: list[dict[str, str]] = []

    def read(paths: dict[str, str]) -> dict[str, bytes | str]:
        asked.append(paths)
        return {h: data[h] for h in paths if h in data}

    read.asked = asked
    return read


WANTED = {h: certs.Expect(f"/etc/mailctl/tls/{h}.crt", (h,), 14)
          for h in ("a.example.test", "b.example.test", "c.example.test", "d.example.test")}


def test_check_hosts_rows():
    read = fake_read({"a.example.test": make_cert(("a.example.test",)),
                      "b.example.test": "unreachable: ssh: connect to host b port 22: timed out",
                      "c.example.test": b"garbage"})
    rows = certs.check_hosts(WANTED, read, NOW)
    assert read.asked == [{h: e.path for h, e in WANTED.items()}]  # one read for all hosts
    assert [r.ok for r in rows] == [True, False, False, False]
    assert rows[0].left == 60 * DAY
    assert rows[1].problems == ("cannot read /etc/mailctl/tls/b.example.test.crt: "
                                "unreachable: ssh: connect to host b port 22: timed out",)
    assert rows[2].problems[0].startswith("/etc/mailctl/tls/c.example.test.crt: not a PEM")
    assert rows[3].problems == ("cannot read /etc/mailctl/tls/d.example.test.crt: "
                                "no answer from Ansible",)


def test_table_is_aligned():
    read = fake_read({"a.example.test": make_cert(("a.example.test",)),
                      "b.example.test": make_cert(("x.test",), left=2 * DAY)})
    rows = certs.check_hosts(dict(list(WANTED.items())[:2]), read, NOW)
    lines = certs.table(rows).splitlines()
    assert lines[0].split() == ["HOST", "NAMES", "ISSUER", "NOT", "AFTER", "(UTC)", "LEFT",
                                "STATUS"]
    assert lines[1] == ("a.example.test  a.example.test  CN=Test CA, O=mailctl tests  "
                        "2026-07-31 12:00  60.0 d  ok")
    assert lines[2].startswith("b.example.test  x.test          CN=Test CA, O=mailctl tests  "
                               "2026-06-03 12:00  2.0 d   FAIL: 2.0 d left, below 14 d; "
                               "does not cover b.example.test")
    status = lines[0].index("STATUS")
    assert lines[1].index("ok") == status and lines[2].index("FAIL") == status


# --------------------------------------------------------------------------- mailctl certs

@pytest.fixture
def cert_inventory(make_inventory):
    return make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_tls": {"mode": "selfsigned", "min_days_left": 30}})})


def run_certs(mailctl, monkeypatch, tmp_path, inventory, data, *args):
    from mailctl import runner

    asked = []

    def read_files(inv, paths, *, vault_password_file=None, verbose=False):
        asked.append((inv, dict(paths)))
        return {h: data for h in paths}

    monkeypatch.setattr(runner, "read_files", read_files)
    return mailctl("certs", "-i", inventory, *args, cwd=tmp_path), asked


def test_cli_ok(mailctl, monkeypatch, tmp_path, cert_inventory):
    res, asked = run_certs(mailctl, monkeypatch, tmp_path, cert_inventory,
                           make_cert((HOST,), at=datetime.now(UTC)))
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    assert asked == [(cert_inventory, {HOST: f"/etc/mailctl/tls/{HOST}.crt"})]
    out = res.stdout.splitlines()
    assert len(out) == 2 and out[1].startswith(HOST) and out[1].endswith("  ok")


def test_cli_fails_below_the_inventory_threshold(mailctl, monkeypatch, tmp_path,
                                                 cert_inventory):
    # a one-year certificate with 20 days left: fine by the default 14, not by this
    # inventory's min_days_left: 30 (a sixth of a 90-day certificate would be 15 days)
    pem = make_cert((HOST,), lifetime=365 * DAY, left=20 * DAY + timedelta(hours=1),
                    at=datetime.now(UTC))
    res, _ = run_certs(mailctl, monkeypatch, tmp_path, cert_inventory, pem)
    res.assert_clean()
    assert res.exit_code == 1
    assert "FAIL: 20.0 d left, below 30 d" in res.stdout
    assert res.stderr == f"error: certificate check failed on 1 host(s): {HOST}\n"


def test_cli_unreachable_host_is_a_failing_row(mailctl, monkeypatch, tmp_path,
                                               cert_inventory):
    res, _ = run_certs(mailctl, monkeypatch, tmp_path, cert_inventory,
                       "unreachable: Failed to connect to the host via ssh", "--json")
    res.assert_clean()
    assert res.exit_code == 1
    [row] = json.loads(res.stdout)
    assert row["host"] == HOST and row["ok"] is False and row["names"] is None
    assert row["problems"] == [f"cannot read /etc/mailctl/tls/{HOST}.crt: unreachable: "
                               "Failed to connect to the host via ssh"]


def test_cli_json(mailctl, monkeypatch, tmp_path, cert_inventory):
    res, _ = run_certs(mailctl, monkeypatch, tmp_path, cert_inventory,
                       make_cert((HOST,), at=datetime.now(UTC)),
                       "--json")
    assert res.exit_code == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["ok"] is True and row["problems"] == [] and row["names"] == [HOST]
    assert row["issuer"] == "CN=Test CA, O=mailctl tests"
    assert datetime.fromisoformat(row["not_after"]) - datetime.now(UTC) > 59 * DAY
    assert 59 * 86400 < row["seconds_left"] <= 60 * 86400


def test_cli_bad_inventory_reads_nothing(mailctl, monkeypatch, tmp_path, make_inventory):
    inventory = make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_tls": {"mode": "selfsigned", "min_days_left": -1}})})
    res, asked = run_certs(mailctl, monkeypatch, tmp_path, inventory, b"")
    res.assert_clean()
    assert res.exit_code == 2 and asked == []
    assert "min_days_left" in res.stderr


# --------------------------------------------------------------------------- the reader

def test_read_files_turns_events_into_bytes_or_reasons(monkeypatch, tmp_path):
    """read_files with ansible_runner.run replaced: what it asks Ansible for, and how the
    event stream becomes {host: bytes | reason}."""
    import base64
    import io
    from types import SimpleNamespace

    import ansible_runner

    from mailctl.runner import read_files

    calls = []

    def run(**kwargs):
        calls.append(kwargs)
        handler = kwargs["event_handler"]
        handler({"event": "runner_on_ok", "event_data": {
            "host": "a", "res": {"content": base64.b64encode(b"PEM").decode()}}})
        handler({"event": "runner_on_failed", "event_data": {
            "host": "b", "task": "ansible.builtin.slurp",
            "res": {"msg": "file not found: /x"}}})
        handler({"event": "runner_on_unreachable", "event_data": {
            "host": "c", "res": {"msg": "ssh: timed out"}}})
        return SimpleNamespace(status="failed", stdout=io.StringIO("PLAY RECAP\n"))

    monkeypatch.setattr(ansible_runner, "run", run)
    got = read_files(tmp_path, {"a": "/p/a.crt", "b": "/x", "c": "/p/c.crt", "d": "/p/d.crt"},
                     vault_password_file="vault.pw")
    assert got == {"a": b"PEM", "b": "file not found: /x", "c": "unreachable: ssh: timed out",
                   "d": "no answer from Ansible (PLAY RECAP)"}
    [kw] = calls
    assert kw["module"] == "ansible.builtin.slurp"
    assert kw["host_pattern"] == "a,b,c,d"
    assert kw["extravars"] == {"mailctl_read_files": {"a": "/p/a.crt", "b": "/x",
                                                      "c": "/p/c.crt", "d": "/p/d.crt"}}
    assert kw["module_args"] == "src={{ mailctl_read_files[inventory_hostname] }}"
    assert kw["cmdline"].startswith("--become --vault-password-file ")
    assert read_files(tmp_path, {}) == {}
