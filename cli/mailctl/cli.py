"""The mailctl command line: parse, call one function, print. Work lives in the modules."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from . import __version__
from . import sandbox as sb
from .checks import check_inventory
from .errors import InputError, MailctlError, ValidationFailed
from .inventory import Inventory
from .model import BACKENDS
from .passwords import hash_users
from .render import render_host, write_tree


class CliError(click.ClickException):
    """A mailctl error on its way out through Click: one line per problem, the exit code of
    the error (1: a host or a check failed, 2: bad input)."""

    def __init__(self, error: MailctlError):
        super().__init__(str(error))
        self.exit_code = error.exit_code
        # ValidationFailed is already one 'file: host: field: message' line per problem
        self.prefix = "" if isinstance(error, ValidationFailed) else "error: "

    def show(self, file=None) -> None:
        click.echo(f"{self.prefix}{self.message}", err=True)


class MailctlGroup(click.Group):
    """Turns mailctl's own errors into Click exceptions: never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MailctlError as exc:
            raise CliError(exc) from None


# Options more than one command takes, defined once.
backend_option = click.option("--backend", type=click.Choice(BACKENDS), default=None,
                              help="Mail store for this run, overriding mail_backend.")
verbose_option = click.option("-v", "--verbose", is_flag=True,
                              help="Pass Ansible's (or pytest's) own output through.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
ca_dir_option = click.option(
    "--ca-dir", type=click.Path(path_type=Path), default=None,
    help="Where the local CA and DKIM keys live (default: INVENTORY/.mailctl-ca; the "
         "sandbox's own for its inventory).")
users_option = click.option("-u", "--user", "users", multiple=True,
                            help="Only this address (repeatable; default: every user of the "
                                 "host).")


def inventory_options(func):
    """-i/--inventory, --vault-password-file, --limit and --backend, defined once."""

    @click.option("-i", "--inventory", "inventory", required=True,
                  type=click.Path(path_type=Path),
                  help="Ansible inventory: a file or a directory with group_vars/host_vars.")
    @click.option("--vault-password-file", type=click.Path(path_type=Path), default=None,
                  help="File holding the Ansible Vault password.")
    @click.option("-l", "--limit", "--host", "limit", default=None,
                  help="Only these hosts (an Ansible host pattern).")
    @backend_option
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
@json_option
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
    hash_users(hosts)  # every host's password hashes at once, on every core
    for host in hosts:
        files = render_host(host, topology)
        write_tree(files, output / host.name)
        click.echo(f"{host.name}: {len(files)} files -> {output / host.name}")


@main.command()
@inventory_options
@click.option("--skip-missing", is_flag=True,
              help="Do not fail when a validator is not installed here (it is reported).")
@json_option
def check(inv: Inventory, limit, backend, skip_missing: bool, as_json: bool) -> None:
    """Render, then run the real validators on the result: postfix check, postconf -n,
    doveconf -n, cyr_info conf-lint."""
    results = check_inventory(inv, limit, backend)
    failed = [r for r in results if r.ok is False]
    missing = [r for r in results if r.ok is None]
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results]))
    else:
        for r in results:
            click.echo(r.line(), err=r.ok is not True)
    if any(r.validator.startswith("sievec ") for r in failed):  # the inventory's fault
        raise InputError(f"{len(failed)} validator run(s) failed")
    if failed:
        raise MailctlError(f"{len(failed)} validator run(s) failed")
    if missing and not skip_missing:
        raise InputError(f"{len(missing)} validator(s) not installed here; install them or "
                         "pass --skip-missing")


@main.command()
@inventory_options
@click.option("--check", "check_mode", is_flag=True, help="Dry run: report what would change.")
@click.option("--diff", is_flag=True, help="Show file differences (never for secrets).")
@click.option("--forks", type=click.IntRange(min=1), default=None,
              help="Hosts deployed in parallel (Ansible's forks).")
