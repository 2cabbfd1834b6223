#!/bin/sh
# Issue a TLS certificate for a mail host name from mailctl's local CA (created on first
# use). Runs on the controller. Usage: mailctl-ca.sh CA_DIR HOSTNAME DAYS
set -eu
ca_dir=$1 name=$2 days=$3
umask 077
mkdir -p "$ca_dir"
cd "$ca_dir"
# Ansible runs this for many hosts at once: one at a time, or two would create the CA.
exec 9>.lock
flock 9
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
    -keyout ca.key -out ca.crt -subj "/CN=mailctl local CA/O=mailctl" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if [ ! -f "$name.crt" ]; then
  openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" -addext "subjectAltName=DNS:$name" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -copy_extensions copy -out "$name.crt" 2>/dev/null
  rm -f "$name.csr"
fi
chmod 600 ca.key "$name.key"
chmod 644 ca.crt "$name.crt"
