"""The one schema for mailctl's inventory variables.

`check_host` turns a host's resolved variables into a MailHost, or collects every problem it
finds (it never stops at the first, and never raises on odd input: the fuzz tests hold it to
that). Each finding names the top-level variable it belongs to, so the inventory layer can say
which file defined it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import (
    ACME_CHALLENGES,
    ACME_PRESETS,
    BACKENDS,
    BAN_ACTIONS,
    DKIM_MODES,
    DMARC_POLICIES,
    MTA_STS_MODES,
    PLATFORMS,
    TLS_MODES,
    TOPOLOGY_GROUPS,
    Alias,
    Bans,
    Dkim,
    Dmarc,
    DnsPublish,
    Limits,
    LoginThrottle,
    MailHost,
    Postscreen,
    SendLimit,
    SendLimits,
    SieveSettings,
    Tls,
    User,
)
from .names import (
    NameSyntaxError,
    normalize_address,
    normalize_domain,
    normalize_fqdn,
    parse_network,
    parse_relayhost,
    parse_size,
)
from .schema import DEFAULTS, span  # every variable mailctl reads (None: required)
from .sieve import parse_filters

# On an mx host these come from the 'mailstore' hosts (see topology.py), never from its own vars.
MX_DERIVED = ("mail_domains", "mail_users", "mail_aliases")
USER_KEYS = ("address", "password", "password_hash", "quota", "aliases", "sieve")
ALIAS_KEYS = ("address", "to")
TLS_KEYS = ("mode", "cert", "key", "ca", "directory", "contact", "names", "challenge", "dns_hook",
            "directory_ca", "renew_check", "min_days_left")
TLS_KEYS_OF_MODE = {"selfsigned": ("mode", "min_days_left"),
                    "files": ("mode", "cert", "key", "ca", "min_days_left"),
                    "acme": ("mode", "ca", *TLS_KEYS[4:])}
# a duration: seconds, or a number with s, m (minutes), h or d (at most 10 digits: int() of
# thousands of digits raises)
_DURATION = re.compile(r"^([1-9][0-9]{0,9})\s*(s|m|min|h|d)?$")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DKIM_KEYS = ("mode", "selector", "selectors", "publish", "key_file")
DMARC_KEYS = ("reject", "policy", "report_to")
DNS_KEYS = ("ttl", "mta_sts")
# A DKIM selector is one DNS label (RFC 6376 allows dotted ones; mailctl keeps them simple).
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
POSTSCREEN_KEYS = ("enabled", "dnsbl_sites", "dnsbl_threshold", "greet_wait")
LIMITS_KEYS = ("enabled", "window", "connections", "connection_rate", "message_rate",
               "recipient_rate", "auth_rate")
SEND_LIMITS_KEYS = ("enabled", "limits", "users")
SEND_LIMIT_KEYS = ("count", "per")
LOGIN_THROTTLE_KEYS = ("enabled", "failure_delay", "sessions_per_user")
BANS_KEYS = ("enabled", "maxretry", "findtime", "bantime", "ignore", "action")
SIEVE_KEYS = ("duplicates",)
DAY = 86400
# postscreen_dnsbl_sites: domain[=filter][*weight]; each octet of a filter is a number or a
# bracketed list of numbers and ranges: 127.0.0.2, 127.0.0.[2..11], 127.0.0.[2;4]
_OCTET = r"(?:[0-9]{1,3}|\[[0-9]{1,3}(?:\.\.[0-9]{1,3})?(?:;[0-9]{1,3}(?:\.\.[0-9]{1,3})?)*\])"
_DNSBL_SITE = re.compile(rf"(?P<domain>[^\s=*,;\[\]]+)(?:=(?P<filter>{_OCTET}(?:\.{_OCTET}){{3}}))?"
                         r"(?:\*(?P<weight>-?[0-9]{1,3}))?")
_DNSBL_FORM = ("domain, domain=filter or either with *weight, e.g. zen.spamhaus.org*2 or "
               "bl.example.test=127.0.0.[2..11]*3")

# Dovecot password schemes mailctl accepts from the inventory: slow, salted ones only.
_STRONG_SCHEMES = ("SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "ARGON2I", "ARGON2ID", "CRYPT")
_CRYPT_PREFIXES = ("$6$", "$5$", "$2y$", "$2b$", "$y$", "$gy$", "$argon2i$", "$argon2id$")
_OVERRIDE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
# Role tunables (roles/mail_common/defaults) share the mail_ prefix but are not mail settings.
ROLE_PREFIXES = ("mail_common_",)


@dataclass(frozen=True)
class Finding:
    variable: str  # the top-level variable (used to find the file that set it)
    field: str  # the path inside it, e.g. mail_users[2].address
    message: str


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, variable: str, field: str, message: str) -> None:
        # One finding, one line: keys and values from the inventory may hold line breaks.
        def flat(text: str) -> str:
            return text.replace("\r", "\\r").replace("\n", "\\n")
        self.findings.append(Finding(variable, flat(field), flat(message)))


def check_host(name: str, variables: Mapping[str, Any], groups: list[str],
               backend_override: str | None = None) -> tuple[MailHost | None, list[Finding]]:
    """Validate one host's variables; return the MailHost (if valid) and all findings."""
    out = _Collector()
    _unknown_keys(variables, out)
    kind = _kind(groups, out)
    v = {k: variables.get(k, DEFAULTS[k]) for k in DEFAULTS}
    for key, default in DEFAULTS.items():
        if default is None and variables.get(key) in (None, "") and \
                not (kind == "mx" and key in MX_DERIVED):
            out.add(key, key, "is required")
    if kind == "mx":
        _mx_has_no_store(variables, out)

    # An mx host has no mail store: it relays to the hosts in group 'mailstore'.
    backend = None if kind == "mx" else backend_override or v["mail_backend"]
    if backend not in BACKENDS and kind != "mx":
        out.add("mail_backend", "mail_backend",
                f"{backend!r} is not a backend (choose {' or '.join(BACKENDS)})")
    platform = v["mail_platform"]
    if platform not in PLATFORMS:
        out.add("mail_platform", "mail_platform",
                f"{platform!r} is not a platform (choose one of {', '.join(PLATFORMS)})")

    hostname = (_one(out, "mail_hostname", v["mail_hostname"], normalize_fqdn)
                if v["mail_hostname"] not in (None, "") else None)
    domains = _domains(v["mail_domains"], out)
    if v["mail_domains"] not in (None, "") and not domains and not any(
            f.variable == "mail_domains" for f in out.findings):
        out.add("mail_domains", "mail_domains", "must list at least one domain")
    if hostname and hostname in domains:
        out.add("mail_hostname", "mail_hostname",
                f"{hostname!r} is also in mail_domains; Postfix delivers its own host name "
                "locally, so use a name such as mail.<domain>")
    users = _users(v["mail_users"], domains, backend, out)
    aliases = _aliases(v["mail_aliases"], domains, out)
    _cross_checks(users, aliases, domains, out)
    relayhost = _one(out, "mail_relayhost", v["mail_relayhost"], parse_relayhost)
    mynetworks = _mynetworks(v["mail_mynetworks"], out)
    size = _one(out, "mail_message_size_limit", v["mail_message_size_limit"],
                lambda x: parse_size(x, what="message size limit"))
    if size == 0:
        out.add("mail_message_size_limit", "mail_message_size_limit", "must be more than 0")
    tls = _tls(v["mail_tls"], hostname, domains, out)
    overrides = {k: _overrides(k, v[k], out) for k in
                 ("mail_postfix_overrides", "mail_dovecot_overrides", "mail_cyrus_overrides")}
    if kind != "allinone" and tls.acme:
        out.add("mail_tls", "mail_tls.mode", "'acme' is for all-in-one hosts for now: a "
                "mailstore trusts every client certificate from the CA of the mx and mailstore "
                "hosts, so theirs must be a private CA (selfsigned, or files with ca)")
    if kind != "allinone" and tls.mode == "files" and not tls.ca_src:
        out.add("mail_tls", "mail_tls.ca", "is required on 'mx' and 'mailstore' hosts with "
                "mode 'files': they trust each other through certificates from this CA, so it "
                "must be a private CA that signs only your mail hosts")

    dkim = _dkim(v["mail_dkim"], out)
    dmarc = _dmarc(v["mail_dmarc"], out)
    dns = _dns(v["mail_dns"], v["mail_public_ipv4"], v["mail_public_ipv6"], out)
    postscreen = _postscreen(v["mail_postscreen"], out)
    limits = _limits(v["mail_limits"], out)
    send_limits = _send_limits(v["mail_send_limits"], users, kind, platform, out)
    login_throttle = _login_throttle(v["mail_login_throttle"], out)
    bans = _bans(v["mail_bans"], out)
    sieve = _sieve(v["mail_sieve"], out)

    if out.findings:
        return None, out.findings
    return MailHost(
        name=name, hostname=hostname, backend=backend, kind=kind, platform=platform,
        domains=tuple(domains), users=tuple(users), aliases=tuple(aliases),
        relayhost=relayhost, mynetworks=tuple(mynetworks), message_size_limit=size, tls=tls,
        postfix_overrides=overrides["mail_postfix_overrides"],
        dovecot_overrides=overrides["mail_dovecot_overrides"],
        cyrus_overrides=overrides["mail_cyrus_overrides"],
        dkim=dkim, dmarc=dmarc, dns=dns, postscreen=postscreen, limits=limits,
        send_limits=send_limits, login_throttle=login_throttle, bans=bans, sieve=sieve,
    ), []


