#!/usr/bin/python3
"""Run on a mail host as root (Ansible's script module): read users' mail as their own
clients see it, over IMAP and POP3, and print one JSON document on stdout.

    mailbox_agent.py manifest --store dovecot|cyrus --user ADDR [--user ADDR ...]
                     [--admin-user NAME --admin-pw-file FILE]
    mailbox_agent.py sieve-sync --store dovecot|cyrus --filters FILE [--admin-...]

No user's password is needed, none is in argv and none is printed:
- Dovecot: `doveadm exec imap|pop3 -u ADDR` starts Dovecot's own IMAP and POP3 servers
  pre-authenticated on a pipe (root on the host is the identity).
- Cyrus: the admin logs in on 127.0.0.1 over STARTTLS with SASL PLAIN, authorizing as the
  user (proxy authorization); the admin's password is read from its 0600 file on the host.

Reading changes nothing the user can see: mailboxes are EXAMINEd (read-only, \\Recent is not
taken), bodies are fetched with BODY.PEEK (\\Seen is not set) and POP3 only asks UIDL.

Standard library only, Python 3.9+: it runs with the host's python3. Errors: one line on
stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import imaplib
import json
import os
import poplib
import pwd
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone

FORMAT = 1  # the manifest's own version: mailctl_manifest
BODY_BATCH_BYTES = 16 * 1024 * 1024  # bodies fetched per round trip, by their RFC822.SIZE
TIMEOUT = 60
# Cyrus's services for this agent (templates/cyrus/cyrus.conf.j2: mailctlimap, mailctlpop3),
# and the ones clients use, which a migration locks
CYRUS_AGENT_IMAP, CYRUS_AGENT_POP3, CYRUS_AGENT_SIEVE = 2143, 2110, 4191
CYRUS_CLIENT_SERVICES = "imap,imaps,pop3,pop3s,sieve"
SIEVE_NAME = "mailctl"  # the one script name a deploy owns (mail_users[].sieve)


class Failure(Exception):
    pass


# --------------------------------------------------------------------------- IMAP parsing

LIST_LINE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')
FETCH_META = re.compile(rb"^\d+ \((?P<items>.*)\)$")
ITEM = re.compile(rb'(UID|RFC822\.SIZE) (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]+)"')


def unquote(raw: bytes) -> str:
    """An IMAP astring as text: a quoted string with its escapes undone, or an atom."""
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw.decode("utf-8", errors="surrogateescape")


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def list_lines(data: list) -> list[tuple[str, bytes]]:
    """LIST/LSUB answers as (name, attributes); a name sent as a literal comes as a tuple."""
    out = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, literal = item
            match = LIST_LINE.match(head.rstrip() + b" X")
            if match:
                out.append((literal.decode("utf-8", errors="surrogateescape"),
                            match.group("attrs")))
            continue
        match = LIST_LINE.match(item)
        if match:
            out.append((unquote(match.group("name")), match.group("attrs")))
    return out


def selectable(imap: imaplib.IMAP4) -> list[str]:
    """The names LIST shows that can be opened (not \\Noselect or \\NonExistent)."""
    listed = list_lines(check(imap.list('""', "*"), "LIST"))
    return sorted(name for name, attrs in listed
                  if not re.search(rb"\\(Noselect|NonExistent)\b", attrs, re.I))


def quota_resources(lines: list) -> dict:
    """QUOTA answers ('ROOT (STORAGE 10 1024 MESSAGE 3 100)') as {resource: [used, limit]}."""
    resources: dict = {}
    for line in lines:
        if not isinstance(line, bytes) or b"(" not in line:
            continue
        words = line[line.rfind(b"(") + 1:line.rfind(b")")].split()
        for i in range(0, len(words) - 2, 3):
            resources[words[i].decode().upper()] = [int(words[i + 1]), int(words[i + 2])]
    return resources


def internaldate_utc(text: str) -> str:
    when = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_meta(data: list) -> list[dict]:
    """UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE) answers as message records."""
    records = []
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        match = FETCH_META.match(line)
        if not match:
            continue
        record: dict = {}
        for m in ITEM.finditer(match.group("items")):
            if m.group(1) == b"UID":
                record["uid"] = int(m.group(2))
            elif m.group(1) == b"RFC822.SIZE":
                record["size"] = int(m.group(2))
            elif m.group(3) is not None:
                flags = m.group(3).decode("utf-8", errors="surrogateescape").split()
                record["flags"] = sorted(f for f in flags if f.lower() != "\\recent")
            elif m.group(4) is not None:
                record["internaldate"] = internaldate_utc(m.group(4).decode())
        if "uid" in record:
            records.append(record)
    return records


def fetch_bodies(data: list) -> dict[int, bytes]:
    """UID FETCH (BODY.PEEK[]) answers as {uid: the message as served}. The UID may come
    before the literal (in its tuple's head) or after it (in the next item, b' UID 9)')."""
    bodies = {}
    for i, item in enumerate(data):
        if isinstance(item, tuple):
            after = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
            uid = re.search(rb"UID (\d+)", item[0]) or re.search(rb"UID (\d+)", after)
            if uid:
                bodies[int(uid.group(1))] = item[1]
    return bodies


def check(answer: tuple, what: str) -> list:
    typ, data = answer
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise Failure(f"IMAP {what}: {typ} {text}")
    return data


# --------------------------------------------------------------------------- sessions

def loopback_tls() -> ssl.SSLContext:
    # Loopback only: the certificate names the public host name, not 127.0.0.1.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def loopback_imap() -> imaplib.IMAP4:
    """IMAP on 127.0.0.1, after STARTTLS (Cyrus refuses plaintext logins)."""
    imap = imaplib.IMAP4("127.0.0.1", CYRUS_AGENT_IMAP, timeout=TIMEOUT)
    check(imap.starttls(loopback_tls()), "STARTTLS")
    return imap


def plain(authzid: str, authcid: str, password: str) -> bytes:
    return f"{authzid}\0{authcid}\0{password}".encode()


