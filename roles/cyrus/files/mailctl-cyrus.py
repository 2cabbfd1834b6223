#!/usr/bin/python3
"""mailctl helper for the cyrus role, run on the mail host as root.

    mailctl-cyrus.py sasl      [options] < users.json   sync sasldb with the inventory
    mailctl-cyrus.py mailboxes [options] < users.json   create mailboxes, set STORAGE quotas

users.json is a JSON list of {"address", "password", "quota"} (quota in bytes, 0 = none);
`mailboxes` ignores passwords. stdout is exactly one JSON line, {"changed": bool, ...}, which
the role reads to report `changed`; it never holds a password. Errors: a JSON line with
"failed": true and exit code 1.

sasl: the admin's password is generated once into --admin-pw-file (0600). The sasldb is only
rewritten when a salted SHA-256 digest of (users, passwords, admin) differs from the one kept
in --state (the digest and salt only, never a password), or when the user list in sasldb
differs from the inventory; users absent from the inventory are removed (but the admin).

mailboxes: logs in as the admin over IMAP on 127.0.0.1 (STARTTLS), creates `user/<address>`
for each user that lacks it and sets its STORAGE quota in KiB (ceil(bytes / 1024)); a quota
of 0 removes the STORAGE limit. Mailboxes of users no longer in the inventory are kept.
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import hmac
import imaplib
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import time

SASLPASSWD = "saslpasswd2"
SASLLIST = "sasldblistusers2"


class Failure(Exception):
    pass


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")


def read_users() -> list[dict]:
    users = json.load(sys.stdin)
    if not isinstance(users, list):
        raise Failure("stdin: expected a JSON list of users")
    for user in users:
        local, sep, domain = str(user.get("address", "")).rpartition("@")
        if not sep or not local or not domain:
            raise Failure(f"invalid address: {user.get('address')!r}")
    return users


# --- sasl -------------------------------------------------------------------------------------

def admin_password(path: str, nbytes: int) -> tuple[str, bool]:
    """The admin's password, generated the first time (O_EXCL, mode 0600)."""
    try:
        with open(path, encoding="utf-8") as handle:
            password = handle.read().strip()
        if password:
            return password, False
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(nbytes)
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    os.replace(tmp, path)
    return password, True