def _unknown_keys(variables: Mapping[str, Any], out: _Collector) -> None:
    for key in sorted(k for k in variables if isinstance(k, str) and k.startswith("mail_")):
        if key in DEFAULTS or key.startswith(ROLE_PREFIXES):
            continue
        guess = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.6)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        out.add(key, key, f"unknown mailctl variable{hint}")


def _one(out: _Collector, key: str, value: Any, parse, field: str | None = None) -> Any:
    try:
        return parse(value)
    except NameSyntaxError as exc:
        out.add(key, field or key, str(exc))
        return None


def _as_list(value: Any, key: str, field: str, out: _Collector) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    out.add(key, field, f"must be a list, not {type(value).__name__}")
    return []


def _domains(value: Any, out: _Collector) -> list[str]:
    domains: list[str] = []
    for i, item in enumerate(_as_list(value, "mail_domains", "mail_domains", out)):
        field = f"mail_domains[{i}]"
        try:
            domain = normalize_domain(item)
        except NameSyntaxError as exc:
            out.add("mail_domains", field, str(exc))
            continue
        if domain in domains:
            out.add("mail_domains", field, f"{item!r} is listed twice")
        else:
            domains.append(domain)
    return domains


def _in_served_domain(address: str, domains: list[str], key: str, field: str, what: str,
                      out: _Collector) -> bool:
    domain = address.split("@", 1)[1]
    if domains and domain not in domains:
        out.add(key, field, f"{what} {address!r} is in {domain!r}, which this host does not "
                            f"serve (mail_domains: {', '.join(domains)})")
        return False
    return True


