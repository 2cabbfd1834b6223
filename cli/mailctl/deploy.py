"""`mailctl deploy` (and the sandbox's deploy): validate, run the playbook through the one
runner adapter, report each change or failure as it happens, then one aligned summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .acme import check_directories
from .errors import MailctlError
from .inventory import Inventory
from .runner import HostStats, RunResult, run_site

Echo = Callable[..., None]  # click.echo's signature: echo(text, err=False)


def deploy(inv: Inventory, echo: Echo, *, limit: str | None = None,
           backend: str | None = None, check_mode: bool = False, diff: bool = False,
           verbose: bool = False, vault: str | None = None, forks: int | None = None,
           ca_dir: Path | None = None, serial: int | None = None,
           migrating: bool = False) -> None:
    """Deploy the inventory's hosts; raises MailctlError naming the failed hosts."""
    hosts, _ = inv.mail_plan(limit, backend)  # bad input: exit 2 before any host is touched
    check_directories(inv, hosts)  # and so is an ACME directory that does not answer
    waves = f" in waves of {serial}" if serial else ""
    echo(f"deploying {len(hosts)} host(s){waves}: {', '.join(h.name for h in hosts)}")
    extravars: dict = {}
    if serial:
        extravars["mail_common_serial"] = serial
    if backend:
        extravars["mail_common_backend_override"] = backend
    if ca_dir:
        extravars["mail_common_ca_dir"] = str(ca_dir)
    if migrating:  # mailctl migrate has copied the mail: the switch of store may go ahead
        extravars["mail_common_migrating"] = True

    def progress(host: str, stats: HostStats, event: str) -> None:
        if event == "changed" and not verbose:
            # one line per change or failure, not a wall of Ansible output
            if stats.task:
                echo(f"  {host}: [{stats.ok} ok, {stats.changed} changed] {stats.task}")
        elif event in ("runner_on_failed", "runner_on_unreachable"):
            echo(f"  {host}: FAILED {stats.errors[-1] if stats.errors else ''}", err=True)

    def show_diff(host: str, text: str) -> None:
        if not verbose:  # with -v, Ansible prints its own diff
            echo(f"  {host}: diff\n" + "\n".join("    " + line
                                                 for line in text.rstrip().splitlines()))

    result = run_site(inv.source, limit=limit, extravars=extravars, check=check_mode,
                      diff=diff, verbose=verbose, vault_password_file=vault, forks=forks,
                      on_progress=progress, on_diff=show_diff)
    echo(summary([h.name for h in hosts], result))
    if result.failed_hosts or result.status != "successful":
        if result.failed_hosts:
            skipped = [h.name for h in hosts if h.name not in result.hosts]
            stop = (f"; the roll stopped there, not deployed: {', '.join(skipped)}"
                    if serial and skipped else "")
            raise MailctlError(f"deploy failed on: {', '.join(result.failed_hosts)}{stop}")
        raise MailctlError(f"the Ansible run {result.status}: {result.detail or 'no detail'}")


def summary(names: list[str], result: RunResult) -> str:
    """One aligned line per host, failures first, then the totals: readable at 50 hosts."""
    width = max(len(n) for n in names)
    rows = []
    for name in names:
        s = result.hosts.get(name)
        if s is None:
            rows.append((2, name, "NOT RUN", ""))
            continue
        state = "UNREACHABLE" if s.unreachable else ("FAILED" if s.failed else "ok")
        platform = f"  [{s.platform}]" if s.platform else ""
        rows.append((0 if state != "ok" else 1, name, state,
                     f"ok={s.ok} changed={s.changed} failed={s.failed}{platform}"))
    lines = ["summary:"]
    for _, name, state, detail in sorted(rows):
        lines.append(f"  {(name + ':').ljust(width + 1)} {state.ljust(11)}  {detail}".rstrip())
    count = {k: sum(1 for r in rows if r[2] == k) for k in ("ok", "FAILED", "UNREACHABLE",
                                                             "NOT RUN")}
    changed = sum(1 for n in names if n in result.hosts and result.hosts[n].changed)
    lines.append(f"  {len(names)} host(s): {count['ok']} ok ({changed} changed), "
                 f"{count['FAILED']} failed, {count['UNREACHABLE']} unreachable, "
                 f"{count['NOT RUN']} not run")
    return "\n".join(lines)
