"""Per-user Sieve filters (cli/mailctl/sieve.py): each bad value is a finding naming its field,
the rendered script is the one expected, and every script mailctl renders compiles with both
stores' real compilers (Dovecot Pigeonhole's and Cyrus's sievec), while a broken raw script
fails both."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BASE_ALL, BASE_HOST, HOST

from mailctl.inventory import Inventory
from mailctl.render import render_host
from mailctl.sieve import (
    Condition,
    Filters,
    Rule,
    Vacation,
    parse_filters,
    render_script,
    split_requires,
)
from mailctl.validate import check_host

SANDBOX = Path(__file__).resolve().parents[1] / "inventories" / "sandbox"

ALICE = "alice@example.test"
FIELD = "mail_users[0].sieve"
DOVECOT_SIEVEC = Path("/usr/bin/sievec")
CYRUS_SIEVEC = Path("/usr/lib/cyrus/bin/sievec")
HEADER = (f"# Managed by mailctl from the inventory (mail_users: {ALICE}) — changes made here "
          "are overwritten on the next deploy.")


class Collector:
    def __init__(self) -> None:
        self.findings: list[tuple[str, str, str]] = []

    def add(self, variable: str, field: str, message: str) -> None:
        self.findings.append((variable, field, message))


def parse(value: Any) -> tuple[Filters | None, list[tuple[str, str]]]:
    out = Collector()
    filters, ok = parse_filters(value, FIELD, out, address=ALICE, aliases=("a@example.test",))
    assert ok == (not out.findings)
    assert all(variable == "mail_users" for variable, _, _ in out.findings)
    return filters, [(field, message) for _, field, message in out.findings]


def valid(value: Any) -> Filters:
    filters, findings = parse(value)
    assert findings == []
    assert filters is not None
    return filters


def script_of(value: Any) -> str:
    script = render_script(valid(value), ALICE)
    assert script is not None
    return script


# --------------------------------------------------------------------------- the compilers

def compile_with(compiler: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run one store's sievec on script; fails (never skips) when it is not installed."""
    source = tmp_path / f"{compiler}.sieve"
    source.write_text(script, encoding="utf-8")
    if compiler == "dovecot":
        if not DOVECOT_SIEVEC.exists():
            pytest.fail(f"{DOVECOT_SIEVEC} is missing: install dovecot-sieve")
        command = [str(DOVECOT_SIEVEC), str(source), str(tmp_path / "out.svbin")]
    else:
        if not CYRUS_SIEVEC.exists():
            pytest.fail(f"{CYRUS_SIEVEC} is missing: install cyrus-common")
        config_dir = tmp_path / "cy"
        config_dir.mkdir(exist_ok=True)
        config = tmp_path / "imapd.conf"
        config.write_text(f"configdirectory: {config_dir}\npartition-default: {config_dir}\n",
                          encoding="utf-8")
        command = [str(CYRUS_SIEVEC), "-C", str(config), str(source), str(tmp_path / "out.bc")]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def assert_compiles(script: str, tmp_path: Path) -> None:
    for compiler in ("dovecot", "cyrus"):
        done = compile_with(compiler, script, tmp_path)
        assert done.returncode == 0, f"{compiler} sievec refused:\n{done.stdout}{done.stderr}" \
                                     f"\n--- script\n{script}"


# --------------------------------------------------------------------------- examples

FULL = yaml.safe_load(r"""
owned: true
vacation:
  subject: Out of office
  body: |
    I am away until Monday.
    .a line with a leading dot
  days: 5
  start: 2026-12-20
  end: 2027-01-03
rules:
  - name: dev list
    match:
      - {header: List-Id, contains: dev.example.test}
      - {not: {exists: X-Spam-Flag}}
    fileinto: Lists/dev
    flags: ["\\seen", "$label1"]
  - match: {envelope: FROM, matches: "*@spam.test"}
    discard: true
  - match:
      - {size_over: 10M}
      - {address: reply-to, is: [x@example.test, y@example.test]}
    any: true
    redirect: [bob@elsewhere.test, carol@elsewhere.test]
    copy: true
  - match: {body: true, contains: unsubscribe}
    flags: \Flagged
    stop: true
script: |
  # my own
  require ["variables",
           "fileinto"];
  if header :matches "Subject" "*" { set "subject" "${1}"; }
""")

