"""`mailctl migrate`: move a host's mail from one store to the other (Dovecot <-> Cyrus) on the
same host, with no message lost or duplicated, and prove it with the two manifests.

A host runs one store (Debian's packages conflict), so a same-host migration moves all of the
host's users at once. In order:

1. pre-sync while mail flows: the slow part, done before anyone waits;
2. pause delivery to the users (Postfix keeps their mail in its queue; senders still get
   250);
3. lock the users out of IMAP and POP3 (ending their sessions), final sync, and the
   source's manifest;
4. the switch: a deploy with the target store (mail_common_migrating lets it go ahead; the
   source's files stay on disk);
5. Dovecot -> Cyrus only: the copy is appended to Cyrus over IMAP;
6. the target's manifest must equal the source's. Cyrus -> Dovecot is compared exactly (dsync
   keeps UIDs, UIDVALIDITY and so POP3 UIDLs); Dovecot -> Cyrus by content, flags, dates,
   folders and subscriptions, because IMAP APPEND hands out new UIDs;
7. release the users' held mail, which the target store now receives.

A failure before the switch releases the pause: delivery never left the source. A failure
after it, or manifests that differ, roll back: a deploy with the source store again, whose
files were never touched, then the release. The inventory is not edited: the last line
says which mail_backend to set, and a deploy after that changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import mailbox as mb
from .deploy import deploy
from .errors import InputError, MailctlError
from .manifest_diff import diff

if TYPE_CHECKING:
    from .inventory import Inventory
    from .model import MailHost

Echo = Callable[..., None]


@dataclass
class Migration:
    inv: Inventory
    source: MailHost  # the host as it is, with its store
    target: MailHost  # the same host, seen with the target store
    users: list[str]
    echo: Echo
    vault: str | None = None
    verbose: bool = False
    ca_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    kept_aside: dict[str, str] = field(default_factory=dict)  # older copies found in the way

    @property
    def keeps_ids(self) -> bool:
        """dsync (Cyrus -> Dovecot) keeps UIDs; IMAP APPEND (-> Cyrus) cannot."""
        return self.target.backend == "dovecot"

    def agent(self, host: MailHost, command: str, *extra: str) -> dict:
        started = time.monotonic()
        answer = mb.run_agent(self.inv, host, self.users, command, *extra, vault=self.vault,
                              verbose=self.verbose)
        self.timings[command] = self.timings.get(command, 0) + time.monotonic() - started
        return answer

    def sync(self, *, first: bool) -> dict | None:
        """Copy the source's mail where the target will find it; the export's manifest.
        The first copy starts over; the second only adds what changed since."""
        if self.keeps_ids:
            answer = self.agent(self.source, "pull-cyrus", *(["--fresh"] if first else []))
            self.kept_aside.update(answer.get("kept_aside") or {})
            return None
        return self.agent(self.source, "export", *(["--fresh"] if first else []))

    def switch(self, to: MailHost) -> None:
        started = time.monotonic()
        deploy(self.inv, indented(self.echo), limit=to.name, backend=to.backend,
               vault=self.vault, verbose=self.verbose, ca_dir=self.ca_dir, migrating=True)
        self.timings[f"deploy {to.backend}"] = time.monotonic() - started


def plan(inv: Inventory, limit: str | None, now: str | None, to: str, users: tuple[str, ...]
         ) -> tuple[MailHost, MailHost, list[str]]:
    """The host as it is (its store: mail_backend, or `now`) and as it will be; bad input is
    refused before any host is touched."""
    source = mb.store_host(inv, limit, now)
    if source.backend == to:
        where = (f"--backend {now}" if now
                 else f"{inv.file_of(source.name, 'mail_backend')}: {source.name}: mail_backend")
        raise InputError(f"{where} is already {to}; nothing to migrate")
    everyone = mb.chosen_users(inv, source, ())
    chosen = mb.chosen_users(inv, source, users)
    if chosen != everyone:
        raise InputError(f"{inv.source}: {source.name}: --user: a host runs one store, so a "
                         f"migration on the same host moves all its {len(everyone)} users; "
                         "leave --user out")
    return source, mb.store_host(inv, source.name, to), everyone


def migrate(inv: Inventory, limit: str | None, now: str | None, to: str,
            users: tuple[str, ...], echo: Echo, *, vault: str | None = None,
            verbose: bool = False, ca_dir: Path | None = None) -> Migration:
    source, target, chosen = plan(inv, limit, now, to, users)
    run = Migration(inv, source, target, chosen, echo, vault, verbose, ca_dir)
    name, was = source.name, source.backend
    echo(f"{name}: migrating {len(chosen)} user(s) from {was} to {to}"
         + ("" if run.keeps_ids else " (IMAP hands out new UIDs: POP3 clients fetch their "
            "mail once more)"))
    echo(f"{name}: pre-sync while mail flows")
    run.sync(first=True)
    held = time.monotonic()
    echo(f"{name}: pausing delivery to the users (their mail waits in Postfix's queue)")
    run.agent(source, "pause")
    try:
        run.agent(source, "lock")
        echo(f"{name}: final sync, with the users locked out of IMAP and POP3")
        exported = run.sync(first=False)
        before = exported or run.agent(source, "manifest")
    except MailctlError as exc:
        try:
            run.agent(source, "release")
        except MailctlError as also:
            raise MailctlError(f"{exc}; nothing was switched, but the release failed too "
                               f"({also}): `mailctl mailbox release --host {name}` lets the "
                               "held mail in") from None
        raise MailctlError(f"{exc}; nothing was switched, delivery stays on {was}") from None
    try:
        echo(f"{name}: switching the store to {to}")
        run.switch(target)
        if run.keeps_ids:  # Dovecot took over with the copy and the lock-out list in place
            run.agent(target, "put-sieve")  # dsync copied mailboxes, not Sieve scripts
            after = run.agent(target, "manifest")
        else:  # Cyrus was installed just now: lock its clients out before the import
            run.agent(target, "lock")
            after = run.agent(target, "import")
        findings = diff(before, after, ignore_ids=not run.keeps_ids)
    except MailctlError as exc:
        findings, failure = [], exc
    else:
        failure = None
    if failure or findings:
        for line in findings:
            echo(line)
        why = failure or f"the manifests differ ({len(findings)} finding(s))"
        # the switch may have got half-way: the source store's files were never touched
        echo(f"{name}: {why}: rolling back to {was}", err=True)
        try:
            run.switch(source)
        except MailctlError as exc:
            raise MailctlError(
                f"{name}: {why}; the rollback failed too ({exc}): the users' mail waits in "
                f"Postfix's queue and the {was} store's files are untouched; once "
                f"`ansible-playbook -i {inv.source} playbooks/site.yml -l {name} -e "
                f"mail_common_backend_override={was} -e mail_common_migrating=true` succeeds, "
                f"`mailctl mailbox release --host {name}` lets the mail in") from None
        run.agent(source, "release")
        raise MailctlError(f"{name}: {why}; rolled back, delivery stays on {was}")
    run.agent(target, "release")
    run.timings["hold window"] = time.monotonic() - held
    kept = ("UIDs, UIDVALIDITY and POP3 UIDLs" if run.keeps_ids
            else "content, flags, keywords, dates")
    echo(f"{name}: the {to} store's manifest equals the {was} store's ({kept}, folders and "
         "subscriptions); held mail released")
    for user, path in sorted(run.kept_aside.items()):
        echo(f"{user}: an older Dovecot copy of this mailbox was in the way; kept in {path}")
    echo(f"{name}: set mail_backend: {to} for {name} in {inv.file_of(name, 'mail_backend')}; "
         f"a deploy then changes nothing (the {was} store's files stay on the host)")
    return run


def indented(echo: Echo) -> Echo:
    def shown(text: str = "", err: bool = False) -> None:
        echo("\n".join("    " + line for line in str(text).splitlines()), err=err)
    return shown
