"""`mailctl mailbox diff A B`: what differs between two mailbox manifests, one line per finding.

A manifest is a snapshot of every user's mail store (IMAP mailboxes and messages, quota, POP3
UIDLs, Sieve scripts) taken before and after a migration, a restore or an upgrade. The question
a person asks is "did anything get lost or changed?", so each finding names the user, the
mailbox and the message, and says what A and B hold.

Two modes:
- by ids (default): the same store kept its ids, so UIDVALIDITY, UIDNEXT, UIDs and POP3 UIDLs
  must match too; messages are matched by UID.
- ignore_ids: a migration to another store (or an IMAP copy) hands out new ids; messages are
  matched by content (sha256) as multisets, so a lost or duplicated copy still shows; an
  empty, unsubscribed parent folder one store made and the other lists as Noselect is no
  finding.

Between two stores (A's and B's "store" differ, as after a migration), an empty folder only
in B is no finding either: B's store makes its standard folders itself.

Everything here is pure: the caller loads the files (load) and prints the findings.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_MESSAGE_FINDINGS = 20  # per mailbox; the rest is one "... and N more" line
MAILBOX_KEYS = ("subscribed", "uidvalidity", "uidnext", "count", "messages")
MESSAGE_KEYS = ("uid", "sha256", "size", "flags", "internaldate")
SHORT_HASH = 12  # characters of a sha256 that name a message in ignore_ids mode

Manifest = Mapping[str, Any]


class ManifestError(InputError, ValueError):
    """The file is not a readable mailctl manifest; str(error) is one line naming the file.
    An InputError too, so the CLI prints it like any bad input (exit 2)."""


# --------------------------------------------------------------------------- loading

def load(path: Path) -> dict:
    """The manifest in path, checked enough that diff() and summary() cannot trip on it."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}: not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # undecodable bytes
        raise ManifestError(f"{path}: not JSON ({exc})") from None
    problem = manifest_problem(data)
    if problem:
        raise ManifestError(f"{path}: {problem}")
    return data


def manifest_problem(data: Any) -> str | None:
    """What makes data not a version-1 manifest, or None."""
    if not isinstance(data, dict):
        return "not a mailctl manifest (not a JSON object)"
    if "mailctl_manifest" not in data:
        return "not a mailctl manifest (no mailctl_manifest key)"
    version = data["mailctl_manifest"]
    if version != 1 or isinstance(version, bool):
        return f"mailctl_manifest {version!r} is not supported (this mailctl reads version 1)"
    if not isinstance(data.get("users"), dict):
        return "not a mailctl manifest (users is not an object)"
    for user, entry in data["users"].items():
        problem = _user_problem(entry)
        if problem:
            return f"user {user}: {problem}"
    return None


def _user_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    problem = _quota_problem(entry.get("quota")) or _sieve_problem(entry.get("sieve"))
    if problem:
        return problem
    uidls = entry.get("pop3_uidls")
    if uidls is not None and not _is_list_of(uidls, str):
        return "pop3_uidls is neither null nor a list of strings"
    if not isinstance(entry.get("mailboxes"), dict):
        return "no mailboxes object"
    for name, box in entry["mailboxes"].items():
        problem = _mailbox_problem(box)
        if problem:
            return f"mailbox {name!r}: {problem}"
    return None


def _quota_problem(quota: Any) -> str | None:
    if quota is None:
        return None
    if not isinstance(quota, dict):
        return "quota is not an object"
    for resource, pair in quota.items():
        if not (isinstance(pair, list) and len(pair) == 2 and _is_list_of(pair, int)):
            return f"quota {resource} is not [used, limit]"
    return None


def _sieve_problem(sieve: Any) -> str | None:
    if sieve is None:
        return None
    if not isinstance(sieve, dict) or not isinstance(sieve.get("scripts"), dict):
        return "sieve is neither null nor an object with scripts"
    active = sieve.get("active")
    if active is not None and not isinstance(active, str):
        return "sieve active is neither null nor a name"
    return None