class Store:
    """How this host's store lets root read a user's mail."""

    def __init__(self, args: argparse.Namespace):
        self.kind = args.store
        # Dovecot only: {user: a Maildir to read instead of the user's live mail}
        self.maildirs: dict[str, str] = {}
        self.admin_user = args.admin_user
        self.admin_pw = None
        if self.kind == "dovecot" and not shutil.which("doveadm"):
            raise Failure("Dovecot is not installed here (doveadm not found): does the "
                          "host's mail_backend match the inventory?")
        if self.kind == "cyrus":
            if not os.path.exists(args.admin_pw_file):
                raise Failure(f"{args.admin_pw_file} not found: is this host a Cyrus store "
                              "deployed by mailctl?")
            with open(args.admin_pw_file, encoding="utf-8") as handle:
                self.admin_pw = handle.read().strip()

    def imap(self, user: str) -> imaplib.IMAP4:
        if self.kind == "dovecot":
            words = ["doveadm", "exec", "imap", "-u", user, *self.location(user)]
            imap = imaplib.IMAP4_stream(" ".join(shlex.quote(w) for w in words))
            if imap.state != "AUTH":
                raise Failure(f"{user}: Dovecot did not open the mailbox: {imap.welcome!r}")
            return imap
        imap = loopback_imap()
        try:
            check(imap.authenticate("PLAIN", lambda _: plain(user, self.admin_user,
                                                             self.admin_pw)),
                  f"login of {self.admin_user} as {user}")
        except imaplib.IMAP4.error as exc:
            raise Failure(f"{user}: the admin cannot open the mailbox: {exc}") from None
        return imap

    def sieve(self, user: str):
        """The user's Sieve scripts: DovecotScripts or CyrusScripts (below)."""
        if self.kind == "dovecot":
            return DovecotScripts(user)
        return CyrusScripts(user, self.admin_user, self.admin_pw)

    def location(self, user: str) -> list[str]:
        if user not in self.maildirs:
            return []
        return ["-o", f"mail_location=maildir:{self.maildirs[user]}"]

    def uidls(self, user: str) -> list[str]:
        if self.kind == "dovecot":
            return dovecot_uidls(user, self.location(user))
        pop = poplib.POP3("127.0.0.1", CYRUS_AGENT_POP3, timeout=TIMEOUT)
        try:
            pop.stls(loopback_tls())
            token = base64.b64encode(plain(user, self.admin_user, self.admin_pw)).decode()
            pop._shortcmd("AUTH PLAIN " + token)  # RFC 5034 initial response
            _, lines, _ = pop.uidl()
        except poplib.error_proto as exc:
            raise Failure(f"{user}: POP3: {exc}") from None
        finally:
            with contextlib.suppress(poplib.error_proto, OSError):
                pop.quit()
        return [line.split()[1].decode() for line in lines]


def dovecot_uidls(user: str, options: list[str]) -> list[str]:
    """UIDL from Dovecot's POP3 server, pre-authenticated on a pipe (it sends no greeting
    then): the listing is what lies between UIDL's +OK and the only "." line."""
    run = subprocess.run(["doveadm", "exec", "pop3", "-u", user, *options],
                         input=b"UIDL\r\nQUIT\r\n", capture_output=True, timeout=TIMEOUT,
                         check=False)
    lines = run.stdout.split(b"\r\n")
    if b"." not in lines:
        raise Failure(f"{user}: POP3 UIDL failed: {run.stdout[:200]!r} {run.stderr[:200]!r}")
    listing = lines[:lines.index(b".")]
    start = max(i for i, line in enumerate(listing) if line.startswith(b"+OK"))
    return [line.split()[1].decode() for line in listing[start + 1:]]


# --------------------------------------------------------------------------- Sieve scripts

class DovecotScripts:
    """A user's Sieve scripts through doveadm, as the user (no login)."""

    def __init__(self, user: str):
        self.user = user

    def _doveadm(self, verb: str, *argv: str, stdin: str | None = None,
                 formatter: str = "flow") -> str:
        done = subprocess.run(["doveadm", "-f", formatter, "sieve", verb, "-u", self.user,
                               *argv], input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
        if done.returncode != 0:
            raise Failure(f"{self.user}: doveadm sieve {verb}: {reason(done)}")
        return done.stdout

    def listing(self) -> tuple[list[str], str | None]:
        names, active = [], None
        # tab-separated under a header line: names may hold spaces
        for line in self._doveadm("list", formatter="tab").splitlines()[1:]:
            name, _, state = line.partition("\t")
            if name:
                names.append(name)
                if state.strip() == "ACTIVE":
                    active = name
        return names, active

    def get(self, name: str) -> str:
        # the other formatters put a "sieve script" label before the text; JSON has it exact
        [record] = json.loads(self._doveadm("get", name, formatter="json"))
        return next(iter(record.values()))

    def put(self, name: str, text: str) -> None:
        self._doveadm("put", name, stdin=text)

    def activate(self, name: str | None) -> None:
        if name is None:
            self._doveadm("deactivate")
        else:
            self._doveadm("activate", name)

    def delete(self, name: str) -> None:
        self._doveadm("delete", name)

    def close(self) -> None:
        pass


class ManageSieve:
    """Enough RFC 5804 for CyrusScripts: responses with literals, STARTTLS, PLAIN."""

    LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.response()  # the capabilities

    def response(self) -> list[bytes]:
        """The lines before OK (literals joined in); NO or BYE raise."""
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise Failure("ManageSieve: the server closed the connection")
            literal = self.LITERAL.search(raw)
            if literal:
                raw = raw[:literal.start()] + self.file.read(int(literal.group(1)))
                raw += self.file.readline()
            if re.match(rb"(OK|NO|BYE)\b", raw):
                if not raw.startswith(b"OK"):
                    raise Failure(f"ManageSieve: {raw.decode(errors='replace').strip()}")
                return lines
            lines.append(raw)

    def command(self, *words: bytes) -> list[bytes]:
        self.sock.sendall(b" ".join(words) + b"\r\n")
        return self.response()

    def starttls(self) -> None:
        self.command(b"STARTTLS")
        self.sock = loopback_tls().wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")
        self.response()  # the capabilities again

    def close(self) -> None:
        with contextlib.suppress(Failure, OSError):
            self.command(b"LOGOUT")
        self.sock.close()


def sieve_quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class CyrusScripts:
    """A user's Sieve scripts over ManageSieve on this agent's loopback service (timsieved;
    templates/cyrus/cyrus.conf.j2), the Cyrus admin authorizing as the user."""

    def __init__(self, user: str, admin: str, password: str):
        self.session = ManageSieve(CYRUS_AGENT_SIEVE)
        self.session.starttls()
        token = base64.b64encode(plain(user, admin, password)).decode()
        try:
            self.session.command(b'AUTHENTICATE "PLAIN"', sieve_quoted(token))
        except Failure as exc:
            self.session.close()
            raise Failure(f"{user}: login of {admin} as the user: {exc}") from None

    def listing(self) -> tuple[list[str], str | None]:
        names, active = [], None
        for raw in self.session.command(b"LISTSCRIPTS"):
            found = re.match(rb'"((?:[^"\\]|\\.)*)"( ACTIVE)?', raw)
            if found:
                name = re.sub(r'\\(.)', r"\1", found.group(1).decode())
                names.append(name)
                if found.group(2):
                    active = name
        return names, active

    def get(self, name: str) -> str:
        return b"".join(self.session.command(b"GETSCRIPT", sieve_quoted(name))).decode()

    def put(self, name: str, text: str) -> None:
        data = text.encode()
        self.session.command(b"PUTSCRIPT " + sieve_quoted(name) + b" {%d+}\r\n" % len(data)
                             + data)

    def activate(self, name: str | None) -> None:
        self.session.command(b"SETACTIVE", sieve_quoted(name or ""))

    def delete(self, name: str) -> None:
        self.session.command(b"DELETESCRIPT", sieve_quoted(name))

    def close(self) -> None:
        self.session.close()


def same_script(a: str, b: str) -> bool:
    # ManageSieve servers may store CRLF line ends and drop a final newline
    return a.replace("\r\n", "\n").rstrip("\n") == b.replace("\r\n", "\n").rstrip("\n")


def read_sieve(store: Store, user: str) -> dict:
    """The manifest's "sieve": every script by name, and which one is active."""
    scripts = store.sieve(user)
    try:
        names, active = scripts.listing()
        texts = {name: scripts.get(name).replace("\r\n", "\n").rstrip("\n") + "\n"
                 for name in names}
    finally:
        scripts.close()
    return {"active": active, "scripts": texts}


def put_sieve(store: Store, user: str, saved: dict | None) -> None:
    """Make the user's scripts what `saved` (a manifest's "sieve") holds: the same scripts,
    the same one active, no other."""
    if saved is None:  # a manifest that did not read Sieve
        return
    scripts = store.sieve(user)
    try:
        put_sieve_into(scripts, saved)
    finally:
        scripts.close()


def put_sieve_into(scripts, saved: dict) -> None:
    names, active = scripts.listing()
    for name, text in sorted(saved["scripts"].items()):
        if name not in names or not same_script(scripts.get(name), text):
            scripts.put(name, text)
    if active != saved["active"]:
        scripts.activate(saved["active"])
    for name in sorted(set(names) - set(saved["scripts"])):
        scripts.delete(name)


def sync_inventory_script(scripts, wanted: str | None, owned: bool) -> str | None:
    """The user's "mailctl" script made what the inventory says; what changed, or None.
    Activated when the user has none active, or the inventory owns their filters."""
    names, active = scripts.listing()
    if wanted is None:
        if SIEVE_NAME not in names:
            return None
        if active == SIEVE_NAME:
            scripts.activate(None)
        scripts.delete(SIEVE_NAME)
        return "removed"
    done = []
    if SIEVE_NAME not in names:
        scripts.put(SIEVE_NAME, wanted)
        done.append("installed")
    elif not same_script(scripts.get(SIEVE_NAME), wanted):
        scripts.put(SIEVE_NAME, wanted)
        done.append("updated")
    if active != SIEVE_NAME and (active is None or owned):
        scripts.activate(SIEVE_NAME)
        done.append("activated" if active is None else f"activated instead of {active!r}")
    elif active != SIEVE_NAME and done:
        done.append(f"left inactive: the user's own {active!r} is active (sieve.owned: false)")
    return ", ".join(done) or None


def cmd_sieve_sync(args: argparse.Namespace) -> dict:
    """Each user's "mailctl" script as the deploy rendered it (roles/sieve); scripts of any
    other name are the users' own and never touched."""
    with open(args.filters, encoding="utf-8") as handle:  # JSON after '#' comment lines
        users = json.loads("".join(line for line in handle if not line.startswith("#")))
    store = Store(args)
    report = {}
    for user, entry in sorted(users.items()):
        scripts = store.sieve(user)
        try:
            what = sync_inventory_script(scripts, entry.get("script"), bool(entry.get("owned")))
        finally:
            scripts.close()
        if what:
            report[user] = what
    return {"changed": bool(report), "users": report}


# --------------------------------------------------------------------------- manifest

def quota(imap: imaplib.IMAP4) -> dict:
    typ, data = imap.getquotaroot("INBOX")
    return quota_resources(data[1]) if typ == "OK" and len(data) > 1 else {}


def mailbox(imap: imaplib.IMAP4, name: str, subscribed: bool, keep: str | None = None) -> dict:
    check(imap.select(quote(name), readonly=True), f"EXAMINE {name}")
    status = check(imap.status(quote(name), "(MESSAGES UIDNEXT UIDVALIDITY)"), f"STATUS {name}")
    counts = {k.decode(): int(v) for k, v in re.findall(rb"(\w+) (\d+)", status[-1] or b"")}
    messages = []
    if counts.get("MESSAGES"):
        meta = fetch_meta(check(imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)"),
                                f"FETCH {name}"))
        batch: list[dict] = []
        for record in sorted(meta, key=lambda r: r["uid"]):
            batch.append(record)
            if sum(r.get("size", 0) for r in batch) >= BODY_BATCH_BYTES:
                hash_bodies(imap, name, batch, keep)
                batch = []
        hash_bodies(imap, name, batch, keep)
        messages = sorted(meta, key=lambda r: r["uid"])
    imap.close()
    return {"subscribed": subscribed, "uidvalidity": counts.get("UIDVALIDITY"),
            "uidnext": counts.get("UIDNEXT"), "count": len(messages), "messages": messages}


