"""Fault 3 (bad change): molecule/faults/redeploy.yml applied an invalid Postfix value that
`postfix check` accepts (the smoke test must catch it) and an invalid store setting (the
validator catches it); each was rolled back. The previous configuration is in place and
mail still flows."""

from __future__ import annotations

from conftest import BADCHANGE_LOG, REDEPLOYED_SIZE_LIMIT, SENDER_DOMAIN, report

STORE_CONF = {"dovecot": "/etc/dovecot/dovecot.conf", "cyrus": "/etc/imapd.conf"}


def test_previous_configuration_is_back_and_mail_flows(host, fault, users, mail, run_id):
    main_cf = host.file("/etc/postfix/main.cf").content_string
    store_conf = host.file(STORE_CONF[mail.backend]).content_string
    tls_level = host.run("postconf -h smtpd_tls_security_level").stdout.strip()
    limit = host.run("postconf -h message_size_limit").stdout.strip()
    sent = fault("send", prefix=f"afterbad-{run_id}", count=20, sessions=2,
                 rcpts=[u["address"] for u in users], sender=f"afterbad@{SENDER_DOMAIN}",
                 log=BADCHANGE_LOG, deadline=60)
    delivered = fault("deliver", expected_from=[BADCHANGE_LOG], timeout=60)
    report("bad change rolled back, mail flows",
           smtpd_tls_security_level=tls_level, message_size_limit=limit,
           sent=sent["sent"], acknowledged_250=sent["acked"], delivered=delivered["delivered"],
           duplicated=delivered["duplicated"], seconds=delivered["seconds"])

    assert "bogus" not in main_cf, "main.cf still holds the bad change"
    assert "bogus" not in store_conf, f"{STORE_CONF[mail.backend]} still holds the bad change"
    assert tls_level != "bogus"
    assert limit == str(REDEPLOYED_SIZE_LIMIT), "not the configuration from before the change"
    assert sent["acked"] == sent["sent"], f"mail refused after the rollback: {sent}"
    assert delivered["missing"] == 0 and delivered["duplicated"] == 0, delivered
