"""Fault 4, part 2: after the redeploy with a changed message size limit (molecule/faults/
redeploy.yml), the new setting is live, every queued message is delivered exactly once and
every message that was in a mailbox before is still there."""

from __future__ import annotations

from conftest import REDEPLOY_LOG, REDEPLOY_SNAPSHOT, REDEPLOYED_SIZE_LIMIT, report

DELIVERY_TIMEOUT = 120


def test_redeploy_keeps_mailboxes_and_queued_mail(host, fault, store_service):
    limit = host.run("postconf -h message_size_limit").stdout.strip()
    delivered = fault("deliver", expected_from=[REDEPLOY_LOG], intact_from=REDEPLOY_SNAPSHOT,
                      start_service=store_service, timeout=DELIVERY_TIMEOUT)
    intact = delivered["intact"] or {}
    report("redeploy with a changed setting while mail was queued",
           message_size_limit=limit, sent=delivered["sent"],
           acknowledged_250=delivered["acked"], delivered=delivered["delivered"],
           missing=delivered["missing"], duplicated=delivered["duplicated"],
           mailbox_counts_before=intact.get("before"), mailbox_counts_after=intact.get("after"),
           earlier_messages_lost=intact.get("lost"), wait_seconds=delivered["seconds"])

    assert limit == str(REDEPLOYED_SIZE_LIMIT), f"the changed setting is not live: {limit}"
    assert delivered["error"] is None, delivered["error"]
    assert delivered["missing"] == 0, f"queued messages lost: {delivered}"
    assert delivered["duplicated"] == 0, f"messages delivered twice: {delivered}"
    assert intact and not intact["lost"], f"earlier mailbox contents lost: {intact}"
