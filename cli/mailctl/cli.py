"""The mailctl command line: parse, call one function, print. Work lives in the modules."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from . import __version__
from .checks import check_tree
from .errors import InputError, MailctlError, ValidationFailed
from .inventory import Inventory
from .model import BACKENDS
from .render import render_host, write_tree
from .runner import HostStats, run_site


class MailctlGroup(click.Group):
    """Turns mailctl's own errors into one clean message and the right exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            click.echo(str(exc), err=True)  # already one 'file: host: field: message' a line
            sys.exit(exc.exit_code)
        except MailctlError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


def inventory_options(func):
    """-i/--inventory, --vault-password-file, --limit and --backend, defined once."""

    @click.option("-i", "--inventory", "inventory", required=True,
                  type=click.Path(path_type=Path),
                  help="Ansible inventory: a file or a directory with group_vars/host_vars.")
    @click.option("--vault-password-file", type=click.Path(path_type=Path), default=None,
                  help="File holding the Ansible Vault password.")
    @click.option("-l", "--limit", "--host", "limit", default=None,
                  help="Only these hosts (an Ansible host pattern).")
    @click.option("--backend", type=click.Choice(BACKENDS), default=None,
                  help="Mail store for this run, overriding mail_backend.")
    @functools.wraps(func)
    def wrapper(inventory, vault_password_file, limit, backend, **kwargs):
        inv = Inventory(inventory, str(vault_password_file) if vault_password_file else None)
        return func(inv=inv, limit=limit, backend=backend, **kwargs)

    return wrapper


@click.group(cls=MailctlGroup, context_settings={"auto_envvar_prefix": "MAILCTL",
                                                 "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mailctl")
def main() -> None:
    """Deploy and verify Postfix + Dovecot or Cyrus IMAP from one Ansible inventory."""


@main.command()
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def validate(inv: Inventory, limit, backend, as_json: bool) -> None:
    """Check the inventory's mail variables; touch no host."""
    hosts, topology = inv.mail_plan(limit, backend)
    if as_json:
        click.echo(json.dumps({"valid": True, "hosts": [h.name for h in hosts]}))
    else:
        for h in hosts:
            if h.kind == "mx":
                click.echo(f"{h.name}: ok (mx edge relay, {h.platform}, "
                           f"{len(topology.domains)} domains relayed)")
                continue
            click.echo(f"{h.name}: ok ({h.backend}, {h.kind}, {h.platform}, "
                       f"{len(h.domains)} domains, {len(h.users)} users)")


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--hostname", required=True, help="The mail host's name (FQDN).")
@click.option("--domain", "domains", multiple=True, required=True,
              help="A domain to receive mail for (repeatable).")
@click.option("--backend", type=click.Choice(BACKENDS), default="dovecot", show_default=True)
@click.option("--user", "users", multiple=True,
              help="A mailbox address (repeatable; default: admin@ the first domain).")
def init(directory: Path, hostname: str, domains: tuple[str, ...], backend: str,
         users: tuple[str, ...]) -> None:
    """Write a new inventory for one all-in-one mail host, passwords in Ansible Vault."""
    import shlex

    from .scaffold import VAULT_FILE, plan, write_inventory

    p = plan(hostname, domains, backend, users)
    password_file = write_inventory(directory, p)
    inv, pw = shlex.quote(str(directory)), shlex.quote(str(password_file))
    opts = f"-i {inv} --vault-password-file {pw}"
    click.echo(f"wrote {directory}: {p.hostname} ({backend}), {len(p.domains)} domain(s), "
               f"{len(p.users)} user(s): {', '.join(p.users)}")
    click.echo(f"vault password: {password_file} (mode 0600, outside the inventory; keep it "
               "safe and out of version control)")
    click.echo(f"the users' passwords: ansible-vault view --vault-password-file {pw} "
               f"{shlex.quote(str(directory / VAULT_FILE))}")
    click.echo(f"next: set ansible_host and ansible_user in {directory / 'hosts.yml'}, then\n"
               f"  mailctl validate {opts}\n"
               f"  mailctl check {opts}\n"
               f"  mailctl deploy {opts} --check --diff\n"
               f"  mailctl deploy {opts}\n"
               f"  mailctl verify {opts}")


@main.command()
@inventory_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("rendered"),
              show_default=True, help="Directory that receives one tree per host.")
