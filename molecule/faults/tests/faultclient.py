"""Fault-test client, run ON the mail host (python3 stdlib only) against 127.0.0.1.

    python3 faultclient.py ACTION < request.json      # prints one JSON object

Every action is bounded in time and stops by itself. Passwords come on stdin, never on a
command line. Actions:
  send      send `count` messages with unique Message-IDs over `sessions` SMTP sessions
            (port 25, no AUTH), spread over `rcpts`; record each message's outcome in `log`.
            Optionally SIGKILL Postfix's master after `kill_after` acknowledgements and
            restart Postfix `restart_after` seconds later (the sessions keep going).
  queue     how many queued messages come from `sender` (postqueue -j), and the total
  mailbox   the Message-IDs in each user's INBOX (IMAPS as the user), optionally by prefix
  deliver   start the store if asked, then `postqueue -f` (every 10 s) until every expected
            Message-ID is in its mailbox or `timeout` passes; count them and the duplicates
  bounced   how many deliveries Postfix logged as bounced since a time
"""

import collections
import contextlib
import imaplib
import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
DOMAIN = "faults.mailctl.test"
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"


def msgid(prefix, n):
    return f"{prefix}-{n:05d}@{DOMAIN}"


def run(argv, timeout=60):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def wait_port(port, timeout, banner=True):
    """Wait until port accepts a connection (and, with banner, says something first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                if not banner or sock.recv(64):
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


# --- send -------------------------------------------------------------------------------

def send(req):
    prefix, count, sessions = req["prefix"], int(req["count"]), int(req["sessions"])
    rcpts, sender = req["rcpts"], req["sender"]
    deadline = time.monotonic() + float(req.get("deadline", 120))
    kill_after = req.get("kill_after")
    restart_after = float(req.get("restart_after", 3))
    results = {}  # message-id -> {"rcpt", "code", "error"}
    lock = threading.Lock()
    acked = [0]
    events = {}
    killed = threading.Event()

    def one_session(numbers):
        client = None
        for n in numbers:
            mid = msgid(prefix, n)
            rcpt = rcpts[n % len(rcpts)]
            if time.monotonic() > deadline:
                with lock:
                    results[mid] = {"rcpt": rcpt, "code": None, "error": "not sent: deadline"}
                continue
            code, error = None, None
            try:
                if client is None:
                    client = smtplib.SMTP(HOST, 25, timeout=15)
                    client.ehlo("load.faults.mailctl.test")
                msg = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: mailctl fault test {n}\r\n"
                       f"Message-ID: <{mid}>\r\n\r\nmailctl fault test {prefix} {n}\r\n")
                refused = client.sendmail(sender, [rcpt], msg)
                code = 250 if not refused else None
                error = str(refused) if refused else None
            except smtplib.SMTPResponseException as exc:
                code, error = exc.smtp_code, f"{type(exc).__name__}: {exc}"
                client = _close(client)
            except smtplib.SMTPRecipientsRefused as exc:
                error = f"SMTPRecipientsRefused: {exc.recipients}"
                client = _close(client)
            except (OSError, smtplib.SMTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                client = _close(client)
            with lock:
                results[mid] = {"rcpt": rcpt, "code": code, "error": error}
                if code == 250:
                    acked[0] += 1
            if client is None and error:
                time.sleep(0.5)  # the server is down: do not spin
        _close(client)

    def killer():
        while time.monotonic() < deadline:
            with lock:
                if acked[0] >= int(kill_after):
                    break
            time.sleep(0.01)
        with lock:
            events["acked_at_kill"] = acked[0]
        events["kill"] = run(["pkill", "-9", "-f", POSTFIX_MASTER]).returncode
        events["killed_at"] = round(time.monotonic() - start, 2)
        killed.set()
        time.sleep(restart_after)
        events["restart"] = run(["systemctl", "restart", "postfix"], timeout=90).returncode
        events["port25_back"] = wait_port(25, 60)
        events["restarted_at"] = round(time.monotonic() - start, 2)
        with lock:
            events["acked_at_restart"] = acked[0]

    start = time.monotonic()
    threads = [threading.Thread(target=one_session, args=(range(i, count, sessions),))
               for i in range(sessions)]
    if kill_after is not None:
        threads.append(threading.Thread(target=killer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = round(time.monotonic() - start, 2)

    ok = {mid: r["rcpt"] for mid, r in results.items() if r["code"] == 250}
    nack = {mid: r for mid, r in results.items() if r["code"] != 250}
    log = {"prefix": prefix, "sent": count, "acked": ok, "not_acked": nack,
           "seconds": seconds, "events": events, "time": time.time()}
    _write(req["log"], log)
    errors = collections.Counter(r["error"].split(":")[0] for r in nack.values() if r["error"])
    return {"sent": count, "acked": len(ok), "not_acked": len(nack), "seconds": seconds,
            "rate": round(len(ok) / seconds, 1) if seconds else None, "events": events,
            "errors": dict(errors)}


def _close(client):
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()
    return None


# --- queue, mailboxes, delivery ----------------------------------------------------------

def queue(req):
    result = run(["postqueue", "-j"])
    entries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    ours = [e for e in entries if e.get("sender") == req.get("sender")]
    return {"rc": result.returncode, "total": len(entries), "from_sender": len(ours),
            "queues": dict(collections.Counter(e.get("queue_name") for e in ours)),
            "reasons": sorted({r.get("delay_reason", "")[:120] for e in ours
                               for r in e.get("recipients", [])})[:3]}


def _ctx(req):
    ctx = ssl.create_default_context(cafile=req["ca"])
    original = ctx.wrap_socket

    def wrap_socket(sock, *args, **kwargs):
        kwargs["server_hostname"] = req["servername"]
        return original(sock, *args, **kwargs)

    ctx.wrap_socket = wrap_socket
    return ctx


def _inbox_ids(req, user, password):
    """Every Message-ID in the user's INBOX, one entry per message (duplicates repeat)."""
    client = imaplib.IMAP4_SSL(HOST, 993, ssl_context=_ctx(req), timeout=10)
    try:
        client.login(user, password)
        typ, data = client.select("INBOX", readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"SELECT INBOX: {data}")
        if int(data[0]) == 0:
            return []
        typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH: {data}")
        ids = []
        for item in data:
            if isinstance(item, tuple):
                header = item[1].decode(errors="replace").strip()
                value = header.split(":", 1)[1].strip() if ":" in header else ""
                ids.append(value.strip("<>"))
        return ids
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()


