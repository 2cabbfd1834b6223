"""`mailctl dns`: the DNS records an administrator publishes for each mail domain.

For every domain the inventory serves: MX, SPF, DKIM, DMARC, MTA-STS (record and policy
file), TLS-RPT and the RFC 6186 SRV records; for the mail hosts those records name: A/AAAA
and, for the MX targets, TLSA on port 25. What is not known (a host's public address) is
reported as missing, never guessed.

Keys and certificates come from the same place a deploy takes them, so the records match
what the hosts will present: a missing DKIM key (mode generate) or local-CA certificate (TLS
mode selfsigned) is made first with the roles' own scripts, and the deploy then installs that
very file (its tasks only create what does not exist).

JSON output (`--format json`), all names absolute without the trailing dot, record values in
presentation format (names inside them absolute, with the dot; TXT as one unsplit string):

    {"domains": {"example.test": {
        "records": [{"name": "example.test", "type": "MX", "ttl": 3600,
                     "value": "10 mail.example.test."}, ...],
        "mta_sts_policy": "version: STSv1\\n...",   (null when mail_dns.mta_sts is none)
        "missing": ["A/AAAA for mail.example.test: set ..."],
        "notes": ["..."]}},
     "hosts": {"records": [...A, AAAA, TLSA...], "missing": [...]}}
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, MailctlError
from .inventory import Inventory
from .model import MailHost
from .names import NameSyntaxError, normalize_domain
from .paths import roles_dir
from .schema import ROLE_SETTINGS
from .topology import Topology

MX_PRIORITY = 10
MTA_STS_MAX_AGE = 604800  # one week, the usual policy lifetime
TXT_STRING_MAX = 255  # bytes in one character-string of a TXT record (RFC 1035)


@dataclass(frozen=True)
class SrvService:
    """An RFC 6186 service a host serving a domain's users may offer."""

    owner: str  # the label pair in front of the domain
    port: int


SRV_SERVICES: tuple[SrvService, ...] = (
    SrvService("_submission._tcp", 587),
    SrvService("_submissions._tcp", 465),
    SrvService("_imap._tcp", 143),
    SrvService("_imaps._tcp", 993),
    SrvService("_pop3._tcp", 110),
    SrvService("_pop3s._tcp", 995),
)


@dataclass(frozen=True)
class Record:
    name: str  # absolute owner name, without the trailing dot
    type: str
    ttl: int
    value: str  # presentation format; TXT: the unquoted, unsplit text

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "value": self.value}


@dataclass
class DomainRecords:
    domain: str
    records: list[Record] = field(default_factory=list)
    mta_sts_policy: str | None = None
    missing: list[str] = field(default_factory=list)  # what the records lack: addresses
    notes: list[str] = field(default_factory=list)  # why a record is absent, what to add

    def add(self, record: Record) -> None:
        if record not in self.records:  # hosts sharing a domain give the same records
            self.records.append(record)


@dataclass
class HostRecords:
    """A mail host's own records: its addresses and, for an MX target, TLSA."""

    hostname: str
    records: list[Record]
    missing: str | None  # no public address known


@dataclass
class DnsReport:
    domains: list[DomainRecords]
    hosts: list[HostRecords]
    warnings: list[str]  # one line each, for stderr


@dataclass(frozen=True)
class DomainHosts:
    """The hosts a domain's records name."""

    servers: tuple[MailHost, ...]  # store the users' mail and send it: all-in-one, mailstore
    mx: tuple[MailHost, ...]  # receive its mail from the internet

    @property
    def named(self) -> tuple[MailHost, ...]:
        """Every host the domain's records point at (each needs an address record)."""
        return tuple(_unique((*self.mx, *self.servers)))

    @property
    def owner(self) -> MailHost:
        """The host whose mail_dns/mail_dmarc settings give the domain-wide records."""
        return self.servers[0]


# --------------------------------------------------------------------------- entry point