@click.option("--serial", type=click.IntRange(min=1), default=None,
              help="Rolling waves of N hosts; a failed host stops the roll.")
@ca_dir_option
@verbose_option
@click.pass_context
def deploy(ctx, inv: Inventory, limit, backend, check_mode, diff, forks, serial, ca_dir,
           verbose) -> None:
    """Validate, then apply the configuration to the hosts with Ansible."""
    from .deploy import deploy as run_deploy

    vault = ctx.params.get("vault_password_file")
    run_deploy(inv, click.echo, limit=limit, backend=backend, check_mode=check_mode,
               diff=diff, verbose=verbose, vault=str(vault) if vault else None, forks=forks,
               ca_dir=sb.ca_dir_for(inv.source, ca_dir), serial=serial)


@main.command()
@inventory_options
@verbose_option
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


@main.command("certs")
@inventory_options
@json_option
@verbose_option
@click.pass_context
def certs_cmd(ctx, inv: Inventory, limit, backend, as_json: bool, verbose: bool) -> None:
    """List each host's installed certificate: names, issuer, expiry and time left; exit 1
    if one is expired, expires soon (mail_tls.min_days_left, or a sixth of its lifetime),
    lacks a name, or cannot be read."""
    from datetime import UTC, datetime

    from . import certs, runner

    hosts = inv.mail_hosts(limit, backend)
    vault = ctx.params.get("vault_password_file")
    rows = certs.check_hosts(
        {h.name: certs.expect(h) for h in hosts},
        lambda paths: runner.read_files(inv.source, paths, verbose=verbose,
                                        vault_password_file=str(vault) if vault else None),
        datetime.now(UTC))
    click.echo(certs.to_json(rows) if as_json else certs.table(rows), nl=False)
    failed = [r.host for r in rows if not r.ok]
    if failed:
        raise MailctlError(f"certificate check failed on {len(failed)} host(s): "
                           + ", ".join(failed))


@main.command("bans")
@inventory_options
@click.option("--unban", "unban", metavar="IP", default=None,
              help="Lift this address's bans in every jail of the selected hosts first.")
@json_option
@verbose_option
@click.pass_context
def bans_cmd(ctx, inv: Inventory, limit, backend, unban: str | None, as_json: bool,
             verbose: bool) -> None:
    """List fail2ban's current bans on each host: jail, address and when the ban ends (hosts
    with mail_bans off are listed, not contacted); with --unban, lift one address everywhere
    first. Exit 1 if a host cannot be read or fail2ban does not run there."""
    from . import bans, runner

    address = bans.unban_address(unban) if unban is not None else None
    hosts = inv.mail_hosts(limit, backend)
    vault = ctx.params.get("vault_password_file")
    rows = bans.collect(
        {h.name: h.bans_offenders for h in hosts},  # an mx without postscreen has no jails
        lambda commands: runner.run_commands(inv.source, commands, verbose=verbose,
                                             vault_password_file=str(vault) if vault else None),
        address)
    if as_json:
        click.echo(bans.to_json(rows, address), nl=False)
    else:
        if address is not None:
            click.echo(bans.unban_lines(rows, address), nl=False)
        click.echo(bans.table(rows), nl=False)
    failed = [r.host for r in rows if not r.ok]
    if failed:
        raise MailctlError(f"cannot read the bans on {len(failed)} host(s): "
                           + ", ".join(failed))


@main.group()
def mailbox() -> None:
    """Users' mail as their clients see it: take a manifest, compare two."""


@mailbox.command("manifest")
@inventory_options
@users_option
@click.option("-o", "--output", type=click.Path(path_type=Path, allow_dash=True),
              default="-", show_default=True, help="Where to write the manifest (JSON).")