REQUIRE = ('require ["fileinto", "mailbox", "imap4flags", "copy", "envelope", "vacation", '
           '"date", "relational", "body", "variables"];')
VACATION = ('vacation :days 5 :subject "Out of office" :addresses ["alice@example.test", '
            '"a@example.test"] text:')
FULL_SCRIPT = HEADER + "\n" + REQUIRE + r"""

# vacation: before the rules, so that filed mail gets a reply too
if allof (currentdate :value "ge" "date" "2026-12-20",
          currentdate :value "le" "date" "2027-01-03") {
    VACATION
I am away until Monday.
..a line with a leading dot
.
;
}

# dev list
if allof (header :contains "List-Id" "dev.example.test",
          not exists "X-Spam-Flag") {
    fileinto :create :flags ["\\Seen", "$label1"] "Lists/dev";
    stop;
}

if envelope :matches "from" "*@spam.test" {
    discard;
    stop;
}

if anyof (size :over 10M,
          address :is "Reply-To" ["x@example.test", "y@example.test"]) {
    redirect :copy "bob@elsewhere.test";
    redirect :copy "carol@elsewhere.test";
}

if body :text :contains "unsubscribe" {
    addflag ["\\Flagged"];
    stop;
}

# from sieve.script
# my own
if header :matches "Subject" "*" { set "subject" "${1}"; }
""".replace("VACATION", VACATION)

# Each feature alone: the require list names only what the script uses, and both compile it.
MINIMAL = [
    ("fileinto", {"rules": [{"match": {"header": "Subject", "is": "x"}, "fileinto": "A"}]},
     ["fileinto", "mailbox"]),
    ("flags", {"rules": [{"match": {"header": "Subject", "is": "x"}, "flags": "$x"}]},
     ["imap4flags"]),
    ("redirect", {"rules": [{"match": {"exists": "X-A"}, "redirect": "b@elsewhere.test"}]}, []),
    ("redirect-copy", {"rules": [{"match": {"exists": "X-A"}, "redirect": "b@elsewhere.test",
                                  "copy": True}]}, ["copy"]),
    ("discard", {"rules": [{"match": {"size_under": 10}, "discard": True}]}, []),
    ("envelope", {"rules": [{"match": {"envelope": "to", "is": "x@example.test"},
                             "discard": True}]}, ["envelope"]),
    ("body", {"rules": [{"match": {"body": True, "matches": "*x*"}, "discard": True}]},
     ["body"]),
    ("vacation", {"vacation": {"subject": "Away", "body": "one line"}}, ["vacation"]),
    ("vacation-start", {"vacation": {"subject": "Away", "body": "b", "start": "2026-01-02"}},
     ["vacation", "date", "relational"]),
    ("raw-only", {"script": "keep;\n"}, []),
    ("raw-require", {"script": 'require "fileinto";\nfileinto "X";\n'}, ["fileinto"]),
]


def _requires(script: str) -> list[str]:
    line = next((x for x in script.splitlines() if x.startswith("require ")), "require [];")
    return yaml.safe_load(line[len("require "):-1])


# --------------------------------------------------------------------------- rendering

def test_the_full_example_renders_as_expected_and_compiles(tmp_path):
    filters = valid(FULL)
    assert filters.owned is True
    assert filters.vacation == Vacation("Out of office", "I am away until Monday.\n"
                                        ".a line with a leading dot\n", 5,
                                        (ALICE, "a@example.test"),
                                        datetime.date(2026, 12, 20), datetime.date(2027, 1, 3))
    assert filters.rules[0] == Rule(
        (Condition("header", "List-Id", "contains", ("dev.example.test",)),
         Condition("exists", "X-Spam-Flag", negate=True)),
        "dev list", fileinto="Lists/dev", flags=("\\Seen", "$label1"), stop=True)
    assert hash(filters)  # part of the frozen MailHost
    script = render_script(filters, ALICE)
    assert script == FULL_SCRIPT
    assert_compiles(script, tmp_path)


@pytest.mark.parametrize(("value", "expected"), [m[1:] for m in MINIMAL],
                         ids=[m[0] for m in MINIMAL])