def dns_report(inv: Inventory, *, limit: str | None = None, backend: str | None = None,
               domain: str | None = None, ca_dir: Path | None = None) -> DnsReport:
    """The records for the domains of the selected hosts (all by default), or one domain."""
    # the whole inventory: an mx's records depend on the stores and the other way round
    hosts, topology = inv.mail_plan(None, backend)
    by_domain = hosts_by_domain(hosts, topology)
    selected = set(inv.host_names(limit)) if limit else {h.name for h in hosts}
    wanted = domains_of(hosts, topology, selected)
    if domain is not None:
        wanted = [_served_domain(inv, domain, wanted, limit)]
    files = ControllerFiles(inv, ca_dir)
    warnings: list[str] = []
    domains = []
    for name in wanted:
        entry = domain_records(name, by_domain[name], files, warnings)
        entry.missing = [missing_address(h) for h in by_domain[name].named if not has_address(h)]
        domains.append(entry)
    mx_targets = {h.name for d in wanted for h in by_domain[d].mx}
    hosts_named = _unique(h for d in wanted for h in by_domain[d].named)
    host_records = [host_records_of(h, h.name in mx_targets, files) for h in hosts_named]
    missing = [f"missing: {h.missing}" for h in host_records if h.missing]
    return DnsReport(domains, host_records, missing + warnings)


def _served_domain(inv: Inventory, domain: str, served: list[str], limit: str | None) -> str:
    try:
        name = normalize_domain(domain)
    except NameSyntaxError as exc:
        raise InputError(f"{inv.source}: --domain: {exc}") from None
    if name not in served:
        who = "no host selected by --limit" if limit else "no host"
        raise InputError(f"{inv.source}: {who} serves domain {name!r} "
                         f"(served: {', '.join(served) or 'none'})")
    return name


def _unique(hosts: Iterable[MailHost]) -> list[MailHost]:
    return list({h.name: h for h in hosts}.values())


# --------------------------------------------------------------------------- who does what

def hosts_by_domain(hosts: list[MailHost], topology: Topology) -> dict[str, DomainHosts]:
    """Each served domain's servers and MX targets. A mailstore's domain is received by the
    mx hosts (every mx relays every mailstore domain); an all-in-one host receives its own."""
    by_name = {h.name: h for h in hosts}
    mx = tuple(h for h in hosts if h.kind == "mx")
    stored = {r.domain: by_name[r.store_name] for r in topology.routes}
    servers: dict[str, list[MailHost]] = {}
    for host in hosts:
        if host.kind == "allinone":
            for d in host.domains:
                servers.setdefault(d, []).append(host)
        elif host.kind == "mailstore":
            for d in host.domains:
                if stored.get(d) is host:  # (a second store of a domain is a plan error)
                    servers.setdefault(d, []).append(host)
    return {d: DomainHosts(tuple(s), mx if d in stored else tuple(s))
            for d, s in servers.items()}


def domains_of(hosts: list[MailHost], topology: Topology, selected: set[str]) -> list[str]:
    """The domains the selected hosts serve or relay, in inventory order."""
    found: list[str] = []
    for host in hosts:
        if host.name in selected:
            found += topology.domains if host.kind == "mx" else host.domains
    return list(dict.fromkeys(found))


def services_offered(host: MailHost) -> frozenset[str]:
    """The SRV services a host serving users offers: all of them, on both stores, today
    (srv_records publishes one nobody offers as RFC 6186's 'not available')."""
    return frozenset(s.owner for s in SRV_SERVICES)


# --------------------------------------------------------------------------- domain records