def hash_bodies(imap: imaplib.IMAP4, name: str, batch: list[dict],
                keep: str | None = None) -> None:
    """Each record gets the sha256 of its message as served; with keep, the messages are
    also written there, one file per content (named by its sha256)."""
    if not batch:
        return
    uids = ",".join(str(r["uid"]) for r in batch)
    bodies = fetch_bodies(check(imap.uid("FETCH", uids, "(BODY.PEEK[])"), f"FETCH {name}"))
    for record in batch:
        body = bodies.get(record["uid"])
        if body is None:  # expunged meanwhile: it is not part of the mailbox any more
            record["sha256"] = None
            continue
        record["sha256"] = hashlib.sha256(body).hexdigest()
        if keep:
            keep_body(keep, record["sha256"], body)
    batch[:] = [r for r in batch if r["sha256"] is not None]


def keep_body(directory: str, digest: str, body: bytes) -> None:
    path = os.path.join(directory, digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as handle:
            handle.write(body)
        os.replace(path + ".tmp", path)


def user_manifest(store: Store, user: str, keep: str | None = None) -> dict:
    imap = store.imap(user)
    try:
        subscribed = {name for name, _ in list_lines(check(imap.lsub('""', "*"), "LSUB"))}
        boxes = {name: mailbox(imap, name, name in subscribed, keep)
                 for name in selectable(imap)}
        resources = quota(imap)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()
    # a message expunged between FETCHes is gone from the count too
    return {"mailboxes": boxes, "quota": resources, "pop3_uidls": store.uidls(user),
            "sieve": read_sieve(store, user)}


def cmd_manifest(args: argparse.Namespace, store: Store | None = None) -> dict:
    store = store or Store(args)
    taken = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    users = {user: user_manifest(store, user) for user in sorted(set(args.user))}
    return {"mailctl_manifest": FORMAT, "taken": taken, "host": socket.getfqdn(),
            "store": args.store, "users": users}


# --------------------------------------------------------------------------- backup, restore

def run(argv: list[str], what: str, retries: int = 1) -> None:
    """Run a store tool; dsync's exit code 2 (changed meanwhile, sync again) is retried."""
    for attempt in range(retries):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode == 0:
            return
        if done.returncode != 2 or attempt + 1 == retries:
            why = reason(done)
            raise Failure(f"{what}: {why}")


def reason(done: subprocess.CompletedProcess) -> str:
    """A failed tool's reason in one line: its first error (Dovecot prints a panic's
    backtrace after it), else its last line."""
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(Error|Fatal|Panic):", line)
              and "backtrace" not in line]
    return (errors or lines or [f"exit code {done.returncode}"])[0 if errors else -1]


def chown_tree(root: str, owner: str) -> None:
    entry = pwd.getpwnam(owner)
    for top, dirs, files in os.walk(root):
        for name in [top, *(os.path.join(top, f) for f in dirs + files)]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dovecot_copy(user: str, copy: str, *, reverse: bool = False) -> None:
    """dsync's one-way backup: the copy becomes identical to the user's mail (UIDs,
    UIDVALIDITY, flags, keywords, dates, folders, subscriptions), or with reverse the user's
    mail becomes identical to the copy."""
    argv = ["doveadm", "backup", *(["-R"] if reverse else []), "-u", user, f"maildir:{copy}"]
    run(argv, f"{user}: doveadm backup{' -R' if reverse else ''}", retries=3)


