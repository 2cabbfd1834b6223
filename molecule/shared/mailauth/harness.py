"""The outside world of a molecule scenario, for the mail-authentication checks of [3/8]:
one container on the scenario's network that is at once
  - its DNS server: unbound, authoritative for `test.` (the zone `mailctl dns` prints for
    the inventory) and `example.` (the outside domains below); the mail hosts resolve
    through it (their `dns_servers`); other names are forwarded to Docker's resolver (the
    package mirror during the converge);
  - the sink: MX of sink.example, an SMTP server that keeps every message as received;
  - the sender: DKIM-signs test mail for sink.example with a key made here;
  - the ACME CA ([4/8]): Pebble on :14000 (its own HTTPS certificate from a small CA made
    here), validating through the unbound above, issuing certificates valid for
    --acme-lifetime seconds. Its root (a new one at each start) and the CA of its HTTPS are
    written beside STATE for the inventory's mail_tls (ca, directory_ca), with a DNS-01
    hook (dns_hook) that publishes TXT records through the DNS API of outside.py.
Outside domains, under the reserved `example.` (OpenDKIM's resolver, libunbound, answers
every `.test` name itself with NXDOMAIN, so the senders whose signatures the hosts verify
cannot be .test): sink.example (SPF: this container, DKIM selector s1, DMARC p=reject),
reject.example (SPF -all, DMARC p=reject, never signed), nodmarc.example (SPF: this
container, no DMARC).

  harness.py up --name C --network NET --ip IP --inventory DIR [--acme-lifetime S]
  harness.py pebble start|stop --name C   (the renewal tests stop and restart it)
  harness.py down --name C
`up` writes STATE (MOLECULE_EPHEMERAL_DIRECTORY/mailauth.json) for the tests, and checks
the zone with named-checkzone before any container starts.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mailctl.containers import BASE_IMAGE, docker
from mailctl.dns import Record, public_key_der, zone_line
from mailctl.paths import roles_dir

HERE = Path(__file__).resolve().parent
REMOTE = "/opt/outside"
PACKAGES = ["unbound", "python3-dkim", "python3-spf", "pebble", "curl"]
PEBBLE_PORT = 14000
PEBBLE_CONFIG = """\
{{"pebble": {{"listenAddress": "0.0.0.0:{port}", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "{remote}/acme-server.crt", "privateKey": "{remote}/acme-server.key",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
  "externalAccountBindingRequired": false, "certificateValidityPeriod": {lifetime}}}}}
"""
UNBOUND_CONF = """\
server:
  interface: 0.0.0.0
  access-control: 0.0.0.0/0 allow
  do-not-query-localhost: no
  verbosity: 0
  use-syslog: no
  pidfile: ""
  chroot: ""
  username: ""
  module-config: "iterator"
  # unbound answers the special-use names test. and example. itself unless told not to
  local-zone: "test." nodefault
  local-zone: "example." nodefault
auth-zone:
  name: "test."
  zonefile: "{remote}/test.zone"
  for-upstream: yes
  for-downstream: yes
auth-zone:
  name: "example."
  zonefile: "{remote}/example.zone"
  for-upstream: yes
  for-downstream: yes
forward-zone:
  name: "."
  forward-addr: 127.0.0.11
remote-control:
  control-enable: yes
  control-interface: /run/unbound.ctl
"""
# An ACME DNS-01 hook as an administrator writes one for a DNS provider's API (here the
# outside container's, outside.py): HOOK add|remove NAME VALUE.
DNS_HOOK = """\
#!/bin/sh
# mailctl ACME DNS-01 hook for the molecule scenarios: HOOK add|remove NAME VALUE
exec python3 -c '
import sys, urllib.parse, urllib.request
query = urllib.parse.urlencode(dict(zip(("action", "name", "value"), sys.argv[1:4])))
urllib.request.urlopen("http://{ip}:8053/txt?" + query, timeout=10).read()
' "$@"
"""


def state_file() -> Path:
    return Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "mailauth.json"


def mailctl(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", "from mailctl.cli import main; main()",
                           *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"mailctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def sink_key(directory: Path) -> tuple[Path, str]:
    """The sender's DKIM key for sink.example, made once as mailctl makes its own
    (mailctl-dkim.sh), and its public key for the zone."""
    subprocess.run(["sh", str(roles_dir() / "mail_common" / "files" / "mailctl-dkim.sh"),
                    str(directory), "sink.example", "s1"], check=True, capture_output=True)
    key = directory / "dkim" / "sink.example.s1.key"
    return key, base64.b64encode(public_key_der(key, "sink.example", "s1")).decode()


def soa(origin: str, ip: str) -> str:
    return f"""$ORIGIN {origin}.