@verbose_option
@click.pass_context
def mailbox_manifest(ctx, inv: Inventory, limit, backend, users, output: Path,
                     verbose: bool) -> None:
    """Read every mailbox of the host's users over IMAP and POP3, without their passwords,
    and write what a client sees: folders, subscriptions, UIDs, a hash of each message, flags,
    dates, quota and POP3 UIDLs. Reading changes nothing."""
    from . import mailbox as mb
    from .manifest_diff import summary

    host = mb.store_host(inv, limit, backend)
    chosen = mb.chosen_users(inv, host, users)
    vault = ctx.params.get("vault_password_file")
    manifest = mb.take_manifest(inv, host, chosen, vault=str(vault) if vault else None,
                                verbose=verbose)
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        mb.write_atomically(output, text)
        click.echo(f"{summary(manifest)} -> {output}", err=True)


@mailbox.command("release")
@inventory_options
@users_option
@verbose_option
@click.pass_context
def mailbox_release(ctx, inv: Inventory, limit, backend, users, verbose: bool) -> None:
    """Let in the mail a failed restore left paused in Postfix's queue (a re-run of the
    restore does this too, after finishing its work)."""
    from . import mailbox as mb

    host = mb.store_host(inv, limit, backend)
    chosen = mb.chosen_users(inv, host, users)
    vault = ctx.params.get("vault_password_file")
    answer = mb.run_agent(inv, host, chosen, "release", vault=str(vault) if vault else None,
                          verbose=verbose)
    released = answer.get("released") or []
    click.echo(f"{host.name}: " + (f"released {', '.join(released)}" if released
                                   else "no delivery was paused for these users"))


@mailbox.command("diff")
@click.argument("first", type=click.Path(path_type=Path))
@click.argument("second", type=click.Path(path_type=Path))
@click.option("--ignore-uids", is_flag=True,
              help="Match messages by content: ignore UIDs, UIDVALIDITY, UIDNEXT and POP3 "
                   "UIDLs (a copy made by IMAP APPEND).")
@click.option("-u", "--user", "users", multiple=True, help="Only this address (repeatable).")
def mailbox_diff(first: Path, second: Path, ignore_uids: bool, users) -> None:
    """Compare two manifests: one line per difference (A is FIRST, B is SECOND); exit 1 when
    they differ."""
    from .manifest_diff import ManifestError, diff, load, summary

    try:
        a, b = load(first), load(second)
    except ManifestError as exc:
        raise InputError(str(exc)) from None
    click.echo(f"A: {summary(a)}\nB: {summary(b)}")
    findings = diff(a, b, ignore_ids=ignore_uids, users=set(users) or None)
    for line in findings:
        click.echo(line)
    if findings:
        raise MailctlError(f"the manifests differ ({len(findings)} finding(s))")
    click.echo("the manifests are equal" + (" (UIDs ignored)" if ignore_uids else ""))


@main.command("backup")
@inventory_options
@click.option("--to", "to_dir", type=click.Path(path_type=Path), required=True,
              help="Directory on this machine that keeps the backups (one subdirectory each).")
@users_option
@verbose_option
@click.pass_context
def backup_cmd(ctx, inv: Inventory, limit, backend, to_dir: Path, users, verbose) -> None:
    """Back up the users' mail of one host (--host) while mail keeps arriving: the store's
    own copy, its manifest beside it, in a new directory under --to."""
    from . import backup as bk
    from . import mailbox as mb
    from .manifest_diff import summary

    host = mb.store_host(inv, limit, backend)
    chosen = mb.chosen_users(inv, host, users)
    vault = ctx.params.get("vault_password_file")
    done = bk.take_backup(inv, host, chosen, to_dir, vault=str(vault) if vault else None,
                          verbose=verbose)
    click.echo(f"backup: {summary(done.manifest)}, {done.meta['bytes']} bytes packed -> "
               f"{done.path}")


@main.command("restore")
@inventory_options
@click.option("--from", "from_dir", type=click.Path(path_type=Path), required=True,
              help="A backup, or the --to directory of `mailctl backup` (its newest backup "
                   "of --host is taken).")