def _users(value: Any, domains: list[str], backend: str, out: _Collector) -> list[User]:
    users: list[User] = []
    seen: set[str] = set()
    for i, item in enumerate(_as_list(value, "mail_users", "mail_users", out)):
        base = f"mail_users[{i}]"
        if not isinstance(item, Mapping):
            out.add("mail_users", base, "must be a mapping with at least 'address' and 'password'")
            continue
        for extra in sorted(str(k) for k in item if k not in USER_KEYS):
            guess = difflib.get_close_matches(extra, USER_KEYS, n=1)
            hint = f"; did you mean {guess[0]}?" if guess else ""
            out.add("mail_users", f"{base}.{extra}", f"unknown user setting{hint}")
        ok = True
        try:
            address = normalize_address(item.get("address"))
        except NameSyntaxError as exc:
            out.add("mail_users", f"{base}.address", str(exc))
            address, ok = "", False
        if address:
            ok &= _in_served_domain(address, domains, "mail_users", f"{base}.address", "user",
                                    out)
            if address in seen:
                out.add("mail_users", f"{base}.address", f"{address!r} is defined twice")
                ok = False
            seen.add(address)
        password, password_hash = item.get("password"), item.get("password_hash")
        if password in (None, "") and password_hash in (None, ""):
            out.add("mail_users", base, "has neither 'password' nor 'password_hash'")
            ok = False
        if password not in (None, "") and not isinstance(password, str):
            out.add("mail_users", f"{base}.password", "must be a string")
            ok = False
        if password_hash not in (None, ""):
            problem = _hash_problem(password_hash)
            if problem:
                out.add("mail_users", f"{base}.password_hash", problem)
                ok = False
            elif backend == "cyrus" and password in (None, ""):
                out.add("mail_users", f"{base}.password",
                        "the cyrus backend keeps SASL secrets in sasldb, which needs the clear "
                        "password (from Ansible Vault); a password_hash alone is not enough")
                ok = False
        quota = 0
        if item.get("quota") not in (None, ""):
            try:
                quota = parse_size(item.get("quota"), what="quota")
            except NameSyntaxError as exc:
                out.add("mail_users", f"{base}.quota", str(exc))
                ok = False
        aliases: list[str] = []
        for j, alias in enumerate(_as_list(item.get("aliases"), "mail_users",
                                           f"{base}.aliases", out)):
            try:
                alias_addr = normalize_address(alias)
            except NameSyntaxError as exc:
                out.add("mail_users", f"{base}.aliases[{j}]", str(exc))
                ok = False
                continue
            ok &= _in_served_domain(alias_addr, domains, "mail_users", f"{base}.aliases[{j}]",
                                    "alias", out)
            aliases.append(alias_addr)
        sieve, sieve_ok = parse_filters(item.get("sieve"), f"{base}.sieve", out,
                                        address=address, aliases=tuple(aliases))
        ok &= sieve_ok
        if ok:
            users.append(User(address=address, password=password or None,
                              password_hash=_canonical_hash(password_hash),
                              quota=quota, aliases=tuple(aliases), sieve=sieve))
    return users


def _hash_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if any(c in value for c in ":\n\r\t ") or not value.isascii():
        return "must be one line of printable ASCII without ':' or spaces"
    m = re.fullmatch(r"\{([A-Z0-9.-]+)\}(.+)", value)
    if m:
        if m.group(1) not in _STRONG_SCHEMES:
            return (f"scheme {m.group(1)!r} is weak or unknown; use one of "
                    f"{', '.join(_STRONG_SCHEMES)}")
        return None
    if value.startswith(_CRYPT_PREFIXES):
        return None
    return "is not a password hash mailctl accepts ({SHA512-CRYPT}$6$..., $6$..., $2y$..., $y$...)"


