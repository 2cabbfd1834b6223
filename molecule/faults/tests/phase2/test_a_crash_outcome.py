"""Fault 2, part 2 (after SIGKILL of Postfix under load and a container restart): every
message that got a 250 is in its mailbox exactly once; messages without a 250 may or may
not have arrived (counted as stray)."""

from __future__ import annotations

from conftest import CRASH_LOG, report

DELIVERY_TIMEOUT = 120


def test_every_acknowledged_message_arrives_once(host, fault):
    uptime = host.run("ps -o etimes= -p 1").stdout.strip()  # since init (re)started
    delivered = fault("deliver", expected_from=[CRASH_LOG], timeout=DELIVERY_TIMEOUT)
    report("crash under load, after the container restart",
           container_uptime_s=uptime, sent=delivered["sent"],
           acknowledged_250=delivered["acked"], not_acknowledged=delivered["not_acked"],
           delivered=delivered["delivered"], missing=delivered["missing"],
           missing_sample=delivered["missing_sample"], duplicated=delivered["duplicated"],
           duplicated_sample=delivered["duplicated_sample"],
           delivered_without_250=delivered["stray"], wait_seconds=delivered["seconds"])

    assert delivered["error"] is None, delivered["error"]
    assert delivered["missing"] == 0, f"acknowledged messages lost: {delivered}"
    assert delivered["duplicated"] == 0, f"messages delivered twice: {delivered}"
