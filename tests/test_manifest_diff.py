"""mailctl mailbox diff: loading and checking manifests, every finding diff() reports (by ids
and with ignore_ids), the users filter, the bound on message findings, and summary().
Pure: the only I/O is load() reading files under tmp_path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from mailctl import manifest_diff
from mailctl.errors import InputError
from mailctl.manifest_diff import ManifestError, diff, load, summary

ALICE = "alice@example.test"
BOB = "bob@example.test"
SHA = ["a" * 64, "b" * 64, "c" * 64, "d" * 64]


def message(uid: int, sha: str, *, size: int = 1000, flags: list[str] | None = None,
            date: str = "2019-01-01T10:00:00+00:00") -> dict[str, Any]:
    return {"uid": uid, "sha256": sha, "size": size,
            "flags": ["\\Seen"] if flags is None else flags, "internaldate": date}


def mailbox(messages: list[dict], *, subscribed: bool = True) -> dict[str, Any]:
    return {"subscribed": subscribed, "uidvalidity": 1700000000,
            "uidnext": max((m["uid"] for m in messages), default=0) + 1,
            "count": len(messages), "messages": messages}


def manifest(store: str = "dovecot") -> dict[str, Any]:
    """Two users, three mailboxes, five messages; every test changes a fresh copy."""
    alice = {
        "quota": {"STORAGE": [10, 1024], "MESSAGE": [4, 1000]},
        "pop3_uidls": ["00000001aa", "00000002aa", "00000003aa"],
        "sieve": {"active": "main", "scripts": {"main": "1" * 64, "vacation": "2" * 64}},
        "mailboxes": {
            "INBOX": mailbox([message(1, SHA[0]), message(2, SHA[1], flags=[]),
                              message(3, SHA[2], flags=["$Label1", "\\Seen"])]),
            "Archive": mailbox([message(1, SHA[3], size=2048)], subscribed=False),
        }}
    bob = {"quota": {}, "pop3_uidls": None, "sieve": None,
           "mailboxes": {"INBOX": mailbox([message(7, SHA[0])])}}
    return {"mailctl_manifest": 1, "taken": "2026-12-02T12:00:00Z", "host": "mail1",
            "store": store, "users": {ALICE: alice, BOB: bob}}


def user(m: dict, name: str = ALICE) -> dict[str, Any]:
    return m["users"][name]


def inbox(m: dict, name: str = ALICE) -> dict[str, Any]:
    return m["users"][name]["mailboxes"]["INBOX"]


def prefix(box: str = "INBOX", name: str = ALICE) -> str:
    return f"{name}: mailbox {box!r}: "


# --------------------------------------------------------------------------- equal

def test_a_manifest_equals_itself_and_a_copy():
    a = manifest()
    assert diff(a, a) == []
    assert diff(a, copy.deepcopy(a)) == []
    assert diff(a, copy.deepcopy(a), ignore_ids=True) == []


def test_host_store_and_taken_are_not_findings():
    b = manifest(store="cyrus")
    b.update(host="mail2", taken="2027-01-01T00:00:00Z")
    assert diff(manifest(), b) == []


def test_an_equal_date_in_another_notation_is_equal():
    b = manifest()
    inbox(b)["messages"][0]["internaldate"] = "2019-01-01T12:00:00+02:00"
    assert diff(manifest(), b) == []
    inbox(b)["messages"][0]["internaldate"] = "2019-01-01T10:00:00Z"
    assert diff(manifest(), b) == []


# --------------------------------------------------------------------------- users, mailboxes

def test_a_user_on_one_side_is_one_finding_without_its_contents():
    b = manifest()
    del b["users"][BOB]
    assert diff(manifest(), b) == [f"{BOB}: only in A"]
    assert diff(b, manifest()) == [f"{BOB}: only in B"]


def test_a_mailbox_on_one_side_is_one_finding():
    b = manifest()
    user(b)["mailboxes"]["Lists/dev"] = mailbox([message(1, SHA[0])])
    del user(b)["mailboxes"]["Archive"]
    assert diff(manifest(), b) == [f"{prefix('Archive')}only in A",
                                   f"{prefix('Lists/dev')}only in B"]


def test_subscription_count_uidvalidity_and_uidnext():
    b = manifest()
    inbox(b).update(subscribed=False, count=4, uidvalidity=1800000000, uidnext=9)
    assert diff(manifest(), b) == [
        f"{prefix()}subscribed: yes in A, no in B",
        f"{prefix()}count: 3 in A, 4 in B",
        f"{prefix()}uidvalidity: 1700000000 in A, 1800000000 in B",
        f"{prefix()}uidnext: 4 in A, 9 in B",
    ]


# --------------------------------------------------------------------------- messages by uid

def test_a_uid_on_one_side():
    b = manifest()
    lost = inbox(b)["messages"].pop(2)
    assert f"{prefix()}uid 3: only in A" in diff(manifest(), b)
    lost["uid"] = 4
    inbox(b)["messages"].append(lost)
    assert diff(manifest(), b) == [f"{prefix()}uid 3: only in A", f"{prefix()}uid 4: only in B"]


def test_content_size_flags_and_internaldate_of_one_uid():
    b = manifest()
    inbox(b)["messages"][1].update(sha256="e" * 64, size=1001, flags=["\\Flagged", "\\Seen"],
                                   internaldate="2020-05-05T05:05:05+00:00")
    assert diff(manifest(), b) == [
        f"{prefix()}uid 2: content differs",
        f"{prefix()}uid 2: size: 1000 in A, 1001 in B",
        f"{prefix()}uid 2: flags: (none) in A, \\Flagged \\Seen in B",
        f"{prefix()}uid 2: internaldate: 2019-01-01T10:00:00+00:00 in A, "
        "2020-05-05T05:05:05+00:00 in B",
    ]


def test_findings_are_sorted_by_user_mailbox_then_uid():
    b = manifest()
    for m in (*inbox(b)["messages"], *inbox(b, BOB)["messages"]):
        m["flags"] = ["\\Deleted"]
    user(b)["mailboxes"]["Archive"]["messages"][0]["size"] = 1
    lines = diff(manifest(), b)
    assert lines == sorted(lines, key=lambda line: (line.split(":")[0], line))
    assert [line.split(": uid ")[1][0] for line in lines] == ["1", "1", "2", "3", "7"]
    assert lines[0] == f"{prefix('Archive')}uid 1: size: 2048 in A, 1 in B"


# --------------------------------------------------------------------------- pop3 uidls

@pytest.mark.parametrize(("uidls", "finding"), [
    (["00000001aa", "00000002aa"], "1 only in A"),
    (["00000001aa", "00000002aa", "00000003aa", "00000004aa"], "1 only in B"),
    (["00000002aa", "00000001aa", "00000003aa"], "order differs"),
    (["00000009aa", "00000003aa", "00000001aa"], "1 only in A, 1 only in B, order differs"),
    (["00000001aa", "00000002aa", "00000003aa", "00000003aa"], "1 only in B"),
])
def test_pop3_uidls(uidls, finding):
    b = manifest()
    user(b)["pop3_uidls"] = uidls
    assert diff(manifest(), b) == [f"{ALICE}: pop3 uidls differ: {finding}"]


def test_pop3_uidls_not_read_on_one_side_are_not_compared():
    b = manifest()
    user(b)["pop3_uidls"] = None
    assert diff(manifest(), b) == []
    assert diff(b, manifest()) == []


# --------------------------------------------------------------------------- quota

def test_quota_limits_and_usage():
    b = manifest()
    user(b)["quota"]["STORAGE"] = [12, 2048]
    assert diff(manifest(), b) == [f"{ALICE}: quota STORAGE limit: 1024 in A, 2048 in B",
                                   f"{ALICE}: quota STORAGE usage: 10 in A, 12 in B"]


def test_quota_usage_is_not_compared_across_stores_or_without_ids():
    b = manifest(store="cyrus")
    user(b)["quota"]["STORAGE"] = [12, 1024]
    assert diff(manifest(), b) == []
    b["store"] = "dovecot"
    assert diff(manifest(), b) == [f"{ALICE}: quota STORAGE usage: 10 in A, 12 in B"]
    assert diff(manifest(), b, ignore_ids=True) == []
    user(b)["quota"]["STORAGE"] = [12, 2048]
    assert diff(manifest(), b, ignore_ids=True) == [
        f"{ALICE}: quota STORAGE limit: 1024 in A, 2048 in B"]


def test_a_quota_resource_on_one_side():
    b = manifest()
    del user(b)["quota"]["MESSAGE"]
    user(b, BOB)["quota"] = {"STORAGE": [0, 100]}
    assert diff(manifest(), b) == [f"{ALICE}: quota MESSAGE: only in A",
                                   f"{BOB}: quota STORAGE: only in B"]


# --------------------------------------------------------------------------- sieve

def test_sieve_active_scripts_and_hashes():
    b = manifest()
    user(b)["sieve"] = {"active": None, "scripts": {"main": "9" * 64, "spam": "3" * 64}}
    assert diff(manifest(), b) == [
        f"{ALICE}: sieve active script: 'main' in A, (none) in B",
        f"{ALICE}: sieve script 'main': content differs",
        f"{ALICE}: sieve script 'spam': only in B",
        f"{ALICE}: sieve script 'vacation': only in A",
    ]


def test_sieve_not_read_on_one_side_is_not_compared():
    b = manifest()
    user(b)["sieve"] = None
    assert diff(manifest(), b) == []
    assert diff(b, manifest()) == []


# --------------------------------------------------------------------------- ignore_ids

def renumbered(m: dict) -> dict:
    """What a migration to another store does: new ids, messages in another order."""
    m = copy.deepcopy(m)
    for entry in m["users"].values():
        entry["pop3_uidls"] = ["x" + u for u in entry["pop3_uidls"] or []] or None
        for box in entry["mailboxes"].values():
            box.update(uidvalidity=42, uidnext=box["uidnext"] + 100)
            box["messages"].reverse()
            for number, m_ in enumerate(box["messages"], 1):
                m_["uid"] = number + 100
    return m


def test_ignore_ids_ignores_uidvalidity_uidnext_uids_and_uidls():
    b = renumbered(manifest())
    assert diff(manifest(), b, ignore_ids=True) == []
    assert diff(manifest(), b) != []


def test_ignore_ids_catches_a_lost_message():
    b = renumbered(manifest())
    inbox(b)["messages"] = [m for m in inbox(b)["messages"] if m["sha256"] != SHA[1]]
    assert diff(manifest(), b, ignore_ids=True) == [
        f"{prefix()}message {'b' * 12} (1000 bytes, 2019-01-01T10:00:00+00:00): only in A"]


def test_ignore_ids_catches_a_new_message_and_several_copies():
    b = renumbered(manifest())
    inbox(b)["messages"] += [message(200, SHA[3]), message(201, SHA[3])]
    assert diff(manifest(), b, ignore_ids=True) == [
        f"{prefix()}message {'d' * 12} (1000 bytes, 2019-01-01T10:00:00+00:00): "
        "only in B (2 copies)"]


def test_ignore_ids_counts_duplicates():
    a = manifest()
    inbox(a)["messages"].append(message(4, SHA[0]))
    b = renumbered(manifest())
    assert diff(a, b, ignore_ids=True) == [f"{prefix()}message {'a' * 12}: 1 more copy in A"]
    inbox(b)["messages"] += [message(300, SHA[0]), message(301, SHA[0])]
    assert diff(a, b, ignore_ids=True) == [f"{prefix()}message {'a' * 12}: 1 more copy in B"]
    inbox(a)["messages"] += [message(5, SHA[0]), message(6, SHA[0]), message(7, SHA[0])]
    assert diff(a, b, ignore_ids=True) == [f"{prefix()}message {'a' * 12}: 2 more copies in A"]


def test_ignore_ids_catches_changed_flags_date_and_size():
    b = renumbered(manifest())
    twin = next(m for m in inbox(b)["messages"] if m["sha256"] == SHA[2])
    twin.update(flags=["\\Seen"], internaldate="2019-01-02T10:00:00+00:00", size=999)
    assert diff(manifest(), b, ignore_ids=True) == [
        f"{prefix()}message {'c' * 12}: size: 1000 in A, 999 in B",
        f"{prefix()}message {'c' * 12}: flags: $Label1 \\Seen in A, \\Seen in B",
        f"{prefix()}message {'c' * 12}: internaldate: 2019-01-01T10:00:00+00:00 in A, "
        "2019-01-02T10:00:00+00:00 in B",
    ]


def test_ignore_ids_pairs_identical_copies_first():
    """Two copies in A (an old and a new date), one in B equal to the new one: only the old
    copy is missing, not "date differs" plus "1 more copy"."""
    old, new = "2018-01-01T00:00:00+00:00", "2019-01-01T00:00:00+00:00"
    a, b = manifest(), manifest()
    inbox(a)["messages"] += [message(4, SHA[3], date=old), message(5, SHA[3], date=new)]
    inbox(b)["messages"] += [message(4, SHA[3], date=new)]
    assert diff(a, b, ignore_ids=True) == [f"{prefix()}message {'d' * 12}: 1 more copy in A"]


def test_ignore_ids_names_the_copy_when_several_pairs_differ():
    a, b = manifest(), renumbered(manifest())
    inbox(a)["messages"] += [message(4, SHA[3], flags=[]), message(5, SHA[3], flags=[])]
    inbox(b)["messages"] += [message(9, SHA[3], flags=["\\Seen"]),
                             message(8, SHA[3], flags=["\\Seen"])]
    label = f"{prefix()}message {'d' * 12}"
    assert diff(a, b, ignore_ids=True) == [f"{label} (copy 1): flags: (none) in A, \\Seen in B",
                                           f"{label} (copy 2): flags: (none) in A, \\Seen in B"]


def test_ignore_ids_still_compares_count_and_subscription():
    b = renumbered(manifest())
    inbox(b).update(count=7, subscribed=False)
    assert diff(manifest(), b, ignore_ids=True) == [f"{prefix()}subscribed: yes in A, no in B",
                                                    f"{prefix()}count: 3 in A, 7 in B"]


# --------------------------------------------------------------------------- users filter

def test_users_restricts_the_comparison():
    b = manifest()
    inbox(b)["messages"][0]["size"] = 5
    inbox(b, BOB)["messages"][0]["size"] = 5
    assert diff(manifest(), b, users={BOB}) == [f"{prefix(name=BOB)}uid 7: size: 1000 in A, 5 in B"]
    assert len(diff(manifest(), b, users={ALICE, BOB})) == 2
    assert diff(manifest(), b, users=set()) == []


def test_users_filter_matches_addresses_case_insensitively():
    b = manifest()
    inbox(b, BOB)["messages"][0]["size"] = 5
    assert diff(manifest(), b, users={BOB.upper()}) == [
        f"{prefix(name=BOB)}uid 7: size: 1000 in A, 5 in B"]


def test_users_filter_reports_a_user_on_one_side_and_on_neither():
    b = manifest()
    del b["users"][BOB]
    assert diff(manifest(), b, users={BOB, "carol@example.test"}) == [
        f"{BOB}: only in A", "carol@example.test: in neither A nor B"]


# --------------------------------------------------------------------------- bounded output

def many(count: int) -> dict:
    m = manifest()
    inbox(m)["messages"] = [message(uid, f"{uid:064x}") for uid in range(1, count + 1)]
    inbox(m).update(count=count, uidnext=count + 1)
    return m


@pytest.mark.parametrize("ignore_ids", [False, True])
def test_message_findings_are_bounded_per_mailbox(ignore_ids):
    a, b = many(50), many(50)
    for m in inbox(b)["messages"]:
        m["flags"] = []
    user(b)["mailboxes"]["Archive"]["messages"][0]["flags"] = []
    lines = diff(a, b, ignore_ids=ignore_ids)
    inbox_lines = [line for line in lines if line.startswith(prefix())]
    assert len(inbox_lines) == 21
    assert inbox_lines[-1] == f"{prefix()}... and 30 more message differences"
    assert lines[0].startswith(prefix("Archive"))  # other mailboxes keep their own bound


def test_the_bound_counts_message_findings_only():
    a, b = many(21), many(21)
    inbox(b)["count"] = 22
    for m in inbox(b)["messages"]:
        m["size"] = 1
    lines = diff(a, b)
    assert lines[0] == f"{prefix()}count: 21 in A, 22 in B"
    assert lines[-1] == f"{prefix()}... and 1 more message difference"
    assert len(lines) == 22
    inbox(b)["messages"].pop()
    assert len(diff(a, b)) == 1 + 20 + 1  # 20 size findings and "uid 21: only in A"


def test_exactly_the_bound_is_not_cut():
    a, b = many(20), many(20)
    for m in inbox(b)["messages"]:
        m["size"] = 1
    assert len(diff(a, b)) == 20
    assert not any("more message" in line for line in diff(a, b))


# --------------------------------------------------------------------------- summary

def test_summary():
    assert summary(manifest()) == ("mail1 (dovecot), taken 2026-12-02T12:00:00Z: 2 users, "
                                   "3 mailboxes, 5 messages, 5.9 KiB")
    m = many(120)
    for message_ in inbox(m)["messages"]:
        message_["size"] = 44_000
    del m["users"][BOB]
    assert summary(m) == ("mail1 (dovecot), taken 2026-12-02T12:00:00Z: 1 user, "
                          "2 mailboxes, 121 messages, 5.0 MiB")


def test_summary_of_an_empty_manifest():
    m = {"mailctl_manifest": 1, "taken": "t", "host": "h", "store": "cyrus", "users": {}}
    assert summary(m) == "h (cyrus), taken t: 0 users, 0 mailboxes, 0 messages, 0 B"


# --------------------------------------------------------------------------- load

def write(tmp_path, data: Any, name: str = "x.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_reads_a_manifest(tmp_path):
    assert load(write(tmp_path, manifest())) == manifest()


def broken(change) -> dict:
    m = manifest()
    change(m)
    return m


@pytest.mark.parametrize(("data", "message_"), [
    ({"users": {}}, "not a mailctl manifest (no mailctl_manifest key)"),
    ([1, 2], "not a mailctl manifest (not a JSON object)"),
    ({"mailctl_manifest": 2, "users": {}},
     "mailctl_manifest 2 is not supported (this mailctl reads version 1)"),
    ({"mailctl_manifest": True, "users": {}},
     "mailctl_manifest True is not supported (this mailctl reads version 1)"),
    ({"mailctl_manifest": 1, "users": []}, "not a mailctl manifest (users is not an object)"),
    ({"mailctl_manifest": 1}, "not a mailctl manifest (users is not an object)"),
    (broken(lambda m: user(m).pop("mailboxes")), f"user {ALICE}: no mailboxes object"),
    (broken(lambda m: inbox(m).pop("uidnext")), f"user {ALICE}: mailbox 'INBOX': no uidnext"),
    (broken(lambda m: inbox(m)["messages"][1].pop("sha256")),
     f"user {ALICE}: mailbox 'INBOX': message 2: no sha256"),
    (broken(lambda m: inbox(m)["messages"][0].update(flags="\\Seen")),
     f"user {ALICE}: mailbox 'INBOX': message 1: flags is not a list of strings"),
    (broken(lambda m: inbox(m).update(messages={})),
     f"user {ALICE}: mailbox 'INBOX': messages is not a list"),
    (broken(lambda m: user(m)["quota"].update(STORAGE=[10])),
     f"user {ALICE}: quota STORAGE is not [used, limit]"),
    (broken(lambda m: user(m).update(sieve={"active": "main"})),
     f"user {ALICE}: sieve is neither null nor an object with scripts"),
    (broken(lambda m: user(m).update(pop3_uidls="00000001aa")),
     f"user {ALICE}: pop3_uidls is neither null nor a list of strings"),
])
def test_load_rejects_what_is_not_a_manifest(tmp_path, data, message_):
    path = write(tmp_path, data)
    with pytest.raises(ManifestError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: {message_}"


def test_load_rejects_invalid_json(tmp_path):
    path = write(tmp_path, '{"mailctl_manifest": 1,\n "users": {')
    with pytest.raises(ManifestError, match=r"x\.json: not JSON \(line 2 column"):
        load(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match=r"x\.json: not JSON"):
        load(path)


def test_load_names_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ManifestError) as caught:
        load(tmp_path / "gone.json")
    assert str(caught.value) == f"{tmp_path / 'gone.json'}: no such file"
    with pytest.raises(ManifestError, match=r"^.*: cannot read \("):
        load(tmp_path)  # a directory


def test_manifest_errors_are_one_line_input_errors(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ManifestError) as caught:
        load(path)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, InputError)
    assert "\n" not in str(caught.value)


def test_manifest_problem_accepts_null_quota_sieve_and_uidls():
    m = manifest()
    user(m).update(quota=None, sieve=None, pop3_uidls=None)
    assert manifest_diff.manifest_problem(m) is None
    assert diff(m, manifest()) == [f"{ALICE}: quota MESSAGE: only in B",
                                   f"{ALICE}: quota STORAGE: only in B"]


# --------------------------------------------------------------------------- store-made parents

def with_reports(m: dict) -> dict:
    """Alice also files mail in Reports/2019 (a folder under a parent)."""
    user(m)["mailboxes"]["Reports/2019"] = mailbox([message(1, SHA[3])])
    return m


@pytest.mark.parametrize("side", ["A", "B"])
def test_an_empty_unsubscribed_parent_on_one_side_is_no_finding_by_content(side):
    """Cyrus makes Reports a mailbox where Dovecot lists it \\Noselect (so not at all): with
    ignore_ids that is no finding, on either side; compared by ids it still is one."""
    plain, made = with_reports(manifest()), renumbered(with_reports(manifest()))
    user(made)["mailboxes"]["Reports"] = mailbox([], subscribed=False)
    a, b = (made, plain) if side == "A" else (plain, made)
    assert diff(a, b, ignore_ids=True) == []
    assert f"{prefix('Reports')}only in {side}" in diff(a, b)


@pytest.mark.parametrize(("box", "why"), [
    (mailbox([message(1, SHA[0])], subscribed=False), "it holds a message"),
    (mailbox([], subscribed=True), "it is subscribed"),
])
def test_a_parent_with_mail_or_a_subscription_is_a_finding(box, why):
    """A parent holding mail, or subscribed, is more than a store's artefact."""
    a, b = with_reports(manifest()), renumbered(with_reports(manifest()))
    user(b)["mailboxes"]["Reports"] = box
    assert diff(a, b, ignore_ids=True) == [f"{prefix('Reports')}only in B"], why


