"""Per-user Sieve filters from the inventory (a user's `sieve` mapping): parsing with findings,
and rendering one RFC 5228 script per user.

The script uses only extensions both stores compile (Dovecot Pigeonhole and Cyrus 3): the
value checks below are the intersection of what their `sievec` accept, so a valid inventory
never yields a script one of them refuses. A raw `script` is the exception: the compiler
judges it.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .names import NameSyntaxError, normalize_address, parse_size

SIEVE_KEYS = ("owned", "vacation", "rules", "script")
VACATION_KEYS = ("subject", "body", "days", "addresses", "start", "end")
RULE_KEYS = ("name", "match", "any", "fileinto", "flags", "redirect", "copy", "discard", "stop")
TESTS = ("header", "address", "envelope", "exists", "size_over", "size_under", "body", "not")
COMPARATORS = ("is", "contains", "matches")
_NO_COMPARATOR = ("exists", "size_over", "size_under", "not")
# The require list's order; a raw script's other extensions follow, in its order.
EXTENSIONS = ("fileinto", "mailbox", "imap4flags", "copy", "envelope", "vacation", "date",
              "relational", "body")
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
# The address test's header names both compilers accept (each refuses some of the other's).
ADDRESS_HEADERS = ("From", "To", "Cc", "Bcc", "Sender", "Reply-To", "Resent-From", "Resent-To",
                   "Resent-Cc", "Resent-Bcc", "Resent-Sender", "Delivered-To")
MAX_SIZE = 2**31 - 1  # Cyrus keeps a size test's number in a signed 32-bit int
MAX_SUBJECT = 200
MAX_NOT = 8  # nested not: a bound, so odd YAML cannot exhaust the recursion
# RFC 5322 field name: printable ASCII but ':'
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# RFC 3501 atom: printable ASCII but ( ) { % * " \ ]
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

HEADER = ("# Managed by mailctl from the inventory (mail_users: {address}) — changes made here "
          "are overwritten on the next deploy.")


@dataclass(frozen=True)
class Condition:
    test: str  # one of TESTS but 'not' (a not sets negate)
    name: str = ""  # header or address field name; envelope part (from, to)
    comparator: str = ""  # is, contains, matches (string tests)
    keys: tuple[str, ...] = ()
    size: int = 0  # size_over, size_under: bytes
    negate: bool = False


@dataclass(frozen=True)
class Rule:
    conditions: tuple[Condition, ...]
    name: str = ""
    any: bool = False  # anyof instead of allof
    fileinto: str = ""
    flags: tuple[str, ...] = ()
    redirect: tuple[str, ...] = ()
    copy: bool = False
    discard: bool = False
    stop: bool = True  # resolved: the inventory's value, else whether the rule delivers

    @property
    def delivers(self) -> bool:
        """Cancels the implicit keep: later rules would file the message twice."""
        return bool(self.fileinto) or (bool(self.redirect) and not self.copy) or self.discard


@dataclass(frozen=True)
class Vacation:
    subject: str
    body: str
    days: int = 7
    addresses: tuple[str, ...] = ()  # resolved: the user's address and aliases by default
    start: datetime.date | None = None
    end: datetime.date | None = None


@dataclass(frozen=True)
class Filters:
    owned: bool = False  # the inventory's script replaces one the user activated
    vacation: Vacation | None = None
    rules: tuple[Rule, ...] = ()
    script: str = ""  # raw Sieve appended after the rules

    @property
    def empty(self) -> bool:
        """No script to install: a deploy removes mailctl's (the user's own stay)."""
        return self.vacation is None and not self.rules and not self.script.strip()


class Findings(Protocol):
    def add(self, variable: str, field: str, message: str) -> None: ...


def parse_filters(value: Any, field: str, out: Findings, *, address: str = "",
                  aliases: tuple[str, ...] = (), variable: str = "mail_users"
                  ) -> tuple[Filters | None, bool]:
    """A user's `sieve` setting: (Filters or None when absent, whether it was valid). Every
    problem is reported to out under `variable`; odd values never raise."""
    if value is None:
        return None, True
    parser = _Parser(out, variable, address, aliases)
    filters = parser.filters(value, field)
    return (filters, True) if parser.count == 0 else (None, False)


class _Parser:
    def __init__(self, out: Findings, variable: str, address: str,
                 aliases: tuple[str, ...]) -> None:
        self.out, self.variable, self.count = out, variable, 0
        self.own = tuple(a for a in (address, *aliases) if a)

    def add(self, field: str, message: str) -> None:
        self.count += 1
        self.out.add(self.variable, field, message)

    def mapping(self, value: Any, field: str, known: tuple[str, ...], what: str) -> Mapping:
        if not isinstance(value, Mapping):
            self.add(field, f"must be a mapping {what}")
            return {}
        for extra in sorted(str(k) for k in value if k not in known):
            guess = difflib.get_close_matches(extra, known, n=1)
            hint = f"; did you mean {guess[0]}?" if guess else f" (use {', '.join(known)})"
            self.add(f"{field}.{extra}", f"unknown setting{hint}")
        return value

    def flag(self, item: Mapping, key: str, field: str, default: bool) -> bool:
        value = item.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{field}.{key}", f"{value!r} is not true or false")
            return default
        return value

    def text(self, value: Any, field: str, *, one_line: bool = True, tabs: bool = True,
             limit: int = 0) -> str | None:
        """A string without control characters (newlines only where one_line is False)."""
        if not isinstance(value, str):
            self.add(field, f"{value!r} is not a string (quote numbers and dates)")
            return None
        value = value.replace("\r\n", "\n")
        if one_line and "\n" in value:
            self.add(field, "must be one line")
        elif _CONTROL.search(value) or (not tabs and "\t" in value):
            self.add(field, "must not contain control characters")
        elif limit and len(value) > limit:
            self.add(field, f"is longer than {limit} characters")
        else:
            return value
        return None

    def listed(self, value: Any, field: str) -> list[tuple[Any, str]]:
        """(item, field) for a value that may be one item or a list of them."""
        if isinstance(value, (list, tuple)):
            if not value:
                self.add(field, "is an empty list")
            return [(v, f"{field}[{i}]") for i, v in enumerate(value)]
        return [(value, field)]

    def addresses(self, value: Any, field: str, others: bool = False) -> tuple[str, ...]:
        """Addresses, normalised; others: none may be this user's own."""
        found: list[str] = []
        for item, here in self.listed(value, field):
            try:
                address = normalize_address(item)
            except NameSyntaxError as exc:
                self.add(here, str(exc))
                continue
            if others and address in self.own:
                self.add(here, f"{address!r} is this user's own address: the message would "
                               "come back here")
            found.append(address)
        return tuple(dict.fromkeys(found))

    # --- the parts

    def filters(self, value: Any, field: str) -> Filters:
        value = self.mapping(value, field, SIEVE_KEYS, "(keys: owned, vacation, rules, script)")
        owned = self.flag(value, "owned", field, False)
        vacation = None
        if value.get("vacation") is not None:
            vacation = self.vacation(value["vacation"], f"{field}.vacation")
        rules = []
        raw_rules = value.get("rules")
        if raw_rules is not None and not isinstance(raw_rules, (list, tuple)):
            self.add(f"{field}.rules", f"must be a list of rules, not {type(raw_rules).__name__}")
        elif raw_rules:
            for i, item in enumerate(raw_rules):
                rule = self.rule(item, f"{field}.rules[{i}]")
                if rule:
                    rules.append(rule)
        script = ""
        if value.get("script") not in (None, ""):
            script = self.text(value["script"], f"{field}.script", one_line=False) or ""
        return Filters(owned, vacation, tuple(rules), script)

    def vacation(self, value: Any, field: str) -> Vacation | None:
        value = self.mapping(value, field, VACATION_KEYS, "(keys: subject, body, days, "
                                                          "addresses, start, end)")
        texts = {}
        for key, one_line in (("subject", True), ("body", False)):
            if value.get(key) in (None, ""):
                self.add(f"{field}.{key}", "is required")
                continue
            text = self.text(value[key], f"{field}.{key}", one_line=one_line,
                             limit=MAX_SUBJECT if one_line else 0)
            if text is not None and not text.strip():
                self.add(f"{field}.{key}", "is blank")
            elif text is not None:
                texts[key] = text
        days = value.get("days", Vacation.days)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
            self.add(f"{field}.days", f"{days!r} is not a whole number of days from 1 to 30")
        addresses = self.own
        if value.get("addresses") is not None:
            addresses = self.addresses(value["addresses"], f"{field}.addresses")
        start = self.date(value.get("start"), f"{field}.start")
        end = self.date(value.get("end"), f"{field}.end")
        if start and end and end < start:
            self.add(f"{field}.end", f"{end.isoformat()} is before start "
                                     f"({start.isoformat()})")
        if len(texts) < 2:
            return None
        return Vacation(texts["subject"], texts["body"], days, addresses, start, end)

    def date(self, value: Any, field: str) -> datetime.date | None:
        if value is None:
            return None
        if isinstance(value, datetime.datetime):
            self.add(field, f"{value.isoformat()} has a time; give a date such as 2026-12-20")
            return None
        if isinstance(value, datetime.date):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
            try:
                return datetime.date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.add(field, f"{value!r} is not a date such as 2026-12-20")
        return None

    def rule(self, item: Any, field: str) -> Rule | None:
        before = self.count
        item = self.mapping(item, field, RULE_KEYS, "such as {match: {header: List-Id, "
                                                    "contains: dev.example.test}, fileinto: "
                                                    "Lists/dev}")
        if not item:
            if before == self.count:
                self.add(field, "is empty: give it match and an action")
            return None
        name = ""
        if item.get("name") not in (None, ""):
            name = self.text(item["name"], f"{field}.name") or ""
        conditions = self.conditions(item.get("match"), f"{field}.match")
        any_ = self.flag(item, "any", field, False)
        fileinto = ""
        if item.get("fileinto") is not None:
            fileinto = self.folder(item["fileinto"], f"{field}.fileinto")
        flags: tuple[str, ...] = ()
        if item.get("flags") is not None:
            flags = self.flags(item["flags"], f"{field}.flags")
        redirect: tuple[str, ...] = ()
        if item.get("redirect") is not None:
            redirect = self.addresses(item["redirect"], f"{field}.redirect", others=True)
        copy = self.flag(item, "copy", field, False)
        discard = self.flag(item, "discard", field, False)
        stop = item.get("stop")
        if stop is not None and not isinstance(stop, bool):
            self.add(f"{field}.stop", f"{stop!r} is not true or false")
            stop = None
        # an action given but invalid is reported as such, not as missing
        given = [k for k in ("fileinto", "flags", "redirect") if item.get(k) is not None]
        if not given and item.get("discard") in (None, False):
            self.add(field, "needs an action: fileinto, flags, redirect or discard: true")
        if copy and item.get("redirect") is None:
            self.add(f"{field}.copy", "applies to redirect only (keep the message and forward "
                                      "a copy)")
        if discard and (item.get("fileinto") is not None
                        or (item.get("redirect") is not None and not copy)):
            self.add(f"{field}.discard", "discard only cancels the implicit keep: the message "
                                         "would still be filed by fileinto (or forwarded by "
                                         "redirect); drop one of them (redirect with copy: "
                                         "true and discard forwards without keeping)")
        if self.count > before or not conditions:
            return None
        rule = Rule(tuple(conditions), name, any_, fileinto, flags, redirect, copy, discard)
        # stop by default only after a rule that delivers: flags and copies let later rules run
        return dataclasses.replace(rule, stop=rule.delivers if stop is None else stop)

    def conditions(self, value: Any, field: str) -> list[Condition]:
        if value is None:
            self.add(field, "is required: a condition such as {header: Subject, contains: x}, "
                            "or a list of them")
            return []
        if isinstance(value, Mapping):
            found = [self.condition(value, field)]
        elif isinstance(value, (list, tuple)) and value:
            found = [self.condition(c, f"{field}[{i}]") for i, c in enumerate(value)]
        else:
            self.add(field, "must be a condition (a mapping) or a non-empty list of them")
            return []
        return [c for c in found if c is not None]

    def condition(self, item: Any, field: str, depth: int = 0) -> Condition | None:
        item = self.mapping(item, field, TESTS + COMPARATORS,
                            "such as {header: Subject, contains: invoice}")
        if not item:
            return None
        tests = [k for k in TESTS if k in item]
        comparators = [k for k in COMPARATORS if k in item]
        if not tests:
            self.add(field, f"needs a test: one of {', '.join(TESTS)}")
            return None
        if len(tests) > 1:
            self.add(field, f"has {len(tests)} tests ({', '.join(tests)}): give each its own "
                            "condition in a list")
            return None
        test = tests[0]
        here, value = f"{field}.{test}", item[test]
        if test in _NO_COMPARATOR:
            for key in comparators:
                self.add(f"{field}.{key}", f"{test} takes no comparator")
            comparator, keys = "", ()
        elif not comparators:
            self.add(field, f"{test} needs a comparator: one of {', '.join(COMPARATORS)}")
            return None
        elif len(comparators) > 1:
            self.add(field, f"has {len(comparators)} comparators ({', '.join(comparators)}): "
                            "give it one")
            return None
        else:
            comparator = comparators[0]
            keys = self.keys(item[comparator], f"{field}.{comparator}", test == "body")
        if test == "not":
            if depth >= MAX_NOT:
                self.add(here, f"nests more than {MAX_NOT} not")
                return None
            inner = self.condition(value, here, depth + 1)
            return dataclasses.replace(inner, negate=not inner.negate) if inner else None
        if test in ("size_over", "size_under"):
            return Condition(test, size=self.size(value, here))
        name = ""
        if test in ("header", "exists"):
            name = self.header_name(value, here)
        elif test == "address":
            name = self.address_header(value, here)
        elif test == "envelope":
            name = value.lower() if isinstance(value, str) else ""
            if name not in ("from", "to"):
                self.add(here, f"{value!r} is not an envelope part (choose from or to)")
        elif value is not True:
            self.add(here, f"{value!r}: write body: true (and a comparator)")
        return Condition(test, name, comparator, keys)

    def keys(self, value: Any, field: str, multi_line: bool) -> tuple[str, ...]:
        found = []
        for item, here in self.listed(value, field):
            text = self.text(item, here, one_line=not multi_line)
            if text is not None:
                found.append(text)
        return tuple(found)

    def header_name(self, value: Any, field: str) -> str:
        if isinstance(value, str) and _HEADER_NAME.fullmatch(value):
            return value
        self.add(field, f"{value!r} is not a header field name (printable ASCII, no ':' or "
                        "spaces)")
        return ""

    def address_header(self, value: Any, field: str) -> str:
        canonical = {h.lower(): h for h in ADDRESS_HEADERS}
        if isinstance(value, str) and value.lower() in canonical:
            return canonical[value.lower()]
        guess = difflib.get_close_matches(str(value), ADDRESS_HEADERS, n=1)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        self.add(field, f"{value!r} is not an address header both stores test (use "
                        f"{', '.join(ADDRESS_HEADERS)}, or header for others){hint}")
        return ""

    def size(self, value: Any, field: str) -> int:
        try:
            size = parse_size(value, what="size")
        except NameSyntaxError as exc:
            self.add(field, str(exc))
            return 0
        if size > MAX_SIZE:
            self.add(field, f"{value!r} is more than Cyrus tests: at most {MAX_SIZE} bytes "
                            "(2047M)")
        return size

    def folder(self, value: Any, field: str) -> str:
        folder = self.text(value, field, tabs=False)
        if folder is None:
            return ""
        if not folder.strip():
            self.add(field, "is empty")
        elif any(not level.strip() for level in folder.split("/")):
            self.add(field, f"{folder!r} has an empty level ('/' separates levels)")
        elif "*" in folder or "%" in folder:
            self.add(field, f"{folder!r}: '*' and '%' are IMAP wildcards, not folder names")
        else:
            return folder
        return ""

    def flags(self, value: Any, field: str) -> tuple[str, ...]:
        system = {f.lower(): f for f in SYSTEM_FLAGS}
        found: dict[str, str] = {}
        for item, here in self.listed(value, field):
            if isinstance(item, str) and item.startswith("\\"):
                if item.lower() in system:
                    found[item.lower()] = system[item.lower()]
                else:
                    self.add(here, f"{item!r} is not a system flag a filter may set (use "
                                   f"{', '.join(SYSTEM_FLAGS)})")
            elif isinstance(item, str) and _KEYWORD.fullmatch(item):
                found.setdefault(item.lower(), item)
            else:
                self.add(here, f"{item!r} is not an IMAP flag or keyword (one word of printable "
                               "ASCII without ( ) { % * \" \\ ], e.g. $label1)")
        return tuple(found.values())