def _canonical_hash(value: Any) -> str | None:
    """Dovecot wants the scheme in braces; bare crypt(3) strings get {CRYPT}."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("{"):
        return value
    if value.startswith("$argon2"):
        return "{" + value.split("$")[1].upper() + "}" + value
    return "{CRYPT}" + value


def _aliases(value: Any, domains: list[str], out: _Collector) -> list[Alias]:
    aliases: list[Alias] = []
    seen: set[str] = set()
    for i, item in enumerate(_as_list(value, "mail_aliases", "mail_aliases", out)):
        base = f"mail_aliases[{i}]"
        if not isinstance(item, Mapping):
            out.add("mail_aliases", base, "must be a mapping with 'address' and 'to'")
            continue
        for extra in sorted(str(k) for k in item if k not in ALIAS_KEYS):
            out.add("mail_aliases", f"{base}.{extra}", "unknown alias setting (use address, to)")
        raw, ok = item.get("address"), True
        try:
            if isinstance(raw, str) and raw.startswith("@"):
                address = "@" + normalize_domain(raw[1:])  # catch-all
            else:
                address = normalize_address(raw)
        except NameSyntaxError as exc:
            out.add("mail_aliases", f"{base}.address",
                    f"{exc} (a catch-all is written '@domain')")
            address, ok = "", False
        if address:
            ok &= _in_served_domain("x" + address if address.startswith("@") else address,
                                    domains, "mail_aliases", f"{base}.address", "alias", out)
            if address in seen:
                out.add("mail_aliases", f"{base}.address", f"{address!r} is defined twice")
                ok = False
            seen.add(address)
        targets_raw = item.get("to")
        if isinstance(targets_raw, str):
            targets_raw = [targets_raw]
        targets: list[str] = []
        for j, target in enumerate(_as_list(targets_raw, "mail_aliases", f"{base}.to", out)):
            try:
                targets.append(normalize_address(target))
            except NameSyntaxError as exc:
                out.add("mail_aliases", f"{base}.to[{j}]", str(exc))
                ok = False
        if not targets and ok:
            out.add("mail_aliases", f"{base}.to", "names no recipient")
            ok = False
        if ok:
            aliases.append(Alias(address, tuple(targets)))
    return aliases


def _cross_checks(users: list[User], aliases: list[Alias], domains: list[str],
                  out: _Collector) -> None:
    """Collisions between users and aliases, dangling local targets, and alias loops."""
    user_addrs = {u.address for u in users}
    graph: dict[str, tuple[str, ...]] = {}
    for i, alias in enumerate(aliases):
        if alias.address in user_addrs:
            out.add("mail_aliases", f"mail_aliases[{i}].address",
                    f"{alias.address!r} is already a user; a user cannot also be an alias")
        graph[alias.address] = alias.targets
    for i, user in enumerate(users):
        for j, own in enumerate(user.aliases):
            if own in user_addrs:
                out.add("mail_users", f"mail_users[{i}].aliases[{j}]",
                        f"{own!r} is already a user")
            elif own in graph:
                out.add("mail_users", f"mail_users[{i}].aliases[{j}]",
                        f"{own!r} is also defined in mail_aliases")
            else:
                graph[own] = (user.address,)
    catchall = {a[1:] for a in graph if a.startswith("@")}

    def next_hops(addr: str) -> tuple[str, ...]:
        if addr in user_addrs:
            return ()
        if addr in graph:
            return graph[addr]
        domain = addr.split("@", 1)[1]
        return ("@" + domain,) if domain in catchall and not addr.startswith("@") else ()

    for i, alias in enumerate(aliases):
        field = f"mail_aliases[{i}]"
        for j, target in enumerate(alias.targets):
            domain = target.split("@", 1)[1]
            # A catch-all's own targets must exist: they would only be caught again.
            if (domain in domains and target not in user_addrs and target not in graph
                    and (domain not in catchall or alias.is_catchall)):
                out.add("mail_aliases", f"{field}.to[{j}]",
                        f"{target!r} is in a served domain but is neither a user nor an alias")
        if alias.is_catchall:
            continue  # a loop through a catch-all is reported on the named alias in it
        path = _find_loop(alias.address, next_hops)
        if path:
            shown = [a for a in path if not a.startswith("@")]
            out.add("mail_aliases", field, "alias loop: " + " -> ".join(shown))


def _find_loop(start: str, next_hops) -> list[str] | None:
    """Breadth-first search for a way from start back to start; the path if there is one."""
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        addr = queue.pop(0)
        for hop in next_hops(addr):
            if hop == start:
                path = [addr]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if addr != start else [start, start]
            if hop not in parent:
                parent[hop] = addr
                queue.append(hop)
    return None


def _mynetworks(value: Any, out: _Collector) -> list[str]:
    nets = []
    for i, item in enumerate(_as_list(value, "mail_mynetworks", "mail_mynetworks", out)):
        try:
            nets.append(parse_network(item))
        except NameSyntaxError as exc:
            out.add("mail_mynetworks", f"mail_mynetworks[{i}]", str(exc))
    return nets


def _tls(value: Any, hostname: str | None, domains: list[str], out: _Collector) -> Tls:
    if not isinstance(value, Mapping):
        out.add("mail_tls", "mail_tls", "must be a mapping such as {mode: selfsigned}")
        return Tls("selfsigned")
    mode = value.get("mode", "selfsigned")
    if mode not in TLS_MODES:
        out.add("mail_tls", "mail_tls.mode", f"{mode!r} is not a TLS mode (choose "
                                             f"{' or '.join(TLS_MODES)})")
        return Tls("selfsigned")
    known = TLS_KEYS_OF_MODE[mode]
    for extra in sorted(str(k) for k in value if k not in known):
        where = ("unknown TLS setting" if extra not in TLS_KEYS
                 else f"is not a setting of mode {mode!r}")
        out.add("mail_tls", f"mail_tls.{extra}", f"{where} (use {', '.join(known)})")
    min_days = _count(value.get("min_days_left", Tls.min_days_left), 0, 3650,
                      "mail_tls.min_days_left", out)
    for key in ("ca", "directory_ca", "dns_hook"):
        if value.get(key) is not None and not (isinstance(value[key], str) and value[key]):
            out.add("mail_tls", f"mail_tls.{key}", "must be a path")
    if mode == "files":
        for key in ("cert", "key"):
            if not isinstance(value.get(key), str) or not value.get(key):
                out.add("mail_tls", f"mail_tls.{key}", "is required when mode is 'files'")
        return Tls(mode, value.get("cert"), value.get("key"), value.get("ca"),
                   min_days_left=min_days)
    if mode == "acme":
        return _acme(value, hostname, domains, min_days, out)
    return Tls(mode, min_days_left=min_days)


def _acme(value: Mapping, hostname: str | None, domains: list[str], min_days: int,
          out: _Collector) -> Tls:
    directory = value.get("directory")
    directory = ACME_PRESETS.get(directory, directory) if isinstance(directory, str) else None
    if not directory:
        out.add("mail_tls", "mail_tls.directory", "is required when mode is 'acme' (an "
                f"https:// URL, or {' or '.join(ACME_PRESETS)})")
    elif not re.fullmatch(r"https://[^\s/]+(/\S*)?", directory):
        out.add("mail_tls", "mail_tls.directory", f"{directory!r} is not an https:// URL (or "
                f"one of {', '.join(ACME_PRESETS)})")
    contact = value.get("contact")
    if contact in (None, ""):
        out.add("mail_tls", "mail_tls.contact", "is required when mode is 'acme' (the e-mail "
                "address the CA writes to about the account and expiring certificates)")
        contact = ""
    else:
        contact = _one(out, "mail_tls", contact, normalize_address, "mail_tls.contact") or ""
    names = []
    allowed = tuple(dict.fromkeys(d for d in (*domains, _parent(hostname)) if d))
    for i, item in enumerate(_as_list(value.get("names", []), "mail_tls", "mail_tls.names",
                                      out)):
        name = _one(out, "mail_tls", item, normalize_fqdn, f"mail_tls.names[{i}]")
        if name is None:
            continue
        if not any(name == d or name.endswith("." + d) for d in allowed):
            out.add("mail_tls", f"mail_tls.names[{i}]",
                    f"{name!r} is neither this host's name nor under one of its mail domains "
                    f"or its name's domain ({', '.join(allowed)})")
            continue
        names.append(name)
    challenge = _choice(value.get("challenge", Tls.challenge), ACME_CHALLENGES, Tls.challenge,
                        "mail_tls.challenge", "an ACME challenge", out)
    if challenge == "dns-01" and not value.get("dns_hook"):
        out.add("mail_tls", "mail_tls.dns_hook", "is required when challenge is 'dns-01' (the "
                "program that publishes _acme-challenge TXT records: see the README)")
    if challenge == "http-01" and value.get("dns_hook"):
        out.add("mail_tls", "mail_tls.dns_hook", "is only used with challenge 'dns-01'")
    renew_check = _duration(value.get("renew_check", Tls.renew_check), 5, 7 * DAY,
                            "mail_tls.renew_check", out, fallback=Tls.renew_check)
    return Tls("acme", ca_src=value.get("ca"), directory=directory or "", contact=contact,
               names=tuple(names), challenge=challenge, dns_hook=value.get("dns_hook"),
               directory_ca=value.get("directory_ca"), renew_check=renew_check,
               min_days_left=min_days)


def _parent(hostname: str | None) -> str:
    return hostname.split(".", 1)[1] if hostname and "." in hostname else ""


def _count(value: Any, low: int, high: int, field: str, out: _Collector) -> int:
    """An integer setting within [low, high]; a finding (and low) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    out.add(field.split(".", 1)[0], field, f"{value!r} is not a whole number from {low} to "
                                           f"{high}")
    return low


