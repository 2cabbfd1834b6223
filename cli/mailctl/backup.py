"""`mailctl backup` and `mailctl restore`: the users' mail of one host, kept on this machine.

A backup is one directory per run (a version) under the --to directory, named
HOST-YYYYmmddTHHMMSSZ and written atomically (a hidden .partial directory renamed when
complete):

    mailctl-backup.json   what it is: host, store, users, when, the archive's size and sha256
    manifest.json         the manifest of exactly what the archive holds (mailctl mailbox diff)
    mail.tar.gz           the store's own copy of the users' mail

The copying is done on the host by hostside/mailbox_agent.py with the store's own tools (see
its docstring); the archive travels with Ansible. A restore checks the archive's hash, refuses
a store other than the backup's, lets the agent refuse to remove mail the backup does not
have (unless --force), and proves itself: the host's manifest afterwards must equal the
backup's.
"""

from __future__ import annotations

import json
import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import mailbox as mb
from .errors import InputError, MailctlError
from .hostside.mailbox_agent import sha256_file  # the hash the agent gives the archive
from .manifest_diff import diff
from .runner import copy_file, run_commands

if TYPE_CHECKING:
    from .inventory import Inventory
    from .model import MailHost

FORMAT = 1
META = "mailctl-backup.json"
MANIFEST = "manifest.json"
ARCHIVE = "mail.tar.gz"


@dataclass(frozen=True)
class Backup:
    path: Path
    meta: dict

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))


def version_name(host: str, taken: str) -> str:
    """HOST-20261202T120000Z from the manifest's 'taken' (2026-12-02T12:00:00Z)."""
    return f"{host}-{taken.replace('-', '').replace(':', '')}"


def _remove_on_host(inv: Inventory, host: MailHost, path: str, vault: str | None) -> None:
    # the agent names its archives /var/tmp/mailctl-*.tar.gz; nothing else is removed
    if path.startswith("/var/tmp/mailctl-") and path.endswith(".tar.gz") and ".." not in path:
        run_commands(inv.source, {host.name: f"rm -f -- {shlex.quote(path)}"},
                     vault_password_file=vault)


def take_backup(inv: Inventory, host: MailHost, users: list[str], to_dir: Path, *,
                vault: str | None, verbose: bool) -> Backup:
    try:
        to_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--to {to_dir}: cannot create it: {exc.strerror}") from None
    answer = mb.run_agent(inv, host, users, "backup", vault=vault, verbose=verbose)
    manifest, remote = answer["manifest"], answer["archive"]
    final = to_dir / version_name(host.name, manifest["taken"])
    partial = to_dir / f".{final.name}.partial"
    try:
        partial.mkdir(mode=0o700)
        why = copy_file(inv.source, host.name, remote, str(partial / ARCHIVE), fetch=True,
                        vault_password_file=vault, verbose=verbose)
        if why:
            raise MailctlError(f"{host.name}: fetching the backup failed: {why}")
        if sha256_file(partial / ARCHIVE) != answer["sha256"]:
            raise MailctlError(f"{host.name}: the fetched backup does not match its hash")
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
        meta = {"mailctl_backup": FORMAT, "host": host.name, "store": host.backend,
                "platform": host.platform, "taken": manifest["taken"], "users": users,
                "archive": ARCHIVE, "bytes": answer["bytes"], "sha256": answer["sha256"],
                "seconds_on_host": answer.get("seconds")}
        (partial / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                    encoding="utf-8")
        for written in partial.iterdir():
            written.chmod(0o600)  # users' mail: for this machine's owner only
        partial.rename(final)
    except OSError as exc:
        raise MailctlError(f"{partial}: cannot write the backup: {exc.strerror}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        _remove_on_host(inv, host, remote, vault)
    return Backup(final, meta)


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    good = (isinstance(meta, dict) and meta.get("mailctl_backup") == FORMAT
            and isinstance(meta.get("taken"), str))
    return meta if good else None


def find_backup(path: Path, host: str | None) -> Backup:
    """The backup at PATH, or the newest one of HOST (any host's when None) under it."""
    meta = _read_meta(path)
    if meta:
        return Backup(path, meta)
    found = sorted((m["taken"], p) for p in (path.iterdir() if path.is_dir() else [])
                   if not p.name.startswith(".") and (m := _read_meta(p))
                   and host in (None, m.get("host")))
    if not found:
        whose = f" of host {host}" if host else ""
        raise InputError(f"--from {path}: not a mailctl backup, and holds no backup{whose}")
    return Backup(found[-1][1], _read_meta(found[-1][1]) or {})


def check_restore(backup: Backup, target: MailHost, users: list[str]) -> None:
    """Refuse what a restore cannot do, before any host is touched."""
    if backup.meta.get("store") != target.backend:
        raise InputError(f"--from {backup.path}: a {backup.meta.get('store')} backup cannot be "
                         f"restored into {target.name}, which runs {target.backend}")
    for user in users:
        if user not in backup.meta.get("users", []):
            raise InputError(f"--from {backup.path}: --user {user}: not in this backup")
    archive = backup.path / ARCHIVE
    if not archive.is_file() or sha256_file(archive) != backup.meta.get("sha256"):
        raise InputError(f"--from {backup.path}: {ARCHIVE} is missing or does not match the "
                         "hash in " + META)


def restore(inv: Inventory, backup: Backup, target: MailHost, users: list[str], *,
            force: bool, vault: str | None, verbose: bool) -> tuple[list[str], dict]:
    """Restore the users on the target host. Returns the differences between the backup's
    manifest and the host's afterwards ([] when the restore is proven), and the host's
    answer (kept_aside: {user: where the mail it replaced is kept})."""
    check_restore(backup, target, users)
    remote = f"/var/tmp/mailctl-restore-{uuid.uuid4().hex}.tar.gz"
    why = copy_file(inv.source, target.name, str(backup.path / ARCHIVE), remote, fetch=False,
                    vault_password_file=vault, verbose=verbose)
    if why:
        raise MailctlError(f"{target.name}: sending the backup failed: {why}")
    try:
        extra = ("--archive", remote, *(["--force"] if force else []))
        after = mb.run_agent(inv, target, users, "restore", *extra, vault=vault,
                             verbose=verbose)
    finally:
        _remove_on_host(inv, target, remote, vault)
    return diff(backup.manifest, after, users=set(users)), after