@pytest.mark.parametrize("name", ["Report", "Reports/2019/x", "Rep", "Archive2"])
def test_a_folder_that_is_no_parent_is_a_finding(name):
    """Empty and unsubscribed, but above no folder of the other side (a name that merely
    begins like one, or a child): a finding."""
    a, b = with_reports(manifest()), renumbered(with_reports(manifest()))
    user(b)["mailboxes"][name] = mailbox([], subscribed=False)
    assert diff(a, b, ignore_ids=True) == [f"{prefix(name)}only in B"]


def test_a_parent_only_of_its_own_side_is_a_finding():
    """Old and Old/x both only in B: Old is above no folder of A, so both are findings."""
    a, b = manifest(), renumbered(manifest())
    user(b)["mailboxes"]["Old"] = mailbox([], subscribed=False)
    user(b)["mailboxes"]["Old/x"] = mailbox([], subscribed=False)
    assert diff(a, b, ignore_ids=True) == [f"{prefix('Old')}only in B",
                                           f"{prefix('Old/x')}only in B"]


@pytest.mark.parametrize("ignore_ids", [False, True])
def test_an_empty_folder_the_new_store_made_is_no_finding(ignore_ids):
    """Between stores, an empty folder only in B (Dovecot's auto-created, subscribed Drafts)
    loses nothing of A: no finding, by ids or not. Within one store it is one; with mail in
    it, or only in A, it always is."""
    a, b = manifest(store="cyrus"), manifest(store="dovecot")
    user(b)["mailboxes"]["Drafts"] = mailbox([], subscribed=True)
    assert diff(a, b, ignore_ids=ignore_ids) == []
    assert diff(manifest(store="dovecot"), b, ignore_ids=ignore_ids) == [
        f"{prefix('Drafts')}only in B"]
    user(b)["mailboxes"]["Drafts"] = mailbox([message(1, SHA[0])])
    assert diff(a, b, ignore_ids=ignore_ids) == [f"{prefix('Drafts')}only in B"]
    user(a)["mailboxes"]["Junk"] = mailbox([], subscribed=False)
    assert f"{prefix('Junk')}only in A" in diff(a, b, ignore_ids=ignore_ids)
