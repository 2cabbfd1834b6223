"""Fixtures for the fault tests (molecule scenarios faults and faults-cyrus). The host's
settings come from the inventory through mailctl's own verify fixtures; the traffic comes
from faultclient.py, run on the host against 127.0.0.1."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

# Every fixture of mailctl's own verify suite: mail and platform, and whatever fixtures
# those depend on there (named imports broke when mail got a fixture of its own).
from mailctl.render import host_components, tls_paths
from mailctl.verify.conftest import *  # noqa: F403

CLIENT = Path(__file__).with_name("faultclient.py")
REMOTE_CLIENT = "/tmp/mailctl-faultclient.py"
STATE_DIR = "/var/tmp/mailctl-faults"
SENDER_DOMAIN = "faults.mailctl.test"
# Files on the host that carry one phase's traffic to the next verify run.
STOREDOWN_LOG = f"{STATE_DIR}/storedown.json"
CRASH_LOG = f"{STATE_DIR}/crash.json"
REDEPLOY_LOG = f"{STATE_DIR}/redeploy.json"
REDEPLOY_SNAPSHOT = f"{STATE_DIR}/before-redeploy.json"
BADCHANGE_LOG = f"{STATE_DIR}/after-bad-change.json"
# The message size limit that molecule/faults/redeploy.yml deploys (30M), in bytes.
REDEPLOYED_SIZE_LIMIT = 30 * 1024 * 1024


def report(title: str, **figures: object) -> None:
    """Print a test's figures on one line each, so they show in the molecule log."""
    print(f"\n[mailctl-faults] {title}")
    for key, value in figures.items():
        print(f"[mailctl-faults]   {key}: {value}")


@pytest.fixture(scope="module")
def users(mail):
    """Users whose clear passwords are known and who have no inventory filters (a vacation
    reply or a rule would add or move mail): the recipients, read back over IMAPS."""
    known = [u for u in mail.users if u.password and not u.sieve]
    if len(known) < 2:
        pytest.fail("the fault tests need at least two mail_users with a clear password")
    return [{"address": u.address, "password": u.password} for u in known]


@pytest.fixture(scope="module")
def store_service(mail):
    store = [c for c in host_components(mail) if c.store]
    return store[0].service


@pytest.fixture(scope="module")
def fault(host, mail, platform, users):
    """fault(action, **request) runs faultclient.py on the host and returns its JSON; the
    IMAP settings (CA, server name, users) are added to every request."""
    host.run(f"cat > {REMOTE_CLIENT} <<'MAILCTL_EOF'\n{CLIENT.read_text()}\nMAILCTL_EOF")
    base = {"ca": tls_paths(mail)["ca"], "servername": mail.hostname,
            "users": users}

    def run(action: str, **request: object) -> dict:
        payload = json.dumps({**base, **request})
        result = host.run(f"python3 {REMOTE_CLIENT} {action} <<'MAILCTL_EOF'\n{payload}\n"
                          "MAILCTL_EOF")
        assert result.rc == 0, f"faultclient {action} failed: {result.stderr.strip()[-2000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def run_id() -> str:
    return f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def host_time(host) -> int:
    return int(host.run("date +%s").stdout.strip())
