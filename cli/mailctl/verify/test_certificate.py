"""The installed certificate, read from the file the services use (every TLS mode): it
carries every name of the host (its mail name, then mail_tls.names), it is valid now with
more time left than the threshold of `mailctl certs` (mail_tls.min_days_left, or a sixth of
its lifetime for short-lived certificates), and it belongs to the installed key.

The handshake checks (test_mailhost) prove what a client sees on each port; these say why a
certificate will stop working before a client notices: an ACME renewal that stopped, a
replaced key whose certificate was not reissued. Key material is never read into the test:
the host prints the key's public half, and only fingerprints are compared."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from mailctl import certs
from mailctl.render import tls_paths


@pytest.fixture(scope="module")
def cert(host, mail) -> certs.CertInfo:
    path = tls_paths(mail)["cert"]
    installed = host.file(path)
    if not installed.exists:
        pytest.fail(f"{mail.name}: no certificate at {path}")
    try:
        return certs.parse_pem(installed.content)
    except certs.CertError as exc:
        pytest.fail(f"{mail.name}: {path}: {exc}")


def test_certificate_names_and_time_left(mail, cert, capsys):
    expected = certs.expect(mail)
    now = datetime.now(UTC)
    with capsys.disabled():  # the report line shows in `mailctl verify`, passing or not
        print(f"\n{mail.name}: certificate {','.join(cert.names) or '(no DNS names)'}, "
              f"issuer {cert.issuer}, {certs.left_text(cert.not_after - now)} left "
              f"(until {certs.stamp(cert.not_after)})")
    problems = certs.judge(cert, expected.names, expected.min_days, now)
    assert not problems, f"{mail.name}: {expected.path}: " + "; ".join(problems)


def test_certificate_belongs_to_the_key(host, mail, cert):
    paths = tls_paths(mail)
    result = host.run(f"openssl pkey -in {shlex.quote(paths['key'])} -pubout")
    assert result.rc == 0, (f"{mail.name}: openssl pkey -pubout on {paths['key']} failed: "
                            f"{result.stderr.strip()[:300]}")
    key_spki = certs.public_key_sha256(result.stdout)
    same = key_spki == cert.spki_sha256  # a bool: pytest shows no more than the message
    assert same, (
        f"{mail.name}: {paths['cert']} (public key SHA-256 {cert.spki_sha256[:16]}...) was not "
        f"issued for {paths['key']} (public key SHA-256 {key_spki[:16]}...)")