def _duration(value: Any, low: int, high: int, field: str, out: _Collector,
              fallback: int = 0) -> int:
    """Seconds within [low, high], from an integer or a string such as '12h', '30m', '10s';
    a finding (and fallback) otherwise."""
    seconds = 0
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = int(match[1]) * _DURATION_UNITS[match[2]]
    if not low <= seconds <= high:
        out.add(field.split(".", 1)[0], field,
                f"{value!r} is not a duration from {span(low)} to {span(high)} (seconds, or a "
                "number with s, m, h or d)")
        return fallback
    return seconds


def _enabled(value: Mapping, key: str, out: _Collector, default: bool = True,
             field: str = "enabled") -> bool:
    enabled = value.get(field, default)
    if not isinstance(enabled, bool):
        out.add(key, f"{key}.{field}", f"{enabled!r} is not true or false")
        return default
    return enabled


def _settings_map(key: str, value: Any, known: tuple[str, ...], out: _Collector) -> Mapping:
    """A dict setting: its mapping, with every unknown key reported (empty when it is not a
    mapping at all)."""
    if not isinstance(value, Mapping):
        out.add(key, key, f"must be a mapping (keys: {', '.join(known)})")
        return {}
    for extra in sorted(str(k) for k in value if k not in known):
        out.add(key, f"{key}.{extra}", f"unknown setting (use {', '.join(known)})")
    return value


