"""Certificate expiry and names: what `mailctl certs` lists and `mailctl verify` asserts.

Pure functions over a certificate's PEM text; reading it from a host is the caller's job
(runner.read_files, or testinfra in the verify suite), and so is the clock (`now` is passed
in), so every rule here is unit-tested with made-up certificates and dates.

The threshold is relative as well as absolute: a certificate fails when the time left is below
min(min_days_left days, a sixth of its lifetime). A 90-day certificate fails under 14 days
left; a 6-day Let's Encrypt certificate (renewed at two thirds of its life, 2 days left) is
fine until 1 day is left; a 90-second test-CA certificate until 15 seconds are left. A client
renewing on schedule never trips it; one that stopped renewing trips it well before expiry.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from .model import MailHost

# a result of reading the certificate from a host: its bytes, or why it could not be read
Read = bytes | str


class CertError(ValueError):
    """The text is not a PEM certificate (or chain) this module can read."""


@dataclass(frozen=True)
class CertInfo:
    """What the checks and the listing need from a leaf certificate; nothing secret."""

    subject: str
    issuer: str  # readable: "CN=R11, O=Let's Encrypt"
    names: tuple[str, ...]  # the subjectAltName DNS names (clients ignore the CN)
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    serial: str  # lowercase hex
    spki_sha256: str  # hex SHA-256 of the DER SubjectPublicKeyInfo: pairs cert and key

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


def parse_pem(data: bytes | str) -> CertInfo:
    """The leaf (first certificate) of a PEM file that may hold a chain, leaf first."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        chain = x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate: {exc}") from None
    cert = chain[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return CertInfo(subject=readable_name(cert.subject), issuer=readable_name(cert.issuer),
                    names=names, not_before=_utc(cert, "not_valid_before"),
                    not_after=_utc(cert, "not_valid_after"),
                    serial=format(cert.serial_number, "x"),
                    spki_sha256=hashlib.sha256(spki).hexdigest())


def _utc(cert: x509.Certificate, attribute: str) -> datetime:
    # cryptography >= 42 has the aware *_utc properties; older ones give naive UTC datetimes
    aware = getattr(cert, f"{attribute}_utc", None)
    return aware if aware is not None else getattr(cert, attribute).replace(tzinfo=UTC)


def public_key_sha256(pem: bytes | str) -> str:
    """Hex SHA-256 of a PEM public key's DER SubjectPublicKeyInfo (what `openssl pkey -pubout`
    prints), to compare with CertInfo.spki_sha256: the installed key belongs to the cert."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as exc:
        raise CertError(f"not a PEM public key: {exc}") from None
    return hashlib.sha256(key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def readable_name(name: x509.Name) -> str:
    """CN and O, the parts a person recognises an issuer by; the whole RFC 4514 string when
    the name has neither."""
    parts = [f"{label}={attr.value}" for label, oid in (("CN", NameOID.COMMON_NAME),
                                                        ("O", NameOID.ORGANIZATION_NAME))
             for attr in name.get_attributes_for_oid(oid)]
    return ", ".join(parts) or name.rfc4514_string()


def covers(pattern: str, name: str) -> bool:
    """Whether a SAN DNS name covers a name the way TLS clients match (RFC 6125): equal, or a
    wildcard standing for exactly one whole leftmost label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*.") or "." not in name:
        return False
    label, rest = name.split(".", 1)
    return bool(label) and rest == pattern[2:]


def threshold(info: CertInfo, min_days: int) -> timedelta:
    """The least time left that is fine: min_days, or a sixth of the certificate's lifetime
    when that is shorter (short-lived certificates renew at two thirds of their life)."""
    return min(timedelta(days=min_days), info.lifetime / 6)


def judge(info: CertInfo, names: Iterable[str], min_days: int, now: datetime) -> list[str]:
    """What is wrong with the certificate at `now` (aware): not yet valid, expired, too little
    time left, names it does not carry. Empty when it is fine."""
    problems = []
    left = info.not_after - now
    if now < info.not_before:
        problems.append(f"not valid before {stamp(info.not_before)}")
    if left <= timedelta(0):
        problems.append(f"expired {stamp(info.not_after)} ({left_text(-left)} ago)")
    else:
        least = threshold(info, min_days)
        if left < least:
            why = (f"{min_days} d" if least == timedelta(days=min_days)
                   else f"{left_text(least)}, a sixth of its {left_text(info.lifetime)} "
                        "lifetime")
            problems.append(f"{left_text(left)} left, below {why}")
    missing = [n for n in names if not any(covers(p, n) for p in info.names)]
    if missing:
        problems.append(f"does not cover {', '.join(missing)}")
    return problems


def left_text(delta: timedelta) -> str:
    """A duration for people: days with one decimal from 1 day up, else hours (one decimal),
    minutes or seconds. Rounded down: a listing never shows more time than there is."""
    seconds = delta.total_seconds()
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    for unit, size, decimals in (("d", 86400, 1), ("h", 3600, 1), ("min", 60, 0)):
        if seconds >= size:
            return f"{sign}{_down(seconds / size, decimals)} {unit}"
    return f"{sign}{math.floor(seconds)} s"


def _down(value: float, decimals: int) -> str:
    scale = 10 ** decimals
    return f"{math.floor(value * scale + 1e-9) / scale:.{decimals}f}"


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- mailctl certs

@dataclass(frozen=True)
class Expect:
    """What a host's certificate must be: where it is installed, the names it must carry
    (the mail name first), and the days-left threshold (mail_tls.min_days_left)."""

    path: str
    names: tuple[str, ...]
    min_days: int


def expect(host: MailHost) -> Expect:
    """The expectation for a host, from its validated settings (mx hosts too: they serve
    TLS on port 25)."""
    from .render import tls_paths

    return Expect(tls_paths(host)["cert"], host.tls.all_names(host.hostname),
                  host.tls.min_days_left)


@dataclass(frozen=True)
class CertRow:
    """One host in `mailctl certs`: its certificate (None when it could not be read), the
    time left at the check, and what is wrong (empty: fine)."""

    host: str
    path: str
    info: CertInfo | None
    left: timedelta | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def check_hosts(wanted: Mapping[str, Expect],
                read: Callable[[dict[str, str]], Mapping[str, Read]],
                now: datetime) -> list[CertRow]:
    """One row per host of `wanted`, in its order. `read` fetches every certificate in one
    go ({host: path} -> {host: bytes, or why not}); a host it says nothing about fails."""
    got = read({h: e.path for h, e in wanted.items()})
    rows = []
    for host, e in wanted.items():
        data = got.get(host, "no answer from Ansible")
        if isinstance(data, str):
            why = data if e.path in data else f"cannot read {e.path}: {data}"
            rows.append(CertRow(host, e.path, None, None, (why,)))
            continue
        try:
            info = parse_pem(data)
        except CertError as exc:
            rows.append(CertRow(host, e.path, None, None, (f"{e.path}: {exc}",)))
            continue
        rows.append(CertRow(host, e.path, info, info.not_after - now,
                            tuple(judge(info, e.names, e.min_days, now))))
    return rows


def table(rows: Iterable[CertRow]) -> str:
    """Aligned columns, one line per host: host, names, issuer, not after, left, status."""
    lines = [("HOST", "NAMES", "ISSUER", "NOT AFTER (UTC)", "LEFT", "STATUS")]
    for r in rows:
        i = r.info
        lines.append((r.host,
                      (",".join(i.names) or "-") if i else "-",
                      i.issuer if i else "-",
                      i.not_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if i else "-",
                      left_text(r.left) if r.left is not None else "-",
                      "ok" if r.ok else "FAIL: " + "; ".join(r.problems)))
    widths = [max(len(line[c]) for line in lines) for c in range(5)]
    return "".join("  ".join([*(v.ljust(w) for v, w in zip(line[:5], widths, strict=True)),
                              line[5]]) + "\n" for line in lines)


def to_json(rows: Iterable[CertRow]) -> str:
    """The rows as JSON: ISO 8601 times, whole seconds left, problems as a list."""
    out = []
    for r in rows:
        i = r.info
        out.append({"host": r.host, "path": r.path, "ok": r.ok, "problems": list(r.problems),
                    "names": list(i.names) if i else None, "subject": i.subject if i else None,
                    "issuer": i.issuer if i else None,
                    "not_before": i.not_before.isoformat() if i else None,
                    "not_after": i.not_after.isoformat() if i else None,
                    "seconds_left": math.floor(r.left.total_seconds())
                    if r.left is not None else None,
                    "left": left_text(r.left) if r.left is not None else None,
                    "serial": i.serial if i else None,
                    "spki_sha256": i.spki_sha256 if i else None})
    return json.dumps(out, indent=2) + "\n"