$TTL 300
@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300
@ IN NS ns.{origin}.
ns IN A {ip}
"""


def inventory_zone(ip: str, mail_records: str) -> str:
    """The inventory's zone: what `mailctl dns` printed, as an administrator publishes it."""
    return soa("test", ip) + "; --- mailctl dns\n" + mail_records


def example_zone(ip: str, sink_public: str) -> str:
    """The outside world's domains."""
    return soa("example", ip) + f"""sink.example. IN MX 10 mx.sink.example.
mx.sink.example. IN A {ip}
sink.example. IN TXT "v=spf1 ip4:{ip} -all"
{zone_line(Record("s1._domainkey.sink.example", "TXT", 300, "v=DKIM1; k=rsa; p=" + sink_public))}
_dmarc.sink.example. IN TXT "v=DMARC1; p=reject"
reject.example. IN TXT "v=spf1 -all"
_dmarc.reject.example. IN TXT "v=DMARC1; p=reject"
nodmarc.example. IN TXT "v=spf1 ip4:{ip} -all"
"""


def check_zone(origin: str, path: Path) -> None:
    check = subprocess.run(["named-checkzone", origin, str(path)], capture_output=True,
                           text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"the zone {origin} is not valid:\n{check.stdout}{check.stderr}")


def acme_server_cert(work: Path, ip: str) -> None:
    """The HTTPS certificate of Pebble's directory, from a CA of its own: the mail hosts
    trust it through mail_tls.directory_ca, as with any private ACME CA."""
    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, cwd=work)

    if (work / "acme-server.crt").exists():
        return
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-keyout", "acme-directory-ca.key", "-out", "acme-directory-ca.crt",
        "-subj", "/CN=mailctl test ACME directory CA")
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "acme-server.key",
        "-out", "acme-server.csr", "-subj", "/CN=acme.example",
        "-addext", f"subjectAltName=DNS:acme.example,IP:{ip}")
    run("openssl", "x509", "-req", "-in", "acme-server.csr", "-CA", "acme-directory-ca.crt",
        "-CAkey", "acme-directory-ca.key", "-CAcreateserial", "-days", "30",
        "-copy_extensions", "copy", "-out", "acme-server.crt")


def pebble(args: argparse.Namespace) -> None:
    """Start Pebble (and save its new root beside STATE), or stop it."""
    docker("exec", args.name, "pkill", "-x", "pebble", check=False)
    if args.action == "stop":
        return
    docker("exec", "-d", "-e", "PEBBLE_VA_NOSLEEP=1", "-e", "PEBBLE_WFE_NONCEREJECT=0",
           args.name, "sh", "-c", f"exec pebble -config {REMOTE}/pebble.json "
           f"-dnsserver 127.0.0.1:53 >{REMOTE}/pebble.log 2>&1")
    fetch = ("import ssl, sys, time, urllib.request\n"
             f"ctx = ssl.create_default_context(cafile='{REMOTE}/acme-directory-ca.crt')\n"
             "ctx.check_hostname = False\n"
             "for _ in range(60):\n"
             "    try:\n"
             "        print(urllib.request.urlopen('https://127.0.0.1:15000/roots/0',\n"
             "              context=ctx, timeout=2).read().decode()); sys.exit(0)\n"
             "    except OSError:\n"
             "        time.sleep(0.5)\n"
             "sys.exit('Pebble does not answer')\n")
    root = docker("exec", args.name, "python3", "-c", fetch).stdout
    (state_file().parent / "mailauth" / "acme-root.pem").write_text(root)