def domain_records(domain: str, hosts: DomainHosts, files: ControllerFiles,
                   warnings: list[str]) -> DomainRecords:
    out = DomainRecords(domain)
    owner = hosts.owner
    ttl = owner.dns.ttl
    if hosts.mx:
        for host in hosts.mx:
            out.add(Record(domain, "MX", ttl, f"{MX_PRIORITY} {host.hostname}."))
    else:
        out.notes.append("no MX record: no host in group mx receives this domain's mail "
                         "from the internet")
        warnings.append(f"{domain}: no host in group mx receives its mail: no MX record")
    out.add(Record(domain, "TXT", ttl, spf_value(hosts.servers)))
    for host in hosts.servers:
        if host.relayhost:  # the receivers see the relay's address, not this host's
            out.notes.append(f"{host.name} sends through mail_relayhost {host.relayhost}: add "
                             "that relay to the SPF record (its include: or addresses)")
            warnings.append(f"{domain}: SPF: {host.name} sends through {host.relayhost}, "
                            "which the record does not cover")
    add_dkim_records(out, hosts.servers, files, warnings)
    report_to = owner.dmarc.report_to or f"postmaster@{domain}"
    out.add(Record(f"_dmarc.{domain}", "TXT", ttl,
                   f"v=DMARC1; p={owner.dmarc.policy}; rua=mailto:{report_to}"))
    report_domain = report_to.rsplit("@", 1)[1]
    if report_domain != domain:
        # RFC 7489 7.1: reports go to another domain only when it says it accepts them
        out.notes.append(f"DMARC reports go to {report_domain}: it must publish "
                         f'{domain}._report._dmarc.{report_domain}. TXT "v=DMARC1"')
    if owner.dns.mta_sts != "none" and hosts.mx:
        add_mta_sts(out, owner, hosts.mx, warnings)
    out.add(Record(f"_smtp._tls.{domain}", "TXT", ttl, f"v=TLSRPTv1; rua=mailto:{report_to}"))
    for record in srv_records(domain, hosts.servers, services_offered):
        out.add(record)
    return out


def spf_value(senders: Iterable[MailHost]) -> str:
    """v=spf1 with every host that sends the domain's mail: its addresses when known (no DNS
    lookup for the receiver), else its name."""
    terms: list[str] = []
    for host in senders:
        if has_address(host):
            terms += [f"ip4:{host.dns.ipv4}"] if host.dns.ipv4 else []
            terms += [f"ip6:{host.dns.ipv6}"] if host.dns.ipv6 else []
        else:
            terms.append(f"a:{host.hostname}")
    return " ".join(["v=spf1", *dict.fromkeys(terms), "-all"])


def add_dkim_records(out: DomainRecords, servers: Iterable[MailHost], files: ControllerFiles,
                     warnings: list[str]) -> None:
    signers = [h for h in servers if h.signs]
    if not signers:
        out.notes.append("no DKIM record: no host serving this domain signs (mail_dkim mode "
                         "off)")
        return
    for host in signers:
        for selector in host.dkim.published(out.domain):
            name = f"{selector}._domainkey.{out.domain}"
            value = f"v=DKIM1; k=rsa; p={files.dkim_public_key(host, out.domain, selector)}"
            clash = [r for r in out.records if r.name == name and r.value != value]
            if clash:
                warnings.append(f"{out.domain}: selector {selector!r} has a different key on "
                                f"{host.name} than on another host: give each key its own "
                                "selector")
            out.add(Record(name, "TXT", host.dns.ttl, value))


def mta_sts_policy(mode: str, mx: Iterable[MailHost]) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {h.hostname}" for h in mx),
             f"max_age: {MTA_STS_MAX_AGE}"]
    return "\n".join(dict.fromkeys(lines)) + "\n"


def add_mta_sts(out: DomainRecords, owner: MailHost, mx: tuple[MailHost, ...],
                warnings: list[str]) -> None:
    policy = mta_sts_policy(owner.dns.mta_sts, mx)
    # the id tells senders to fetch the policy again: derive it from the policy itself
    policy_id = hashlib.sha256(policy.encode()).hexdigest()[:16]
    out.add(Record(f"_mta-sts.{out.domain}", "TXT", owner.dns.ttl,
                   f"v=STSv1; id={policy_id}"))
    out.mta_sts_policy = policy
    local_ca = [h.hostname for h in mx if h.tls.mode == "selfsigned"]
    if owner.dns.mta_sts == "enforce" and local_ca:
        # MTA-STS checks certificates against the public CAs, which never signed the local CA
        warnings.append(f"{out.domain}: MTA-STS mode enforce, but {', '.join(local_ca)} "
                        "present a certificate from mailctl's local CA: senders that enforce "
                        "will not deliver (use mail_tls mode files with a public CA's "
                        "certificate, or mail_dns.mta_sts: testing)")