@click.option("--to-host", default=None, help="Restore into this host instead of --host.")
@click.option("-u", "--user", "users", multiple=True,
              help="Only this address (repeatable; default: every user in the backup).")
@click.option("--force", is_flag=True,
              help="Also when the host holds mail the backup does not have (it is removed).")
@verbose_option
@click.pass_context
def restore_cmd(ctx, inv: Inventory, limit, backend, from_dir: Path, to_host, users, force,
                verbose) -> None:
    """Make the users' mail on a host what a backup holds, then prove it: the host's
    manifest must equal the backup's. Mail the backup lacks is never removed without
    --force."""
    from . import backup as bk
    from . import mailbox as mb

    found = bk.find_backup(from_dir, limit)
    target = mb.store_host(inv, to_host or limit or found.meta.get("host"), backend)
    chosen = sorted({u.lower() for u in users} or found.meta.get("users", []))
    mb.chosen_users(inv, target, tuple(chosen))
    vault = ctx.params.get("vault_password_file")
    findings, after = bk.restore(inv, found, target, chosen, force=force,
                                 vault=str(vault) if vault else None, verbose=verbose)
    for user, aside in sorted(after.get("kept_aside", {}).items()):
        click.echo(f"{user}: the mail this restore replaced is kept on {target.name} in {aside}")
    for line in findings:
        click.echo(line)
    if findings:
        raise MailctlError(f"{target.name}: restored, but its mail differs from the backup "
                           f"({len(findings)} finding(s))")
    click.echo(f"restored {len(chosen)} user(s) from {found.path} into {target.name}: "
               "the host's manifest equals the backup's")


@main.command("migrate")
@inventory_options
@click.option("--to", "to_backend", type=click.Choice(BACKENDS), default=None,
              help="The store to move the host's mail into (on the same host).")
@click.option("--domain", default=None,
              help="Move this domain's mail from --host to the mailstore the inventory now "
                   "stores it on (multi-host).")
