"""Fault 2, part 1 (crash under load): 2,000 messages over 10 SMTP sessions; part-way
through, Postfix's master is killed with SIGKILL (systemd then ends the rest of the unit's
processes) and Postfix is restarted while the sessions keep going. The sender's log (which
message got a 250) stays on the host for phase 2, which runs after molecule restarts the
whole container (side_effect restart.yml) and checks that every acknowledged message
arrives exactly once."""

from __future__ import annotations

from conftest import CRASH_LOG, SENDER_DOMAIN, report

MESSAGES = 2000
SESSIONS = 10
KILL_AFTER = 700  # acknowledged messages before SIGKILL


def test_crash_under_load(host, fault, users, run_id):
    sent = fault("send", prefix=f"crash-{run_id}", count=MESSAGES, sessions=SESSIONS,
                 rcpts=[u["address"] for u in users], sender=f"crash@{SENDER_DOMAIN}",
                 log=CRASH_LOG, deadline=150, kill_after=KILL_AFTER, restart_after=3)
    events = sent["events"]
    report("crash under load (SIGKILL of Postfix's master, then systemctl restart postfix)",
           sent=sent["sent"], acknowledged_250=sent["acked"], not_acknowledged=sent["not_acked"],
           send_errors=sent["errors"], acknowledged_when_killed=events.get("acked_at_kill"),
           killed_at_s=events.get("killed_at"), restarted_at_s=events.get("restarted_at"),
           acknowledged_when_back=events.get("acked_at_restart"),
           send_seconds=sent["seconds"], rate_per_s=sent["rate"])

    assert events.get("kill") == 0, f"pkill found no Postfix master: {events}"
    assert events.get("restart") == 0 and events.get("port25_back"), \
        f"Postfix did not come back after the kill: {events}"
    assert sent["acked"] >= KILL_AFTER, f"the load did not reach the kill point: {sent}"
    assert sent["acked"] > events["acked_at_restart"], \
        f"no message was accepted after Postfix came back: {sent}"
    assert host.service("postfix").is_running
