"""Filters, vacation replies and duplicate suppression ([7/8]), the same file for both stores
(default: Dovecot, cyrus: Cyrus): ManageSieve with a real client (sieve-connect, Debian's
package, on this machine), the inventory's filters of dave@sandbox.test
(inventories/sandbox/group_vars/all/main.yml), his vacation replies and forwards at the
outside container's sink, and the store dropping a redelivered Message-ID."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
import uuid
from email.utils import formatdate

from world import IMAPS, address, ca_file, inventory_dir, outside, outside_json, state

from mailctl.inventory import Inventory
from mailctl.model import MailHost

WAIT = 60  # seconds mail may take to land


@functools.cache
def _host() -> MailHost:
    hosts, _ = Inventory(inventory_dir()).mail_plan()
    assert len(hosts) == 1, "the Sieve checks run on all-in-one scenarios"
    return hosts[0]


def _user(address_: str):
    return next(u for u in _host().users if u.address == address_)


FILTERED = "dave@sandbox.test"  # the user whose filters the inventory owns
PLAIN = "alice@sandbox.test"  # a user without inventory filters


# ------------------------------------------------------------------ ManageSieve

def sieve_connect(user: str, password: str, *action: str) -> subprocess.CompletedProcess:
    """sieve-connect to the host's address on 4190: STARTTLS, the certificate checked
    against the host's root for its mail name, then PLAIN (the password on a pipe)."""
    host = _host()
    argv = ["sieve-connect", "--server", address(host), "--port", "4190",
            "--tlshostname", host.hostname, "--tlscafile", ca_file(host), "--user", user,
            "--authmech", "PLAIN", "--noclearauth", "--passwordfd", "0", *action]
    # Once in CI (2026-12-03, default, two scenarios on the cores, the 90-second certificate
    # renewing about every minute) sieve-connect found the connection closed while reading,
    # right after a wrong-password login from the same address; the cause is not established.
    # A client reconnects: one more try, never more.
    for attempt in range(2):
        if attempt:
            time.sleep(3)
        done = subprocess.run(argv, input=password + "\n", capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode == 0 or "Connection dropped unexpectedly" not in done.stderr:
            break
    return done


def listing(user) -> dict[str, bool]:
    done = sieve_connect(user.address, user.password, "--list")
    assert done.returncode == 0, done.stderr
    scripts = {}
    for line in done.stdout.splitlines():
        words = line.split()
        if words:
            # sieve-connect marks the active script: "name" ACTIVE
            scripts[words[0].strip('"')] = words[-1] == "ACTIVE"
    return scripts


def test_managesieve_upload_list_activate_delete(tmp_path):
    user = _user(PLAIN)
    script = tmp_path / "mine.sieve"
    script.write_text('require ["fileinto"];\nif header :contains "Subject" "[mine]" '
                      '{ fileinto "INBOX"; }\n')
    name = f"mine-{uuid.uuid4().hex[:6]}"
    done = sieve_connect(user.address, user.password, "--upload", "--localsieve", str(script),
                         "--remotesieve", name)
    assert done.returncode == 0, done.stderr
    assert listing(user).get(name) is False
    done = sieve_connect(user.address, user.password, "--activate", "--remotesieve", name)
    assert done.returncode == 0, done.stderr
    assert listing(user).get(name) is True
    done = sieve_connect(user.address, user.password, "--deactivate")
    assert done.returncode == 0, done.stderr
    done = sieve_connect(user.address, user.password, "--delete", "--remotesieve", name)
    assert done.returncode == 0, done.stderr
    assert name not in listing(user)


def test_managesieve_refuses_a_broken_script_and_a_wrong_password(tmp_path):
    user = _user(PLAIN)
    broken = tmp_path / "broken.sieve"
    broken.write_text('require "fileinto";\nfileinto "x"\n')  # no ';'
    done = sieve_connect(user.address, user.password, "--upload", "--localsieve", str(broken),
                         "--remotesieve", "broken")
    assert done.returncode != 0 and "broken" not in listing(user), done.stdout + done.stderr
    done = sieve_connect(user.address, user.password + "-wrong", "--list")
    assert done.returncode != 0, "a wrong password was accepted on 4190"


def test_the_inventory_script_is_installed_and_active():
    scripts = listing(_user(FILTERED))
    assert scripts.get("mailctl") is True, scripts


# ------------------------------------------------------------------ mail through the filters

def send_in(rcpt: str, subject: str, sender: str = "someone@sink.example",
            headers: dict | None = None, message_id: str | None = None,
            date: str | None = None) -> None:
    """A DKIM-signed message from sink.example, sent by the outside container to port 25."""
    request = {"host": address(_host()), "rcpt": rcpt, "mail_from": sender,
               "from_header": "someone@sink.example", "subject": subject,
               "body": "sent to the filters", "helo": "mx.sink.example",
               "headers": headers or {},
               "sign": {"domain": "sink.example", "selector": "s1",
                        "key": state()["sink_key"]}}
    if message_id:
        request["message_id"] = message_id
    if date:
        request["date"] = date
    reply = outside_json("send", stdin=json.dumps(request))
    assert reply["code"] == 250, reply


def found(user, folder: str, subject: str, timeout: float = WAIT) -> list[bytes]:
    """The FLAGS of each message with this subject in the folder, once at least one is
    there (an empty list when none arrives in time)."""
    deadline = time.monotonic() + timeout
    while True:
        with IMAPS(_host()) as imap:
            imap.login(user.address, user.password)
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            flags = []
            if typ == "OK":
                _, data = imap.search(None, "SUBJECT", f'"{subject}"')
                for num in data[0].split():
                    _, meta = imap.fetch(num, "(FLAGS)")
                    flags.append(meta[0])
        if flags or time.monotonic() > deadline:
            return flags
        time.sleep(1)


def sink_files(pattern: str) -> list[str]:
    """Messages at the sink whose text matches the (grep -E) pattern."""
    proc = outside("sh", "-c", f"grep -l -E '{pattern}' {state()['sink_dir']}/*.eml || true")
    return proc.stdout.split()


def wait_sink(pattern: str, timeout: float = WAIT) -> list[str]:
    deadline = time.monotonic() + timeout
    while not (files := sink_files(pattern)) and time.monotonic() < deadline:
        time.sleep(1)
    return files


def test_a_rule_files_and_flags():
    subject = f"[report] sieve-{uuid.uuid4().hex[:8]}"
    send_in(FILTERED, subject)
    flags = found(_user(FILTERED), "Reports", subject)
    assert len(flags) == 1, f"not filed into Reports: {flags}"
    assert b"\\Flagged" in flags[0], flags[0]
    assert not found(_user(FILTERED), "INBOX", subject, timeout=0), "also kept in INBOX"


def test_a_rule_forwards_a_copy_to_the_sink():
    subject = f"[archive] sieve-{uuid.uuid4().hex[:8]}"
    send_in(FILTERED, subject)
    assert found(_user(FILTERED), "INBOX", subject), "the copy was not kept"
    files = wait_sink(f"^Subject: {re.escape(subject)}")
    assert len(files) == 1, f"forwarded {len(files)} times"
    meta = json.loads(outside("cat", files[0][:-4] + ".json").stdout)
    assert meta["rcpts"] == ["archive@sink.example"], meta


def test_vacation_replies_once_per_sender_and_never_to_lists_or_bounces():
    tag = uuid.uuid4().hex[:8]
    sender = f"traveller-{tag}@sink.example"
    for n in (1, 2):
        send_in(FILTERED, f"vacation-{tag}-{n}", sender=sender)
    ids = {kind: f"<{kind}-{tag}@sink.example>" for kind in ("list", "bounce")}
    send_in(FILTERED, f"vacation-{tag}-list", sender=f"list-{tag}@sink.example",
            headers={"Precedence": "list", "List-Id": f"<l{tag}.sink.example>"},
            message_id=ids["list"])
    send_in(FILTERED, f"vacation-{tag}-bounce", sender="", message_id=ids["bounce"])
    for n in ("1", "2", "list", "bounce"):
        assert found(_user(FILTERED), "INBOX", f"vacation-{tag}-{n}"), f"message {n} missing"
    replies = wait_sink(f"^To: .*traveller-{tag}@sink.example")
    assert len(replies) == 1, f"{len(replies)} auto-replies for two messages from one sender"
    text = outside("cat", replies[0]).stdout
    assert re.search(r"(?im)^Auto-Submitted: auto-replied", text), text[:2000]
    meta = json.loads(outside("cat", replies[0][:-4] + ".json").stdout)
    assert meta["mail_from"] == "", f"the reply's envelope sender is not <>: {meta}"
    verify = outside("sh", "-c", f"dkimverify < {replies[0]}")
    assert verify.returncode == 0 and "signature ok" in verify.stdout, verify.stdout
    time.sleep(5)  # a reply to the list or the bounce would have come with the first one
    for kind in ids:
        assert not sink_files(f"^(In-Reply-To|References):.*{kind}-{tag}@"), \
            f"replied to the {kind} message"


# ------------------------------------------------------------------ duplicate suppression

def test_a_redelivered_message_id_is_stored_once():
    user = _user(PLAIN)
    subject = f"dup-{uuid.uuid4().hex[:8]}"
    message_id = f"<{uuid.uuid4().hex}@sink.example>"
    date = formatdate()  # a redelivery is the same message: Cyrus's key holds the Date too
    send_in(user.address, subject, message_id=message_id, date=date)
    assert found(user, "INBOX", subject), "the first copy did not arrive"
    send_in(user.address, subject, message_id=message_id, date=date)
    send_in(user.address, subject)  # the control: a new Message-ID is a new message
    deadline = time.monotonic() + WAIT
    while len(found(user, "INBOX", subject)) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(3)  # a second copy of the first would land next to the control
    assert len(found(user, "INBOX", subject)) == 2, \
        "expected the first message once and the control once"

