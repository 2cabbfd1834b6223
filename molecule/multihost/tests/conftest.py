"""Fixtures for the multihost scenario: the mail hosts (reached by testinfra through the
molecule inventory, so over SSH), the "internet" sender container, and IMAP reads from this
machine with the users and the CA of the inventory."""

from __future__ import annotations

import imaplib
import json
import os
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from mailctl.inventory import Inventory

SENDER = "mailctl-molecule-multihost-outside"  # molecule/shared/mailauth
PREFIX = "mailctl-molecule-multihost-"
CLIENT = Path(__file__).with_name("smtpclient.py")
REMOTE_CLIENT = "/tmp/mailctl-smtpclient.py"


def inventory_file() -> str:
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not path:
        pytest.fail("run through molecule (MOLECULE_INVENTORY_FILE is not set)")
    return path


@dataclass(frozen=True)
class Store:
    name: str
    hostname: str
    address: str  # IP on the scenario network
    backend: str
    domain: str
    users: dict[str, str]  # address -> password


@pytest.fixture(scope="session")
def inv() -> Inventory:
    return Inventory(Path(inventory_file()).parent)


@pytest.fixture(scope="session")
def node():
    """node('mx1') -> testinfra host for mailctl-molecule-multihost-mx1, over Ansible (SSH)."""
    cache: dict[str, object] = {}

    def get(short: str):
        if short not in cache:
            # force_ansible: commands go through Ansible itself (which templates the
            # connection variables) rather than testinfra's own ssh command line
            cache[short] = testinfra.get_host(f"ansible://{PREFIX}{short}?force_ansible=True",
                                              ansible_inventory=inventory_file())
        return cache[short]
    return get


@pytest.fixture(scope="session")
def stores(inv, node) -> dict[str, Store]:
    out = {}
    for short in ("store1", "store2"):
        host = inv.mail_hosts(PREFIX + short)[0]
        address = node(short).ansible.get_variables()["ansible_host"]
        out[short] = Store(PREFIX + short, host.hostname, address, host.backend,
                           host.domains[0], {u.address: u.password for u in host.users})
    return out


class _IMAPS(imaplib.IMAP4_SSL):
    """IMAPS to an address while verifying the certificate for a name (no DNS here)."""

    def __init__(self, address: str, servername: str, ctx: ssl.SSLContext):
        self._address = address
        super().__init__(servername, 993, ssl_context=ctx, timeout=20)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self._address, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


@pytest.fixture(scope="session")
def ca_file() -> str:
    """The deployment's CA (made by the converge on this machine, next to the inventory)."""
    path = Path(inventory_file()).parent / ".mailctl-ca" / "ca.crt"
    assert path.is_file(), f"no CA at {path}"
    return str(path)


@pytest.fixture(scope="session")
def sender():
    """smtp(server, **request) runs smtpclient.py in the sender container; returns its JSON."""
    box = testinfra.get_host(f"docker://{SENDER}")
    box.run(f"cat > {REMOTE_CLIENT} <<'MAILCTL_EOF'\n{CLIENT.read_text()}\nMAILCTL_EOF")

    def smtp(**request: object) -> dict:
        payload = json.dumps(request)
        result = box.run(f"python3 {REMOTE_CLIENT} <<'MAILCTL_EOF'\n{payload}\nMAILCTL_EOF")
        assert result.rc == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])
    return smtp


@pytest.fixture
def msgid():
    def make(tag: str) -> str:
        return f"<{tag}-{uuid.uuid4().hex[:12]}@sender.outside.test>"
    return make


@pytest.fixture(scope="session")
def mailbox(ca_file):
    """mailbox(store, user) -> {Message-ID: [raw headers, ...]} of the user's INBOX, read over
    IMAPS (993) from this machine, the server certificate verified against the CA."""
    def read(store: Store, user: str) -> dict[str, list[str]]:
        ctx = ssl.create_default_context(cafile=ca_file)
        with _IMAPS(store.address, store.hostname, ctx) as imap:
            imap.login(user, store.users[user])
            imap.select("INBOX", readonly=True)
            _, data = imap.search(None, "ALL")
            found: dict[str, list[str]] = {}
            for num in data[0].split():
                _, parts = imap.fetch(num, "(BODY.PEEK[HEADER])")
                headers = parts[0][1].decode("utf-8", "replace")
                mid = _header(headers, "Message-ID")
                found.setdefault(mid, []).append(headers)
            return found
    return read


def _header(headers: str, name: str) -> str:
    for line in headers.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@pytest.fixture(scope="session")
def wait_for(mailbox):
    """wait_for(store, user, ids, timeout) -> the mailbox once every id is there (or at the
    timeout: the test then shows what is missing)."""
    def wait(store: Store, user: str, ids: list[str], timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            box = mailbox(store, user)
            if all(i in box for i in ids) or time.monotonic() > deadline:
                return box
            time.sleep(2)
    return wait