def _mailbox_problem(box: Any) -> str | None:
    if not isinstance(box, dict):
        return "not an object"
    missing = [key for key in MAILBOX_KEYS if key not in box]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(box["messages"], list):
        return "messages is not a list"
    for number, message in enumerate(box["messages"], 1):
        problem = _message_problem(message)
        if problem:
            return f"message {number}: {problem}"
    return None


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "not an object"
    missing = [key for key in MESSAGE_KEYS if key not in message]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(message["sha256"], str) or not isinstance(message["internaldate"], str):
        return "sha256 and internaldate must be strings"
    if not _is_list_of(message["flags"], str):
        return "flags is not a list of strings"
    if not isinstance(message["size"], int):
        return "size is not a number"
    return None


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, kind) and not isinstance(item, bool) for item in value)


# --------------------------------------------------------------------------- diff

def diff(a: Manifest, b: Manifest, *, ignore_ids: bool = False,
         users: set[str] | None = None) -> list[str]:
    """The findings, sorted by user, then mailbox, then message; [] when A and B agree.
    users restricts the comparison; a named user in neither manifest is a finding (a typo
    must not read as "equal")."""
    users_a, users_b = a.get("users") or {}, b.get("users") or {}
    same_store = a.get("store") == b.get("store")
    findings: list[str] = []
    for user in sorted(_selected(set(users_a) | set(users_b), users)):
        if user not in users_a and user not in users_b:
            findings.append(f"{user}: in neither A nor B")
        elif user not in users_b:
            findings.append(f"{user}: only in A")
        elif user not in users_a:
            findings.append(f"{user}: only in B")
        else:
            findings += _user_diff(user, users_a[user], users_b[user], ignore_ids=ignore_ids,
                                   same_store=same_store)
    return findings


def _selected(present: set[str], wanted: set[str] | None) -> set[str]:
    """Every user, or the wanted ones (addresses match case-insensitively); a wanted address
    in neither manifest stays in, to be reported."""
    if wanted is None:
        return present
    wanted = {user.lower() for user in wanted}
    chosen = {user for user in present if user.lower() in wanted}
    return chosen | (wanted - {user.lower() for user in chosen})


def _user_diff(user: str, a: Manifest, b: Manifest, *, ignore_ids: bool,
               same_store: bool) -> list[str]:
    """One user's findings: quota, Sieve, POP3, then the mailboxes by name."""
    lines = _quota_diff(a.get("quota") or {}, b.get("quota") or {},
                        usage=same_store and not ignore_ids)
    lines += _sieve_diff(a.get("sieve"), b.get("sieve"))
    if not ignore_ids:
        lines += _uidls_diff(a.get("pop3_uidls"), b.get("pop3_uidls"))
    findings = [f"{user}: {line}" for line in lines]
    boxes_a, boxes_b = a.get("mailboxes") or {}, b.get("mailboxes") or {}
    for name in sorted(set(boxes_a) | set(boxes_b)):
        prefix = f"{user}: mailbox {name!r}: "
        if name not in boxes_b:
            if not (ignore_ids and _store_made_parent(name, boxes_a[name], boxes_b)):
                findings.append(prefix + "only in A")
        elif name not in boxes_a:
            made = ((ignore_ids and _store_made_parent(name, boxes_b[name], boxes_a))
                    # B's store makes its standard folders itself (Dovecot's Drafts, Sent,
                    # Trash, Junk): an empty one more in B loses nothing of A
                    or (not same_store and not boxes_b[name].get("messages")))
            if not made:
                findings.append(prefix + "only in B")
        else:
            findings += [prefix + line
                         for line in _mailbox_diff(boxes_a[name], boxes_b[name], ignore_ids)]
    return findings


def _store_made_parent(name: str, box: Manifest, other: Mapping[str, Any]) -> bool:
    """An empty, unsubscribed folder above one the other side has: Cyrus creates a folder's
    parents as mailboxes where Dovecot lists them \\Noselect, so a copy between stores may
    differ here without a message or a folder being lost."""
    return (not box.get("messages") and not box.get("subscribed")
            and any(n.startswith(name + "/") for n in other))