# --- rendering

def quote(text: str) -> str:
    """An RFC 5228 quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string_list(items: tuple[str, ...] | list[str], brackets: bool = False) -> str:
    if len(items) == 1 and not brackets:
        return quote(items[0])
    return "[" + ", ".join(quote(i) for i in items) + "]"


def _multi_line(text: str) -> str:
    """An RFC 5228 multi-line string (text: ... .), dot-stuffed."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return "text:\n" + "".join(("." + x if x.startswith(".") else x) + "\n" for x in lines) + "."


def _size(size: int) -> str:
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _condition(c: Condition, used: set[str]) -> str:
    if c.test in ("size_over", "size_under"):
        text = f"size :{c.test[5:]} {_size(c.size)}"
    elif c.test == "exists":
        text = f"exists {quote(c.name)}"
    elif c.test == "body":
        used.add("body")
        text = f"body :text :{c.comparator} {_string_list(c.keys)}"
    else:
        if c.test == "envelope":
            used.add("envelope")
        text = f"{c.test} :{c.comparator} {quote(c.name)} {_string_list(c.keys)}"
    return "not " + text if c.negate else text


def _test(tests: list[str], any_: bool) -> str:
    if len(tests) == 1:
        return tests[0]
    op = "anyof" if any_ else "allof"
    return f"{op} (" + f",\n{' ' * (len(op) + 5)}".join(tests) + ")"