def cmd_backup(args: argparse.Namespace) -> dict:
    """Copy the users' mail into a staging directory with the store's own means, take the
    manifest of exactly what was copied, and pack both into one archive for the controller
    to fetch."""
    stage = tempfile.mkdtemp(prefix="mailctl-backup-", dir=args.work_dir)
    archive = stage + ".tar.gz"
    users = sorted(set(args.user))
    try:
        os.chmod(stage, 0o700)
        if args.store == "dovecot":
            manifest = dovecot_backup(args, users, stage)
        else:
            manifest = Cyrus(args).backup(users, stage)
        with open(os.path.join(stage, "manifest.json"), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, sort_keys=True)
        run(["tar", "-C", stage, "-czf", archive, "."], "packing the backup")
        os.chmod(archive, 0o600)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"archive": archive, "bytes": os.path.getsize(archive),
            "sha256": sha256_file(archive), "manifest": manifest}


def dovecot_backup(args: argparse.Namespace, users: list[str], stage: str) -> dict:
    """dsync copies each user consistently per mailbox; the manifest is read from the copy
    itself, so it describes what the archive holds however much mail arrived meanwhile."""
    chown_tree(stage, args.vmail_user)  # dsync writes the copy as the mail user
    for user in users:
        dovecot_copy(user, f"{stage}/{user}/Maildir")
    store = Store(args)
    store.maildirs = {user: f"{stage}/{user}/Maildir" for user in users}
    return cmd_manifest(args, store)