def _quota_diff(a: Mapping[str, list], b: Mapping[str, list], *, usage: bool) -> list[str]:
    """Limits always; usage only when it is comparable (same store, same ids)."""
    lines = []
    for resource in sorted(set(a) | set(b)):
        if resource not in b:
            lines.append(f"quota {resource}: only in A")
        elif resource not in a:
            lines.append(f"quota {resource}: only in B")
        else:
            (used_a, limit_a), (used_b, limit_b) = a[resource], b[resource]
            lines += _differs(f"quota {resource} limit", limit_a, limit_b)
            if usage:
                lines += _differs(f"quota {resource} usage", used_a, used_b)
    return lines


def _sieve_diff(a: Manifest | None, b: Manifest | None) -> list[str]:
    """Only when both sides read Sieve: the active script, then each script by name."""
    if a is None or b is None:
        return []
    lines = _differs("sieve active script", _name(a.get("active")), _name(b.get("active")))
    scripts_a, scripts_b = a.get("scripts") or {}, b.get("scripts") or {}
    for name in sorted(set(scripts_a) | set(scripts_b)):
        if name not in scripts_b:
            lines.append(f"sieve script {name!r}: only in A")
        elif name not in scripts_a:
            lines.append(f"sieve script {name!r}: only in B")
        elif scripts_a[name] != scripts_b[name]:
            lines.append(f"sieve script {name!r}: content differs")
    return lines


def _uidls_diff(a: list[str] | None, b: list[str] | None) -> list[str]:
    """POP3 clients remember UIDLs: a lost, new or reordered one makes them fetch again."""
    if a is None or b is None or a == b:
        return []
    count_a, count_b = Counter(a), Counter(b)
    parts = []
    only_a, only_b = sum((count_a - count_b).values()), sum((count_b - count_a).values())
    if only_a:
        parts.append(f"{only_a} only in A")
    if only_b:
        parts.append(f"{only_b} only in B")
    common = count_a & count_b
    if _in_order(a, common) != _in_order(b, common):
        parts.append("order differs")
    return [f"pop3 uidls differ: {', '.join(parts)}"]


def _in_order(uidls: list[str], common: Counter[str]) -> list[str]:
    """The UIDLs both sides hold, in this side's order (extra duplicates left out)."""
    left, kept = Counter(common), []
    for uidl in uidls:
        if left[uidl] > 0:
            left[uidl] -= 1
            kept.append(uidl)
    return kept


def _mailbox_diff(a: Manifest, b: Manifest, ignore_ids: bool) -> list[str]:
    lines = _differs("subscribed", _yes_no(a["subscribed"]), _yes_no(b["subscribed"]))
    lines += _differs("count", a["count"], b["count"])
    if ignore_ids:
        messages = _messages_by_content(a["messages"], b["messages"])
    else:
        lines += _differs("uidvalidity", a["uidvalidity"], b["uidvalidity"])
        lines += _differs("uidnext", a["uidnext"], b["uidnext"])
        messages = _messages_by_uid(a["messages"], b["messages"])
    return lines + _bounded(messages)


def _bounded(lines: list[str]) -> list[str]:
    """At most MAX_MESSAGE_FINDINGS lines, then one line that counts the rest."""
    if len(lines) <= MAX_MESSAGE_FINDINGS:
        return lines
    rest = len(lines) - MAX_MESSAGE_FINDINGS
    noun = "difference" if rest == 1 else "differences"
    return [*lines[:MAX_MESSAGE_FINDINGS], f"... and {rest} more message {noun}"]


# --------------------------------------------------------------------------- messages

def _messages_by_uid(a: list[dict], b: list[dict]) -> list[str]:
    by_uid_a = {m["uid"]: m for m in a}
    by_uid_b = {m["uid"]: m for m in b}
    lines = []
    for uid in sorted(set(by_uid_a) | set(by_uid_b)):
        label = f"uid {uid}"
        if uid not in by_uid_b:
            lines.append(f"{label}: only in A")
        elif uid not in by_uid_a:
            lines.append(f"{label}: only in B")
        else:
            first, second = by_uid_a[uid], by_uid_b[uid]
            if first["sha256"] != second["sha256"]:
                lines.append(f"{label}: content differs")
            lines += [f"{label}: {line}" for line in _message_diff(first, second)]
    return lines


