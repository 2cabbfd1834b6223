"""Make the host's local-CA certificate old, as if issued 70 days ago with 20 days left
(past two-thirds of its lifetime), signed by the same CA for the same key, so that the next
deploy must renew it. Prints the aged serial (hex) for phase 3.

  age_certificate.py CA_DIR HOSTNAME"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

ca_dir, name = Path(sys.argv[1]), sys.argv[2]
ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
key = serialization.load_pem_private_key((ca_dir / f"{name}.key").read_bytes(), None)
now = datetime.datetime.now(datetime.UTC)
cert = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=70))
        .not_valid_after(now + datetime.timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256()))
(ca_dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
print(format(cert.serial_number, "x"))
