"""The mailctl command line: parse, call one function, print. Work lives in the modules."""

from __future__ import annotations

import functools
import json
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
    hosts = inv.mail_hosts(limit, backend)
    if as_json:
        click.echo(json.dumps({"valid": True, "hosts": [h.name for h in hosts]}))
    else:
        for h in hosts:
            click.echo(f"{h.name}: ok ({h.backend}, {h.role}, {h.platform}, "
                       f"{len(h.domains)} domains, {len(h.users)} users)")


@main.command()
@inventory_options
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("rendered"),
              show_default=True, help="Directory that receives one tree per host.")
def render(inv: Inventory, limit, backend, output: Path) -> None:
    """Write each host's configuration tree (OUTPUT/HOST/etc/postfix/main.cf, ...)."""
    for host in inv.mail_hosts(limit, backend):
        files = render_host(host)
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
        # cyr_info drops to the cyrus user: it must be able to reach the rendered tree.
        # Files holding secrets stay 0600 (write_tree), so only the layout is opened up.
        Path(tmp).chmod(0o755)
        for host in inv.mail_hosts(limit, backend):
            root = Path(tmp) / host.name
            write_tree(render_host(host), root)
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


if __name__ == "__main__":
    main()
