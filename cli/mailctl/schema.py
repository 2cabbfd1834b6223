"""The one schema of the mail variables: names, types, defaults, choices and descriptions.

validate.py checks what the values mean; from this list come its defaults, the mail_common
role's meta/argument_specs.yml and the README's inventory table. `python -m mailctl.schema`
rewrites both files; tests/test_schema.py fails when they drift from this list.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .components import PLATFORMS, stores
from .model import (
    Bans,
    Dkim,
    Dmarc,
    DnsPublish,
    Limits,
    LoginThrottle,
    Postscreen,
    SendLimits,
    SieveSettings,
)

REQUIRED = object()  # the default of a variable every host must set


def span(seconds: int) -> str:
    """A duration as an inventory would write it: 10s, 1m, 12h, 7d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"



@dataclass(frozen=True)
class Setting:
    name: str
    type: str  # an argument_specs type: str, list, dict, int, path, raw
    default: Any
    description: str  # one sentence or two; Markdown backticks are fine in both outputs
    shown_default: str = ""  # the README's default column, when the value alone says too little
    elements: str | None = None
    choices: tuple[str, ...] | None = None
    spec_default: bool = True  # False: argument_specs states no default (it comes from facts)


SETTINGS: tuple[Setting, ...] = (
    Setting("mail_backend", "str", "dovecot", "The mail store on this host.",
            choices=stores()),
    Setting("mail_hostname", "str", REQUIRED,
            "The host's mail name (FQDN); its certificate is issued for it."),
    Setting("mail_domains", "list", REQUIRED,
            "Domains this host serves (not set on hosts in group `mx`, which relay the domains "
            "of the `mailstore` hosts).", elements="str"),
    Setting("mail_users", "list", [],
            "Users, each `{address, password | password_hash, quota, aliases, sieve}`. "
            "`sieve` (optional): the user's Sieve filters, `{owned, vacation: {subject, body, "
            "days, addresses, start, end}, rules: [{name, match, any, fileinto, flags, "
            "redirect, copy, discard, stop}], script}`, rendered into one script per user; "
            "`owned: true` makes it replace a script the user activated.",
            elements="dict"),
    Setting("mail_aliases", "list", [],
            "Aliases, each `{address, to}`; `address: \"@domain\"` is a catch-all.",
            elements="dict"),
    Setting("mail_relayhost", "str", "",
            "Smarthost for outgoing mail: `host`, `[host]`, `host:port`, `[host]:port`.",
            shown_default='`""` (direct)'),
    Setting("mail_mynetworks", "list", ["127.0.0.0/8", "[::1]/128"],
            "Networks allowed to relay without AUTH.", shown_default="loopback only",
            elements="str"),
    Setting("mail_message_size_limit", "raw", "25M",
            "Largest message accepted, in bytes or with a unit (`25M`, `1G`)."),
    Setting("mail_tls", "dict", {"mode": "selfsigned"},
            "`{mode: selfsigned}` (mailctl's local CA in `INVENTORY/.mailctl-ca`, key 0600, "
            "renewed by a deploy past two-thirds of its life), `{mode: files, cert, key, ca}` "
            "(files on the controller, relative to the inventory directory — keep them outside "
            "it, or Ansible reads them as inventory) or `{mode: acme, directory, contact, names, "
            "challenge: http-01 | dns-01, dns_hook, ca, directory_ca, renew_check}` (a "
            "certificate from an ACME CA — `directory`: a URL, `letsencrypt` or "
            "`letsencrypt-staging` — renewed on the host at two-thirds of its life; see "
            "\"Certificates\"). Every mode: `min_days_left` (default 14), below which verify and "
            "`mailctl certs` fail.",
            shown_default="selfsigned"),
    Setting("mail_dkim", "dict", {"mode": Dkim.mode, "selector": Dkim.selector},
            "DKIM signing of outgoing mail: `{mode: generate | files | off, selector, "
            "selectors: {domain: selector}, publish: [selector, ...], key_file}`. `generate` "
            "makes an RSA 2048 key per domain and selector beside the local CA; `files` reads "
            "`key_file`, a path with `{domain}` and `{selector}`; `publish` keeps more "
            "selectors in `mailctl dns` (rotation).", shown_default="generate, selector `mail`"),
    Setting("mail_dmarc", "dict", {"reject": Dmarc.reject, "policy": Dmarc.policy},
            "`{reject, policy, report_to}`: `reject` refuses inbound mail that fails DMARC for "
            "a domain publishing `p=reject`; `policy` (none, quarantine, reject) and "
            "`report_to` (default postmaster@domain) go into the DMARC record of `mailctl dns`.",
            shown_default="reject: true, policy: quarantine"),
    Setting("mail_public_ipv4", "str", "",
            "The host's public IPv4 address, for the A record and SPF of `mailctl dns`.",
            shown_default='`""` (not printed)'),
    Setting("mail_public_ipv6", "str", "",
            "The host's public IPv6 address, for the AAAA record and SPF of `mailctl dns`.",
            shown_default='`""` (not printed)'),
    Setting("mail_dns", "dict", {"ttl": DnsPublish.ttl, "mta_sts": DnsPublish.mta_sts},
            "`{ttl, mta_sts}` for `mailctl dns`: the records' TTL and the MTA-STS policy mode "
            "(testing, enforce, none).", shown_default="ttl 3600, mta_sts testing"),
    Setting("mail_postscreen", "dict", {"dnsbl_sites": list(Postscreen.dnsbl_sites),
                                        "greet_wait": Postscreen.greet_wait},
            "postscreen on port 25 of all-in-one and mx hosts: `{enabled, dnsbl_sites, "
            "dnsbl_threshold, greet_wait}`. A client that talks within `greet_wait` (a "
            "duration: seconds, or a number with s, m, h or d; 1s to 60s) is refused; "
            "`dnsbl_sites` (`domain`, `domain=filter`, either with `*weight`, e.g. "
            "`zen.spamhaus.org*3`) are looked up and a client whose weights reach "
            "`dnsbl_threshold` (1 to 100; default 3) is refused. No sites by default (no DNSBL "
            "lookups): list some for real use. `enabled: false` turns it off.",
            shown_default="on, no DNSBL sites"),
    Setting("mail_limits", "dict", {k: getattr(Limits, k) for k in (
                "window", "connections", "connection_rate", "message_rate", "recipient_rate",
                "auth_rate")},
            "Postfix limits per client address: `{enabled, window, connections, "
            "connection_rate, message_rate, recipient_rate, auth_rate}`. `connections` at "
            "once; the rates count connections, messages, recipients and AUTH commands per "
            "`window` (10s to 1d); each 0 to 100000, 0 for no limit. A client over one gets a "
            "4xx. `enabled: false` turns it off.",
            shown_default=f"{Limits.connections} at once; per {span(Limits.window)}: "
                          f"{Limits.connection_rate} connections, {Limits.message_rate} "
                          f"messages, {Limits.recipient_rate} recipients, {Limits.auth_rate} "
                          "AUTH"),
    Setting("mail_send_limits", "dict", {"limits": [{"count": limit.count, "per": limit.per}
                                                    for limit in SendLimits.limits]},
            "Recipients an authenticated user may send on 587 and 465 (policyd-rate-limit; "
            "Debian hosts under systemd): `{enabled, limits: [{count, per}], users: {address: "
            "[{count, per}]}}`. Each "
            "limit is `count` recipients (1 to 1000000) per sliding window `per` (10s to 30d); "
            "`users` gives some of the host's `mail_users` their own list instead. On by "
            "default on Debian, off elsewhere; `enabled: false` turns it off.",
            shown_default=", ".join(f"{limit.count} per {span(limit.per)}"
                                    for limit in SendLimits.limits) + " (Debian)"),
    Setting("mail_login_throttle", "dict",
            {"failure_delay": LoginThrottle.failure_delay,
             "sessions_per_user": LoginThrottle.sessions_per_user},
            "Logins to the store: `{enabled, failure_delay, sessions_per_user}`. "
            "`failure_delay` (1s to 15s) is the pause after a failed login (Dovecot's grows "
            "from it up to 15 s with repeated failures; Cyrus pauses this long every time); "
            "`sessions_per_user` (1 to 1000) caps IMAP/POP3 sessions per user (Dovecot: per "
            "user and client address). `enabled: false` turns it off.",
            shown_default=f"{span(LoginThrottle.failure_delay)}, "
                          f"{LoginThrottle.sessions_per_user} sessions"),
    Setting("mail_bans", "dict", {k: getattr(Bans, k) for k in (
                "maxretry", "findtime", "bantime", "action")},
            "fail2ban: `{enabled, maxretry, findtime, bantime, ignore, action}`. An address "
            "with `maxretry` (1 to 100) failed logins or postscreen rejections within "
            "`findtime` (10s to 7d) is banned from the mail ports for `bantime` (10s to 365d). "
            "`ignore` lists networks never banned (mynetworks and the other mx/mailstore hosts "
            "never are); `action`: `nftables` blocks, `none` only finds and lists offenders "
            "(containers without NET_ADMIN). `enabled: false` turns it off.",
            shown_default=f"{Bans.maxretry} failures in {span(Bans.findtime)}: banned "
                          f"{span(Bans.bantime)}"),
    Setting("mail_sieve", "dict", {"duplicates": SieveSettings.duplicates},
            "The stores' Sieve: `{duplicates}` drops a message whose Message-ID the user "
            "already received (Postfix delivering again after a crash lost the store's 250): "
            "Dovecot runs an RFC 7352 `duplicate` script before each user's, Cyrus its "
            "duplicatesuppression. Users' own filters: `mail_users[].sieve`.",
            shown_default="duplicates: true"),
    Setting("mail_platform", "str", "debian",
            "Platform family for `mailctl render`; a deploy reads the host's facts (and refuses "
            "a value that contradicts them).", choices=PLATFORMS, spec_default=False),
    Setting("mail_postfix_overrides", "dict", {},
            "Raw main.cf settings (the escape hatch): each replaces a rendered value in place, "
            "or is appended."),
    Setting("mail_dovecot_overrides", "dict", {},
            "Raw top-level dovecot.conf settings, like `mail_postfix_overrides`."),
    Setting("mail_cyrus_overrides", "dict", {},
            "Raw imapd.conf settings, like `mail_postfix_overrides`."),
)

