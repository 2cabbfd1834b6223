"""`mailctl deploy` asks each ACME directory of the selected hosts, from this machine, before
any host is touched: a directory that does not answer as RFC 8555 is one line per host
(file, host, field) and exit 2. The directories here are real HTTPS servers on loopback."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE_HOST, HOST, run_inprocess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailctl.acme import directory_problem

DIRECTORY = {"newNonce": "https://x/nonce", "newAccount": "https://x/acct",
             "newOrder": "https://x/order"}


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "directory.crt", tmp / "directory.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server: /dir is a directory, /html is not JSON, /partial lacks newOrder."""
    cert, key = _certificate(tmp_path_factory.mktemp("acme"))
    answers = {"/dir": json.dumps(DIRECTORY), "/html": "<html></html>",
               "/partial": json.dumps({"newNonce": "x", "newAccount": "y"})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = answers.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write((body or "no").encode())

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()


def test_a_directory_answers(server):
    base, ca = server
    assert directory_problem(f"{base}/dir", ca) is None


@pytest.mark.parametrize("path,expected", [
    ("/missing", "answers HTTP 404"),
    ("/html", "does not answer with JSON"),
    ("/partial", "is not an ACME directory (no newOrder)"),
])
def test_what_is_not_a_directory(server, path, expected):
    base, ca = server
    assert expected in directory_problem(f"{base}{path}", ca)


def test_an_untrusted_directory(server):
    base, _ = server  # without its CA, the system's CAs do not know it
    assert "not reachable from this machine" in directory_problem(f"{base}/dir", None)
    assert "CERTIFICATE_VERIFY_FAILED" in directory_problem(f"{base}/dir", None)


def test_deploy_stops_before_any_host_when_the_directory_does_not_answer(make_inventory):
    inv = make_inventory(host_vars={HOST: {**BASE_HOST, "mail_tls": {
        "mode": "acme", "directory": "https://127.0.0.1:9/dir",
        "contact": "hostmaster@example.test"}}})
    res = run_inprocess("deploy", "-i", inv)
    res.assert_clean()
    assert res.exit_code == 2, res.stdout + res.stderr
    (file, host, field, message), = res.problems
    assert (Path(file).name, host, field) == (f"{HOST}.yml", HOST, "mail_tls.directory")
    assert "https://127.0.0.1:9/dir is not reachable from this machine" in message
    assert "deploying" not in res.stdout  # Ansible never ran