def _messages_by_content(a: list[dict], b: list[dict]) -> list[str]:
    """Messages as multisets by sha256: copies are paired, the leftovers are findings."""
    groups_a, groups_b = _by_sha(a), _by_sha(b)
    lines = []
    for sha in sorted(set(groups_a) | set(groups_b)):
        copies_a, copies_b = groups_a.get(sha, []), groups_b.get(sha, [])
        label = f"message {sha[:SHORT_HASH]}"
        pairs, rest_a, rest_b = _pair(copies_a, copies_b)
        for number, (first, second) in enumerate(pairs, 1):
            named = f"{label} (copy {number})" if len(pairs) > 1 else label
            lines += [f"{named}: {line}" for line in _message_diff(first, second)]
        lines += _leftovers(label, rest_a, "A", paired=bool(copies_b))
        lines += _leftovers(label, rest_b, "B", paired=bool(copies_a))
    return lines


def _by_sha(messages: Iterable[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for message in messages:
        groups[message["sha256"]].append(message)
    return groups


def _pair(a: list[dict], b: list[dict]) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """Identical copies pair first; the rest pair in (internaldate, flags, size) order.
    Returns the pairs and what is left on each side."""
    rest_b = sorted(b, key=_sort_key)
    pairs, rest_a = [], []
    for message in sorted(a, key=_sort_key):
        twin = next((i for i, other in enumerate(rest_b)
                     if _sort_key(other) == _sort_key(message)), None)
        if twin is None:
            rest_a.append(message)
        else:
            pairs.append((message, rest_b.pop(twin)))
    count = min(len(rest_a), len(rest_b))
    pairs += zip(rest_a[:count], rest_b[:count], strict=True)
    return pairs, rest_a[count:], rest_b[count:]


def _leftovers(label: str, rest: list[dict], side: str, *, paired: bool) -> list[str]:
    """'only in A' when the other side has no copy at all, else 'N more copies in A'."""
    if not rest:
        return []
    if paired:
        noun = "copy" if len(rest) == 1 else "copies"
        return [f"{label}: {len(rest)} more {noun} in {side}"]
    first = rest[0]
    where = f"({first['size']} bytes, {first['internaldate']})"
    copies = f" ({len(rest)} copies)" if len(rest) > 1 else ""
    return [f"{label} {where}: only in {side}{copies}"]


def _sort_key(message: Mapping[str, Any]) -> tuple[str, tuple[str, ...], int]:
    return _instant(message["internaldate"]), _flags(message), message["size"]


def _message_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two copies of one message besides its content."""
    lines = _differs("size", a["size"], b["size"])
    lines += _differs("flags", _flag_text(a), _flag_text(b))
    if _instant(a["internaldate"]) != _instant(b["internaldate"]):
        lines.append(f"internaldate: {a['internaldate']} in A, {b['internaldate']} in B")
    return lines


def _instant(text: str) -> str:
    """The date as a UTC ISO string, so '+00:00' and 'Z' or another offset compare equal."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.astimezone(UTC).isoformat() if moment.tzinfo else moment.isoformat()


def _flags(message: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(set(message["flags"]) - {"\\Recent"}))


def _flag_text(message: Mapping[str, Any]) -> str:
    return " ".join(_flags(message)) or "(none)"


# --------------------------------------------------------------------------- wording

def _differs(label: str, a: Any, b: Any) -> list[str]:
    return [] if a == b else [f"{label}: {a} in A, {b} in B"]


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def _name(value: str | None) -> str:
    return "(none)" if value is None else repr(value)


# --------------------------------------------------------------------------- summary

def summary(m: Manifest) -> str:
    """One line: where and when the manifest was taken, and how much it holds."""
    users = m.get("users") or {}
    boxes = [box for entry in users.values() for box in (entry.get("mailboxes") or {}).values()]
    messages = [message for box in boxes for message in box.get("messages") or []]
    size = sum(message.get("size") or 0 for message in messages)
    counts = ", ".join([_count(len(users), "user"), _count(len(boxes), "mailbox", "mailboxes"),
                        _count(len(messages), "message"), _size(size)])
    return (f"{m.get('host', '?')} ({m.get('store', '?')}), taken {m.get('taken', '?')}: "
            f"{counts}")


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _size(size: int) -> str:
    """Bytes in binary units with one decimal: 512 B, 1.5 KiB, 5.1 MiB."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
