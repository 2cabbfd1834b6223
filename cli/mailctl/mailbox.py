"""`mailctl mailbox manifest`: what each user of one host has, as their own clients see it.

The reading is done on the host by hostside/mailbox_agent.py (run there by runner.run_scripts,
as root), which talks IMAP and POP3 to the store and prints the manifest as JSON: see its
docstring for how it opens a user's mail without the user's password. This module picks the
host and users from the inventory (bad ones are refused before any host is touched) and
checks what came back.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError, MailctlError
from .paths import MAILBOX_AGENT
from .platforms import names
from .runner import CommandResult, run_scripts

if TYPE_CHECKING:
    from .inventory import Inventory
    from .model import MailHost

AGENT = MAILBOX_AGENT
# where the cyrus role keeps the Cyrus admin's password (roles/cyrus/vars/main.yml)
CYRUS_ADMIN_PW = "{state_dir}/cyrus-admin.pw"
# the users whose delivery Postfix pauses (templates/postfix/main.cf.j2, roles/postfix)
PAUSED_USERS = "{state_dir}/paused-users"
# the domains a mailstore stored at its last deploy (roles/mail_common: the domain-move check)
STORED_DOMAINS = "{state_dir}/stored-domains"
# the users Dovecot refuses while a migration takes their last copy (dovecot.conf.j2)
LOCKED_USERS = "{state_dir}/locked-users"


def store_host(inv: Inventory, limit: str | None, backend: str | None) -> MailHost:
    """The one host with a mail store that --host names."""
    if not limit:
        raise InputError("--host: name the one host whose mailboxes to read")
    hosts, _ = inv.mail_plan(limit, backend)
    if len(hosts) != 1:
        raise InputError(f"--host {limit}: matches {len(hosts)} hosts; name exactly one")
    host = hosts[0]
    if host.kind == "mx":
        raise InputError(f"--host {host.name}: an mx host keeps no mailboxes")
    return host


def chosen_users(inv: Inventory, host: MailHost, users: tuple[str, ...]) -> list[str]:
    """The --user addresses (all of the host's users when none), each one the host has."""
    known = {u.address for u in host.users}
    for user in users:
        if user.lower() not in known:
            raise InputError(f"{inv.source}: {host.name}: --user {user}: not a user of this host "
                             "in mail_users")
    return sorted({u.lower() for u in users} or known)


def agent_args(host: MailHost, users: list[str], command: str = "manifest",
               *extra: str) -> str:
    """The agent's command line for this host (shell-quoted; no secret in it)."""
    where = names(host.platform, host.release)
    words = [command, "--store", host.backend or "", "--vmail-user", where["vmail"],
             "--vmail-uid", where["vmail_uid"], "--vmail-dir", where["vmail_dir"], *extra]
    for user in users:
        words += ["--user", user]
    words += ["--paused-map", PAUSED_USERS.format(**where),
              "--locked-list", LOCKED_USERS.format(**where)]
    # the Cyrus tools' place, for any host: a release after a migration unlocks either store
    words += ["--cyrus-bin", where["cyrus_bin_dir"]]
    if host.backend == "cyrus":
        words += ["--admin-user", where["cyrus"], "--admin-pw-file",
                  CYRUS_ADMIN_PW.format(**where)]
    return " ".join(shlex.quote(w) for w in words)


def agent_error(answer: CommandResult) -> str:
    """The agent's one-line reason: its last line on stderr, or on stdout when a terminal
    merged the two (not ssh's own "Shared connection to ... closed.")."""
    for text in (answer.stderr, answer.stdout):
        lines = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith("Shared connection to ")]
        if lines:
            return lines[-1]
    return f"exit code {answer.rc}"


def read_answer(host: MailHost, answer: CommandResult | str, what: str) -> dict:
    """The agent's JSON answer, or MailctlError with its one-line reason."""
    if isinstance(answer, str):
        raise MailctlError(f"{host.name}: {answer}")
    # over SSH with a terminal (become), the host's stderr arrives within stdout: the answer
    # and the error are each the agent's last line
    if answer.rc != 0:
        raise MailctlError(f"{host.name}: {what} failed: {agent_error(answer)}")
    try:
        found = json.loads((answer.stdout.strip().splitlines() or [""])[-1])
    except json.JSONDecodeError as exc:
        raise MailctlError(f"{host.name}: the mailbox agent's answer is not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise MailctlError(f"{host.name}: the mailbox agent's answer is not a JSON object")
    if "users" in found:
        found["host"] = host.name  # the inventory's name, not the host's own
    if "manifest" in found:
        found["manifest"]["host"] = host.name
    return found


def run_agent(inv: Inventory, host: MailHost, users: list[str], command: str, *extra: str,
              vault: str | None = None, verbose: bool = False) -> dict:
    """Run the agent's command on the host; its JSON answer."""
    answers = run_scripts(inv.source, AGENT, {host.name: agent_args(host, users, command, *extra)},
                          vault_password_file=vault, verbose=verbose)
    return read_answer(host, answers[host.name], f"mailbox {command}")


def take_manifest(inv: Inventory, host: MailHost, users: list[str], *,
                  vault: str | None = None, verbose: bool = False) -> dict:
    return run_agent(inv, host, users, "manifest", vault=vault, verbose=verbose)


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write: {exc.strerror}") from None