def test_the_require_list_names_only_what_is_used(value, expected, tmp_path):
    script = script_of(value)
    assert script.splitlines()[0] == HEADER
    assert _requires(script) == expected
    if expected:
        assert script.splitlines()[1].startswith("require ")
    assert_compiles(script, tmp_path)


def test_strings_are_escaped(tmp_path):
    script = script_of({
        "vacation": {"subject": 'Say "hi" \\ bye', "body": 'a "quoted" \\ body'},
        "rules": [{"match": {"header": "Subject", "contains": ['"', "\\", "tab\there"]},
                   "fileinto": 'We "quote"\\Folder'}]})
    assert ':subject "Say \\"hi\\" \\\\ bye"' in script
    assert '"a \\"quoted\\" \\\\ body";' in script
    assert 'header :contains "Subject" ["\\"", "\\\\", "tab\there"]' in script
    assert 'fileinto :create "We \\"quote\\"\\\\Folder";' in script
    assert_compiles(script, tmp_path)


def test_a_multi_line_body_is_dot_stuffed(tmp_path):
    script = script_of({"vacation": {"subject": "S", "body": ".\n..two\nend.\n. space",
                                     "addresses": "A@Example.TEST"}})
    assert ':addresses ["a@example.test"] text:\n..\n...two\nend.\n.. space\n.\n;\n' in script
    assert_compiles(script, tmp_path)


def test_dates_alone_wrap_vacation_in_one_test(tmp_path):
    script = script_of({"vacation": {"subject": "S", "body": "B",
                                     "end": datetime.date(2027, 1, 3)}})
    assert 'if currentdate :value "le" "date" "2027-01-03" {\n    vacation :days 7' in script
    assert_compiles(script, tmp_path)


def test_stop_follows_a_delivering_rule_unless_told(tmp_path):
    rules = [
        {"match": {"exists": "X-A"}, "fileinto": "A", "stop": False},
        {"match": {"exists": "X-B"}, "flags": ["$b"]},
        {"match": {"exists": "X-C"}, "redirect": "c@elsewhere.test", "copy": True},
        {"match": {"exists": "X-D"}, "redirect": "d@elsewhere.test"},
        {"match": {"exists": "X-E"}, "redirect": "e@elsewhere.test", "copy": True,
         "discard": True},
    ]
    filters = valid({"rules": rules})
    assert [r.stop for r in filters.rules] == [False, False, False, True, True]
    script = render_script(filters, ALICE)
    assert script.count("stop;") == 2
    assert_compiles(script, tmp_path)


def test_sizes_render_with_the_largest_exact_unit(tmp_path):
    sizes = [1, 1024, "1536K", "1.5M", "1G", 2**31 - 1, "2047M"]
    script = script_of({"rules": [{"match": [{"size_over": s} for s in sizes],
                                   "discard": True}]})
    for shown in ("size :over 1,", "size :over 1K,", "size :over 1536K,", "size :over 1G,",
                  "size :over 2147483647,", "size :over 2047M)"):
        assert shown in script
    assert_compiles(script, tmp_path)


def test_a_raw_script_s_requires_are_merged(tmp_path):
    raw = ('# leading comment\n/* block\n comment */ REQUIRE ["body", "fileinto"];\n'
           'require "copy" ;   \nrequire\n  [ "x-unknown-ext" ,\n "body" ];\n'
           'if body :contains "x" { fileinto :copy "Bulk"; }\n')
    extensions, rest = split_requires(raw)
    assert extensions == ["body", "fileinto", "copy", "x-unknown-ext", "body"]
    assert "require" not in rest.lower()
    assert rest.startswith("# leading comment\n/* block\n comment */ ")
    script = script_of({"rules": [{"match": {"exists": "X-A"}, "flags": "$a"}],
                        "script": raw})
    # the known ones in the fixed order, then the raw script's others; kept even if unknown
    assert _requires(script) == ["fileinto", "imap4flags", "copy", "body", "x-unknown-ext"]
    for compiler, code in (("dovecot", 89), ("cyrus", 1)):
        assert compile_with(compiler, script, tmp_path).returncode == code
    # without the unknown extension both compile it
    assert_compiles(script_of({"script": raw.replace('"x-unknown-ext" ,', "")}), tmp_path)