class Cyrus:
    """Cyrus 3.6's own files, per user: the mailboxes.db entries (ctl_mboxlist -d), each
    mailbox's directory (messages, cyrus.index, cyrus.header, cyrus.cache, annotations) and
    the user's files (subscriptions, seen, counters), found with mbpath. A restore undumps
    the entries under new unique ids (the deleted mailboxes Cyrus keeps aside still hold the
    old ones), puts the files in place and lets reconstruct adopt them: UIDs, UIDVALIDITY,
    flags, keywords, dates and subscriptions come back exactly."""

    ATTEMPTS = 5  # copies of a user retried while the user's own client changes the mail

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.store = Store(args)
        self.bin = args.cyrus_bin
        entry = pwd.getpwnam(args.admin_user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def tool(self, name: str, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run([os.path.join(self.bin, name), *argv], input=stdin,
                              capture_output=True, text=True, timeout=3600, check=False,
                              user=self.uid, group=self.gid)
        if done.returncode != 0:
            why = reason(done)
            raise Failure(f"{name} {' '.join(argv)}: {why}")
        return done.stdout

    def entries(self, user: str) -> dict:
        """The user's live mailboxes.db entries (not the deleted ones kept aside)."""
        local, _, domain = user.partition("@")
        inbox = f"{domain}!user.{local.replace('.', '^')}"
        dump = json.loads(self.tool("ctl_mboxlist", "-d") or "{}")
        return {name: entry for name, entry in dump.items()
                if (name == inbox or name.startswith(inbox + "."))
                and "d" not in entry.get("mbtype", "")}

    @staticmethod
    def external(intname: str) -> str:
        """sandbox.test!user.bob.Archive -> user/bob/Archive@sandbox.test (modified UTF-7)."""
        domain, _, rest = intname.partition("!")
        parts = [p.replace("^", ".") for p in rest.split(".")]
        return "/".join(parts) + "@" + domain

    def paths(self, intname: str) -> dict:
        return json.loads(self.tool("mbpath", "-7", "-j", self.external(intname)))

    def status(self, user: str) -> dict:
        imap = self.store.imap(user)
        try:
            return {n: check(imap.status(quote(n), "(MESSAGES UIDNEXT HIGHESTMODSEQ)"),
                             f"STATUS {n}")[-1] for n in selectable(imap)}
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()

    def copy_user(self, user: str, into: str) -> None:
        shutil.rmtree(into, ignore_errors=True)
        os.makedirs(into)
        entries = self.entries(user)
        userfiles = None
        for intname, entry in entries.items():
            where = self.paths(intname)
            box = os.path.join(into, "mailboxes", entry["uniqueid"])
            os.makedirs(box)
            for name in os.listdir(where["data"]):
                path = os.path.join(where["data"], name)
                if os.path.isfile(path):
                    shutil.copy2(path, box)
            userfiles = userfiles or where["user"]
        os.makedirs(os.path.join(into, "user"))
        # search indexes are derived data (conversations are off: imapd.conf's default)
        for path in (userfiles or {}).values():
            if os.path.isfile(path) and not path.endswith(("conversations.db", "xapianactive.db")):
                shutil.copy2(path, os.path.join(into, "user"))
        with open(os.path.join(into, "mailboxes.json"), "w", encoding="utf-8") as handle:
            json.dump(entries, handle, sort_keys=True)

    def backup(self, users: list[str], stage: str) -> dict:
        """Each user's delivery is paused while their files are copied; a copy counts only
        if nothing changed between before and after it (the user's own client may still
        act), and the manifest is read inside that quiet window."""
        taken = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        found = {}
        with Paused(users, self.args.paused_map):
            for user in users:
                for _ in range(self.ATTEMPTS):
                    before = self.status(user)
                    self.copy_user(user, os.path.join(stage, user))
                    found[user] = user_manifest(self.store, user)
                    if self.status(user) == before:
                        break
                    time.sleep(0.5)
                else:
                    raise Failure(f"{user}: the mailbox kept changing during "
                                  f"{self.ATTEMPTS} copies; try again")
        return {"mailctl_manifest": FORMAT, "taken": taken, "host": socket.getfqdn(),
                "store": "cyrus", "users": found}

    def restore(self, user: str, copy: str, saved: dict) -> str | None:
        """Replace the user's mailboxes with the copy. The replaced ones are deleted the
        Cyrus way (delete_mode delayed: kept under DELETED/ until cyr_expire's -D days, and
        an admin can RENAME them back); the name of the deleted INBOX is returned."""
        with open(os.path.join(copy, "mailboxes.json"), encoding="utf-8") as handle:
            entries = json.load(handle)
        live = self.entries(user)
        local, _, domain = user.partition("@")
        inbox = f"user/{local}@{domain}"
        admin = self.admin_imap()
        aside = None
        try:
            limits = storage_limits(admin, inbox) if live else {}
            limits = limits or {k: v[1] for k, v in saved.get("quota", {}).items()}
            if live:
                # an admin may give itself any right; deleting a user needs x (delete)
                check(admin.setacl(quote(inbox), self.args.admin_user, "lrswipkxtecda"),
                      f"SETACL {inbox}")
                check(admin.delete(quote(inbox)), f"DELETE {inbox}")
                aside = deleted_inbox(admin, local, domain)
            fresh = {}
            for intname, entry in entries.items():
                fresh[intname] = dict(entry, uniqueid=new_uniqueid(), name_history=[])
            self.tool("ctl_mboxlist", "-u", stdin=json.dumps(fresh))
            userdir = None
            for intname, entry in entries.items():
                where = self.paths(intname)
                self.put(os.path.join(copy, "mailboxes", entry["uniqueid"]), where["data"])
                userdir = userdir or os.path.dirname(where["user"]["sub"])
            if userdir:
                self.put(os.path.join(copy, "user"), userdir)
            self.tool("reconstruct", "-M", "-r", inbox)
            if limits:
                spec = "(" + " ".join(f"{k} {v}" for k, v in sorted(limits.items())) + ")"
                check(admin.setquota(quote(inbox), spec), f"SETQUOTA {inbox}")
            self.tool("quota", "-f", inbox)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                admin.logout()
        return aside

    def put(self, source: str, directory: str) -> None:
        """The files of source into directory (created if need be), owned by Cyrus, and so
        is any parent made for it: Cyrus creates its later mailboxes in them (uuid/q/l/...)."""
        makedirs_owned(directory, self.args.admin_user)
        for name in os.listdir(source):
            shutil.copy2(os.path.join(source, name), directory)
        chown_tree(directory, self.args.admin_user)

    def admin_imap(self) -> imaplib.IMAP4:
        imap = loopback_imap()
        check(imap.login(self.args.admin_user, self.store.admin_pw), "admin LOGIN")
        return imap


def deleted_inbox(admin: imaplib.IMAP4, local: str, domain: str) -> str | None:
    """The name Cyrus gave the user's INBOX it just deleted (delete_mode delayed):
    DELETED/user/LOCAL/<hex time>@DOMAIN, the newest of them."""
    pattern = re.compile(rf"^DELETED/user/{re.escape(local)}/([0-9A-F]+)@{re.escape(domain)}$")
    found = [(int(m.group(1), 16), name) for name, _ in list_lines(admin.list('""', "DELETED/*")[1])
             if (m := pattern.match(name))]
    return max(found)[1] if found else None


def new_uniqueid() -> str:
    """A Cyrus mailbox unique id: 24 characters of [a-z0-9], like its own."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(24))


def storage_limits(imap: imaplib.IMAP4, root: str) -> dict:
    """{resource: limit} of a quota root, {} if it has none."""
    typ, data = imap.getquota(quote(root))
    found = quota_resources(data) if typ == "OK" else {}
    return {resource: limit for resource, (_, limit) in found.items()}


def newer_mail(live: dict, saved: dict) -> list[str]:
    """Mailboxes whose live messages are not all in the backup: what a restore would remove."""
    found = []
    for name, box in sorted(live["mailboxes"].items()):
        kept = Counter(m["sha256"] for m in saved["mailboxes"].get(name, {}).get("messages", []))
        extra = Counter(m["sha256"] for m in box["messages"]) - kept
        if extra:
            found.append(f"{name} ({sum(extra.values())})")
    return found


def current(store: Store, args: argparse.Namespace, user: str) -> dict:
    """The user's mail now; a Cyrus user whose mailboxes are gone has none (Cyrus's POP3
    server cannot even open them)."""
    if args.store == "cyrus" and not Cyrus(args).entries(user):
        return {"mailboxes": {}}
    return user_manifest(store, user)


class Paused:
    """Postfix defers delivery to these users while the block runs: their mail waits in the
    queue (transport `retry`, listed in the map main.cf's transport_maps names), mail to
    everyone else flows. Senders still get 250: smtpd answers 450 at RCPT for an address
    that resolves to `retry`, but not for one found in virtual_alias_maps, where mailctl
    maps every user to itself (templates/postfix/virtual_aliases.j2). Leaving releases only
    the queue entries of these users. If this process dies inside, the users stay paused
    and their mail stays queued; a re-run releases it."""

    REASON = "retry:4.2.0 mailbox paused by mailctl (restore or migration)"

    def __init__(self, users: list[str], map_path: str):
        self.users, self.map_path = sorted(set(users)), map_path
        self.keep = False  # set while a change is half done: a failure then keeps the pause

    def _write(self, users: set[str]) -> None:
        write_list(self.map_path, users, "{} " + self.REASON + "\n")
        run(["postfix", "reload"], "postfix reload")

    def listed(self) -> set[str]:
        return listed(self.map_path)

    def queued(self, states: tuple[str, ...]) -> list[str]:
        """Queue ids holding a not yet delivered recipient among the users."""
        done = subprocess.run(["postqueue", "-j"], capture_output=True, text=True,
                              timeout=TIMEOUT, check=True)
        ids = []
        for line in done.stdout.splitlines():
            entry = json.loads(line)
            rcpts = {r.get("address", "").lower() for r in entry.get("recipients", [])}
            if entry.get("queue_name") in states and rcpts & set(self.users):
                ids.append(entry["queue_id"])
        return ids

    def __enter__(self) -> Paused:
        self._write(self.listed() | set(self.users))
        try:
            # deliveries already handed to the store finish; wait for them (bounded)
            deadline = time.monotonic() + TIMEOUT
            while self.queued(("active",)):
                if time.monotonic() > deadline:
                    raise Failure("deliveries to the paused users did not finish within "
                                  f"{TIMEOUT} s")
                time.sleep(0.5)
        except BaseException:
            self.release()  # the block never runs: nothing may stay paused
            raise
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is None or not self.keep:
            self.release()
            if isinstance(error, Exception) and "nothing was changed" not in str(error):
                raise Failure(f"{error}; nothing was changed") from error
            return
        # a failure in the middle of a change: mail must not reach a half-restored mailbox
        raise Failure(f"{error}; delivery to {', '.join(self.users)} stays paused (the mail "
                      "waits in Postfix's queue): run the same command again, it resumes; "
                      "`mailctl mailbox release` lets the mail in as it is") from error

    def release(self) -> None:
        self._write(self.listed() - set(self.users))
        for queue_id in self.queued(("deferred", "incoming", "active")):
            subprocess.run(["postqueue", "-i", queue_id], capture_output=True, timeout=TIMEOUT,
                           check=False)


def makedirs_owned(path: str, owner: str) -> None:
    """Create the missing directories of path, owned by owner (mode 0700, as Dovecot does)."""
    if os.path.isdir(path):
        return
    makedirs_owned(os.path.dirname(path), owner)
    os.mkdir(path, 0o700)
    entry = pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def dovecot_home(user: str) -> str:
    done = subprocess.run(["doveadm", "user", "-f", "home", user], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    home = done.stdout.strip()
    if done.returncode != 0 or not home.startswith("/"):
        raise Failure(f"{user}: Dovecot does not know this user: {done.stderr.strip()}")
    return home


def dovecot_replace(user: str, copy: str, vmail_user: str, stamp: str) -> str | None:
    """Put the copy in place of the user's Maildir (Dovecot's own files: UIDs, UIDVALIDITY,
    flags, keywords, dates, folders and subscriptions come back exactly). The old Maildir is
    moved aside, never deleted here; its path is returned."""
    home = dovecot_home(user)
    live, incoming = f"{home}/Maildir", f"{home}/.Maildir.mailctl-restore"
    aside = f"{home}/Maildir.replaced-{stamp}"
    shutil.rmtree(incoming, ignore_errors=True)
    makedirs_owned(home, vmail_user)
    run(["cp", "-a", copy, incoming], f"{user}: copying the backup into place")
    chown_tree(incoming, vmail_user)
    subprocess.run(["doveadm", "kick", user], capture_output=True, timeout=TIMEOUT, check=False)
    had = os.path.exists(live)
    if had:
        os.rename(live, aside)
    os.rename(incoming, live)
    return aside if had else None


def cmd_restore(args: argparse.Namespace) -> dict:
    """Make each user's mail and Sieve scripts what the archive holds, exactly. Mail the
    archive does not have is never removed silently: without --force such a user stops the
    restore before any change; with it, the replaced mail is kept aside on the host."""
    stage = tempfile.mkdtemp(prefix="mailctl-restore-", dir=args.work_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept_aside = {}
    try:
        os.chmod(stage, 0o700)
        run(["tar", "-C", stage, "-xzf", args.archive], "unpacking the backup")
        if args.store == "dovecot":
            chown_tree(stage, args.vmail_user)
        with open(os.path.join(stage, "manifest.json"), encoding="utf-8") as handle:
            saved = json.load(handle)["users"]
        users = sorted(set(args.user))
        missing = [u for u in users if u not in saved]
        if missing:
            raise Failure(f"{', '.join(missing)}: not in this backup")
        live = Store(args)
        replaced = {}
        with Paused(users, args.paused_map) as paused:
            for user in users:
                now = current(live, args, user)
                newer = replaced[user] = newer_mail(now, saved[user])
                if newer and not args.force:
                    raise Failure(f"{user}: holds mail the backup does not have, in "
                                  f"{', '.join(newer)}; restoring would remove it (--force "
                                  "replaces it and keeps it aside; nothing was changed)")
            paused.keep = True
            for user in users:
                if args.store == "cyrus":
                    aside = Cyrus(args).restore(user, f"{stage}/{user}", saved[user])
                    if aside and replaced[user]:
                        kept_aside[user] = aside
                    continue
                aside = dovecot_replace(user, f"{stage}/{user}/Maildir", args.vmail_user,
                                        stamp)
                run(["doveadm", "quota", "recalc", "-u", user], f"{user}: quota recalc")
                if aside:
                    # read again what was replaced: a client may have added mail since the
                    # check; only a Maildir with nothing the backup lacks is removed
                    old = Store(args)
                    old.maildirs = {user: aside}
                    if newer_mail(user_manifest(old, user), saved[user]):
                        kept_aside[user] = aside
                    else:
                        shutil.rmtree(aside)
            for user in users:  # the scripts too (None: a backup older than Sieve's)
                put_sieve(live, user, saved[user].get("sieve"))
            paused.keep = False
            result = cmd_manifest(args)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        os.unlink(args.archive)
    result["kept_aside"] = kept_aside
    return result


def cmd_release(args: argparse.Namespace) -> dict:
    """Let the users' paused mail in, as their mailboxes are now."""
    paused = Paused(args.user, args.paused_map)
    was = sorted(set(paused.users) & paused.listed())
    paused.release()
    unlock(args)
    return {"released": was}


# --------------------------------------------------------------------------- migration
# `mailctl migrate` runs these in turn (cli/mailctl/migrate.py): pause, sync (twice: while
# mail flows, then paused), the switch of store by a deploy, import, manifest, release.

APPEND_BATCH = (200, 8 * 1024 * 1024)  # messages and bytes per MULTIAPPEND
# The layout mailctl's dovecot.conf gives a user's mail (templates/dovecot/dovecot.conf.j2:
# mail_location, namespace inbox): the copy from Cyrus is written straight into it.
DOVECOT_MAILDIR = "maildir:~/Maildir"
CYRUS_HIDDEN = ("Other Users", "Other Users/*", "Shared Folders", "Shared Folders/*")


def cmd_pause(args: argparse.Namespace) -> dict:
    """Pause the users' delivery and leave it paused (cmd_release lifts it)."""
    paused = Paused(args.user, args.paused_map)
    paused.__enter__()
    return {"paused": paused.users}


def cmd_lock(args: argparse.Namespace) -> dict:
    """Lock the users out of the store's IMAP and POP3, ending their sessions, so that no
    client changes a mailbox after its last copy is taken. Dovecot: a passdb deny list
    (templates/dovecot/dovecot.conf.j2), then `doveadm kick`; this agent's own reading does
    not log in. Cyrus: cyr_deny for the clients' services, which also ends open sessions at
    their next command; this agent uses services of its own."""
    users = sorted(set(args.user))
    # Dovecot's list is written on a Cyrus host too: it holds once Dovecot takes over
    write_list(args.locked_list, listed(args.locked_list) | set(users))
    if args.store == "dovecot":
        for user in users:
            subprocess.run(["doveadm", "kick", user], capture_output=True, timeout=TIMEOUT,
                           check=False)
    else:
        for user in users:
            run([os.path.join(args.cyrus_bin, "cyr_deny"), "-s", CYRUS_CLIENT_SERVICES, "-m",
                 "your mailbox is moving to another store; try again in a few minutes", user],
                f"{user}: cyr_deny")
    return {"locked": users}


def unlock(args: argparse.Namespace) -> None:
    """Undo cmd_lock for whichever store is installed now."""
    if os.path.exists(args.locked_list):
        write_list(args.locked_list, listed(args.locked_list) - set(args.user))
    deny = os.path.join(args.cyrus_bin, "cyr_deny")
    if os.path.exists(deny):
        for user in sorted(set(args.user)):
            subprocess.run([deny, "-a", user], capture_output=True, timeout=TIMEOUT,
                           check=False)


def listed(path: str) -> set[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return {line.split()[0] for line in handle if line.strip()}
    except FileNotFoundError:
        return set()


def write_list(path: str, entries: set[str], line: str = "{}\n") -> None:
    """A map or list file, written whole and renamed into place."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.writelines(line.format(entry) for entry in sorted(entries))
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def cmd_export(args: argparse.Namespace) -> dict:
    """Copy each user's mail, as their client sees it, into STAGE/USER/: one file per distinct
    message (named by its sha256) and manifest.json. A second run writes only new messages."""
    store = Store(args)
    result = {}
    os.makedirs(args.stage, mode=0o700, exist_ok=True)
    os.chmod(args.stage, 0o700)  # users' mail
    for user in sorted(set(args.user)):
        keep = os.path.join(args.stage, user, "messages")
        if args.fresh:
            shutil.rmtree(os.path.join(args.stage, user), ignore_errors=True)
        os.makedirs(keep, mode=0o700, exist_ok=True)
        manifest = user_manifest(store, user, keep)
        write_json(os.path.join(args.stage, user, "manifest.json"), manifest)
        write_json(os.path.join(args.stage, user, "sieve.json"), manifest["sieve"])
        result[user] = manifest
    exported = {"mailctl_manifest": FORMAT, "store": args.store, "host": socket.getfqdn(),
                "taken": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "users": result}
    if not args.pack:
        return exported
    # for another host (mailctl migrate --domain): the stage of these users in one archive,
    # made 0600 before tar writes the mail into it, and gone if packing fails (the controller
    # would never learn its name)
    handle, archive = tempfile.mkstemp(prefix="mailctl-move-", suffix=".tar.gz",
                                       dir=args.work_dir)
    os.close(handle)
    try:
        run(["tar", "-C", args.stage, "-czf", archive, *sorted(set(args.user))],
            "packing the export")
    except BaseException:
        os.unlink(archive)
        raise
    return {"manifest": exported, "archive": archive, "bytes": os.path.getsize(archive),
            "sha256": sha256_file(archive)}


def write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
    os.replace(path + ".tmp", path)


def cmd_import(args: argparse.Namespace) -> dict:
    """Make each user's mail in this store what STAGE/USER/ holds: folders, subscriptions,
    messages (content, flags, keywords, INTERNALDATE). New UIDs are handed out: IMAP has no
    way to set them. What is already there and equal stays, so a re-run resumes."""
    store = Store(args)
    if args.archive:  # an export of another host (mailctl migrate --domain)
        unpack_stage(args)
    before = {}
    for user in sorted(set(args.user)):
        with open(os.path.join(args.stage, user, "manifest.json"), encoding="utf-8") as handle:
            saved = json.load(handle)
        before[user] = saved
        imap = store.imap(user)
        try:
            make_equal(imap, saved["mailboxes"], os.path.join(args.stage, user, "messages"))
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()
        put_sieve(store, user, staged_sieve(args, user))
        # the stage was a copy in transit: the source store's own files are untouched, and
        # a migration run again exports afresh
        shutil.rmtree(os.path.join(args.stage, user), ignore_errors=True)
    after = cmd_manifest(args, store)
    if args.archive:  # what the archive held: the copy to compare with, on a re-run too
        after["before"] = dict(after, users=before, store=None)
    return after


def staged_sieve(args: argparse.Namespace, user: str) -> dict | None:
    """The user's scripts as export or pull-cyrus read them from the source store (None from
    an older export, which did not read them)."""
    path = os.path.join(args.stage, user, "sieve.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def cmd_put_sieve(args: argparse.Namespace) -> dict:
    """After pull-cyrus and the switch: the users' scripts into Dovecot, as Cyrus had them."""
    store = Store(args)
    for user in sorted(set(args.user)):
        put_sieve(store, user, staged_sieve(args, user))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(args.stage, user, "sieve.json"))
    return {"sieve": sorted(set(args.user))}