def mailboxes(req):
    prefix = req.get("prefix", "")
    return {u["address"]: [i for i in _inbox_ids(req, u["address"], u["password"])
                           if i.startswith(prefix)]
            for u in req["users"]}


def mailbox(req):
    """Counts per user; with `save`, the Message-IDs go to that file (a snapshot)."""
    boxes = mailboxes(req)
    if req.get("save"):
        _write(req["save"], boxes)
    return {"counts": {u: len(ids) for u, ids in boxes.items()}}


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def _read(path):
    with open(path) as f:
        return json.load(f)


def _tally(boxes, expected):
    """expected: message-id -> recipient. Delivered = expected ids in the right mailbox;
    duplicated = extra copies of any id carrying the prefix; stray = ids not expected."""
    seen = collections.Counter()
    where = {}
    for user, ids in boxes.items():
        for i in ids:
            seen[i] += 1
            where.setdefault(i, set()).add(user)
    delivered = [m for m, rcpt in expected.items() if rcpt in where.get(m, ())]
    missing = sorted(set(expected) - set(delivered))
    dups = {m: c for m, c in seen.items() if c > 1}
    stray = sorted(set(seen) - set(expected))
    return {"expected": len(expected), "delivered": len(delivered), "missing": len(missing),
            "missing_sample": missing[:5], "duplicated": sum(c - 1 for c in dups.values()),
            "duplicated_sample": sorted(dups)[:5], "stray": len(stray),
            "stray_sample": stray[:5]}


def deliver(req):
    start = time.monotonic()
    timeout = float(req.get("timeout", 120))
    expected, sent, not_acked = {}, 0, {}
    for path in req["expected_from"]:  # send logs: what got a 250 must be delivered
        log = _read(path)
        expected.update(log["acked"])
        not_acked.update(log["not_acked"])
        sent += log["sent"]
        req.setdefault("prefix", log["prefix"])
    before = _read(req["intact_from"]) if req.get("intact_from") else None
    steps = {}
    if req.get("start_service"):
        steps["start"] = run(["systemctl", "start", req["start_service"]], timeout=90).returncode
        steps["imaps_up"] = wait_port(993, 60, banner=False)  # TLS: the client speaks first
        steps["store_up_s"] = round(time.monotonic() - start, 2)
    last_flush, tally, error = 0.0, None, None
    while True:
        now = time.monotonic()
        if now - last_flush >= 10:
            run(["postqueue", "-f"])
            last_flush = now
        try:
            tally = _tally(mailboxes(req), expected)
            error = None
            if tally["missing"] == 0:
                break
        except (OSError, imaplib.IMAP4.error) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - start > timeout:
            break
        time.sleep(1)
    # one more look after a pause: copies delivered late would show as duplicates
    time.sleep(float(req.get("settle", 3)))
    intact = None
    try:
        boxes = mailboxes({**req, "prefix": ""} if before else req)
        if before:
            intact = _intact(before, boxes)
            boxes = {u: [i for i in ids if i.startswith(req.get("prefix", ""))]
                     for u, ids in boxes.items()}
        tally = _tally(boxes, expected)
    except (OSError, imaplib.IMAP4.error) as exc:
        error = f"{type(exc).__name__}: {exc}"
    # no successful look at the mailboxes at all: nothing counts as delivered
    return {**(tally or _tally({}, expected)), "sent": sent, "acked": len(expected),
            "not_acked": len(not_acked), "seconds": round(time.monotonic() - start, 2),
            "steps": steps, "intact": intact, "error": error}


def _intact(before, boxes):
    """Every message of the snapshot is still in its mailbox, as often as before."""
    lost = {}
    for user, ids in before.items():
        now = collections.Counter(boxes.get(user, []))
        gone = collections.Counter(ids) - now
        if gone:
            lost[user] = sorted(gone)[:5]
    return {"before": {u: len(ids) for u, ids in before.items()},
            "after": {u: len(ids) for u, ids in boxes.items()}, "lost": lost}


def bounced(req):
    result = run(["journalctl", "--no-pager", "-q", "-o", "cat", "--since",
                  f"@{int(req['since'])}"])
    lines = [line for line in result.stdout.splitlines() if "status=bounced" in line]
    return {"rc": result.returncode, "bounced": len(lines), "sample": lines[:3]}


ACTIONS = {"send": send, "queue": queue, "mailbox": mailbox, "deliver": deliver,
           "bounced": bounced}

if __name__ == "__main__":
    print(json.dumps(ACTIONS[sys.argv[1]](json.load(sys.stdin))))