def _rule(rule: Rule, used: set[str]) -> str:
    head = [f"# {rule.name}"] if rule.name else []
    test = _test([_condition(c, used) for c in rule.conditions], rule.any)
    actions = []
    if rule.flags:
        used.add("imap4flags")
    if rule.flags and not rule.fileinto:
        actions.append(f"addflag {_string_list(rule.flags, brackets=True)};")
    if rule.fileinto:
        used.update(("fileinto", "mailbox"))
        flags = f":flags {_string_list(rule.flags, brackets=True)} " if rule.flags else ""
        actions.append(f"fileinto :create {flags}{quote(rule.fileinto)};")
    for target in rule.redirect:
        if rule.copy:
            used.add("copy")
        actions.append(f"redirect {':copy ' if rule.copy else ''}{quote(target)};")
    if rule.discard:
        actions.append("discard;")
    if rule.stop:
        actions.append("stop;")
    body = "".join(f"    {a}\n" for a in actions)
    return "\n".join([*head, f"if {test} {{"]) + "\n" + body + "}\n"


def _vacation(v: Vacation, used: set[str]) -> str:
    used.add("vacation")
    args = [f":days {v.days}", f":subject {quote(v.subject)}"]
    if v.addresses:
        args.append(f":addresses {_string_list(v.addresses, brackets=True)}")
    reason = _multi_line(v.body) + "\n;" if "\n" in v.body else quote(v.body) + ";"
    command = f"vacation {' '.join(args)} {reason}"
    comment = "# vacation: before the rules, so that filed mail gets a reply too\n"
    dates = [f'currentdate :value "{op}" "date" {quote(day.isoformat())}'
             for op, day in (("ge", v.start), ("le", v.end)) if day]
    if not dates:
        return comment + command + "\n"
    used.update(("date", "relational"))
    return comment + f"if {_test(dates, False)} {{\n    {command}\n}}\n"