def _choice(value: Any, choices: tuple[str, ...], fallback: str, field: str, what: str,
            out: _Collector) -> str:
    """value if it is one of choices, else a finding (field is 'variable.key') and
    fallback."""
    if value in choices:
        return value
    out.add(field.split(".", 1)[0], field,
            f"{value!r} is not {what} (choose {', '.join(choices)})")
    return fallback


def _selector(value: Any, field: str, out: _Collector) -> str | None:
    if isinstance(value, str) and _SELECTOR.fullmatch(value):
        return value
    out.add("mail_dkim", field, f"{value!r} is not a valid selector (one DNS label: lower-case "
                                "letters, digits and '-', at most 63)")
    return None


def _dkim(value: Any, out: _Collector) -> Dkim:
    value = _settings_map("mail_dkim", value, DKIM_KEYS, out)
    mode = value.get("mode", Dkim.mode)
    if mode is False:
        mode = "off"  # YAML reads an unquoted off as false
    mode = _choice(mode, DKIM_MODES, "off", "mail_dkim.mode", "a DKIM mode", out)
    selector = (_selector(value.get("selector", Dkim.selector), "mail_dkim.selector", out)
                or Dkim.selector)
    per_domain = []
    raw = value.get("selectors") or {}
    if not isinstance(raw, Mapping):
        out.add("mail_dkim", "mail_dkim.selectors", "must be a mapping of domain to selector")
        raw = {}
    for domain, sel in raw.items():
        field = f"mail_dkim.selectors.{domain}"
        try:
            domain = normalize_domain(domain)
        except NameSyntaxError as exc:
            out.add("mail_dkim", field, str(exc))
            continue
        # (one served by no host of the inventory is the inventory's finding: group_vars
        # may hold every store's selectors)
        if _selector(sel, field, out):
            per_domain.append((domain, sel))
    publish = []
    for i, sel in enumerate(_as_list(value.get("publish") or [], "mail_dkim",
                                     "mail_dkim.publish", out)):
        if _selector(sel, f"mail_dkim.publish[{i}]", out):
            publish.append(sel)
    key_file = value.get("key_file")
    if mode == "files":
        if not isinstance(key_file, str) or not key_file:
            out.add("mail_dkim", "mail_dkim.key_file", "is required when mode is 'files' (a "
                    "path with {domain} and {selector})")
            key_file = None
        else:
            try:
                key_file.format(domain="d", selector="s")
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
                out.add("mail_dkim", "mail_dkim.key_file",
                        f"may hold only {{domain}} and {{selector}} ({exc})")
                key_file = None
    elif key_file is not None:
        out.add("mail_dkim", "mail_dkim.key_file", "is read only when mode is 'files'")
    return Dkim(mode, selector, tuple(per_domain), tuple(publish), key_file)


def _dmarc(value: Any, out: _Collector) -> Dmarc:
    value = _settings_map("mail_dmarc", value, DMARC_KEYS, out)
    reject = value.get("reject", Dmarc.reject)
    if not isinstance(reject, bool):
        out.add("mail_dmarc", "mail_dmarc.reject", "must be true or false")
        reject = Dmarc.reject
    policy = _choice(value.get("policy", Dmarc.policy), DMARC_POLICIES, Dmarc.policy,
                     "mail_dmarc.policy", "a DMARC policy", out)
    report_to = value.get("report_to") or ""
    if report_to:
        try:
            report_to = normalize_address(report_to)
        except NameSyntaxError as exc:
            out.add("mail_dmarc", "mail_dmarc.report_to", str(exc))
            report_to = ""
    return Dmarc(reject, policy, report_to)


