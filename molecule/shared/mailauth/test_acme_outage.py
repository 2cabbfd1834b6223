"""When the ACME CA is down ([4/8]): the timer's renewal fails with one clear line, the
old certificate keeps serving, and `mailctl certs` reports the time left, failing once it
is below the threshold. Then the CA comes back (a new Pebble, with a new root and no
memory of the account) and the next renewal succeeds. Run last, in the default scenario
only: it stops the CA the other ACME checks use."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from test_acme import (
    _host,
    acme_journal,
    host_clock,
    installed,
    installed_serial,
    lifetime,
    served_serial,
    wait_for,
)
from world import state

from mailctl.render import tls_paths

HARNESS = Path(__file__).with_name("harness.py")


def pebble(action: str) -> None:
    subprocess.run([sys.executable, str(HARNESS), "pebble", action, "--name",
                    state()["container"]], check=True, capture_output=True, timeout=120)


def certs() -> subprocess.CompletedProcess:
    """`mailctl certs` on the scenario's inventory, as an administrator runs it."""
    return subprocess.run([sys.executable, "-c", "from mailctl.cli import main; main()",
                           "certs", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]))],
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_failed_renewal_keeps_the_certificate_and_certs_reports_it():
    mail = _host()
    since = host_clock()
    pebble("stop")
    try:
        before = installed_serial()
        failures = wait_for(
            "the timer's failed renewal",
            lambda: [line for line in acme_journal(since) if line.startswith("mailctl-acme:")],
            timeout=lifetime() + 30)
        line = failures[0]
        assert mail.hostname in line and mail.tls.directory in line, line
        assert "the installed certificate stays, valid until" in line, line
        assert installed_serial() == before and served_serial(993) == before

        # above a sixth of the lifetime left: reported, and fine
        listed = certs()
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert mail.name in listed.stdout and "ok" in listed.stdout
        # below it: the same listing fails, naming the host
        wait_for("a sixth of the lifetime left", lambda: _seconds_left() < lifetime() / 6,
                 timeout=lifetime())
        listed = certs()
        assert listed.returncode == 1, listed.stdout + listed.stderr
        assert mail.name in listed.stdout and "FAIL" in listed.stdout
    finally:
        pebble("start")
    # The CA is back, with a new root: the host trusts it (as a deploy would install it),
    # and the timer's next run renews, registering a new account.
    subprocess.run(["docker", "cp", state()["acme_root"],
                    f"{mail.name}:{tls_paths(mail)['ca']}"], check=True)
    since = host_clock()
    wait_for("the renewal after the CA came back",
             lambda: any(line.startswith(f"issued {mail.hostname}")
                         for line in acme_journal(since)), timeout=60)
    assert served_serial(993) == installed_serial() != before


def _seconds_left() -> float:
    return (installed().not_after - datetime.now(UTC)).total_seconds()
