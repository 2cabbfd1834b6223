"""Fault 1, store down: with the mail store stopped, Postfix accepts every message (250) and
keeps it queued, bouncing none; once the store is back and the queue flushed, every message
is in its mailbox exactly once."""

from __future__ import annotations

import time

from conftest import SENDER_DOMAIN, STOREDOWN_LOG, report

MESSAGES = 200
SESSIONS = 4
DELIVERY_TIMEOUT = 120  # seconds, from starting the store to the last message in its mailbox


def test_store_down_queues_then_delivers_everything(host, fault, users, store_service, run_id,
                                                    host_time):
    sender = f"storedown@{SENDER_DOMAIN}"
    started = time.monotonic()
    stop = host.run(f"systemctl stop {store_service}")
    assert stop.rc == 0, stop.stderr
    assert not host.service(store_service).is_running, f"{store_service} still running"

    sent = fault("send", prefix=f"storedown-{run_id}", count=MESSAGES, sessions=SESSIONS,
                 rcpts=[u["address"] for u in users], sender=sender, log=STOREDOWN_LOG,
                 deadline=120)
    queued = fault("queue", sender=sender)
    store_still_down = not host.service(store_service).is_running
    delivered = fault("deliver", expected_from=[STOREDOWN_LOG], start_service=store_service,
                      timeout=DELIVERY_TIMEOUT)
    bounced = fault("bounced", since=host_time)

    report(f"store down ({store_service} stopped)",
           sent=sent["sent"], acknowledged_250=sent["acked"], not_acknowledged=sent["not_acked"],
           send_seconds=sent["seconds"], send_errors=sent["errors"],
           queued_while_down=queued["from_sender"], queues=queued["queues"],
           delay_reasons=queued["reasons"], bounced=bounced["bounced"],
           delivered=delivered["delivered"], missing=delivered["missing"],
           duplicated=delivered["duplicated"], stray=delivered["stray"],
           delivery_seconds_after_store_start=delivered["seconds"],
           store_start=delivered["steps"], total_seconds=round(time.monotonic() - started, 1))

    assert sent["acked"] == MESSAGES, f"not every message got a 250: {sent}"
    assert store_still_down, f"{store_service} came back by itself while mail was queued"
    assert queued["from_sender"] == MESSAGES, f"not every message sits in the queue: {queued}"
    assert bounced["bounced"] == 0, f"messages bounced while the store was down: {bounced}"
    assert delivered["error"] is None, delivered["error"]
    assert delivered["missing"] == 0, f"messages lost: {delivered}"
    assert delivered["duplicated"] == 0, f"messages delivered twice: {delivered}"
    assert delivered["stray"] == 0, f"unexpected messages: {delivered}"
    assert fault("queue", sender=sender)["from_sender"] == 0, "messages left in the queue"