def test_an_unusual_require_stays_for_the_compiler_to_judge():
    assert split_requires('require "fileinto"\nkeep;') == ([], 'require "fileinto"\nkeep;')
    assert split_requires('require "a"; keep; require "b";') == (["a"], ' keep; require "b";')
    assert split_requires('require text:\nx\n.\n;') == ([], 'require text:\nx\n.\n;')
    assert split_requires('require ["a", ];') == ([], 'require ["a", ];')
    assert split_requires('/* open') == ([], "/* open")


def test_a_broken_raw_script_fails_both_compilers(tmp_path):
    script = script_of({"script": 'require "fileinto";\nif header :contains "x" '
                                  '{ fileinto "a" }\n'})
    assert compile_with("dovecot", script, tmp_path).returncode == 89
    assert compile_with("cyrus", script, tmp_path).returncode == 1


def test_the_duplicates_script_compiles(tmp_path):
    """Dovecot's global duplicate guard (templates/dovecot/duplicates.sieve.j2), as rendered."""
    [guard] = [f for f in render_host(Inventory(SANDBOX).mail_plan()[0][0])
               if f.path.endswith("duplicates.sieve")]
    assert 'require ["duplicate"];\nif duplicate {\n    discard;\n    stop;\n}\n' in \
        guard.content
    assert_compiles(guard.content, tmp_path)


@pytest.mark.parametrize("value", [{}, {"owned": True}, {"owned": False, "rules": []},
                                   {"script": ""}, {"script": "  \n"}, {"vacation": None}])
def test_filters_without_content_render_no_script(value):
    filters = valid(value)
    assert filters.empty
    assert filters.owned is bool(value.get("owned"))
    assert render_script(filters, ALICE) is None


def test_an_absent_sieve_is_none():
    assert parse(None) == (None, [])


# --------------------------------------------------------------------------- findings

