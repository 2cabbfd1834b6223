"""roles/mail_common/files/mailctl-ca.sh: the controller's local CA issues, keeps and renews
host certificates (past two-thirds of their life, wrong SAN, other CA, other key) while keeping
the host key, whose hash `mailctl dns` publishes as a TLSA record."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SCRIPT = Path(__file__).resolve().parents[1] / "roles" / "mail_common" / "files" / "mailctl-ca.sh"
NAME = "mail.x.test"

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("flock")), reason="needs openssl and flock"
)


def run(*args: str | Path) -> str:
    """Run the script; return its single stdout line."""
    proc = subprocess.run(
        ["sh", str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=True
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return lines[0]


def issue(ca_dir: Path, name: str = NAME) -> str:
    return run(ca_dir, name, "90")


def cert(ca_dir: Path, name: str = NAME) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca_dir / f"{name}.crt").read_bytes())


def spki(obj: x509.Certificate | Path) -> bytes:
    """DER SubjectPublicKeyInfo (what TLSA "3 1 1" hashes) of a certificate or PEM key file."""
    if isinstance(obj, Path):
        key = serialization.load_pem_private_key(obj.read_bytes(), None).public_key()
    else:
        key = obj.public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verifies(ca_dir: Path, name: str = NAME) -> bool:
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", ca_dir / "ca.crt", ca_dir / f"{name}.crt"],
        capture_output=True,
    )
    return proc.returncode == 0


def sans(c: x509.Certificate) -> list[str]:
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def forge(
    ca_dir: Path,
    *,
    not_before_days: int,
    not_after_days: int,
    san: str = NAME,
    signer: tuple[rsa.RSAPrivateKey, x509.Name] | None = None,
) -> x509.Certificate:
    """Replace NAME.crt with one for NAME.key's public key, signed by the local CA (or signer),
    valid from now + not_before_days to now + not_after_days."""
    if signer is None:
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        signer = (ca_key, cert(ca_dir, "ca").subject)
    key_pem = (ca_dir / f"{NAME}.key").read_bytes()
    public_key = serialization.load_pem_private_key(key_pem, None).public_key()
    now = dt.datetime.now(dt.UTC)
    c = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(signer[1])
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=not_before_days))
        .not_valid_after(now + dt.timedelta(days=not_after_days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .sign(signer[0], hashes.SHA256())
    )
    (ca_dir / f"{NAME}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return c


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    assert issue(d) == f"issued {NAME} (new)"
    return d


def test_first_run_issues_a_verifiable_certificate_for_the_name(ca_dir: Path) -> None:
    assert verifies(ca_dir)
    c = cert(ca_dir)
    assert sans(c) == [NAME]
    assert spki(c) == spki(ca_dir / f"{NAME}.key")
    modes = {p.name: p.stat().st_mode & 0o777 for p in ca_dir.iterdir()}
    assert modes["ca.key"] == modes[f"{NAME}.key"] == 0o600
    assert modes["ca.crt"] == modes[f"{NAME}.crt"] == 0o644
    assert f"{NAME}.crt.new" not in modes and f"{NAME}.csr" not in modes


def test_second_run_leaves_everything_alone(ca_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}
    assert issue(ca_dir) == f"unchanged {NAME}"
    assert {p.name: p.read_bytes() for p in ca_dir.iterdir()} == before


def test_past_two_thirds_of_its_life_is_renewed_with_the_same_key(ca_dir: Path) -> None:
    old = forge(ca_dir, not_before_days=-70, not_after_days=20)
    assert verifies(ca_dir)  # still valid: only its age calls for renewal
    assert issue(ca_dir) == f"issued {NAME} (renewed: past two-thirds of its lifetime)"
    new = cert(ca_dir)
    assert verifies(ca_dir)
    assert spki(new) == spki(old) == spki(ca_dir / f"{NAME}.key")
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc > old.not_valid_after_utc
    assert issue(ca_dir) == f"unchanged {NAME}"


def test_expired_is_renewed(ca_dir: Path) -> None:
    forge(ca_dir, not_before_days=-100, not_after_days=-10)
    assert issue(ca_dir).startswith(f"issued {NAME} (renewed: past two-thirds")
    assert verifies(ca_dir)


def test_before_two_thirds_of_its_life_is_kept(ca_dir: Path) -> None:
    forge(ca_dir, not_before_days=-10, not_after_days=80)
    before = (ca_dir / f"{NAME}.crt").read_bytes()
    assert issue(ca_dir) == f"unchanged {NAME}"
    assert (ca_dir / f"{NAME}.crt").read_bytes() == before


def test_wrong_subject_alt_name_is_reissued(ca_dir: Path) -> None:
    forge(ca_dir, not_before_days=-1, not_after_days=89, san="other.x.test")
    assert issue(ca_dir) == f"issued {NAME} (renewed: subjectAltName is not DNS:{NAME})"
    assert sans(cert(ca_dir)) == [NAME]
    assert verifies(ca_dir)


def test_signed_by_another_ca_is_reissued(ca_dir: Path) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    forge(ca_dir, not_before_days=-1, not_after_days=89, signer=(other_key, other_name))
    assert not verifies(ca_dir)
    assert issue(ca_dir) == f"issued {NAME} (renewed: not signed by the current CA)"
    assert verifies(ca_dir)
    assert spki(cert(ca_dir)) == spki(ca_dir / f"{NAME}.key")


def test_missing_key_is_generated_and_the_certificate_reissued(ca_dir: Path) -> None:
    old = cert(ca_dir)
    (ca_dir / f"{NAME}.key").unlink()
    assert issue(ca_dir) == f"issued {NAME} (renewed: does not match {NAME}.key)"
    key = ca_dir / f"{NAME}.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert spki(cert(ca_dir)) == spki(key) != spki(old)
    assert verifies(ca_dir)
    assert issue(ca_dir) == f"unchanged {NAME}"


def test_key_only_makes_just_the_key_and_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    assert run("--key-only", d, NAME) == f"issued key {NAME}"
    key = d / f"{NAME}.key"
    before = key.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in d.iterdir()) == [".lock", f"{NAME}.key"]
    spki(key)  # a loadable private key
    assert run("--key-only", d, NAME) == f"unchanged key {NAME}"
    assert key.read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == [".lock", f"{NAME}.key"]


def test_key_only_keeps_the_key_of_an_issued_certificate(ca_dir: Path) -> None:
    before = (ca_dir / f"{NAME}.key").read_bytes()
    assert run("--key-only", ca_dir, NAME) == f"unchanged key {NAME}"
    assert (ca_dir / f"{NAME}.key").read_bytes() == before
