#!/bin/sh
# The baseline (c): Debian 12's stock Postfix and Dovecot, installed from the distribution's
# packages with their default configuration ("Internet Site"), plus only the edits an
# administrator makes by hand to deliver a virtual domain over LMTP into Maildirs.
# Run as root inside a fresh bench container; the files it reads sit next to it.
set -eu
here=$(dirname "$0")
domain=${BENCH_DOMAIN:-bench.test}
users=${BENCH_USERS:-10}
prefix=${BENCH_PASSWORD_PREFIX:-bench-pw-}

# Stock packages, as `apt-get install postfix dovecot-imapd dovecot-lmtpd` on a new host.
echo "postfix postfix/main_mailer_type select Internet Site" | debconf-set-selections
echo "postfix postfix/mailname string mail.$domain" | debconf-set-selections
DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix dovecot-imapd dovecot-lmtpd >/dev/null

# --- The hand edits, Postfix (main.cf; master.cf stays stock, chroot and all).
postconf -e "virtual_mailbox_domains = $domain" \
            "virtual_mailbox_maps = hash:/etc/postfix/vmailbox" \
            "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
            "smtp_dns_support_level = disabled" \
            "default_transport = error:outbound mail is disabled in the bench"
: > /etc/postfix/vmailbox
i=0
while [ "$i" -lt "$users" ]; do
    echo "u$i@$domain OK" >> /etc/postfix/vmailbox
    i=$((i + 1))
done
postmap /etc/postfix/vmailbox

# --- The hand edits, Dovecot: a vmail user, a passwd-file, Maildir, the LMTP socket in
# Postfix's queue (local.conf is read last by Debian's dovecot.conf).
groupadd -g 5000 vmail 2>/dev/null || true
useradd -u 5000 -g vmail -d /var/vmail -s /usr/sbin/nologin -r vmail 2>/dev/null || true
install -d -o vmail -g vmail -m 0770 /var/vmail
sed -i 's/^!include auth-system.conf.ext/#!include auth-system.conf.ext/' \
    /etc/dovecot/conf.d/10-auth.conf
: > /etc/dovecot/users
i=0
while [ "$i" -lt "$users" ]; do
    hash=$(doveadm pw -s SHA512-CRYPT -p "${prefix}u$i")
    echo "u$i@$domain:$hash::::::" >> /etc/dovecot/users
    i=$((i + 1))
done
chown root:dovecot /etc/dovecot/users
chmod 0640 /etc/dovecot/users
install -m 0644 "$here/local.conf" /etc/dovecot/local.conf

systemctl restart dovecot
systemctl restart postfix