def up(args: argparse.Namespace) -> None:
    work = state_file().parent / "mailauth"
    work.mkdir(parents=True, exist_ok=True)
    key, public = sink_key(work)
    acme_server_cert(work, args.ip)
    (work / "unbound.conf").write_text(UNBOUND_CONF.format(remote=REMOTE))
    (work / "acme-dns-hook").write_text(DNS_HOOK.format(ip=args.ip))
    (work / "pebble.json").write_text(PEBBLE_CONFIG.format(
        port=PEBBLE_PORT, remote=REMOTE, lifetime=args.acme_lifetime))

    docker("rm", "-f", args.name, check=False)
    docker("run", "-d", "--name", args.name, "--hostname", "mx.sink.example",
           "--network", args.network, "--ip", args.ip, BASE_IMAGE, "sleep", "infinity")
    # packages first, through Docker's resolver; then this container resolves through
    # its own unbound like the mail hosts do
    docker("exec", args.name, "sh", "-c",
           "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install "
           f"-y -q --no-install-recommends {' '.join(PACKAGES)} >/dev/null", timeout=900)
    docker("exec", args.name, "mkdir", "-p", REMOTE)
    for path in (work / "unbound.conf", work / "pebble.json", work / "acme-server.crt",
                 work / "acme-server.key", work / "acme-directory-ca.crt", key,
                 HERE / "outside.py"):
        docker("cp", str(path), f"{args.name}:{REMOTE}/{path.name}")
    # Pebble first: the inventory names its root (mail_tls.ca), which mailctl checks
    pebble(argparse.Namespace(name=args.name, action="start"))
    records = mailctl("dns", "-i", args.inventory, "--format", "zone")
    published = json.loads(mailctl("dns", "-i", args.inventory, "--format", "json"))
    zones = {"test": inventory_zone(args.ip, records), "example": example_zone(args.ip, public)}
    for origin, text in zones.items():
        (work / f"{origin}.zone").write_text(text)
        check_zone(origin, work / f"{origin}.zone")
        docker("cp", str(work / f"{origin}.zone"), f"{args.name}:{REMOTE}/{origin}.zone")
    docker("exec", "-d", args.name, "unbound", "-d", "-c", f"{REMOTE}/unbound.conf")
    docker("exec", "-d", args.name, "python3", f"{REMOTE}/outside.py", "serve",
           f"{REMOTE}/sink")
    docker("exec", args.name, "sh", "-c", "echo 'nameserver 127.0.0.1' > /etc/resolv.conf")
    _wait_until_served(args.name)
    state_file().write_text(json.dumps({
        "container": args.name, "ip": args.ip, "remote": REMOTE,
        "sink_key": f"{REMOTE}/{key.name}", "sink_dir": f"{REMOTE}/sink",
        "dns": published, "acme_root": str(work / "acme-root.pem"),
        "acme_directory": f"https://{args.ip}:{PEBBLE_PORT}/dir",
    }, indent=1))


def _wait_until_served(name: str, timeout: float = 30) -> None:
    """Until unbound answers for the zone and the sink takes connections."""
    probe = ("import socket, spf; socket.create_connection(('127.0.0.1', 25), 2).close(); "
             "r = spf.check2(i='192.0.2.1', s='x@reject.example', h='x'); "
             "assert r[0] == 'fail', r")
    deadline = time.monotonic() + timeout
    while True:
        proc = docker("exec", name, "python3", "-c", probe, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: DNS or sink not answering: {proc.stderr.strip()[-500:]}")
        time.sleep(1)


def down(args: argparse.Namespace) -> None:
    docker("rm", "-f", args.name, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--name", required=True)
    p_up.add_argument("--network", required=True)
    p_up.add_argument("--ip", required=True)
    p_up.add_argument("--inventory", required=True)
    p_up.add_argument("--acme-lifetime", type=int, default=86400,
                      help="seconds Pebble's certificates are valid")
    p_pebble = sub.add_parser("pebble")
    p_pebble.add_argument("action", choices=["start", "stop"])
    p_pebble.add_argument("--name", required=True)
    p_down = sub.add_parser("down")
    p_down.add_argument("--name", required=True)
    args = parser.parse_args()
    {"up": up, "down": down, "pebble": pebble}[args.command](args)


if __name__ == "__main__":
    main()