def srv_records(domain: str, servers: Iterable[MailHost],
                offered: Callable[[MailHost], frozenset[str]]) -> list[Record]:
    """RFC 6186: one record per service and host offering it; a service no host offers gets
    the 'not available' record (target '.')."""
    servers = list(servers)
    ttl = servers[0].dns.ttl
    records = []
    for service in SRV_SERVICES:
        owner = f"{service.owner}.{domain}"
        targets = [h for h in servers if service.owner in offered(h)]
        records += [Record(owner, "SRV", h.dns.ttl, f"0 1 {service.port} {h.hostname}.")
                    for h in targets] or [Record(owner, "SRV", ttl, "0 0 0 .")]
    return records


# --------------------------------------------------------------------------- host records

def host_records_of(host: MailHost, is_mx: bool, files: ControllerFiles) -> HostRecords:
    records = address_records(host) + ([tlsa_record(host, files)] if is_mx else [])
    return HostRecords(host.hostname, records,
                       None if has_address(host) else missing_address(host))


def has_address(host: MailHost) -> bool:
    return bool(host.dns.ipv4 or host.dns.ipv6)


def address_records(host: MailHost) -> list[Record]:
    """The host name's addresses, and those of the other names its certificate carries
    (mode acme: the CA checks each name reaches this host)."""
    return [Record(name, kind, host.dns.ttl, address)
            for name in host.tls.all_names(host.hostname)
            for kind, address in (("A", host.dns.ipv4), ("AAAA", host.dns.ipv6)) if address]


def missing_address(host: MailHost) -> str:
    return (f"A/AAAA for {host.hostname}: set mail_public_ipv4 / mail_public_ipv6 on host "
            f"{host.name}")


def tlsa_record(host: MailHost, files: ControllerFiles) -> Record:
    """DANE-EE (3 1 1): the SHA-256 of the key of the certificate served on port 25."""
    digest = hashlib.sha256(files.certificate_spki(host)).hexdigest()
    return Record(f"_25._tcp.{host.hostname}", "TLSA", host.dns.ttl, f"3 1 1 {digest}")


# --------------------------------------------------------------------------- controller files

def _role_default(name: str) -> object:
    return next(s.default for s in ROLE_SETTINGS if s.name == name)


class ControllerFiles:
    """The DKIM keys and TLS certificates on this machine, where a deploy takes them: the
    state directory (--ca-dir, else the inventory's mail_common_ca_dir, else the role's
    default beside the inventory) or, in mode files, paths relative to the inventory."""

    def __init__(self, inv: Inventory, ca_dir: Path | None):
        self.inv = inv
        # Ansible's inventory_dir: the inventory directory, or the inventory file's directory
        self.inventory_dir = inv.directory.resolve()
        self.ca_dir = ca_dir.resolve() if ca_dir else None
        self.scripts = roles_dir() / "mail_common" / "files"
        self._variables: dict[str, dict[str, object]] = {}

    def _role_setting(self, host: MailHost, name: str) -> object:
        """A mail_common role setting as the deploy of host sees it (extravars aside)."""
        if host.name not in self._variables:
            self._variables[host.name] = self.inv.host_vars(host.name).variables
        value = self._variables[host.name].get(name)
        return value if value not in (None, "") else _role_default(name)

    def state_dir(self, host: MailHost) -> Path:
        if self.ca_dir:
            return self.ca_dir
        value = str(self._role_setting(host, "mail_common_ca_dir"))
        return Path(value.replace("{{ inventory_dir }}", str(self.inventory_dir)))

    def _controller_path(self, path: str) -> Path:
        return self.inventory_dir / path  # an absolute path stays as it is

    def dkim_public_key(self, host: MailHost, domain: str, selector: str) -> str:
        """Base64 of the DER SubjectPublicKeyInfo of the domain's key for selector."""
        if host.dkim.mode == "files":
            path = self._controller_path(host.dkim.key_path("", domain, selector))
        else:
            state = self.state_dir(host)
            path = Path(host.dkim.key_path(str(state), domain, selector))
            if not path.is_file():
                self._run("mailctl-dkim.sh", str(state), domain, selector)
        return base64.b64encode(public_key_der(path, domain, selector)).decode("ascii")

    def certificate_spki(self, host: MailHost) -> bytes:
        """The DER SubjectPublicKeyInfo of the certificate host serves on port 25."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if host.tls.acme:  # the key stays across renewals: the record follows it
            state = self.state_dir(host)
            key_path = state / f"{host.hostname}.key"
            if not key_path.is_file():
                self._run("mailctl-ca.sh", "--key-only", str(state), host.hostname)
            return _spki(_private_key(key_path, f"{key_path}: TLS key of {host.name}"))
        if host.tls.mode == "selfsigned":
            state = self.state_dir(host)
            path = state / f"{host.hostname}.crt"
            if not path.is_file():
                days = str(self._role_setting(host, "mail_common_cert_days"))
                self._run("mailctl-ca.sh", str(state), host.hostname, days)
        else:
            path = self._controller_path(str(host.tls.cert_src))
        try:
            leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]  # a chain: leaf first
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the certificate of {host.name}: "
                             f"{exc}") from None
        return leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def _run(self, script: str, *args: str) -> None:
        proc = subprocess.run(["sh", str(self.scripts / script), *args], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MailctlError(f"{script} {' '.join(args)} failed: {detail}")


def public_key_der(path: Path, domain: str, selector: str) -> bytes:
    """The public half of a DKIM private key file (RSA: the records say k=rsa)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    where = f"{path}: DKIM key of {domain} (selector {selector})"
    key = _private_key(path, where)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{where}: not an RSA key (the records say k=rsa)")
    return _spki(key)


