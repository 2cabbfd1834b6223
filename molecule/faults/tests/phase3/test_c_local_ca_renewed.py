"""[4/8]: the redeploy of molecule/faults/redeploy.yml found the host's local-CA certificate
past two-thirds of its life (aged on the controller before it) and renewed it: the host
serves a new certificate, valid from now for the configured lifetime, for the same key."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509

from mailctl.render import tls_paths


def test_the_redeploy_renewed_the_aged_local_ca_certificate(host, mail):
    aged = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
            / "aged-certificate-serial").read_text().strip()
    pem = host.run(f"cat {tls_paths(mail)['cert']}").stdout.encode()
    cert = x509.load_pem_x509_certificate(pem)
    now = datetime.datetime.now(datetime.UTC)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert format(cert.serial_number, "x") != aged, "the aged certificate is still installed"
    assert now - cert.not_valid_before_utc < datetime.timedelta(hours=1), cert.not_valid_before_utc
    assert lifetime > datetime.timedelta(days=365), lifetime
    key_digest = host.run(f"openssl pkey -in {tls_paths(mail)['key']} -pubout "
                          "| openssl sha256 -r").stdout.split()[0]
    cert_digest = host.run(f"openssl x509 -in {tls_paths(mail)['cert']} -noout -pubkey "
                           "| openssl sha256 -r").stdout.split()[0]
    assert key_digest == cert_digest, "the renewed certificate is for another key"
    served = host.run("openssl s_client -connect 127.0.0.1:993 </dev/null 2>/dev/null "
                      "| openssl x509 -noout -serial").stdout.strip()
    assert served.startswith("serial=") and int(served[7:], 16) == cert.serial_number, \
        f"port 993 serves {served}, not the renewed certificate"