def render_script(filters: Filters, user_address: str) -> str | None:
    """The user's whole script (None when the filters hold nothing to install)."""
    if filters.empty:
        return None
    used: set[str] = set()
    blocks = [_vacation(filters.vacation, used)] if filters.vacation else []
    blocks += [_rule(rule, used) for rule in filters.rules]
    extra, rest = split_requires(filters.script)
    rest = rest.lstrip("\n").rstrip()
    if rest:
        blocks.append("# from sieve.script\n" + rest + "\n")
    requires = [e for e in EXTENSIONS if e in used or e in extra]
    requires += [e for e in dict.fromkeys(extra) if e not in EXTENSIONS]
    head = HEADER.format(address=user_address) + "\n"
    if requires:
        head += f"require {_string_list(requires, brackets=True)};\n"
    return head + "".join("\n" + block for block in blocks)


# --- a raw script's leading require commands

_REQUIRE = re.compile(r"require\b", re.IGNORECASE)


def split_requires(script: str) -> tuple[list[str], str]:
    """(the extensions of the script's leading require commands, the script without them).
    Anything unusual (a multi-line string, a missing ';') ends the scan: that require stays
    in place, where the compiler reports it."""
    names: list[str] = []
    cuts: list[tuple[int, int]] = []
    pos = 0
    while True:
        start = _skip_blank(script, pos)
        if not _REQUIRE.match(script, start):
            break
        end = _skip_blank(script, start + len("require"))
        found, end = _strings(script, end)
        if found is None:
            break
        end = _skip_blank(script, end)
        if not script.startswith(";", end):
            break
        names += found
        end += 1
        # the rest of the line too, when only blanks follow
        tail = re.match(r"[ \t]*\n", script[end:])
        cuts.append((start, end + (tail.end() if tail else 0)))
        pos = end
    rest, last = [], 0
    for begin, finish in cuts:
        rest.append(script[last:begin])
        last = finish
    rest.append(script[last:])
    return names, "".join(rest)


