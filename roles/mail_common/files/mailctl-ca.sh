#!/bin/sh
# Keep a TLS key and certificate for a mail host name from mailctl's local CA (created on
# first use), re-issuing the certificate when it is missing, past two-thirds of its life,
# or no longer right for NAME, CA or key. Runs on the controller.
#   mailctl-ca.sh CA_DIR NAME DAYS
#   mailctl-ca.sh --key-only CA_DIR NAME   (ACME mode: only the key; an ACME CA signs it)
# Prints one line, "issued ..." or "unchanged ...": the Ansible task's changed_when reads it.
set -eu
key_only=
if [ "${1-}" = --key-only ]; then key_only=1; shift; fi
ca_dir=$1 name=$2
umask 077
mkdir -p "$ca_dir"
cd "$ca_dir"
# Ansible runs this for many hosts at once: one at a time, or two would create the CA.
exec 9>.lock
flock 9

# The key is never replaced: `mailctl dns` publishes a TLSA "3 1 1" hash of its public key.
key_made=
if [ ! -f "$name.key" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null
  key_made=1
fi
chmod 600 "$name.key"
if [ -n "$key_only" ]; then
  if [ -n "$key_made" ]; then echo "issued key $name"; else echo "unchanged key $name"; fi
  exit 0
fi
days=$3

if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
    -keyout ca.key -out ca.crt -subj "/CN=mailctl local CA/O=mailctl" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
chmod 600 ca.key
chmod 644 ca.crt

# Seconds since the epoch of the certificate's notBefore/notAfter (-startdate / -enddate).
cert_time() {
  date -d "$(openssl x509 -in "$name.crt" -noout "$1" | cut -d= -f2-)" +%s
}

reason=
if [ ! -f "$name.crt" ]; then
  reason=new
elif ! openssl x509 -in "$name.crt" -noout 2>/dev/null; then
  reason="renewed: unreadable"
# now >= start + 2/3 (end - start), in integers: 3 now >= start + 2 end. Covers expired.
elif [ $(($(date +%s) * 3)) -ge $(($(cert_time -startdate) + 2 * $(cert_time -enddate))) ]; then
  reason="renewed: past two-thirds of its lifetime"
elif [ "$(openssl x509 -in "$name.crt" -noout -ext subjectAltName 2>/dev/null |
          sed 1d | tr -d ' ')" != "DNS:$name" ]; then
  reason="renewed: subjectAltName is not DNS:$name"
# Signature only (-no_check_time): the lifetime was checked above.
elif ! openssl verify -no_check_time -CAfile ca.crt "$name.crt" >/dev/null 2>&1; then
  reason="renewed: not signed by the current CA"
elif [ "$(openssl x509 -in "$name.crt" -noout -pubkey)" != \
       "$(openssl pkey -in "$name.key" -pubout 2>/dev/null)" ]; then
  reason="renewed: does not match $name.key"
fi

if [ -n "$reason" ]; then
  openssl req -new -key "$name.key" -sha256 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -copy_extensions copy -out "$name.crt.new" 2>/dev/null
  rm -f "$name.csr"
  # Written aside and renamed: a reader never sees a half-written certificate.
  chmod 644 "$name.crt.new"
  mv -f "$name.crt.new" "$name.crt"
  echo "issued $name ($reason)"
else
  chmod 644 "$name.crt"
  echo "unchanged $name"
fi