BAD = [
    ("not-a-mapping", ["x"], [(FIELD, "must be a mapping")]),
    ("unknown-key", {"vacaton": {}}, [(f"{FIELD}.vacaton", "did you mean vacation?")]),
    ("owned-type", {"owned": "yes"}, [(f"{FIELD}.owned", "is not true or false")]),
    ("rules-type", {"rules": {"match": {}}}, [(f"{FIELD}.rules", "must be a list of rules")]),
    ("script-type", {"script": ["keep;"]}, [(f"{FIELD}.script", "is not a string")]),
    ("script-control", {"script": "keep;\x00"},
     [(f"{FIELD}.script", "must not contain control characters")]),
    # vacation
    ("vacation-required", {"vacation": {}}, [(f"{FIELD}.vacation.subject", "is required"),
                                             (f"{FIELD}.vacation.body", "is required")]),
    ("vacation-unknown", {"vacation": {"subject": "s", "body": "b", "day": 3}},
     [(f"{FIELD}.vacation.day", "did you mean days?")]),
    ("subject-newline", {"vacation": {"subject": "a\nb", "body": "b"}},
     [(f"{FIELD}.vacation.subject", "must be one line")]),
    ("subject-control", {"vacation": {"subject": "a\x07", "body": "b"}},
     [(f"{FIELD}.vacation.subject", "must not contain control characters")]),
    ("subject-long", {"vacation": {"subject": "s" * 201, "body": "b"}},
     [(f"{FIELD}.vacation.subject", "is longer than 200 characters")]),
    ("body-blank", {"vacation": {"subject": "s", "body": " \n"}},
     [(f"{FIELD}.vacation.body", "is blank")]),
    ("days-zero", {"vacation": {"subject": "s", "body": "b", "days": 0}},
     [(f"{FIELD}.vacation.days", "0 is not a whole number of days from 1 to 30")]),
    ("days-31", {"vacation": {"subject": "s", "body": "b", "days": 31}},
     [(f"{FIELD}.vacation.days", "from 1 to 30")]),
    ("days-bool", {"vacation": {"subject": "s", "body": "b", "days": True}},
     [(f"{FIELD}.vacation.days", "from 1 to 30")]),
    ("vacation-address", {"vacation": {"subject": "s", "body": "b",
                                       "addresses": [ALICE, "nobody"]}},
     [(f"{FIELD}.vacation.addresses[1]", "'nobody' is not an email address")]),
    ("vacation-no-address", {"vacation": {"subject": "s", "body": "b", "addresses": []}},
     [(f"{FIELD}.vacation.addresses", "is an empty list")]),
    ("date-order", {"vacation": {"subject": "s", "body": "b", "start": "2027-01-03",
                                 "end": datetime.date(2026, 12, 20)}},
     [(f"{FIELD}.vacation.end", "2026-12-20 is before start (2027-01-03)")]),
    ("date-bad", {"vacation": {"subject": "s", "body": "b", "start": "2027-02-30",
                               "end": 20270101}},
     [(f"{FIELD}.vacation.start", "is not a date such as 2026-12-20"),
      (f"{FIELD}.vacation.end", "is not a date")]),
    ("date-time", {"vacation": {"subject": "s", "body": "b",
                                "start": datetime.datetime(2026, 12, 20, 8, 0)}},
     [(f"{FIELD}.vacation.start", "has a time")]),
    # rules
    ("rule-type", {"rules": ["fileinto Lists"]}, [(f"{FIELD}.rules[0]", "must be a mapping")]),
    ("rule-empty", {"rules": [{}]}, [(f"{FIELD}.rules[0]", "is empty")]),
    ("rule-unknown", {"rules": [{"match": {"exists": "X"}, "filein": "A"}]},
     [(f"{FIELD}.rules[0].filein", "did you mean fileinto?"),
      (f"{FIELD}.rules[0]", "needs an action")]),
    ("match-missing", {"rules": [{"fileinto": "A"}]},
     [(f"{FIELD}.rules[0].match", "is required")]),
    ("match-empty", {"rules": [{"match": [], "fileinto": "A"}]},
     [(f"{FIELD}.rules[0].match", "non-empty list")]),
    ("no-action", {"rules": [{"match": {"exists": "X"}, "discard": False}]},
     [(f"{FIELD}.rules[0]", "needs an action")]),
    ("discard-fileinto", {"rules": [{"match": {"exists": "X"}, "discard": True,
                                     "fileinto": "A"}]},
     [(f"{FIELD}.rules[0].discard", "discard only cancels the implicit keep")]),
    ("discard-redirect", {"rules": [{"match": {"exists": "X"}, "discard": True,
                                     "redirect": "b@elsewhere.test"}]},
     [(f"{FIELD}.rules[0].discard", "would still be filed")]),
    ("copy-alone", {"rules": [{"match": {"exists": "X"}, "fileinto": "A", "copy": True}]},
     [(f"{FIELD}.rules[0].copy", "applies to redirect only")]),
    ("bool-types", {"rules": [{"match": {"exists": "X"}, "fileinto": "A", "any": 1,
                               "stop": "no"}]},
     [(f"{FIELD}.rules[0].any", "1 is not true or false"),
      (f"{FIELD}.rules[0].stop", "'no' is not true or false")]),
    ("name-newline", {"rules": [{"name": "a\nb", "match": {"exists": "X"}, "discard": True}]},
     [(f"{FIELD}.rules[0].name", "must be one line")]),
    ("folder-bad", {"rules": [{"match": {"exists": "X"}, "fileinto": f}
                              for f in ("", "a\tb", "/a", "a//b", "a/", "a*", 3)]},
     [(f"{FIELD}.rules[0].fileinto", "is empty"),
      (f"{FIELD}.rules[1].fileinto", "must not contain control characters"),
      (f"{FIELD}.rules[2].fileinto", "has an empty level"),
      (f"{FIELD}.rules[3].fileinto", "has an empty level"),
      (f"{FIELD}.rules[4].fileinto", "has an empty level"),
      (f"{FIELD}.rules[5].fileinto", "are IMAP wildcards"),
      (f"{FIELD}.rules[6].fileinto", "is not a string")]),
    ("flags-bad", {"rules": [{"match": {"exists": "X"},
                              "flags": ["\\Seen", "\\Recent", "two words", 3, "a]b", "$ok"]}]},
     [(f"{FIELD}.rules[0].flags[1]", "'\\\\Recent' is not a system flag"),
      (f"{FIELD}.rules[0].flags[2]", "is not an IMAP flag or keyword"),
      (f"{FIELD}.rules[0].flags[3]", "3 is not an IMAP flag or keyword"),
      (f"{FIELD}.rules[0].flags[4]", "is not an IMAP flag or keyword")]),
    ("redirect-self", {"rules": [{"match": {"exists": "X"}, "redirect": "A@Example.test",
                                  "copy": True}]},
     [(f"{FIELD}.rules[0].redirect", "'a@example.test' is this user's own address")]),
    ("flags-empty", {"rules": [{"match": {"exists": "X"}, "flags": [], "discard": True}]},
     [(f"{FIELD}.rules[0].flags", "is an empty list")]),
    ("redirect-bad", {"rules": [{"match": {"exists": "X"},
                                 "redirect": ["b@elsewhere.test", "not an address",
                                              "A@example.test"]}]},
     [(f"{FIELD}.rules[0].redirect[1]", "is not an email address"),
      (f"{FIELD}.rules[0].redirect[2]", "this user's own address")]),
    # conditions
    ("condition-unknown", {"rules": [{"match": [{"exists": "X"},
                                                {"header": "Subject", "contain": "x"}],
                                      "discard": True}]},
     [(f"{FIELD}.rules[0].match[1].contain", "did you mean contains?"),
      (f"{FIELD}.rules[0].match[1]", "header needs a comparator")]),
    ("two-tests", {"rules": [{"match": {"header": "A", "exists": "B", "is": "x"},
                              "discard": True}]},
     [(f"{FIELD}.rules[0].match", "has 2 tests (header, exists)")]),
    ("no-test", {"rules": [{"match": {"is": "x"}, "discard": True}]},
     [(f"{FIELD}.rules[0].match", "needs a test")]),
    ("two-comparators", {"rules": [{"match": {"header": "A", "is": "x", "matches": "y"},
                                    "discard": True}]},
     [(f"{FIELD}.rules[0].match", "has 2 comparators (is, matches)")]),
    ("comparator-on-exists", {"rules": [{"match": {"exists": "A", "is": "x"},
                                         "discard": True}]},
     [(f"{FIELD}.rules[0].match.is", "exists takes no comparator")]),
    ("comparator-values", {"rules": [{"match": {"header": "A", "contains": ["x", 42, "a\nb"]},
                                      "discard": True}]},
     [(f"{FIELD}.rules[0].match.contains[1]", "42 is not a string"),
      (f"{FIELD}.rules[0].match.contains[2]", "must be one line")]),
    ("comparator-empty", {"rules": [{"match": {"header": "A", "contains": []},
                                     "discard": True}]},
     [(f"{FIELD}.rules[0].match.contains", "is an empty list")]),
    ("header-name", {"rules": [{"match": [{"header": "Sub ject", "is": "x"},
                                          {"exists": "A:B"}, {"header": "", "is": "x"}],
                                "discard": True}]},
     [(f"{FIELD}.rules[0].match[0].header", "is not a header field name"),
      (f"{FIELD}.rules[0].match[1].exists", "is not a header field name"),
      (f"{FIELD}.rules[0].match[2].header", "is not a header field name")]),
    ("address-header", {"rules": [{"match": [{"address": "Form", "is": "x"},
                                             {"address": "List-Id", "is": "x"}],
                                   "discard": True}]},
     [(f"{FIELD}.rules[0].match[0].address", "did you mean From?"),
      (f"{FIELD}.rules[0].match[1].address", "is not an address header both stores test")]),
    ("envelope-part", {"rules": [{"match": {"envelope": "sender", "is": "x"},
                                  "discard": True}]},
     [(f"{FIELD}.rules[0].match.envelope", "'sender' is not an envelope part")]),
    ("body-value", {"rules": [{"match": {"body": "yes", "is": "x"}, "discard": True}]},
     [(f"{FIELD}.rules[0].match.body", "write body: true")]),
    ("size-bad", {"rules": [{"match": [{"size_over": "2G"}, {"size_under": "lots"},
                                       {"size_over": -1}], "discard": True}]},
     [(f"{FIELD}.rules[0].match[0].size_over", "at most 2147483647 bytes"),
      (f"{FIELD}.rules[0].match[1].size_under", "is not a size"),
      (f"{FIELD}.rules[0].match[2].size_over", "is negative")]),
    ("not-inner", {"rules": [{"match": {"not": {"header": "A", "is": 1}}, "discard": True}]},
     [(f"{FIELD}.rules[0].match.not.is", "1 is not a string")]),
    ("not-type", {"rules": [{"match": {"not": "X"}, "discard": True}]},
     [(f"{FIELD}.rules[0].match.not", "must be a mapping")]),
]