def sasldb_users(sasldb: str) -> set[str]:
    """user@realm of every entry in sasldb (empty if the file does not exist)."""
    if not os.path.exists(sasldb):
        return set()
    out = subprocess.run([SASLLIST, "-f", sasldb], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise Failure(f"{SASLLIST} failed: {out.stderr.strip()}")
    found = set()
    for line in out.stdout.splitlines():
        match = re.match(r"^(\S+@\S+): \S+$", line.strip())
        if match:
            found.add(match.group(1))
    return found


def saslpasswd(sasldb: str, realm: str, user: str, password: str | None) -> None:
    """Set (creating if needed) or, with password None, delete user@realm."""
    argv = [SASLPASSWD, "-f", sasldb, "-u", realm]
    argv += ["-d", user] if password is None else ["-p", "-c", user]
    out = subprocess.run(argv, input=password or "", capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        what = "delete" if password is None else "set"
        raise Failure(f"{SASLPASSWD}: could not {what} {user}@{realm}: {out.stderr.strip()}")


def digest(salt: str, entries: list[tuple[str, str]]) -> str:
    payload = json.dumps(sorted(entries), separators=(",", ":")).encode()
    return hmac.new(bytes.fromhex(salt), payload, hashlib.sha256).hexdigest()


def cmd_sasl(args: argparse.Namespace) -> dict:
    users = read_users()
    for user in users:
        if not user.get("password"):
            raise Failure(f"{user['address']}: Cyrus needs a clear-text password "
                          "(password_hash alone cannot be put in sasldb)")
    admin_pw, admin_new = admin_password(args.admin_pw_file, args.admin_pw_bytes)
    admin = f"{args.admin_user}@{args.admin_realm}"
    wanted = {u["address"]: u["password"] for u in users}
    entries = [(addr, pw) for addr, pw in wanted.items()] + [(admin, admin_pw)]

    state = {}
    try:
        with open(args.state, encoding="utf-8") as handle:
            state = json.load(handle)
    except (FileNotFoundError, ValueError):
        pass
    salt = state.get("salt") or secrets.token_hex(16)
    new_digest = digest(salt, entries)
    present = sasldb_users(args.sasldb)
    expected = set(wanted) | {admin}
    stale = sorted(present - expected) if args.prune else []
    in_sync = (hmac.compare_digest(state.get("digest", ""), new_digest)
               and expected <= present and not stale)
    result = {"changed": admin_new, "admin_password_created": admin_new,
              "set": [], "removed": []}
    if in_sync:
        return result

    os.umask(0o027)
    for address, password in sorted(wanted.items()):
        local, _, domain = address.rpartition("@")
        saslpasswd(args.sasldb, domain, local, password)
        result["set"].append(address)
    saslpasswd(args.sasldb, args.admin_realm, args.admin_user, admin_pw)
    result["set"].append(admin)
    for entry in stale:
        local, _, realm = entry.rpartition("@")
        saslpasswd(args.sasldb, realm, local, None)
        result["removed"].append(entry)
    os.chown(args.sasldb, 0, grp.getgrnam(args.group).gr_gid)
    os.chmod(args.sasldb, 0o640)

    tmp = f"{args.state}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"salt": salt, "digest": new_digest}, handle)
        handle.write("\n")
    os.replace(tmp, args.state)
    result["changed"] = True
    return result


# --- mailboxes --------------------------------------------------------------------------------

def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check(typ: str, data: list, what: str) -> list:
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise Failure(f"IMAP {what}: {typ} {text}")
    return data


def connect(args: argparse.Namespace) -> imaplib.IMAP4:
    with open(args.admin_pw_file, encoding="utf-8") as handle:
        password = handle.read().strip()
    deadline = time.monotonic() + args.timeout
    while True:  # the service may still be starting after a restart
        try:
            imap = imaplib.IMAP4(args.host, args.port, timeout=10)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Failure(f"cannot connect to {args.host}:{args.port}: {exc}") from None
            time.sleep(1)
    # Loopback only: the certificate names the public host name, not 127.0.0.1.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    check(*imap.starttls(context), "STARTTLS")
    try:
        imap.login(args.admin_user, password)
    except imaplib.IMAP4.error as exc:
        raise Failure(f"admin login as {args.admin_user} failed: {exc}") from None
    return imap


def storage_limits(imap: imaplib.IMAP4, mailbox: str) -> dict[str, int] | None:
    """{resource: limit} of the mailbox's own quota root, or None if it has none."""
    typ, data = imap.getquota(quoted(mailbox))
    if typ != "OK":
        return None
    limits = {}
    for item in data:
        text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
        inner = text[text.rfind("(") + 1:text.rfind(")")].split()
        for i in range(0, len(inner) - 2, 3):
            limits[inner[i].upper()] = int(inner[i + 2])
    return limits


def cmd_mailboxes(args: argparse.Namespace) -> dict:
    users = read_users()
    result = {"changed": False, "created": [], "quota_set": [], "quota_removed": []}
    imap = connect(args)
    try:
        for user in sorted(users, key=lambda u: u["address"]):
            mailbox = f"user{args.separator}{user['address']}"
            # Not LIST: Cyrus lists mailboxes of `defaultdomain` without their domain.
            exists = imap.getquotaroot(quoted(mailbox))[0] == "OK"
            if not exists:
                check(*imap.create(quoted(mailbox)), f"CREATE {mailbox}")
                result["created"].append(mailbox)
            kib = -(-int(user.get("quota") or 0) // 1024)
            limits = storage_limits(imap, mailbox) or {}
            if kib and limits.get("STORAGE") != kib:
                limits["STORAGE"] = kib
                result["quota_set"].append(f"{mailbox}={kib}KiB")
            elif not kib and "STORAGE" in limits:
                del limits["STORAGE"]
                result["quota_removed"].append(mailbox)
            else:
                continue
            spec = "(" + " ".join(f"{k} {v}" for k, v in sorted(limits.items())) + ")"
            check(*imap.setquota(quoted(mailbox), spec), f"SETQUOTA {mailbox}")
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    result["changed"] = bool(result["created"] or result["quota_set"] or result["quota_removed"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("sasl", "mailboxes"):
        p = sub.add_parser(name)
        p.add_argument("--admin-user", required=True)
        p.add_argument("--admin-pw-file", required=True)
        if name == "sasl":
            p.add_argument("--admin-realm", required=True)
            p.add_argument("--admin-pw-bytes", type=int, default=24)
            p.add_argument("--sasldb", required=True)
            p.add_argument("--group", required=True)
            p.add_argument("--state", required=True)
            p.add_argument("--prune", dest="prune", action="store_true", default=True)
            p.add_argument("--no-prune", dest="prune", action="store_false")
        else:
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=143)
            p.add_argument("--separator", default="/")
            p.add_argument("--timeout", type=int, default=30)
    args = parser.parse_args()
    try:
        emit(cmd_sasl(args) if args.command == "sasl" else cmd_mailboxes(args))
    except (Failure, OSError, ValueError, KeyError, imaplib.IMAP4.error) as exc:
        emit({"changed": False, "failed": True, "msg": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
