"""`mailctl migrate --host H1 --domain D`: move a domain's mail from the mailstore H1 to the
mailstore that the inventory now stores it on (multi-host), with no message lost or
duplicated, and prove it with the two manifests.

The administrator moves the domain in the inventory first (its mail_domains entry, users and
aliases go to the new mailstore); a deploy then refuses to route it while the mail is still on
H1 (roles/mail_common: stored-domains), and points here. In order:

1. pre-sync while mail flows: H1 exports the users' mail (manifest and bodies) to its stage;
2. pause the users' delivery on both stores (Postfix keeps their mail; senders get 250);
3. lock the users out of H1's IMAP and POP3, final export, packed into one archive that
   travels H1 -> this machine -> the new store (kept there until the move is proven);
4. the switch: a deploy of the new store, then of every other mx and mailstore, with the
   inventory as it is now, so the domain is routed to its new store once that store takes it
   (mail_common_migrating lets both past the check);
5. the new store imports the archive over IMAP (new UIDs: say so), and its manifest must equal
   H1's by content, flags, keywords, dates, folders and subscriptions;
6. release: the new store's held mail first, then H1's, which now relays to the new store;
   then every router's queue is flushed (what the switch's milter restarts deferred).

A failure before the switch releases the pause: nothing was routed anywhere new. After the
switch the inventory already says where the domain lives, so there is no rollback: the mail
stays held on both stores, H1's copy is untouched, and running the same command again
resumes (it imports the archive kept on the new store).
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import mailbox as mb
from .deploy import deploy
from .errors import InputError, MailctlError
from .hostside.mailbox_agent import sha256_file
from .manifest_diff import diff
from .migrate import indented
from .names import NameSyntaxError, normalize_domain
from .platforms import names
from .runner import copy_file, run_commands

if TYPE_CHECKING:
    from .inventory import Inventory
    from .model import MailHost

Echo = Callable[..., None]
NO_RECORD = "NO-RECORD"  # what stores_domain reads when the host has no stored-domains


@dataclass
class DomainMove:
    inv: Inventory
    domain: str
    source: MailHost  # the mailstore the domain leaves, as deployed now
    target: MailHost  # the mailstore the inventory puts it on
    users: list[str]
    routers: list[str]  # every mx and mailstore: each routes the domain
    echo: Echo
    vault: str | None = None
    verbose: bool = False
    ca_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def incoming(self) -> str:
        """Where the archive waits on the new store until the move is proven."""
        return f"/var/tmp/mailctl-move-{self.domain}.tar.gz"

    def agent(self, host: MailHost, command: str, *extra: str) -> dict:
        started = time.monotonic()
        answer = mb.run_agent(self.inv, host, self.users, command, *extra, vault=self.vault,
                              verbose=self.verbose)
        key = f"{command} ({host.name})"
        self.timings[key] = self.timings.get(key, 0) + time.monotonic() - started
        return answer

    def shell(self, host: MailHost, command: str) -> str:
        answer = run_commands(self.inv.source, {host.name: command},
                              vault_password_file=self.vault)[host.name]
        if isinstance(answer, str) or answer.rc != 0:
            why = answer if isinstance(answer, str) else mb.agent_error(answer)
            raise MailctlError(f"{host.name}: {command.split()[0]} failed: {why}")
        return answer.stdout

    def switched(self) -> bool:
        """Has a deploy already taken the domain off the old store (a run that got past the
        switch), so that its mail there can no longer be read?"""
        if self.stores_domain(self.source) is not False:  # or never recorded (older mailctl)
            return False
        if self.shell(self.target, f"test -f {self.incoming} && echo kept || true").strip():
            return True
        raise MailctlError(f"{self.source.name}: no longer stores {self.domain}, and "
                           f"{self.target.name} holds no export of it ({self.incoming}): the "
                           "domain was taken off this store without mailctl migrate")

    def carry(self, exported: dict) -> None:
        """The packed export: the old store -> this machine -> the new store."""
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mailctl-move-") as work:
            local = str(Path(work) / "export.tar.gz")
            try:
                why = copy_file(self.inv.source, self.source.name, exported["archive"], local,
                                fetch=True, vault_password_file=self.vault,
                                verbose=self.verbose)
                if why:
                    raise MailctlError(f"{self.source.name}: fetching the export failed: {why}")
                if sha256_file(Path(local)) != exported["sha256"]:
                    raise MailctlError(f"{self.source.name}: the fetched export does not match "
                                       "its hash")
                why = copy_file(self.inv.source, self.target.name, local, self.incoming,
                                fetch=False, vault_password_file=self.vault,
                                verbose=self.verbose)
                if why:
                    raise MailctlError(f"{self.target.name}: sending the export failed: {why}")
            finally:
                try:
                    self.remove(self.source, exported["archive"])
                except MailctlError as exc:  # not in place of the error that got us here
                    self.echo(f"{exc} (the 0600 archive stays there)", err=True)
        self.timings["carry"] = time.monotonic() - started

    def remove(self, host: MailHost, path: str) -> None:
        # only the agent's archives, /var/tmp/mailctl-move-*.tar.gz
        if path.startswith("/var/tmp/mailctl-move-") and path.endswith(".tar.gz") \
                and "/" not in path[len("/var/tmp/"):]:
            self.shell(host, f"rm -f -- {shlex.quote(path)}")

    def stores_domain(self, host: MailHost) -> bool | None:
        """Did the host's last deploy store the domain (roles/mail_common: stored-domains)?
        None when no deploy recorded it (a host deployed by an older mailctl)."""
        where = shlex.quote(mb.STORED_DOMAINS.format(**names(host.platform, host.release)))
        stored = self.shell(host, f"cat {where} 2>/dev/null || echo {NO_RECORD}").split()
        return None if stored == [NO_RECORD] else self.domain in stored

    def switch(self) -> None:
        """The new store first, then every other router: an mx that routed the domain to a
        store not yet deployed to take it would bounce its mail (Relay access denied)."""
        others = [name for name in self.routers if name != self.target.name]
        for limit, key in ((self.target.name, "deploy (new store)"),
                           (":".join(others), "deploy (the other routers)")):
            started = time.monotonic()
            deploy(self.inv, indented(self.echo), limit=limit, vault=self.vault,
                   verbose=self.verbose, ca_dir=self.ca_dir, migrating=True)
            self.timings[key] = time.monotonic() - started

    def release(self, *hosts: MailHost) -> None:
        for host in hosts:
            self.agent(host, "release")

    def flush(self) -> None:
        """The switch restarted milters on the routers for a moment, so mail that arrived then
        was deferred with a 451 and would wait for Postfix's next retry (minutes): send it on
        now, by the new routes."""
        answers = run_commands(self.inv.source, dict.fromkeys(self.routers, "postqueue -f"),
                               vault_password_file=self.vault)
        for name, answer in sorted(answers.items()):
            if isinstance(answer, str) or answer.rc != 0:
                why = answer if isinstance(answer, str) else mb.agent_error(answer)
                self.echo(f"{name}: postqueue -f failed ({why}); Postfix retries its "
                          "deferred mail on its own", err=True)


def plan(inv: Inventory, limit: str | None, domain: str, users: tuple[str, ...],
         echo: Echo, **options) -> DomainMove:
    """Who moves where, from the inventory as the administrator left it (the domain already on
    its new store); bad input is refused before any host is touched."""
    try:
        domain = normalize_domain(domain)  # as mail_domains is read: the A-label
    except NameSyntaxError as exc:
        raise InputError(f"{inv.source}: --domain: {exc}") from None
    source = mb.store_host(inv, limit, None)
    hosts, _ = inv.mail_plan(None, None)
    if source.kind != "mailstore":
        raise InputError(f"{inv.source}: --host {source.name}: a domain moves between the "
                         "mailstore hosts of a multi-host inventory; this host is all-in-one "
                         "(to change its store: --to dovecot|cyrus)")
    owners = [h for h in hosts if h.kind == "mailstore" and domain in h.domains]
    if not owners:
        raise InputError(f"{inv.source}: --domain {domain}: no mailstore has it in mail_domains;"
                         " put it on the mailstore it moves to first")
    target = owners[0]
    if target.name == source.name:
        raise InputError(f"{inv.file_of(source.name, 'mail_domains')}: {source.name}: "
                         f"mail_domains: {domain} is still stored here; move it (with its users "
                         "and aliases) to the mail_domains of the mailstore it goes to, then run "
                         "this again")
    everyone = sorted(u.address for u in target.users if u.address.endswith("@" + domain))
    if users:
        raise InputError(f"{inv.source}: --user: a domain moves with all its "
                         f"{len(everyone)} users (mail to them is routed per domain); leave "
                         "--user out")
    routers = [h.name for h in hosts if h.kind in ("mx", "mailstore")]
    return DomainMove(inv, domain, source, target, everyone, routers, echo, **options)


def move_domain(inv: Inventory, limit: str | None, domain: str, users: tuple[str, ...],
                echo: Echo, *, vault: str | None = None, verbose: bool = False,
                ca_dir: Path | None = None) -> DomainMove:
    run = plan(inv, limit, domain, users, echo, vault=vault, verbose=verbose, ca_dir=ca_dir)
    src, dst = run.source, run.target
    echo(f"{run.domain}: moving {len(run.users)} user(s) from {src.name} ({src.backend}) to "
         f"{dst.name} ({dst.backend}); IMAP hands out new UIDs: POP3 clients fetch their mail "
         "once more")
    if not run.users:  # aliases only: nothing to copy, the routes just change
        run.switch()
        echo(f"{run.domain}: now routed to {dst.name}")
        return run
    held = time.monotonic()
    if run.switched():
        echo(f"{run.domain}: {src.name} no longer stores it (an earlier run got past the "
             f"switch): importing the export kept on {dst.name}")
    else:
        echo(f"{src.name}: pre-sync while mail flows")
        run.agent(src, "export", "--fresh")
        held = time.monotonic()
        echo(f"{run.domain}: pausing delivery to the users on {dst.name} and {src.name} "
             "(their mail waits in Postfix's queues)")
        try:
            run.agent(dst, "pause")
            run.agent(src, "pause")
            run.agent(dst, "lock")  # no client changes the copy while it is being imported
            run.agent(src, "lock")
            echo(f"{src.name}: final sync, with the users locked out of IMAP and POP3")
            run.carry(run.agent(src, "export", "--pack"))
        except MailctlError as exc:
            if run.stores_domain(dst):  # None (never recorded): no earlier switch either
                # an earlier run's switch got as far as the new store: mail it lets in now
                # would be removed by the import that makes it equal to the old store's copy
                raise MailctlError(
                    f"{exc}; an earlier run already switched some hosts to {dst.name}: the "
                    f"users' mail stays held on {src.name} and {dst.name}; fix the cause and "
                    "run the same command again") from None
            try:
                run.release(dst, src)
            except MailctlError as also:
                raise MailctlError(
                    f"{exc}; nothing was switched, but the release failed too ({also}): "
                    f"`mailctl mailbox release --host {src.name}` and `--host {dst.name}` "
                    "let the held mail in") from None
            raise MailctlError(f"{exc}; nothing was switched, delivery stays on "
                               f"{src.name}") from None
    try:
        echo(f"{run.domain}: routing it to {dst.name} (a deploy of the mx and mailstore hosts)")
        run.switch()
        run.agent(dst, "lock")  # again: a resumed run did not lock it before
        answer = run.agent(dst, "import", "--archive", run.incoming)
        before = dict(answer.pop("before"), store=src.backend, host=src.name)
        findings = diff(before, answer, ignore_ids=True)
    except MailctlError as exc:
        findings, failure = [], exc
    else:
        failure = None
    if failure or findings:
        for line in findings:
            echo(line)
        why = failure or f"the manifests differ ({len(findings)} finding(s))"
        raise MailctlError(
            f"{run.domain}: {why}; the users' mail waits in Postfix's queues on {src.name} and "
            f"{dst.name}, and {src.name}'s copy is untouched: fix the cause and run the same "
            "command again (it resumes)")
    run.release(dst, src)
    run.flush()
    run.remove(dst, run.incoming)
    run.timings["hold window"] = time.monotonic() - held
    echo(f"{run.domain}: {dst.name}'s manifest equals {src.name}'s (content, flags, keywords, "
         "dates, folders and subscriptions); held mail released")
    echo(f"{run.domain}: now stored on {dst.name}; {src.name} keeps its old copy of the mail "
         f"(remove it when you no longer need it); the users' clients should now connect to "
         f"{dst.hostname}")
    return run