@pytest.mark.parametrize(("value", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_bad_value_is_a_finding_naming_its_field(value, expected):
    filters, findings = parse(value)
    assert filters is None
    assert len(findings) == len(expected), findings
    for (field, message), (want_field, want_message) in zip(findings, expected, strict=True):
        assert field == want_field, findings
        assert want_message in message, findings


def test_not_nests_a_bounded_number_of_times():
    condition: dict[str, Any] = {"exists": "X"}
    for _ in range(50):
        condition = {"not": condition}
    _, findings = parse({"rules": [{"match": condition, "discard": True}]})
    assert len(findings) == 1 and "nests more than" in findings[0][1]
    assert valid({"rules": [{"match": {"not": {"not": {"exists": "X"}}}, "discard": True}]}) \
        .rules[0].conditions == (Condition("exists", "X"),)


ODD = [None, True, 0, -1, 1.5, "", "x", "\n", [], [None], {}, {"": None}, {1: 2},
       {"match": None}, datetime.date(2026, 1, 1), b"bytes", ("tuple",), {"not": {"not": {}}}]


@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_odd_values_anywhere_are_findings_never_exceptions(odd):
    places = [
        odd,
        {"owned": odd, "script": odd},
        {"vacation": odd},
        {"vacation": dict.fromkeys(("subject", "body", "days", "addresses", "start", "end"),
                                   odd)},
        {"rules": odd},
        {"rules": [odd]},
        {"rules": [dict.fromkeys(("name", "match", "any", "fileinto", "flags", "redirect",
                                  "copy", "discard", "stop"), odd)]},
        {"rules": [{"match": odd, "discard": True}]},
        {"rules": [{"match": [odd], "discard": True}]},
        *({"rules": [{"match": {test: odd, "is": odd}, "discard": True}]}
          for test in ("header", "address", "envelope", "exists", "size_over", "size_under",
                       "body", "not")),
    ]
    for value in places:
        filters, _ = parse(value)
        if filters is not None:
            render_script(filters, ALICE)


# --------------------------------------------------------------------------- through validate

def _host(sieve: Any):
    users = [dict(BASE_ALL["mail_users"][0], aliases=["a@example.test"], sieve=sieve),
             BASE_ALL["mail_users"][1]]
    return check_host(HOST, {**BASE_HOST, **BASE_ALL, "mail_users": users}, [])


def test_a_good_sieve_validates_into_the_user(tmp_path):
    host, findings = _host(FULL)
    assert findings == []
    alice, bob = host.users
    assert alice.sieve == valid(FULL)
    assert bob.sieve is None
    assert render_script(alice.sieve, alice.address) == FULL_SCRIPT


def test_a_bad_sieve_makes_the_user_invalid():
    host, findings = _host({"owned": 1, "rules": [{"match": [{"exists": "X"},
                                                             {"header": "A", "contains": 1}],
                                                   "fileinto": "A", "discard": True}]})
    assert host is None
    # (the alias postmaster -> alice dangles too: alice is not a valid user)
    assert [(f.variable, f.field) for f in findings if f.variable == "mail_users"] == [
        ("mail_users", "mail_users[0].sieve.owned"),
        ("mail_users", "mail_users[0].sieve.rules[0].match[1].contains"),
        ("mail_users", "mail_users[0].sieve.rules[0].discard"),
    ]


def test_an_unknown_user_key_near_sieve_gets_a_hint():
    users = [dict(BASE_ALL["mail_users"][0], seive={})]
    _, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL, "mail_users": users}, [])
    assert [(f.field, f.message) for f in findings] == [
        ("mail_users[0].seive", "unknown user setting; did you mean sieve?")]
