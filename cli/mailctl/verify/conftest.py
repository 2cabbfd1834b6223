"""Fixtures for the verify suite: the host's mail settings come from the same inventory
testinfra connects with (--ansible-inventory), loaded and validated by mailctl itself."""

from __future__ import annotations

import json
import os
import shlex
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from mailctl.inventory import Inventory
from mailctl.names import resolv_conf_nameservers
from mailctl.platforms import profile
from mailctl.render import host_components, tls_paths

CLIENT = Path(__file__).with_name("mailclient.py")
REMOTE_CLIENT = "/tmp/mailctl-verify-client.py"


@pytest.fixture(scope="module")
def mail_inventory(request) -> Inventory:
    source = request.config.option.ansible_inventory or os.environ.get("MAILCTL_INVENTORY")
    if not source:
        pytest.fail("verify needs the inventory: pass --ansible-inventory")
    return Inventory(source, os.environ.get("MAILCTL_VAULT_PASSWORD_FILE") or None)


@pytest.fixture(scope="module")
def mail(host, mail_inventory):
    """The validated MailHost for the host under test, with the facts a deploy adds: the
    resolvers of its /etc/resolv.conf (OpenDKIM's configuration names them), and whether
    systemd runs it (fail2ban and the sending limit need it)."""
    name = host.backend.get_hostname()
    found = mail_inventory.mail_hosts(limit=name, backend=os.environ.get("MAILCTL_BACKEND"))[0]
    resolv_conf = host.file("/etc/resolv.conf")
    return replace(found, resolvers=resolv_conf_nameservers(
        resolv_conf.content_string if resolv_conf.exists else ""),
        systemd=host.file("/run/systemd/system").is_directory)  # how sd_booted() tells


@pytest.fixture(scope="module")
def platform(mail):
    return profile(mail.platform, mail.release)


@pytest.fixture(scope="module")
def components(mail):
    """The host's components from the registry, resolved for its platform."""
    return host_components(mail)


@pytest.fixture(scope="module")
def client(host, mail, platform):
    """Run mailclient.py on the host; returns the JSON it prints."""
    host.run(f"cat > {REMOTE_CLIENT} <<'MAILCTL_EOF'\n{CLIENT.read_text()}\nMAILCTL_EOF")
    ca = tls_paths(mail)["ca"]

    def run(*args: object) -> dict:
        argv = ["python3", REMOTE_CLIENT, ca, mail.hostname, *map(str, args)]
        result = host.run(" ".join(shlex.quote(a) for a in argv))
        assert result.rc == 0, f"mail client failed: {result.stderr.strip()}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="module")
def two_users(mail):
    """Two users whose clear passwords are known (from Vault): a sender and a recipient."""
    users = [u for u in mail.users if u.password]
    if len(users) < 2:
        pytest.fail("verify needs at least two mail_users with a clear password (from Vault)")
    return users[0], users[1]


@pytest.fixture
def subject():
    return f"mailctl-verify-{uuid.uuid4().hex}"