def unpack_stage(args: argparse.Namespace) -> None:
    """The archive's users (made by `export --pack`) replace their stage here; the archive
    stays until mailctl has compared the manifests, so that a re-run can import it again."""
    os.makedirs(args.stage, mode=0o700, exist_ok=True)
    os.chmod(args.stage, 0o700)
    for user in sorted(set(args.user)):
        shutil.rmtree(os.path.join(args.stage, user), ignore_errors=True)
    run(["tar", "-C", args.stage, "--no-same-owner", "-xzf", args.archive,
         *sorted(set(args.user))], "unpacking the export")


def make_equal(imap: imaplib.IMAP4, saved: dict, bodies: str) -> None:
    present = set(selectable(imap))
    subscribed = {name for name, _ in list_lines(check(imap.lsub('""', "*"), "LSUB"))}
    # Cyrus makes a folder's parents real mailboxes (Dovecot lists them \Noselect): keep them
    parents = {"/".join(name.split("/")[:i]) for name in saved
               for i in range(1, name.count("/") + 1)}
    for name in sorted(present - set(saved) - parents, reverse=True):  # children first
        if name.upper() != "INBOX":
            check(imap.delete(quote(name)), f"DELETE {name}")
    for name in sorted(present & parents - set(saved)):
        copy_messages(imap, name, [], bodies)  # a kept parent holds nothing of its own
    for name in sorted(saved):
        if name not in present:
            check(imap.create(quote(name)), f"CREATE {name}")
        if saved[name]["subscribed"] and name not in subscribed:
            check(imap.subscribe(quote(name)), f"SUBSCRIBE {name}")
        elif not saved[name]["subscribed"] and name in subscribed:
            check(imap.unsubscribe(quote(name)), f"UNSUBSCRIBE {name}")
        copy_messages(imap, name, saved[name]["messages"], bodies)


