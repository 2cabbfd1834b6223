"""Fault 4, part 1 (redeploy with queued mail): snapshot every mailbox, stop the store and
queue K messages. molecule's side_effect redeploy.yml then re-runs the roles with a changed
message size limit (and tries two bad changes); phase 3 checks the outcome."""

from __future__ import annotations

from conftest import REDEPLOY_LOG, REDEPLOY_SNAPSHOT, SENDER_DOMAIN, report

MESSAGES = 100


def test_queue_mail_with_the_store_stopped(host, fault, users, store_service, run_id):
    sender = f"redeploy@{SENDER_DOMAIN}"
    snapshot = fault("mailbox", prefix="", save=REDEPLOY_SNAPSHOT)
    assert host.run(f"systemctl stop {store_service}").rc == 0
    sent = fault("send", prefix=f"redeploy-{run_id}", count=MESSAGES, sessions=2,
                 rcpts=[u["address"] for u in users], sender=sender, log=REDEPLOY_LOG,
                 deadline=90)
    queued = fault("queue", sender=sender)
    report("redeploy, before: store stopped, mail queued",
           mailbox_counts_before=snapshot["counts"], sent=sent["sent"],
           acknowledged_250=sent["acked"], queued=queued["from_sender"],
           send_seconds=sent["seconds"])

    assert sent["acked"] == MESSAGES, f"not every message got a 250: {sent}"
    assert queued["from_sender"] == MESSAGES, f"not every message is queued: {queued}"
    assert not host.service(store_service).is_running