def render(inv: Inventory, limit, backend, output: Path) -> None:
    """Write each host's configuration tree (OUTPUT/HOST/etc/postfix/main.cf, ...)."""
    hosts, topology = inv.mail_plan(limit, backend)
    for host in hosts:
        files = render_host(host, topology)
        write_tree(files, output / host.name)
        click.echo(f"{host.name}: {len(files)} files -> {output / host.name}")


@main.command()
@inventory_options
@click.option("--skip-missing", is_flag=True,
              help="Do not fail when a validator is not installed here (it is reported).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def check(inv: Inventory, limit, backend, skip_missing: bool, as_json: bool) -> None:
    """Render, then run the real validators on the result: postfix check, postconf -n,
    doveconf -n, cyr_info conf-lint."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mailctl-check-") as tmp:
        hosts, topology = inv.mail_plan(limit, backend)
        for host in hosts:
            root = Path(tmp) / host.name
            write_tree(render_host(host, topology), root)
            results.extend(check_tree(host, root))
    failed = [r for r in results if r.ok is False]
    missing = [r for r in results if r.ok is None]
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results]))
    else:
        for r in results:
            click.echo(r.line(), err=r.ok is not True)
    if failed:
        raise MailctlError(f"{len(failed)} validator run(s) failed")
    if missing and not skip_missing:
        raise InputError(f"{len(missing)} validator(s) not installed here; install them or "
                         "pass --skip-missing")


def _deploy(inventory: Path, inv: Inventory, *, limit, backend, check_mode=False, diff=False,
            verbose=False, vault=None, forks=None, ca_dir: Path | None = None,
            serial: int | None = None) -> None:
    hosts, _ = inv.mail_plan(limit, backend)  # bad input: exit 2 before any host is touched
    waves = f" in waves of {serial}" if serial else ""
    click.echo(f"deploying {len(hosts)} host(s){waves}: {', '.join(h.name for h in hosts)}")
    extravars: dict = {}
    if serial:
        extravars["mail_common_serial"] = serial
    if backend:
        extravars["mail_common_backend_override"] = backend
    if ca_dir:
        extravars["mail_common_ca_dir"] = str(ca_dir)

    def progress(host: str, stats: HostStats, event: str) -> None:
        if event == "changed" and not verbose:
            # one line per change or failure, not a wall of Ansible output
            if stats.task:
                click.echo(f"  {host}: [{stats.ok} ok, {stats.changed} changed] {stats.task}")
        elif event in ("runner_on_failed", "runner_on_unreachable"):
            click.echo(f"  {host}: FAILED {stats.errors[-1] if stats.errors else ''}", err=True)

    def show_diff(host: str, text: str) -> None:
        if not verbose:  # with -v, Ansible prints its own diff
            click.echo(f"  {host}: diff\n" + "\n".join("    " + line
                                                       for line in text.rstrip().splitlines()))

    result = run_site(inventory, limit=limit, extravars=extravars, check=check_mode, diff=diff,
                      verbose=verbose, vault_password_file=vault, forks=forks,
                      on_progress=progress, on_diff=show_diff)
    _summary([h.name for h in hosts], result)
    if result.failed_hosts or result.status != "successful":
        if result.failed_hosts:
            skipped = [h.name for h in hosts if h.name not in result.hosts]
            stop = (f"; the roll stopped there, not deployed: {', '.join(skipped)}"
                    if serial and skipped else "")
            raise MailctlError(f"deploy failed on: {', '.join(result.failed_hosts)}{stop}")
        raise MailctlError(f"the Ansible run {result.status}: {result.detail or 'no detail'}")


def _summary(names: list[str], result) -> None:
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
    click.echo("summary:")
    for _, name, state, detail in sorted(rows):
        click.echo(f"  {(name + ':').ljust(width + 1)} {state.ljust(11)}  {detail}".rstrip())
    count = {k: sum(1 for r in rows if r[2] == k) for k in ("ok", "FAILED", "UNREACHABLE",
                                                             "NOT RUN")}
    changed = sum(1 for n in names if n in result.hosts and result.hosts[n].changed)
    click.echo(f"  {len(names)} host(s): {count['ok']} ok ({changed} changed), "
               f"{count['FAILED']} failed, {count['UNREACHABLE']} unreachable, "
               f"{count['NOT RUN']} not run")


@main.command()
@inventory_options
@click.option("--check", "check_mode", is_flag=True, help="Dry run: report what would change.")
@click.option("--diff", is_flag=True, help="Show file differences (never for secrets).")
@click.option("--forks", type=click.IntRange(min=1), default=None,
              help="Hosts deployed in parallel (Ansible's forks).")
@click.option("--serial", type=click.IntRange(min=1), default=None,
              help="Rolling waves of N hosts; a failed host stops the roll.")
@click.option("--ca-dir", type=click.Path(path_type=Path), default=None,
              help="Where the local CA lives (default: INVENTORY/.mailctl-ca).")
@click.option("-v", "--verbose", is_flag=True, help="Pass Ansible's own output through.")
@click.pass_context
def deploy(ctx, inv: Inventory, limit, backend, check_mode, diff, forks, serial, ca_dir,
           verbose) -> None:
    """Validate, then apply the configuration to the hosts with Ansible."""
    params = ctx.params
    vault = params.get("vault_password_file")
    _deploy(inv.source, inv, limit=limit, backend=backend, check_mode=check_mode, diff=diff,
            verbose=verbose, vault=str(vault) if vault else None, forks=forks, ca_dir=ca_dir,
            serial=serial)


@main.command()
@inventory_options
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def verify(ctx, inv: Inventory, limit, backend, verbose) -> None:
    """Run the testinfra suite: services, listeners, TLS and the mail path end to end."""
    from .verify_runner import run_verify

    hosts, _ = inv.mail_plan(limit, backend)
    checked = [h.name for h in hosts if h.kind != "mx"]
    for h in hosts:
        if h.kind == "mx":
            # the suite checks a host with a store and users; edge relays are proven by the
            # molecule scenario multihost (routes, TLS between hosts, refusals, queueing)
            click.echo(f"{h.name}: not verified here (group mx: no store, no users)")
    if not checked:
        raise InputError("no host to verify: every selected host is in group mx")
    vault = ctx.params.get("vault_password_file")
    code = run_verify(inv.source, limit=",".join(checked), backend=backend,
                      vault_password_file=str(vault) if vault else None, verbose=verbose)
    if code != 0:
        raise MailctlError("verification failed (see the failing checks above)")
    click.echo(f"verify: all checks passed on {len(checked)} host(s)")


@main.group()
def sandbox() -> None:
    """The embedded default: a local mail server in a container, ports on 127.0.0.1."""


@sandbox.command("up")
@click.option("--backend", type=click.Choice(BACKENDS), default=None)
@click.option("-v", "--verbose", is_flag=True)
def sandbox_up(backend, verbose) -> None:
    """Build the image if needed, start the container, deploy, smoke-test and send a
    message (the full suite stays one command away: mailctl verify)."""
    from . import sandbox as sb

    sb.start(click.echo)
    inventory = sb.inventory()
    inv = Inventory(inventory)
    _deploy(inventory, inv, limit=None, backend=backend, verbose=verbose, ca_dir=sb.CA_DIR)
    sb.smoke()
    host = inv.mail_hosts(None, backend)[0]
    alice, bob = host.users[0], host.users[1]
    subject = sb.demo_delivery(alice.address, alice.password, bob.address, bob.password)
    click.echo(f"\ndelivered: {alice.address} -> {bob.address} {subject!r}: sent on "
               f"127.0.0.1:{sb.PORTS[587]} (STARTTLS + AUTH), read back on "
               f"127.0.0.1:{sb.PORTS[993]} (IMAPS) and 127.0.0.1:{sb.PORTS[995]} (POP3S)")
    click.echo(_sandbox_details(host, sb, inventory, backend))


def _sandbox_details(host, sb, inventory: Path, backend: str | None) -> str:
    user = host.users[0]
    ports = "  ".join(f"{inside}->127.0.0.1:{outside}" for inside, outside in sb.PORTS.items())
    return (f"\nThe mailctl sandbox is up ({host.backend}).\n"
            f"  server name  {host.hostname} (add '127.0.0.1 {host.hostname}' to /etc/hosts "
            f"for clients that check it)\n"
            f"  ports        {ports}\n"
            f"  user         {user.address}  password {user.password}  (sandbox only)\n"
            f"  CA file      {sb.CA_DIR / 'ca.crt'}\n"
            f"  try          swaks --server 127.0.0.1:{sb.PORTS[587]} --tls "
            f"--tls-ca-path {sb.CA_DIR / 'ca.crt'} --auth-user {user.address} "
            f"--auth-password {user.password} --from {user.address} --to {user.address}\n"
            f"               curl --ssl-reqd --cacert {sb.CA_DIR / 'ca.crt'} --resolve "
            f"{host.hostname}:{sb.PORTS[993]}:127.0.0.1 -u {user.address}:{user.password} "
            f"'imaps://{host.hostname}:{sb.PORTS[993]}/INBOX?ALL'\n"
            f"  full checks  mailctl verify -i {inventory}"
            f"{' --backend ' + backend if backend else ''}  (the whole suite, about 30 s)")


@sandbox.command("status")
def sandbox_status() -> None:
    """Say whether the sandbox container exists and runs."""
    from . import sandbox as sb

    st = sb.status()
    if not st.exists:
        click.echo(f"{sb.NAME}: not created (run `mailctl sandbox up`)")
        sys.exit(1)
    click.echo(f"{sb.NAME}: {'running' if st.running else 'stopped'}; ports "
               + ", ".join(f"{i}->127.0.0.1:{o}" for i, o in st.ports.items()))
    sys.exit(0 if st.running else 1)


@sandbox.command("down")
def sandbox_down() -> None:
    """Remove the sandbox container (the local CA is kept)."""
    from . import sandbox as sb

    click.echo(f"{sb.NAME}: removed" if sb.stop() else f"{sb.NAME}: nothing to remove")


@main.command("test")
@click.argument("scenario", required=False)
def test_cmd(scenario: str | None) -> None:
    """Run molecule scenarios (all, or SCENARIO) from a mailctl checkout."""
    import subprocess

    from .paths import share_dir

    root = share_dir()
    if not (root / "molecule").is_dir():
        raise InputError("molecule scenarios ship with the source checkout, not the wheel")
    names = [scenario] if scenario else sorted(
        p.parent.name for p in (root / "molecule").glob("*/molecule.yml")
        if not (p.parent / "NOT_IN_CI").exists())
    if not scenario:
        for held in sorted((root / "molecule").glob("*/NOT_IN_CI")):
            reason = held.read_text().strip().splitlines()
            click.echo(f"not run: {held.parent.name} ({reason[2] if len(reason) > 2 else ''}"
                       f" ... see {held.relative_to(root)})")
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    import time

    durations: dict[str, float] = {}
    times_file = os.environ.get("MAILCTL_SCENARIO_TIMES")  # scripts/test's timing table
    for name in names:
        click.echo(f"== molecule test -s {name}")
        started = time.monotonic()
        code = subprocess.run(["molecule", "test", "-s", name], cwd=root, env=env,
                              check=False).returncode
        durations[name] = time.monotonic() - started
        if times_file:
            with open(times_file, "a", encoding="utf-8") as handle:
                handle.write(f"{name} {durations[name]:.0f}\n")
        if code != 0:
            raise MailctlError(f"molecule scenario {name} failed")
    click.echo("scenario times:")
    base = durations.get("default")
    for name, seconds in durations.items():
        ratio = f"  ({seconds / base:.1f}x default)" if base and name != "default" else ""
        click.echo(f"  {name}: {seconds:.0f} s{ratio}")

if __name__ == "__main__":
    main()