def copy_messages(imap: imaplib.IMAP4, name: str, wanted: list[dict], bodies: str) -> None:
    """Messages are matched by content and date; flags of a matched one are set if they
    differ, messages the mailbox should not hold are expunged, missing ones appended."""
    here = mailbox(imap, name, True)["messages"]
    todo: dict[tuple, list[dict]] = {}
    for message in wanted:
        todo.setdefault((message["sha256"], message["internaldate"]), []).append(message)
    extra = []
    check(imap.select(quote(name)), f"SELECT {name}")
    for message in here:
        matches = todo.get((message["sha256"], message["internaldate"]))
        if not matches:
            extra.append(str(message["uid"]))
            continue
        want = matches.pop()
        if sorted(want["flags"]) != sorted(message["flags"]):
            check(imap.uid("STORE", str(message["uid"]), "FLAGS.SILENT",
                           f"({' '.join(want['flags'])})"), f"STORE {name}")
    if extra:
        check(imap.uid("STORE", ",".join(extra), "+FLAGS.SILENT", r"(\Deleted)"),
              f"STORE {name}")
        check(imap.uid("EXPUNGE", ",".join(extra)), f"EXPUNGE {name}")
    # not CLOSE: it expunges every \\Deleted message, the user's own not yet expunged too
    check(imap.unselect(), f"UNSELECT {name}")
    missing = sorted((m for rest in todo.values() for m in rest), key=lambda m: m["uid"])
    batch: list[dict] = []
    for message in missing:
        batch.append(message)
        if (len(batch) >= APPEND_BATCH[0]
                or sum(m["size"] for m in batch) >= APPEND_BATCH[1]):
            append_many(imap, name, batch, bodies)
            batch = []
    append_many(imap, name, batch, bodies)