# The mail_common role's own tunables (roles/mail_common/defaults/main.yml): not mail settings.
ROLE_SETTINGS: tuple[Setting, ...] = (
    Setting("mail_common_ca_dir", "path", "{{ inventory_dir }}/.mailctl-ca",
            "Directory on the controller holding mailctl's local CA."),
    Setting("mail_common_backend_override", "str", "",
            "One-run override of mail_backend (what C(mailctl deploy --backend) sets)."),
    Setting("mail_common_migrating", "bool", False,
            "Set by C(mailctl migrate) only: the old store's mail is copied, so the switch "
            "goes ahead and the old store's files stay on disk."),
    Setting("mail_common_cert_days", "int", 825,
            "Validity in days of a host certificate issued by the local CA."),
)

DEFAULTS: dict[str, Any] = {s.name: (None if s.default is REQUIRED else s.default)
                            for s in SETTINGS}

ROOT = Path(__file__).resolve().parents[2]
SPECS_FILE = ROOT / "roles" / "mail_common" / "meta" / "argument_specs.yml"
README = ROOT / "README.md"
TABLE_BEGIN = "<!-- generated from cli/mailctl/schema.py: begin -->"
TABLE_END = "<!-- generated from cli/mailctl/schema.py: end -->"

SPECS_HEADER = """\
---
# Generated from cli/mailctl/schema.py by `python -m mailctl.schema`: edit that file instead.
"""
SPECS_DESCRIPTION = [
    "Loads the platform profile (vars/<os_family>.yml), validates the mail_* variables with "
    "mailctl's schema (the same as C(mailctl validate); errors name the variable) and renders "
    "every configuration file with mailctl's templates.",
    "Installs the packages of the host's components (templates/components.yml) and applies "
    "them in the registry's order; refuses to switch stores while the old one holds mail.",
    "Issues the host's certificate from mailctl's local CA (on the controller), or installs "
    "the files named in mail_tls.",
    "Types here are loose on purpose; mailctl's schema checks values and reports each problem "
    "with its field.",
]


