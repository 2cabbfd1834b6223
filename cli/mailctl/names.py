"""Domain, address and size syntax, and how mailctl normalises them.

Policy (mirrors what Postfix, Dovecot and Cyrus do with their lookup keys):
- Domains are case-insensitive; internationalised domains (IDNA 2008 / UTS #46) are stored
  in their ASCII form (xn--...), because Postfix matches domains in that form unless
  SMTPUTF8 is in use, and the stores key mailboxes by the login name.
- Local parts are folded to lower case (Postfix lowercases table lookup keys; Dovecot is set
  to %Lu, Cyrus to lowercase user ids) and must be ASCII: mailctl does not enable SMTPUTF8.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
MAX_SIZE = 2**63
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class NameSyntaxError(ValueError):
    """A name that is not acceptable; the message says why."""


def normalize_domain(value: object) -> str:
    """Return the lower-case ASCII (A-label) form of a domain, or raise NameSyntaxError."""
    if not isinstance(value, str) or not value.strip():
        raise NameSyntaxError(f"{value!r} is not a domain name")
    text = value.strip().rstrip(".")
    try:
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise NameSyntaxError(f"{value!r} is not a valid domain name") from None
    labels = ascii_form.split(".")
    if len(labels) < 2 or len(ascii_form) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise NameSyntaxError(f"{value!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise NameSyntaxError(f"{value!r} is not a valid domain name")
    return ascii_form


def normalize_fqdn(value: object) -> str:
    """A host name: a domain name with at least two labels (an FQDN)."""
    try:
        return normalize_domain(value)
    except NameSyntaxError:
        raise NameSyntaxError(f"{value!r} is not a fully qualified host name") from None


def normalize_address(value: object) -> str:
    """Return local@domain in mailctl's canonical form, or raise NameSyntaxError."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise NameSyntaxError(f"{value!r} is not an email address")
    local, _, domain = value.strip().partition("@")
    local = local.lower()
    if not local or len(local) > 64 or not local.isascii() or not _LOCAL.fullmatch(local):
        raise NameSyntaxError(f"{value!r} is not an email address")
    try:
        return f"{local}@{normalize_domain(domain)}"
    except NameSyntaxError:
        raise NameSyntaxError(f"{value!r} is not an email address") from None


def parse_size(value: object, *, what: str = "size") -> int:
    """Bytes from an int or a string such as '512M', '1.5G', '2GiB'. Zero means no limit."""
    if isinstance(value, bool):
        raise NameSyntaxError(f"{value!r} is not a {what}")
    if isinstance(value, int):
        if value < 0:
            raise NameSyntaxError(f"{value!r} is negative; a {what} must be 0 or more")
        return _bounded(value, value, what)
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        if m and (m.group(3) == "" or m.group(2) or m.group(3).lower() == "b") \
                and len(m.group(1)) <= 30:
            number, unit = Decimal(m.group(1)), m.group(2).lower()
            return _bounded(int(number * _UNITS[unit]), value, what)
        if value.strip().startswith("-"):
            raise NameSyntaxError(f"{value!r} is negative; a {what} must be 0 or more")
    raise NameSyntaxError(f"{value!r} is not a {what} (use bytes or a number with K, M, G or T)")


def _bounded(size: int, value: object, what: str) -> int:
    # Postfix and the stores keep sizes in signed 64-bit integers.
    if size >= MAX_SIZE:
        raise NameSyntaxError(f"{value!r} is too large for a {what}")
    return size


def parse_network(value: object) -> str:
    """A CIDR network as Postfix writes it in mynetworks ('[::1]/128' for IPv6)."""
    if not isinstance(value, str):
        raise NameSyntaxError(f"{value!r} is not a network in CIDR notation")
    text = value.strip()
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](/\d+)?", text)
    if m:
        text = m.group(1) + (m.group(2) or "")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NameSyntaxError(f"{value!r} is not a network in CIDR notation") from None
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


def parse_relayhost(value: object) -> str:
    """Postfix relayhost syntax: host, [host], host:port or [host]:port; '' for direct."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise NameSyntaxError(f"{value!r} is not a relay host")
    m = re.fullmatch(r"(\[(?P<bracketed>[^\]\s]+)\]|(?P<plain>[^\[\]:\s]+))(:(?P<port>\d{1,5}))?",
                     value.strip())
    if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
        raise NameSyntaxError(
            f"{value!r} is not a relay host (use host, [host], host:port or [host]:port)")
    host = m.group("bracketed") or m.group("plain")
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip and not m.group("bracketed"):
        raise NameSyntaxError(f"{value!r}: an IP address relay host must be written in [brackets]")
    if not is_ip:
        try:
            host = normalize_domain(host)
        except NameSyntaxError:
            raise NameSyntaxError(
                f"{value!r} is not a relay host: {host!r} is not a host name") from None
    text = f"[{host}]" if m.group("bracketed") else host
    return text + (f":{m.group('port')}" if m.group("port") else "")


def resolv_conf_nameservers(text: str) -> tuple[str, ...]:
    """The `nameserver` entries of an /etc/resolv.conf, as Ansible's dns facts read them."""
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return tuple(servers)