def _dns(value: Any, ipv4: Any, ipv6: Any, out: _Collector) -> DnsPublish:
    value = _settings_map("mail_dns", value, DNS_KEYS, out)
    ttl = value.get("ttl", DnsPublish.ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= 604800:
        out.add("mail_dns", "mail_dns.ttl", "must be a number of seconds from 60 to 604800")
        ttl = DnsPublish.ttl
    mta_sts = _choice(value.get("mta_sts", DnsPublish.mta_sts), MTA_STS_MODES,
                      DnsPublish.mta_sts, "mail_dns.mta_sts", "an MTA-STS mode", out)
    addresses = []
    for key, version in (("mail_public_ipv4", 4), ("mail_public_ipv6", 6)):
        raw = {4: ipv4, 6: ipv6}[version]
        if raw in (None, ""):
            addresses.append("")
            continue
        try:
            address = ipaddress.ip_address(str(raw))
            if address.version != version:
                raise ValueError(f"is an IPv{address.version} address")
            if address.is_loopback or address.is_unspecified or address.is_multicast \
                    or address.is_link_local:
                raise ValueError("is not an address other hosts can reach")
            addresses.append(str(address))
        except ValueError as exc:
            out.add(key, key, f"{raw!r}: {exc}")
            addresses.append("")
    return DnsPublish(addresses[0], addresses[1], ttl, mta_sts)


def _postscreen(value: Any, out: _Collector) -> Postscreen:
    value = _settings_map("mail_postscreen", value, POSTSCREEN_KEYS, out)
    enabled = _enabled(value, "mail_postscreen", out)
    sites = []
    for i, item in enumerate(_as_list(value.get("dnsbl_sites", []), "mail_postscreen",
                                      "mail_postscreen.dnsbl_sites", out)):
        site = _dnsbl_site(item, f"mail_postscreen.dnsbl_sites[{i}]", out)
        if site:
            sites.append(site)
    threshold = _count(value.get("dnsbl_threshold", Postscreen.dnsbl_threshold), 1, 100,
                       "mail_postscreen.dnsbl_threshold", out)
    greet_wait = _duration(value.get("greet_wait", Postscreen.greet_wait), 1, 60,
                           "mail_postscreen.greet_wait", out)
    return Postscreen(enabled, tuple(sites), threshold, greet_wait)


def _dnsbl_site(item: Any, field: str, out: _Collector) -> str | None:
    """One postscreen_dnsbl_sites entry, its domain in A-label form; None (and a finding) when
    it is not one."""
    match = _DNSBL_SITE.fullmatch(item) if isinstance(item, str) else None
    if not match:
        hint = " (one site per entry)" if isinstance(item, str) and "," in item else ""
        out.add("mail_postscreen", field, f"{item!r} is not a DNSBL site{hint}: use "
                                          f"{_DNSBL_FORM}")
        return None
    domain, filter_, weight = match["domain"], match["filter"], match["weight"]
    try:
        domain = normalize_domain(domain)
    except NameSyntaxError:
        out.add("mail_postscreen", field, f"{item!r}: {domain!r} is not a valid domain name")
        return None
    if filter_ and any(int(n) > 255 for n in re.findall(r"[0-9]+", filter_)):
        out.add("mail_postscreen", field, f"{item!r}: the filter's numbers are address "
                                          "octets, from 0 to 255")
        return None
    if weight and not -100 <= int(weight) <= 100:
        out.add("mail_postscreen", field, f"{item!r}: the weight must be from -100 to 100")
        return None
    return domain + (f"={filter_}" if filter_ else "") + (f"*{int(weight)}" if weight else "")


def _limits(value: Any, out: _Collector) -> Limits:
    value = _settings_map("mail_limits", value, LIMITS_KEYS, out)
    enabled = _enabled(value, "mail_limits", out)
    window = _duration(value.get("window", Limits.window), 10, DAY, "mail_limits.window", out)
    counts = {key: _count(value.get(key, getattr(Limits, key)), 0, 100000, f"mail_limits.{key}",
                          out) for key in LIMITS_KEYS[2:]}
    return Limits(enabled, window, **counts)


def _send_limits(value: Any, users: list[User], kind: str, platform: str,
                 out: _Collector) -> SendLimits:
    value = _settings_map("mail_send_limits", value, SEND_LIMITS_KEYS, out)
    # policyd-rate-limit is packaged for Debian only: off elsewhere unless asked for
    enabled = _enabled(value, "mail_send_limits", out, default=platform == "debian")
    if enabled and kind != "mx" and platform in PLATFORMS and platform != "debian":
        out.add("mail_send_limits", "mail_send_limits.enabled",
                "policyd-rate-limit is packaged for Debian only; set mail_send_limits: "
                f"{{enabled: false}} on {platform} hosts")
    if "limits" in value:
        limits = _send_limit_list(value["limits"], "mail_send_limits.limits", out)
        if enabled and not limits and not _has_findings(out, "mail_send_limits.limits"):
            out.add("mail_send_limits", "mail_send_limits.limits",
                    "lists no limit; turn sending limits off with enabled: false")
    else:
        limits = SendLimits.limits
    per_user = []
    raw = value.get("users") or {}
    if not isinstance(raw, Mapping):
        out.add("mail_send_limits", "mail_send_limits.users",
                "must be a mapping of user address to limits, e.g. {alice@example.test: "
                "[{count: 50, per: 1h}]}")
        raw = {}
    # an mx host has no users: it ignores theirs (group_vars may hold the stores' settings);
    # a user mail_users already reports is not reported again here
    check_users = kind != "mx" and not any(f.variable == "mail_users" for f in out.findings)
    known, seen = {u.address for u in users}, set()
    for key, item in raw.items():
        field = f'mail_send_limits.users["{key}"]'
        try:
            address = normalize_address(key)
        except NameSyntaxError as exc:
            out.add("mail_send_limits", field, str(exc))
            continue
        own = _send_limit_list(item, field, out)
        if address in seen:
            out.add("mail_send_limits", field, f"{address!r} is listed twice")
        elif check_users and address not in known:
            out.add("mail_send_limits", field, f"{address!r} is not one of this host's "
                                               "mail_users")
        elif not own and not _has_findings(out, field):
            out.add("mail_send_limits", field, "lists no limit (leave the user out to apply "
                                               "mail_send_limits.limits)")
        else:
            per_user.append((address, own))
        seen.add(address)
    return SendLimits(enabled, limits, tuple(sorted(per_user, key=lambda u: u[0])))


def _send_limit_list(value: Any, field: str, out: _Collector) -> tuple[SendLimit, ...]:
    limits: list[SendLimit] = []
    for i, item in enumerate(_as_list(value, "mail_send_limits", field, out)):
        here = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            out.add("mail_send_limits", here, "must be a mapping such as {count: 200, per: 1h}")
            continue
        for extra in sorted(str(k) for k in item if k not in SEND_LIMIT_KEYS):
            out.add("mail_send_limits", f"{here}.{extra}", "unknown setting (use count, per)")
        missing = [k for k in SEND_LIMIT_KEYS if k not in item]
        for key in missing:
            out.add("mail_send_limits", f"{here}.{key}", "is required (e.g. {count: 200, "
                                                         "per: 1h})")
        if missing:
            continue
        count = _count(item["count"], 1, 1000000, f"{here}.count", out)
        per = _duration(item["per"], 10, 30 * DAY, f"{here}.per", out)
        if per and per in (limit.per for limit in limits):
            out.add("mail_send_limits", f"{here}.per", f"{item['per']!r}: another limit of "
                    f"this list is per {span(per)} too; give each window one count")
        elif per:
            limits.append(SendLimit(count, per))
    return tuple(limits)


def _has_findings(out: _Collector, field: str) -> bool:
    return any(f.field.startswith(field) for f in out.findings)


def _login_throttle(value: Any, out: _Collector) -> LoginThrottle:
    value = _settings_map("mail_login_throttle", value, LOGIN_THROTTLE_KEYS, out)
    enabled = _enabled(value, "mail_login_throttle", out)
    # Dovecot's delay grows from this base up to 15 s: a larger base would not grow
    delay = _duration(value.get("failure_delay", LoginThrottle.failure_delay), 1, 15,
                      "mail_login_throttle.failure_delay", out)
    sessions = _count(value.get("sessions_per_user", LoginThrottle.sessions_per_user), 1, 1000,
                      "mail_login_throttle.sessions_per_user", out)
    return LoginThrottle(enabled, delay, sessions)


def _bans(value: Any, out: _Collector) -> Bans:
    value = _settings_map("mail_bans", value, BANS_KEYS, out)
    enabled = _enabled(value, "mail_bans", out)
    maxretry = _count(value.get("maxretry", Bans.maxretry), 1, 100, "mail_bans.maxretry", out)
    findtime = _duration(value.get("findtime", Bans.findtime), 10, 7 * DAY,
                         "mail_bans.findtime", out)
    bantime = _duration(value.get("bantime", Bans.bantime), 10, 365 * DAY, "mail_bans.bantime",
                        out)
    ignore = []
    for i, item in enumerate(_as_list(value.get("ignore", []), "mail_bans", "mail_bans.ignore",
                                      out)):
        try:
            # fail2ban's ignoreip takes IPv6 networks without Postfix's brackets
            ignore.append(parse_network(item).replace("[", "").replace("]", ""))
        except NameSyntaxError as exc:
            out.add("mail_bans", f"mail_bans.ignore[{i}]", str(exc))
    action = _choice(value.get("action", Bans.action), BAN_ACTIONS, Bans.action,
                     "mail_bans.action", "a ban action", out)
    return Bans(enabled, maxretry, findtime, bantime, tuple(ignore), action)


def _sieve(value: Any, out: _Collector) -> SieveSettings:
    value = _settings_map("mail_sieve", value, SIEVE_KEYS, out)
    duplicates = _enabled(value, "mail_sieve", out, field="duplicates")
    return SieveSettings(duplicates)


def _overrides(key: str, value: Any, out: _Collector) -> dict:
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        out.add(key, key, "must be a mapping of setting names to values")
        return {}
    result = {}
    for name, setting in value.items():
        if not isinstance(name, str) or not _OVERRIDE_KEY.fullmatch(name):
            out.add(key, f"{key}.{name}", "is not a setting name")
        elif isinstance(setting, (Mapping, list, tuple)) or setting is None:
            out.add(key, f"{key}.{name}", "must be a single value (string, number or boolean)")
        elif isinstance(setting, str) and "\n" in setting:
            out.add(key, f"{key}.{name}", "must not contain a newline")
        else:
            result[name] = setting
    return result


def _mx_has_no_store(variables: Mapping[str, Any], out: _Collector) -> None:
    for key in MX_DERIVED:
        if variables.get(key) not in (None, "", [], ()):
            out.add(key, key, "must not be set on an 'mx' host: it relays the domains, users "
                              "and aliases of the hosts in group 'mailstore'; set it there")


def _kind(groups: list[str], out: _Collector) -> str:
    member = [g for g in TOPOLOGY_GROUPS if g in groups]
    if len(member) > 1:
        out.add("group_names", "groups", "a host cannot be in both 'mx' and 'mailstore'")
        return "allinone"
    return member[0] if member else "allinone"
