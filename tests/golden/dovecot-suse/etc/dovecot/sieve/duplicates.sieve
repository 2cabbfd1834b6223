# Managed by mailctl from dovecot/duplicates.sieve.j2 — local edits are overwritten on the next deploy.
# Duplicate suppression (RFC 7352), run before each user's own script (sieve_before): a
# message whose Message-ID this user already received is dropped. It happens when Postfix
# dies after the store's 250 and before Postfix recorded it: the message is delivered again
# after the restart. Cyrus does the same with duplicatesuppression (imapd.conf).
require ["duplicate"];
if duplicate {
    discard;
    stop;
}
