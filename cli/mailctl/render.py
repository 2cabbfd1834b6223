"""Render one host's configuration files from templates/ — pure and deterministic.

The same function serves `mailctl render` and the Ansible roles (through the mailctl_files
filter), so what render writes is byte for byte what deploy installs (given the facts a
deploy adds: the release, and the resolvers OpenDKIM is told).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from . import components, platforms
from .components import Component
from .model import MailHost
from .passwords import dovecot_hash
from .paths import templates_dir
from .sieve import render_script
from .topology import NO_TOPOLOGY, Topology

# Mozilla "intermediate" (v5.7) TLS 1.2 cipher suites; TLS 1.3 suites are all acceptable.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))


@dataclass(frozen=True)
class RenderedFile:
    component: str
    path: str  # absolute path on the host
    content: str
    owner: str
    group: str
    mode: str
    secret: bool  # holds password hashes or keys: never shown in a diff or log
    template: str

    def as_dict(self) -> dict[str, Any]:
        return {"component": self.component, "path": self.path, "content": self.content,
                "owner": self.owner, "group": self.group, "mode": self.mode,
                "secret": self.secret, "template": self.template}


class SettingWriter:
    """Writes `name = value` lines, letting the user's raw overrides replace values in place;
    `rest()` returns the overrides the template did not mention, appended at the end."""

    def __init__(self, overrides: Mapping[str, Any], separator: str, bools: tuple[str, str]):
        self._overrides, self._sep, self._bools = dict(overrides), separator, bools
        self._used: set[str] = set()

    def _fmt(self, value: Any) -> str:
        if isinstance(value, bool):
            return self._bools[0] if value else self._bools[1]
        if isinstance(value, (list, tuple)):
            return " ".join(self._fmt(v) for v in value)
        return str(value)

    def __call__(self, name: str, value: Any) -> str:
        self._used.add(name)
        value = self._overrides.get(name, value)
        text = self._fmt(value)
        return f"{name}{self._sep}{text}".rstrip() if text else f"{name}{self._sep}".rstrip()

    def rest(self) -> str:
        lines = [self(name, value) for name, value in self._overrides.items()
                 if name not in self._used]
        return "\n".join(lines)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value))  # a word for sh
    env.filters["to_json"] = json.dumps  # a YAML scalar that needs no quoting rules
    return env


def header(template: str) -> str:
    """The first line of every rendered file (after the file's comment sign)."""
    return (f"Managed by mailctl from {template} — local edits are overwritten on the next "
            "deploy.")


def tls_paths(host: MailHost) -> dict[str, str]:
    """Where the host's certificate (a chain in mode acme), key and trusted CA certificates
    are installed, and in mode acme its directory's CA and DNS hook (the one place their
    names are made)."""
    paths = platforms.profile(host.platform, host.release)["paths"]
    tls_dir = paths["tls_dir"]
    found = {"cert": f"{tls_dir}/{host.hostname}.crt", "key": f"{tls_dir}/{host.hostname}.key",
             "ca": f"{tls_dir}/ca.crt"}
    if host.tls.acme:
        if not host.tls.ca_src:  # a public CA: the platform's bundle
            found["ca"] = paths["ca_bundle"]
        found["directory_ca"] = f"{tls_dir}/acme-directory-ca.crt" if host.tls.directory_ca else ""
        found["dns_hook"] = f"{paths['state_dir']}/acme-dns-hook" if host.tls.dns_hook else ""
    return found


def cron_schedule(seconds: int, seed: str) -> str:
    """A crontab time for a check every `seconds` (cron counts minutes): the largest step
    that divides an hour or a day and is not longer; a minute from `seed` spreads hosts."""
    minutes = max(1, seconds // 60)
    if minutes < 60:
        step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= minutes)
        return f"*/{step} * * * *"
    spread = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    minute = spread % 60
    hours = min(24, minutes // 60)
    if hours == 24:
        return f"{minute} {spread // 60 % 24} * * *"
    step = max(d for d in (1, 2, 3, 4, 6, 8, 12) if d <= hours)
    return f"{minute} */{step} * * *"


def host_components(host: MailHost) -> list[Component]:
    """The registry's components for this host, resolved for its platform and kind."""
    return components.for_host(host.platform, host.kind, host.backend or "",
                               platforms.names(host.platform, host.release),
                               lambda flag: bool(getattr(host, flag)))


def render_host(host: MailHost, topology: Topology = NO_TOPOLOGY) -> list[RenderedFile]:
    """Every file this host needs, rendered, in registry order. The topology (routes to the
    mailstore hosts) matters to hosts in group mx or mailstore only."""
    plat = platforms.profile(host.platform, host.release)
    env = _environment()
    files = []
    picked = host_components(host)
    for component in picked:
        for entry in component.files:
            context = _context(host, plat, topology, picked)
            # The header names the template, never mailctl's version: an upgrade that
            # changes no output must change no file (and reload no service) on any host.
            context["header"] = header(entry["template"])
            text = env.get_template(entry["template"]).render(**context)
            files.append(RenderedFile(
                component=component.name,
                path=entry["dest"],
                content=text,
                owner=entry["owner"],
                group=entry["group"],
                mode=entry.get("mode", "0644"),
                secret=bool(entry.get("secret", False)),
                template=entry["template"],
            ))
    return files


def _context(host: MailHost, plat: dict[str, Any], topology: Topology,
             picked: list[Component]) -> dict[str, Any]:
    paths = plat["paths"]
    routes = topology.routes_for(host)
    return {
        "host": host,
        "platform": plat,
        "paths": paths,
        "users": plat["users"],
        **{f"tls_{k}": v for k, v in tls_paths(host).items()},
        "tls_ciphers": INTERMEDIATE_CIPHERS,
        "topology": topology,
        # the other mx/mailstore hosts, never held up: peers of hosts in those groups only
        # (an all-in-one host's files must not depend on what else the inventory holds)
        "peers": topology.peers if host.kind != "allinone" else (),
        "routes": routes,
        "route_stores": tuple(dict.fromkeys(r.store for r in routes)),
        "postfix": SettingWriter(host.postfix_overrides, " = ", ("yes", "no")),
        "dovecot": SettingWriter(host.dovecot_overrides, " = ", ("yes", "no")),
        "cyrus": SettingWriter(host.cyrus_overrides, ": ", ("yes", "no")),
        "user_hash": lambda user: user.password_hash or dovecot_hash(
            user.password, host.hostname, user.address),
        "sender_logins": _sender_logins(host),
        "sieve_filters": _sieve_filters(host),
        # the services that serve the certificate, and how each takes a renewed one
        "tls_services": [(c.service, c.tls_reload) for c in picked if c.tls_reload],
        "cron_schedule": cron_schedule,
        # each component's systemd units, whose journal fail2ban reads
        "journals": {c.name: list(c.journal) for c in picked},
    }


def _sieve_filters(host: MailHost) -> dict[str, Any]:
    """Every user's script named "mailctl" (None: the user has none, so a deploy removes
    it) and whether the inventory owns the user's filters (roles/sieve installs them)."""
    return {u.address: {"script": render_script(u.sieve, u.address) if u.sieve else None,
                        "owned": bool(u.sieve and u.sieve.owned)}
            for u in host.users}


def _sender_logins(host: MailHost) -> list[tuple[str, tuple[str, ...]]]:
    """Envelope sender → the logins allowed to use it: a user's own address and aliases, and
    an inventory alias for the local users it delivers to."""
    owners: dict[str, list[str]] = {}
    users = {u.address for u in host.users}
    for user in host.users:
        for address in (user.address, *user.aliases):
            owners.setdefault(address, []).append(user.address)
    for alias in host.aliases:
        if alias.is_catchall:
            continue
        for target in alias.targets:
            if target in users:
                owners.setdefault(alias.address, []).append(target)
    return sorted((addr, tuple(dict.fromkeys(logins))) for addr, logins in owners.items())


def write_tree(files: list[RenderedFile], root: Path) -> list[Path]:
    """Write rendered files under root (root/etc/postfix/main.cf ...); secrets get 0600."""
    written, made = [], set()
    for f in files:
        target = root / f.path.lstrip("/")
        if target.parent not in made:  # a host's 20 files share a few directories
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        target.write_text(f.content, encoding="utf-8")
        target.chmod(0o600 if f.secret else 0o644)
        written.append(target)
    return written
