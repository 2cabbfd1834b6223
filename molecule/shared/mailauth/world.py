"""What the checks of molecule/shared/mailauth share: the outside world harness.py started
for this scenario (its STATE file), the scenario's inventory directory, and clients that
reach a mail host by its address while checking its certificate for its mail name (which
this machine cannot resolve)."""

from __future__ import annotations

import functools
import imaplib
import json
import os
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from mailctl.model import MailHost


@functools.cache
def state() -> dict:
    path = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")) / "mailauth.json"
    if not path.is_file():
        pytest.fail(f"{path}: no outside world (import molecule/shared/mailauth/up.yml)")
    return json.loads(path.read_text())


@functools.cache
def inventory_dir() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent


def ca_file(host: MailHost) -> str:
    """The root the host's certificate chains to: mail_tls.ca (mode acme: the scenario's
    ACME CA), else the local CA."""
    if host.tls.ca_src:
        return str(inventory_dir() / host.tls.ca_src)
    return str(inventory_dir() / ".mailctl-ca" / "ca.crt")


def address(host: MailHost) -> str:
    assert host.dns.ipv4, f"{host.name}: the scenario sets mail_public_ipv4"
    return host.dns.ipv4


def tls_context(host: MailHost) -> ssl.SSLContext:
    """A client that trusts the host's root alone (and checks names), TLS 1.2 or later."""
    ctx = ssl.create_default_context(cafile=ca_file(host))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class IMAPS(imaplib.IMAP4_SSL):
    """IMAPS to the host's address, the certificate verified for its mail name."""

    def __init__(self, host: MailHost, timeout: float = 30):
        self._address = address(host)
        super().__init__(host.hostname, 993, timeout=timeout, ssl_context=tls_context(host))

    def _create_socket(self, timeout):
        sock = socket.create_connection((self._address, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class SMTP(smtplib.SMTP):
    """SMTP to the host's address; STARTTLS checks the certificate for its mail name."""

    def __init__(self, host: MailHost, port: int, **kwargs):
        self._address = address(host)
        super().__init__(host.hostname, port, timeout=30, **kwargs)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection((self._address, port), timeout)


# The outside container (harness.py): a command in it, and outside.py's one-line JSON.
def outside(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", "-i", state()["container"], *argv],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)


def outside_json(*argv: str, stdin: str | None = None) -> dict:
    proc = outside("python3", f"{state()['remote']}/outside.py", *argv, stdin=stdin)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
