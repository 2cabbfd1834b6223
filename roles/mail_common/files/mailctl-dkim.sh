#!/bin/sh
# Make a DKIM signing key (RSA 2048) for a domain and selector in mailctl's state directory,
# beside the local CA, unless it exists. Runs on the controller, from a deploy and from
# `mailctl dns` (which prints the record before any deploy). The key stays 0600 and is never
# printed. Usage: mailctl-dkim.sh STATE_DIR DOMAIN SELECTOR
set -eu
state_dir=$1 domain=$2 selector=$3
umask 077
mkdir -p "$state_dir/dkim"
cd "$state_dir/dkim"
key="$domain.$selector.key"
exec 9>.lock  # parallel deploys of hosts sharing a domain make one key, not two
flock 9
if [ ! -s "$key" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$key.tmp" 2>/dev/null
  mv "$key.tmp" "$key"
fi
chmod 600 "$key"