def _private_key(path: Path, where: str):
    """A private key file, read. Neither the key nor a parser's message about it is ever
    shown: only `where`."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise InputError(f"{where}: not an unencrypted PEM private key") from None


def _spki(key) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key's public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------- output

def txt_strings(value: str) -> list[str]:
    """value cut into character-strings of at most 255 bytes (the records are ASCII)."""
    data = value.encode()
    return [data[i:i + TXT_STRING_MAX].decode() for i in range(0, len(data), TXT_STRING_MAX)] \
        or [""]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def zone_rdata(record: Record) -> str:
    if record.type != "TXT":
        return record.value
    strings = [_quoted(s) for s in txt_strings(record.value)]
    # parentheses: one record made of several strings, which resolvers concatenate
    return strings[0] if len(strings) == 1 else f"( {' '.join(strings)} )"


def zone_line(record: Record) -> str:
    return f"{record.name}.\t{record.ttl}\tIN\t{record.type}\t{zone_rdata(record)}"


def _comments(lines: Iterable[str]) -> list[str]:
    return [f"; {line}".rstrip() for line in lines]


def to_zone(report: DnsReport) -> str:
    """Zone-file lines with absolute names: they paste into any zone."""
    out = ["; mailctl dns: the records to publish for the mail domains below"]
    for entry in report.domains:
        out += ["", f"; --- {entry.domain}"]
        for record in entry.records:
            out.append(zone_line(record))
            if record.name == f"_mta-sts.{entry.domain}" and entry.mta_sts_policy:
                out += _comments([f"MTA-STS policy: serve it at https://mta-sts.{entry.domain}"
                                  "/.well-known/mta-sts.txt (HTTPS, with a certificate a "
                                  "public CA signed):"])
                out += _comments(f"  {line}" for line in entry.mta_sts_policy.splitlines())
        out += _comments(entry.notes)
    out += ["", "; --- hosts"]
    for host in report.hosts:
        out += [zone_line(r) for r in host.records]
        out += _comments([f"missing: {host.missing}"] if host.missing else [])
    if any(r.type == "TLSA" for h in report.hosts for r in h.records):
        out += _comments(["TLSA records count only in a DNSSEC-signed zone; a new "
                          "certificate key needs its record published before it is deployed"])
    return "\n".join(out) + "\n"


def to_json(report: DnsReport) -> str:
    return json.dumps({
        "domains": {e.domain: {"records": [r.as_dict() for r in e.records],
                               "mta_sts_policy": e.mta_sts_policy,
                               "missing": e.missing, "notes": e.notes}
                    for e in report.domains},
        "hosts": {"records": [r.as_dict() for h in report.hosts for r in h.records],
                  "missing": [h.missing for h in report.hosts if h.missing]},
    }, indent=2) + "\n"