def _skip_blank(text: str, pos: int) -> int:
    """Past whitespace and comments (# to the end of the line, /* ... */)."""
    while pos < len(text):
        if text[pos] in " \t\r\n":
            pos += 1
        elif text[pos] == "#":
            newline = text.find("\n", pos)
            pos = len(text) if newline < 0 else newline + 1
        elif text.startswith("/*", pos):
            close = text.find("*/", pos + 2)
            if close < 0:
                return pos
            pos = close + 2
        else:
            break
    return pos


def _strings(text: str, pos: int) -> tuple[list[str] | None, int]:
    """A quoted string or a [list] of them at pos: (the strings, the position after)."""
    if text.startswith("[", pos):
        found: list[str] = []
        pos += 1
        while True:
            one, pos = _quoted(text, _skip_blank(text, pos))
            if one is None:
                return None, pos
            found.append(one)
            pos = _skip_blank(text, pos)
            if text.startswith("]", pos):
                return found, pos + 1
            if not text.startswith(",", pos):
                return None, pos
            pos += 1
    one, pos = _quoted(text, pos)
    return ([one] if one is not None else None), pos


def _quoted(text: str, pos: int) -> tuple[str | None, int]:
    if not text.startswith('"', pos):
        return None, pos
    chars = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\" and pos + 1 < len(text):
            pos += 1
            char = text[pos]
        chars.append(char)
        pos += 1
    return None, pos
