"""The component registry (templates/components.yml) as data: which components a host runs
and what each one is on the host's platform — files, packages, service, validators, smoke
ports, socket. Pure: nothing here touches a host."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from .paths import templates_dir

PLATFORMS = ("debian", "redhat", "suse")
KINDS = ("allinone", "mx", "mailstore")


@cache
def registry() -> dict[str, dict[str, Any]]:
    with (templates_dir() / "components.yml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def stores() -> tuple[str, ...]:
    """The mail stores a host can run (the values of mail_backend), in registry order."""
    return tuple(name for name, entry in registry().items() if entry.get("store"))


def for_platform(value: Any, platform: str) -> Any:
    """A registry value that may differ per platform ({debian: ..., redhat: ...})."""
    if isinstance(value, Mapping) and value and set(value) <= set(PLATFORMS):
        return value.get(platform, [] if isinstance(next(iter(value.values())), list) else "")
    return value


def _fill(value: Any, paths: Mapping[str, str]) -> Any:
    """Replace {placeholders} with the platform's paths and users, in strings and lists."""
    if isinstance(value, str):
        return value.format(**paths)
    if isinstance(value, list):
        return [_fill(v, paths) for v in value]
    return value


@dataclass(frozen=True)
class Validator:
    name: str
    argv: tuple[str, ...]
    silent: bool = False  # any output fails too
    readable_copy: bool = False  # offline: run on world-readable copies
    rebase: bool = False  # offline: the file names the component's other files by host path

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "argv": list(self.argv), "silent": self.silent}


@dataclass(frozen=True)
class Component:
    """One component as it is on one platform, for one host kind."""

    name: str
    store: bool
    after_store: bool
    role: str | None
    packages: tuple[str, ...]
    service: str
    action: str
    process: str
    journal: tuple[str, ...]
    validators: tuple[Validator, ...]
    smoke: tuple[dict[str, Any], ...]
    socket: str | None
    tls_key_group: str | None
    tls_reload: str | None  # reload | hup: how a renewed certificate reaches the service
    mta_groups: tuple[str, ...]
    files: tuple[dict[str, Any], ...]  # registry file entries for this host, paths filled
    mail: dict[str, Any] | None  # stores: {server, installed, path, pattern}

    def as_dict(self) -> dict[str, Any]:
        """What the roles read (through the mailctl_host filter)."""
        return {"name": self.name, "store": self.store, "after_store": self.after_store,
                "role": self.role,
                "packages": list(self.packages), "service": self.service,
                "action": self.action, "process": self.process, "journal": list(self.journal),
                "validators": [v.as_dict() for v in self.validators],
                "smoke": [dict(s) for s in self.smoke], "socket": self.socket,
                "tls_key_group": self.tls_key_group, "tls_reload": self.tls_reload,
                "mta_groups": list(self.mta_groups),
                "mail": self.mail}


def resolve(name: str, platform: str, kind: str, backend: str,
            names: Mapping[str, str], enabled: Callable[[str], bool] = lambda _: True
            ) -> Component:
    """Component `name` on `platform` for a host of `kind` whose store is `backend`; `names`
    fills the {placeholders} (the platform profile's paths and users); `enabled` answers
    a file's `when` (a property of the host)."""
    entry = registry()[name]
    service = entry.get("service") or {}
    mail = entry.get("mail")
    return Component(
        name=name,
        store=bool(entry.get("store")),
        after_store=bool(entry.get("after_store")),
        role=entry.get("role"),
        packages=tuple(for_platform(entry.get("packages", []), platform)),
        service=for_platform(service.get("name", ""), platform),
        action=service.get("action", "reloaded"),
        process=for_platform(service.get("process", ""), platform),
        journal=tuple(for_platform(service.get("journal", []), platform)),
        validators=tuple(
            Validator(v["name"], tuple(_fill(v["argv"], names)), bool(v.get("silent")),
                      bool(v.get("readable_copy")), bool(v.get("rebase")))
            for v in entry.get("validators", [])),
        smoke=tuple({"port": s["port"], "expect": s["expect"]}
                    for s in entry.get("smoke", []) if kind in s.get("kinds", [kind])),
        socket=_fill(entry["socket"], names) if entry.get("socket") else None,
        tls_key_group=_fill(entry["tls_key_group"], names) if entry.get("tls_key_group")
        else None,
        tls_reload=entry.get("tls_reload"),
        mta_groups=tuple(_fill(entry.get("mta_groups", []), names)),
        files=tuple({**f, "dest": _fill(f["dest"], names),
                     "owner": _fill(f.get("owner", "root"), names),
                     "group": _fill(f.get("group", "root"), names)}
                    for f in entry.get("files", [])
                    if kind in f.get("kinds", [kind])
                    and backend in f.get("backends", [backend])
                    and ("when" not in f or enabled(f["when"]))),
        mail=({"server": for_platform(mail["server"], platform),
               "installed": list(for_platform(mail["installed"], platform)),
               "path": names[mail["path"]], "pattern": mail["pattern"]} if mail else None),
    )


def for_host(platform: str, kind: str, backend: str, names: Mapping[str, str],
             enabled: Callable[[str], bool] = lambda _: True) -> list[Component]:
    """The components a host runs, in registry order: every non-store component of its
    kind whose `when` holds (`enabled` answers it: a property of the host), and its own
    store (an mx host has none)."""
    picked = []
    for name, entry in registry().items():
        if kind not in entry.get("kinds", KINDS):
            continue
        if entry.get("store") and name != backend:
            continue
        if "when" in entry and not enabled(entry["when"]):
            continue
        picked.append(resolve(name, platform, kind, backend, names, enabled))
    return picked


def apply_order(picked: list[Component]) -> list[Component]:
    """The order a deploy applies components in: registry order, but a component marked
    `after_store` after the host's store."""
    return sorted(picked, key=lambda c: c.after_store)