@users_option
@ca_dir_option
@verbose_option
@click.pass_context
def migrate_cmd(ctx, inv: Inventory, limit, backend, to_backend: str | None,
                domain: str | None, users, ca_dir, verbose) -> None:
    """Move mail while it keeps arriving, with no message lost or duplicated, proven by the
    two manifests: a host's mail into its other store (--host H --to STORE; its store now is
    its mail_backend, or --backend), or a domain's mail to another mailstore (--host H
    --domain D, once the inventory puts D on its new mailstore)."""
    from .domain_move import move_domain
    from .migrate import migrate

    if (to_backend is None) == (domain is None):
        raise InputError("mailctl migrate: give either --to STORE (the host's own store "
                         "changes) or --domain D (the domain moves to another mailstore)")
    vault = ctx.params.get("vault_password_file")
    options = {"vault": str(vault) if vault else None, "verbose": verbose,
               "ca_dir": sb.ca_dir_for(inv.source, ca_dir)}
    if domain:
        done = move_domain(inv, limit, domain, users, click.echo, **options)
    else:
        done = migrate(inv, limit, backend, to_backend, users, click.echo, **options)
    click.echo("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in done.timings.items()))


@main.command("dns")
@inventory_options
@click.option("--domain", default=None, help="Only this domain (and the host records it uses).")
@click.option("--format", "output_format", type=click.Choice(["zone", "json"]), default="zone",
              show_default=True, help="Zone-file lines, or JSON.")
@ca_dir_option
def dns_cmd(inv: Inventory, limit, backend, domain, output_format, ca_dir) -> None:
    """Print the DNS records to publish for each mail domain: MX, A/AAAA, SPF, DKIM, DMARC,
    MTA-STS, TLS-RPT, SRV and TLSA (missing DKIM keys and local-CA certificates are made
    first, as a deploy would)."""
    from .dns import dns_report

    _print_dns(dns_report(inv, limit=limit, backend=backend, domain=domain,
                          ca_dir=sb.ca_dir_for(inv.source, ca_dir)), output_format)


def _print_dns(report, output_format: str) -> None:
    """What is missing on stderr, one line each; the records on stdout."""
    from .dns import to_json, to_zone

    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(to_json(report) if output_format == "json" else to_zone(report), nl=False)


@main.group()
def sandbox() -> None:
    """The embedded default: a local mail server in a container, ports on 127.0.0.1."""


@sandbox.command("up")
@backend_option
@verbose_option
def sandbox_up(backend, verbose) -> None:
    """Build the image if needed, start the container, deploy, smoke-test and send a
    message (the full suite stays one command away: mailctl verify)."""
    import time

    from .deploy import deploy as run_deploy

    marks = [time.monotonic()]
    sb.start(click.echo)
    marks.append(time.monotonic())
    inventory = sb.inventory()
    inv = Inventory(inventory)
    run_deploy(inv, click.echo, backend=backend, verbose=verbose, ca_dir=sb.CA_DIR)
    marks.append(time.monotonic())
    sb.smoke()
    host = inv.mail_hosts(None, backend)[0]
    alice, bob = host.users[0], host.users[1]
    subject = sb.demo_delivery(alice.address, alice.password, bob.address, bob.password)
    marks.append(time.monotonic())
    click.echo(f"\ndelivered: {alice.address} -> {bob.address} {subject!r}: sent on "
               f"127.0.0.1:{sb.PORTS[587]} (STARTTLS + AUTH), read back on "
               f"127.0.0.1:{sb.PORTS[993]} (IMAPS) and 127.0.0.1:{sb.PORTS[995]} (POP3S), "
               f"DKIM-signed for {alice.domain}")
    click.echo(f"up in {marks[-1] - marks[0]:.0f} s: container (and image) "
               f"{marks[1] - marks[0]:.0f} s, deploy {marks[2] - marks[1]:.0f} s, "
               f"ports, TLS and delivery {marks[3] - marks[2]:.0f} s")
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


@sandbox.command("dns")
@click.option("--format", "output_format", type=click.Choice(["zone", "json"]), default="zone",
              show_default=True)
def sandbox_dns(output_format) -> None:
    """Print the sandbox's DNS records (its DKIM key lives beside its CA)."""
    from .dns import dns_report

    _print_dns(dns_report(Inventory(sb.inventory()), ca_dir=sb.CA_DIR), output_format)


@sandbox.command("status")
@click.pass_context
def sandbox_status(ctx) -> None:
    """Say whether the sandbox container exists and runs (exit 1 if it does not run)."""

    st = sb.status()
    if not st.exists:
        click.echo(f"{sb.NAME}: not created (run `mailctl sandbox up`)")
        ctx.exit(1)
    click.echo(f"{sb.NAME}: {'running' if st.running else 'stopped'}; ports "
               + ", ".join(f"{i}->127.0.0.1:{o}" for i, o in st.ports.items()))
    ctx.exit(0 if st.running else 1)


@sandbox.command("down")
def sandbox_down() -> None:
    """Remove the sandbox container (the local CA is kept)."""

    click.echo(f"{sb.NAME}: removed" if sb.stop() else f"{sb.NAME}: nothing to remove")


@main.command("test")
@click.argument("scenario", required=False)
@click.option("--jobs", "-j", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Scenarios run at once, in lanes balanced by their CI times.")
def test_cmd(scenario: str | None, jobs: int) -> None:
    """Run molecule scenarios (all, or SCENARIO) from a mailctl checkout."""
    from .scenarios import run_scenarios

    durations = run_scenarios(scenario, click.echo, jobs)
    click.echo("scenario times:")
    base = durations.get("default")
    for name, seconds in durations.items():
        ratio = f"  ({seconds / base:.1f}x default)" if base and name != "default" else ""
        click.echo(f"  {name}: {seconds:.0f} s{ratio}")

if __name__ == "__main__":
    main()
