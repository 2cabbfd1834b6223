"""`mailctl init`: a new inventory for one all-in-one mail host, passwords in Ansible Vault.

`plan` checks the options and generates the passwords, `inventory_files` turns a plan into file
contents (no I/O), and `write_inventory` puts them on disk: all of it or nothing, never over
existing files, and only after mailctl's own validation accepted the result.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, MailctlError
from .model import BACKENDS
from .names import NameSyntaxError, normalize_address, normalize_domain, normalize_fqdn
from .validate import DEFAULTS, check_host

DEFAULT_LOCAL_PART = "admin"
VAULT_FILE = "group_vars/all/vault.yml"
_STORE = {"dovecot": "Dovecot", "cyrus": "Cyrus IMAP"}


@dataclass(frozen=True)
class Plan:
    """What init writes, decided and checked before anything touches the disk."""

    hostname: str
    backend: str
    domains: tuple[str, ...]
    users: tuple[str, ...]
    passwords: dict[str, str] = field(repr=False)  # address -> generated password
    vault_names: dict[str, str]  # address -> its Vault variable
    aliases: tuple[tuple[str, str], ...]  # (address, target)


def plan(hostname: str, domains: Sequence[str], backend: str = "dovecot",
         users: Sequence[str] = ()) -> Plan:
    """Normalise and check the options; raise InputError with one line on bad input."""
    if backend not in BACKENDS:
        raise InputError(f"--backend: {backend!r} is not a backend "
                         f"(choose {' or '.join(BACKENDS)})")
    if not domains:
        raise InputError("--domain: give at least one domain")
    host = _normal("--hostname", hostname, normalize_fqdn)
    doms = _unique(_normal("--domain", d, normalize_domain) for d in domains)
    if host in doms:
        raise InputError(f"--hostname: {host!r} is also a --domain; Postfix delivers its own "
                         f"host name locally, so use a name such as mail.{host}")
    addrs = _unique(_normal("--user", u, normalize_address) for u in users) \
        or [f"{DEFAULT_LOCAL_PART}@{doms[0]}"]
    for address in addrs:
        if address.split("@", 1)[1] not in doms:
            raise InputError(f"--user {address}: its domain is not one of the --domain values "
                             f"({', '.join(doms)})")
        if "{" in address:  # Ansible would read it as a Jinja template
            raise InputError(f"--user {address}: '{{' in an address is not supported here; "
                             "add such a user to the inventory by hand")
    # RFC 5321: every domain needs a postmaster; it goes to the first user unless it is one.
    aliases = tuple((f"postmaster@{d}", addrs[0]) for d in doms
                    if f"postmaster@{d}" not in addrs)
    result = Plan(host, backend, tuple(doms), tuple(addrs),
                  {a: secrets.token_urlsafe(18) for a in addrs},  # 24 characters
                  _vault_names(addrs), aliases)
    # The schema's own checks as a backstop: a plan it rejects is never written.
    _, findings = check_host(host, _variables(result, clear=True), [], None)
    if findings:
        raise InputError("; ".join(f"{f.field}: {f.message}" for f in findings))
    return result


def _normal(option: str, value: str, normalize) -> str:
    try:
        return normalize(value)
    except NameSyntaxError as exc:
        raise InputError(f"{option}: {exc}") from None


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))  # repeating an option is harmless: keep the first


def _vault_names(addresses: Sequence[str]) -> dict[str, str]:
    """vault_mail_password_alice_example_org; a suffix when two addresses fold to one name."""
    names: dict[str, str] = {}
    for address in addresses:
        base = "vault_mail_password_" + re.sub(r"[^a-z0-9]", "_", address)
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base}_{n}"
        names[address] = name
    return names


def _variables(p: Plan, *, clear: bool) -> dict:
    """The mail_* variables main.yml sets (with the clear passwords, for checking only)."""
    return {
        "mail_hostname": p.hostname,
        "mail_backend": p.backend,
        "mail_domains": list(p.domains),
        "mail_users": [{"address": a, "password": p.passwords[a] if clear
                        else "{{ " + p.vault_names[a] + " }}"} for a in p.users],
        "mail_aliases": [{"address": a, "to": t} for a, t in p.aliases],
        "mail_relayhost": DEFAULTS["mail_relayhost"],
        "mail_mynetworks": list(DEFAULTS["mail_mynetworks"]),
        "mail_message_size_limit": DEFAULTS["mail_message_size_limit"],
        "mail_tls": dict(DEFAULTS["mail_tls"]),
    }


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def inventory_files(p: Plan, vault_password: str) -> dict[str, str]:
    """Relative path -> content of every file of the new inventory (vault.yml encrypted)."""
    v = _variables(p, clear=False)
    users = "".join(f"  - address: {_q(u['address'])}\n    password: {_q(u['password'])}\n"
                    for u in v["mail_users"])
    aliases = "".join(f"\n  - address: {_q(a['address'])}\n    to: {_q(a['to'])}"
                      for a in v["mail_aliases"]) or " []"
    main = f"""---
# Written by `mailctl init` for one all-in-one mail host: Postfix + {_STORE[p.backend]}.
# Every setting is described in README.md ("The inventory"). After a change, run
# `mailctl validate` and `mailctl check` before `mailctl deploy`.