def _option(setting: Setting) -> dict[str, Any]:
    option: dict[str, Any] = {"type": setting.type}
    if setting.elements:
        option["elements"] = setting.elements
    if setting.choices:
        option["choices"] = list(setting.choices)
    if setting.default is REQUIRED:
        # mx hosts take mail_domains from the mailstore hosts: only mail_hostname is
        # required everywhere
        if setting.name == "mail_hostname":
            option["required"] = True
    elif setting.spec_default:
        option["default"] = setting.default
    option["description"] = setting.description.replace("`", "")
    return option


def argument_specs() -> str:
    spec = {"argument_specs": {"main": {
        "short_description": "Validated mail settings, rendered files, packages and TLS for "
                             "mailctl",
        "description": SPECS_DESCRIPTION,
        "author": "mailctl developers",
        "options": {s.name: _option(s) for s in SETTINGS + ROLE_SETTINGS},
    }}}
    return SPECS_HEADER + yaml.dump(spec, Dumper=_IndentedDumper, sort_keys=False, width=90,
                                    allow_unicode=True)


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint and the rest of the roles have them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def _shown(setting: Setting) -> str:
    if setting.shown_default:
        return setting.shown_default
    if setting.default is REQUIRED:
        return "required"
    return f"`{setting.default}`"


def readme_table() -> str:
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for s in SETTINGS:
        choices = f" One of {', '.join(f'`{c}`' for c in s.choices)}." if s.choices else ""
        meaning = s.description.replace("|", "\\|")  # a bare | would end the cell
        rows.append(f"| `{s.name}` | {meaning}{choices} | {_shown(s)} |")
    return "\n".join([TABLE_BEGIN, *rows, TABLE_END])


def readme_with_table(text: str) -> str:
    begin, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    return text[:begin] + readme_table() + text[end:]


def main() -> int:
    """Rewrite argument_specs.yml and the README's table from SETTINGS."""
    SPECS_FILE.write_text(argument_specs(), encoding="utf-8")
    README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {SPECS_FILE.relative_to(ROOT)} and the table in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