def imap_date(utc: str) -> str:
    """The manifest's UTC date as an IMAP date-time (imaplib names the month, not the locale)."""
    when = datetime.strptime(utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return imaplib.Time2Internaldate(when)


def append_many(imap: imaplib.IMAP4, name: str, batch: list[dict], bodies: str) -> None:
    """One APPEND command for the whole batch (MULTIAPPEND, RFC 3502, with LITERAL+ literals):
    one round trip and one commit in the store instead of one per message."""
    if not batch:
        return
    parts = []
    for message in batch:
        with open(os.path.join(bodies, message["sha256"]), "rb") as handle:
            body = handle.read()
        flags = " ".join(f for f in message["flags"] if f.lower() != "\\recent")
        parts.append(f" ({flags}) {imap_date(message['internaldate'])} {{{len(body)}+}}\r\n"
                     .encode() + body)
    tag = imap._new_tag()  # imaplib has no MULTIAPPEND: the command is sent as it is
    imap.send(tag + b" APPEND " + quote(name).encode("utf-8") + b"".join(parts) + b"\r\n")
    try:
        typ, data = imap._command_complete("APPEND", tag)
    except imaplib.IMAP4.error as exc:
        raise Failure(f"IMAP APPEND {name}: {exc}") from None
    check((typ, data), f"APPEND of {len(batch)} message(s) to {name}")


def cmd_pull_cyrus(args: argparse.Namespace) -> dict:
    """Make each user's Maildir (where Dovecot will look for it) a copy of their Cyrus
    mailboxes with Dovecot's own dsync over IMAP (imapc): UIDs, UIDVALIDITY, flags, keywords,
    dates, folders and subscriptions are kept, so POP3 UIDLs are too. Only doveadm is
    needed (dovecot-core does not conflict with Cyrus); it runs as the mail user, with no
    Dovecot service, reading Cyrus as the Cyrus admin on the user's behalf."""
    install_doveadm()
    store = Store(args)  # the Cyrus admin's password
    entry = vmail_user(args)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = {}
    work = tempfile.mkdtemp(prefix="mailctl-migrate-", dir=args.work_dir)
    try:
        os.chown(work, entry.pw_uid, entry.pw_gid)
        conf = os.path.join(work, "dovecot.conf")
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as fh:
            fh.write(imapc_config(args, store.admin_pw, work))
        os.chown(conf, entry.pw_uid, entry.pw_gid)
        for user in sorted(set(args.user)):
            local, domain = user.split("@", 1)
            home = os.path.join(args.vmail_dir, domain, local)
            makedirs_owned(home, args.vmail_user)
            if args.fresh and os.path.exists(f"{home}/Maildir"):
                # an older Dovecot copy (a migration back and forth): dsync would not start
                # over it (its mailbox ids differ); it is kept, not deleted
                aside[user] = f"{home}/Maildir.before-migration-{stamp}"
                os.rename(f"{home}/Maildir", aside[user])
            excludes = [w for mask in CYRUS_HIDDEN for w in ("-x", mask)]
            argv = ["doveadm", "-c", conf, "backup", "-R", *excludes, "imapc:"]
            for attempt in range(3):  # exit 2: changed meanwhile, sync again
                done = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                                      check=False, user=entry.pw_uid, group=entry.pw_gid,
                                      env={"USER": user, "HOME": home, "PATH": os.environ.get(
                                          "PATH", "/usr/bin:/bin")}, cwd=work)
                if done.returncode == 0:
                    break
                if done.returncode != 2 or attempt == 2:
                    why = reason(done)
                    raise Failure(f"{user}: doveadm backup from Cyrus: {why}")
            # dsync copies mailboxes only: the scripts wait in the stage for put-sieve
            os.makedirs(os.path.join(args.stage, user), mode=0o700, exist_ok=True)
            write_json(os.path.join(args.stage, user, "sieve.json"), read_sieve(store, user))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"pulled": sorted(set(args.user)), "kept_aside": aside}


def vmail_user(args: argparse.Namespace) -> pwd.struct_passwd:
    """The user that owns Dovecot's mail, made as the dovecot role makes it (roles/dovecot)
    on a host that never ran Dovecot."""
    try:
        return pwd.getpwnam(args.vmail_user)
    except KeyError:
        pass
    uid = str(args.vmail_uid)
    subprocess.run(["groupadd", "-r", "-g", uid, args.vmail_user], capture_output=True,
                   timeout=TIMEOUT, check=False)  # exists already: useradd says so
    run(["useradd", "-r", "-u", uid, "-g", args.vmail_user, "-d", args.vmail_dir, "-M",
         "-s", "/usr/sbin/nologin", args.vmail_user], f"creating the user {args.vmail_user}")
    entry = pwd.getpwnam(args.vmail_user)
    if not os.path.isdir(args.vmail_dir):
        os.mkdir(args.vmail_dir)
        os.chmod(args.vmail_dir, 0o770)  # not through mkdir: the umask would narrow it
        os.chown(args.vmail_dir, entry.pw_uid, entry.pw_gid)
    return entry


def imapc_config(args: argparse.Namespace, password: str, work: str) -> str:
    return "\n".join([
        "ssl = no",
        f"base_dir = {work}",
        f"mail_location = {DOVECOT_MAILDIR}",
        "namespace inbox {", "  inbox = yes", "  separator = /", "  prefix =", "}",
        "imapc_host = 127.0.0.1", f"imapc_port = {CYRUS_AGENT_IMAP}",
        "imapc_ssl = starttls", "imapc_ssl_verify = no",  # loopback to this host's Cyrus
        "imapc_user = %u", f"imapc_master_user = {args.admin_user}",
        f"imapc_password = {password}",
        "imapc_features = rfc822.size fetch-headers modseq",
        "", ""])


def install_doveadm() -> None:
    """dovecot-core, without starting Dovecot (Cyrus holds the ports until the switch)."""
    if shutil.which("doveadm"):
        return
    if not shutil.which("apt-get"):
        raise Failure("doveadm is needed to copy mail out of Cyrus with its UIDs: install "
                      "Dovecot's core package (it does not conflict with Cyrus) and run again")
    policy = "/usr/sbin/policy-rc.d"
    ours = not os.path.exists(policy)
    if ours:  # Debian's way to keep a package's postinst from starting its service
        with open(policy, "w", encoding="utf-8") as handle:
            handle.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                               "dovecot-core"], capture_output=True, text=True, timeout=900,
                              check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    finally:
        if ours:
            os.unlink(policy)
    if done.returncode != 0:
        why = reason(done)
        raise Failure(f"installing dovecot-core: {why}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="mailbox_agent.py")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"manifest": cmd_manifest, "backup": cmd_backup, "restore": cmd_restore,
                "release": cmd_release, "pause": cmd_pause, "lock": cmd_lock,
                "export": cmd_export,
                "import": cmd_import, "pull-cyrus": cmd_pull_cyrus, "put-sieve": cmd_put_sieve,
                "sieve-sync": cmd_sieve_sync}
    for name in commands:
        p = sub.add_parser(name)
        p.add_argument("--store", choices=("dovecot", "cyrus"), required=True)
        # sieve-sync: the users are the filters file's
        p.add_argument("--user", action="append", required=name != "sieve-sync")
        p.add_argument("--admin-user", default="cyrus")
        p.add_argument("--admin-pw-file", default="/etc/mailctl/cyrus-admin.pw")
        p.add_argument("--vmail-user", default="vmail")
        p.add_argument("--work-dir", default="/var/tmp")
        p.add_argument("--paused-map", default="/etc/mailctl/paused-users")
        p.add_argument("--locked-list", default="/etc/mailctl/locked-users")
        p.add_argument("--cyrus-bin", default="/usr/lib/cyrus/bin")
        p.add_argument("--vmail-dir", default="/var/vmail")
        p.add_argument("--vmail-uid", type=int, default=5000)
        p.add_argument("--stage", default="/var/lib/mailctl/migration")
        if name in ("pull-cyrus", "export"):
            p.add_argument("--fresh", action="store_true",
                           help="start over (an earlier stage is removed, an existing Maildir "
                                "moved aside)")
        if name == "export":
            p.add_argument("--pack", action="store_true",
                           help="also pack the users' stage into one archive for another host")
        if name == "import":
            p.add_argument("--archive", help="an archive of `export --pack` to import")
        if name == "sieve-sync":
            p.add_argument("--filters", required=True, help="the rendered sieve-filters")
        if name == "restore":
            p.add_argument("--archive", required=True)
            p.add_argument("--force", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        result = commands[args.command](args)
    except (Failure, OSError, imaplib.IMAP4.error, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except Exception as exc:  # a bug: still one line, naming the error
        sys.stderr.write(f"{args.command}: {type(exc).__name__}: {exc}\n")
        return 1
    result["seconds"] = round(time.monotonic() - started, 3)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