# The host's mail name (FQDN): Postfix greets with it and its TLS certificate is issued for
# it. Give it a DNS A/AAAA record, and point each domain's MX record at it.
mail_hostname: {_q(p.hostname)}

# The mail store: dovecot or cyrus. Switching later works only while the store holds no mail.
mail_backend: {p.backend}

# The domains this host receives mail for.
mail_domains:
{"".join(f"  - {_q(d)}{chr(10)}" for d in p.domains)}
# Mailboxes; users log in with the full address. The passwords are in vault.yml, encrypted
# with Ansible Vault. Optional per user: quota (e.g. 2G) and aliases (a list of addresses).
mail_users:
{users}
# More addresses delivered to users; address "@domain" is a catch-all. Every domain needs a
# postmaster (RFC 5321).
mail_aliases:{aliases}

# A smarthost for outgoing mail ("[smtp.example.net]:587"); "" delivers directly.
mail_relayhost: {_q(v["mail_relayhost"])}

# Networks that may send through this host without logging in. Keep it to loopback: anything
# wider is trusted to relay anywhere.
mail_mynetworks:
{"".join(f"  - {_q(n)}{chr(10)}" for n in v["mail_mynetworks"])}
# The largest message accepted, in bytes or with K, M, G.
mail_message_size_limit: {v["mail_message_size_limit"]}

# TLS: selfsigned = a certificate from mailctl's own CA (kept in .mailctl-ca in this
# directory); or mode: files with cert:, key: (and ca:), files on this machine; or, for a
# certificate that phones and desktop clients trust, from Let's Encrypt (renewed on the
# host; port 80 must reach it while a certificate is issued):
#   mail_tls: {{mode: acme, directory: letsencrypt, contact: you@example.org}}
mail_tls:
  mode: {v["mail_tls"]["mode"]}
"""
    hosts = f"""---
# The mail host. mailctl deploy reaches it over SSH and becomes root with sudo: set
# ansible_host (its address) and ansible_user (an SSH login that may sudo) below.
all:
  hosts:
    {p.hostname}:
      # ansible_host: 192.0.2.10
      # ansible_user: admin
"""
    host_vars = f"""---
# Settings for {p.hostname} alone; they take precedence over group_vars/all/main.yml.
# E.g. mail_backend: cyrus, or ansible_port: 2222.
"""
    vault = ("---\n# The users' passwords, referenced from main.yml. View or change them with\n"
             "# ansible-vault view|edit --vault-password-file FILE group_vars/all/vault.yml\n"
             + "".join(f"{p.vault_names[a]}: {_q(p.passwords[a])}\n" for a in p.users))
    return {
        "hosts.yml": hosts,
        "group_vars/all/main.yml": main,
        VAULT_FILE: _encrypt(vault, vault_password),
        f"host_vars/{p.hostname}.yml": host_vars,
    }


def _encrypt(text: str, password: str) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return vault.encrypt(text).decode("ascii")


def vault_password_path(directory: Path) -> Path:
    """Beside the inventory, never inside it: Ansible would read it as inventory, and it
    must not be committed along with the inventory."""
    return directory.parent / f"{directory.name}.vault-pass"


def write_inventory(directory: Path, p: Plan) -> Path:
    """Write the inventory to `directory` (absent or empty) and its vault password file;
    return the latter's path. On any failure nothing is left behind."""
    target = Path(os.path.abspath(directory))  # '.' has no name; abspath keeps symlinks
    password_file = vault_password_path(target)
    # Messages name paths as the user wrote them, unless that has no name ('.', '..').
    shown = vault_password_path(directory) if directory.name not in ("", "..") \
        else password_file
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{directory}: exists and is not an empty directory; "
                         "mailctl init never overwrites")
    target.parent.mkdir(parents=True, exist_ok=True)
    vault_password = secrets.token_urlsafe(32)
    try:
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{shown}: already exists; mailctl init "
                         "never overwrites (move it away or choose another directory)") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot create: "
                         f"{exc.strerror}") from None
    # Built beside the target (same file system), checked, then moved into place.
    staging = target.parent / f".{target.name}.mailctl-init-{secrets.token_hex(4)}"
    try:
        with os.fdopen(fd, "w") as out:
            out.write(vault_password + "\n")
        staging.mkdir()
        for relative, content in inventory_files(p, vault_password).items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        _check_written(staging, password_file, p)
        if target.exists():
            # Keep an existing empty directory (its owner, mode, a shell sitting in it).
            for entry in staging.iterdir():
                entry.rename(target / entry.name)
            staging.rmdir()
        else:
            staging.rename(target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        password_file.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(f"{directory}: cannot write the inventory: {exc.strerror}"
                             ) from None
        raise
    return shown


def _check_written(root: Path, password_file: Path, p: Plan) -> None:
    """Load the files as deploy will (Ansible, Vault, the schema) and compare with the plan:
    init must never leave an inventory that does not say what was asked."""
    from .inventory import Inventory

    try:
        hosts, _ = Inventory(root, str(password_file)).mail_plan()
    except MailctlError as exc:
        raise MailctlError(f"the generated inventory does not validate (a mailctl bug): "
                           f"{exc}") from None
    got = {(u.address, u.password) for h in hosts for u in h.users}
    if [h.name for h in hosts] != [p.hostname] or got != set(p.passwords.items()):
        raise MailctlError("the generated inventory does not resolve to the requested "
                           "host and users (a mailctl bug)")
