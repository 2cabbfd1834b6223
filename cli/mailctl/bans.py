"""fail2ban's bans on the mail hosts: what `mailctl bans` lists, and lifts with --unban.

One shell command per host (remote_command) asks fail2ban-client for everything at once: the
host's UTC offset, the unban when asked, `fail2ban-client banned` (the addresses per jail) and
`fail2ban-client get JAIL banip --with-time` for each jail (when each ban ends). Running it is
the caller's job (runner.run_commands); everything here is pure and unit-tested with the text
fail2ban 1.0.2 (Debian 12) prints:

    banned                     [{'mailctl-postfix-sasl': ['192.0.2.61']}, {'mailctl-dovecot': []}]
    get JAIL banip --with-time 192.0.2.61 \t2026-12-02 09:10:11 + 3600 = 2026-12-02 10:10:11
    unban IP                   2   (the number of jails it was removed from)

`banned` is a Python literal, read with ast.literal_eval (never eval). The times are in the
host's local time; with its offset (`date +%z`) they become UTC. A ban time of -1 is a
permanent ban. Time data that is missing or unreadable only leaves the time out.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from .errors import InputError
from .runner import CommandResult

# a result of running the command on a host: what it printed, or why it did not run
Ran = CommandResult | str

MARK = "@@mailctl"  # starts the lines that separate the command's sections


class BansError(ValueError):
    """fail2ban-client printed something this module cannot read."""


def unban_address(text: str) -> str:
    """The --unban value as fail2ban writes addresses (ipaddress' normal form), or InputError
    naming the option: nothing else may reach a host's shell."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InputError(f"--unban: {text!r} is not an IP address") from None


def remote_command(unban: str | None = None) -> str:
    """The one shell command run on each host (as root). Its sections, each after a
    '@@mailctl NAME' line: tz (UTC offset), unban (when asked), banned, then one 'jail NAME'
    per jail. It stops with fail2ban-client's exit code when unban or banned fails (255: the
    server is not running); a jail whose times cannot be read is skipped."""
    parts = [f'echo "{MARK} tz $(date +%z)"']
    if unban is not None:
        parts.append(f"echo '{MARK} unban'; "
                     f"fail2ban-client unban {shlex.quote(unban_address(unban))} || exit")
    parts.append(f"echo '{MARK} banned'; fail2ban-client banned || exit")
    parts.append("for j in $(fail2ban-client status | sed -n 's/^.*Jail list:[[:space:]]*//p'"
                 " | tr ',' ' '); do "
                 f'echo "{MARK} jail $j"; fail2ban-client get "$j" banip --with-time; done')
    parts.append("true")
    return "; ".join(parts)


# --------------------------------------------------------------------------- parsing

def sections(stdout: str) -> tuple[dict[str, str], dict[str, str]]:
    """The command's output as ({section: text}, {jail: its --with-time text}); the tz
    section's text is the offset on its marker line."""
    named: dict[str, list[str]] = {}
    jails: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            words = line[len(MARK):].split()
            name, rest = (words[0], " ".join(words[1:])) if words else ("", "")
            if name == "jail" and rest:
                current = jails.setdefault(rest, [])
            elif name == "tz":
                named["tz"] = [rest]
                current = None
            else:
                current = named.setdefault(name, [])
            continue
        if current is not None:
            current.append(line)
    return ({k: "\n".join(v).strip() for k, v in named.items()},
            {k: "\n".join(v) for k, v in jails.items()})


def parse_banned(text: str) -> dict[str, list[str]]:
    """`fail2ban-client banned`: a Python literal, a list of {jail: [address, ...]} (also a
    plain {jail: [...]}), as {jail: [address, ...]} in fail2ban's order."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise BansError(f"not a fail2ban ban list: {_short(text)}") from None
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list | tuple):
        raise BansError(f"not a fail2ban ban list: {_short(text)}")
    out: dict[str, list[str]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise BansError(f"not a fail2ban ban list: {_short(text)}")
        for jail, addresses in item.items():
            if not isinstance(jail, str) or not isinstance(addresses, list | tuple) \
                    or not all(isinstance(a, str) for a in addresses):
                raise BansError(f"not a fail2ban ban list: {_short(text)}")
            out.setdefault(jail, []).extend(addresses)
    return out


@dataclass(frozen=True)
class Until:
    """When a ban ends: `at` (aware when the host's offset was known, else the host's local
    time), or never (a permanent ban)."""

    at: datetime | None
    permanent: bool = False


_WITH_TIME = re.compile(
    r"^\s*(?P<address>\S+)\s+(?P<start>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)\s*"
    r"\+\s*(?P<bantime>-?\d+)\s*=\s*(?P<end>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)\s*$")


def parse_with_time(text: str, offset: timezone | None = None) -> dict[str, Until]:
    """`fail2ban-client get JAIL banip --with-time`, one 'ADDRESS \\tSTART + BANTIME = END' a
    line, as {address: Until}. Lines of another shape are skipped; a ban time below zero (or
    an end in the year 9999) is a permanent ban."""
    out: dict[str, Until] = {}
    for line in text.splitlines():
        m = _WITH_TIME.match(line)
        if not m:
            continue
        if int(m["bantime"]) < 0 or m["end"].startswith("9999-"):
            out[_key(m["address"])] = Until(None, permanent=True)
            continue
        try:
            end = datetime.fromisoformat(m["end"].replace(" ", "T"))
        except ValueError:
            continue
        if offset is not None:
            end = end.replace(tzinfo=offset).astimezone(UTC)
        out[_key(m["address"])] = Until(end)
    return out


def parse_offset(text: str) -> timezone | None:
    """`date +%z` ('+0100', '-0530') as a timezone; None when it is not one."""
    m = re.fullmatch(r"\s*([+-])(\d\d):?(\d\d)\s*", text or "")
    if not m:
        return None
    delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
    return timezone(-delta if m[1] == "-" else delta)


def _key(address: str) -> str:
    """An address in one spelling, to match `banned` with `--with-time`."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _short(text: str, limit: int = 200) -> str:
    one = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return repr(one if len(one) <= limit else one[:limit] + "...")


# --------------------------------------------------------------------------- per host

@dataclass(frozen=True)
class Ban:
    host: str
    jail: str
    address: str
    until: Until | None = None  # None: fail2ban did not say


@dataclass(frozen=True)
class HostBans:
    """One host in `mailctl bans`: its bans, or why they could not be read; `enabled` False
    for a host whose bans are off (not contacted); `unbanned` the number of jails --unban
    removed the address from (None: not asked, or not done)."""

    host: str
    enabled: bool = True
    bans: tuple[Ban, ...] = ()
    error: str = ""
    unbanned: int | None = None

    @property
    def ok(self) -> bool:
        return not self.error


def client_error(rc: int, stdout: str, stderr: str) -> str:
    """Why fail2ban-client failed, on one line: its ERROR lines without the log prefix (else
    the last lines it printed); exit 255 (or a socket it cannot reach) is a server that does
    not run."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [re.sub(r"^.*?\bERROR\b\s*", "", line) for line in lines if " ERROR " in
              f" {line} "]
    text = " | ".join(errors or lines[-3:])[:600] or "no output"
    low = text.lower()
    if "permission denied" not in low and (rc == 255 or "is fail2ban running" in low):
        return f"fail2ban is not running: {text}"
    if rc == 127:
        return f"fail2ban-client not found: {text}"
    return f"fail2ban-client failed (exit {rc}): {text}"


def host_bans(host: str, ran: Ran, unban: str | None = None) -> HostBans:
    """A host's row from what the command printed (or why it did not run)."""
    if isinstance(ran, str):
        return HostBans(host, error=ran)
    found, jail_times = sections(ran.stdout)
    unbanned = None
    if unban is not None and "unban" in found:
        m = re.fullmatch(r"\d+", found["unban"])
        if m:
            unbanned = int(found["unban"])
        elif ran.rc == 0:
            return HostBans(host, error="unexpected output of fail2ban-client unban: "
                                        + _short(found["unban"]))
    if ran.rc != 0:
        printed = "\n".join(line for line in ran.stdout.splitlines()
                            if not line.startswith(MARK + " "))
        return HostBans(host, error=client_error(ran.rc, printed, ran.stderr),
                        unbanned=unbanned)
    if "banned" not in found:
        return HostBans(host, error="no output from fail2ban-client banned: "
                                    + _short(ran.stdout + "\n" + ran.stderr), unbanned=unbanned)
    try:
        banned = parse_banned(found["banned"])
    except BansError as exc:
        return HostBans(host, error=f"fail2ban-client banned: {exc}", unbanned=unbanned)
    offset = parse_offset(found.get("tz", ""))
    bans = []
    for jail, addresses in banned.items():
        times = parse_with_time(jail_times.get(jail, ""), offset)
        bans.extend(Ban(host, jail, a, times.get(_key(a))) for a in addresses)
    return HostBans(host, bans=tuple(bans), unbanned=unbanned)


def collect(enabled: Mapping[str, bool], run: Callable[[dict[str, str]], Mapping[str, Ran]],
            unban: str | None = None) -> list[HostBans]:
    """One row per host of `enabled` ({host: bans enabled}), in its order. `run` runs the
    command on every host with bans on in one go ({host: command} -> {host: result}); a host
    it says nothing about fails. Hosts with bans off are not contacted."""
    command = remote_command(unban)
    asked = [h for h, on in enabled.items() if on]
    got = run({h: command for h in asked}) if asked else {}
    return [host_bans(h, got.get(h, "no answer from Ansible"), unban) if on
            else HostBans(h, enabled=False) for h, on in enabled.items()]


# --------------------------------------------------------------------------- output

def until_text(until: Until | None) -> str:
    if until is None:
        return "-"
    if until.permanent:
        return "never"
    if until.at is None:
        return "-"
    if until.at.tzinfo is None:  # the host's local time: its offset was not known
        return until.at.strftime("%Y-%m-%d %H:%M:%S")
    return until.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def until_json(until: Until | None) -> str | None:
    if until is None or (until.at is None and not until.permanent):
        return None
    return "never" if until.permanent else until.at.isoformat()


def unban_lines(rows: Iterable[HostBans], address: str) -> str:
    """What --unban did on each host it reached."""
    out = []
    for r in rows:
        if r.unbanned is None:
            continue
        out.append(f"{r.host}: {address} " + (f"unbanned from {r.unbanned} jail(s)"
                                              if r.unbanned else "not banned"))
    return "".join(line + "\n" for line in out)


def table(rows: Iterable[HostBans]) -> str:
    """Aligned columns: HOST, JAIL, ADDRESS, BANNED UNTIL, one line per banned address; a
    host with none has one 'none' line, a host with bans off one 'bans off' line, a host
    that could not be read one 'error: ...' line."""
    lines: list[tuple[str, ...]] = [("HOST", "JAIL", "ADDRESS", "BANNED UNTIL")]
    for r in rows:
        if r.error:
            lines.append((r.host, f"error: {r.error}"))
        elif not r.enabled:
            lines.append((r.host, "-", "bans off", "-"))
        elif not r.bans:
            lines.append((r.host, "-", "none", "-"))
        else:
            lines.extend((b.host, b.jail, b.address, until_text(b.until)) for b in r.bans)
    # the host column fits every line; an error line's message runs on past the others
    widths = [max(len(line[c]) for line in lines if c == 0 or len(line) == 4)
              for c in range(3)]
    out = []
    for line in lines:
        if len(line) == 4:
            out.append("  ".join([*(v.ljust(w) for v, w in zip(line[:3], widths, strict=True)),
                                  line[3]]))
        else:
            out.append(line[0].ljust(widths[0]) + "  " + line[1])
    return "".join(line + "\n" for line in out)


def to_json(rows: Iterable[HostBans], unban: str | None = None) -> str:
    """A list: one {host, jail, address, until} per ban (until: ISO 8601, 'never' for a
    permanent ban, null when fail2ban did not say), one {host, error} per host that could not
    be read, and with --unban one {host, unban, jails} per host it reached (jails: how many
    the address was removed from, 0: it was not banned there)."""
    out: list[dict] = []
    for r in rows:
        if r.unbanned is not None:
            out.append({"host": r.host, "unban": unban, "jails": r.unbanned})
        if r.error:
            out.append({"host": r.host, "error": r.error})
        out.extend({"host": b.host, "jail": b.jail, "address": b.address,
                    "until": until_json(b.until)} for b in r.bans)
    return json.dumps(out, indent=2) + "\n"
