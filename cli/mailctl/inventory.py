"""Load an Ansible inventory with Ansible's own machinery, so every host gets exactly the
variables ansible-playbook would give it (same precedence, same Vault handling)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, Problem, ValidationFailed
from .model import TOPOLOGY_GROUPS, MailHost
from .names import NameSyntaxError, normalize_domain
from .paths import playbooks_dir
from .topology import Topology, plan
from .validate import DEFAULTS, check_host

_VAR_EXTENSIONS = ("", ".yml", ".yaml", ".json")


@dataclass
class HostVars:
    name: str
    groups: list[str]
    variables: dict[str, Any]


class Inventory:
    """An inventory path resolved through Ansible's InventoryManager and VariableManager."""

    def __init__(self, source: str | os.PathLike, vault_password_file: str | None = None):
        self.source = Path(source)
        if not self.source.exists():
            raise InputError(f"{self.source}: inventory not found")
        self._loader, self._inventory, self._variables = _ansible_load(
            self.source, vault_password_file)
        self._served: set[str] | None = None

    @property
    def directory(self) -> Path:
        """The inventory's directory: relative paths in its variables start here."""
        return self.source if self.source.is_dir() else self.source.parent

    def host_names(self, limit: str | None = None) -> list[str]:
        self._inventory.subset(limit)
        names = [h.name for h in self._inventory.get_hosts()]
        if limit and not names:
            raise InputError(f"{self.source}: no host matches --limit/--host {limit!r}")
        if not names:
            raise InputError(f"{self.source}: the inventory has no hosts")
        return names

    def host_vars(self, name: str) -> HostVars:
        """The host's variables with mail_* values templated (Vault values decrypted)."""
        from ansible.errors import AnsibleError
        from ansible.template import Templar

        host = self._inventory.get_host(name)
        try:
            resolved = self._variables.get_vars(host=host, include_hostvars=False)
        except AnsibleError as exc:
            first = str(exc).strip().splitlines()[0]
            where = self._unparsable_vars_file() or str(self.source)
            raise InputError(f"{where}: {name}: cannot load variables: {first}") from None
        templar = Templar(loader=self._loader, variables=resolved)
        mail: dict[str, Any] = {}
        for key in resolved:
            if isinstance(key, str) and key.startswith("mail_"):
                try:
                    mail[key] = _plain(templar.template(resolved[key]))
                except AnsibleError as exc:
                    where = self.file_of(name, key)
                    first = str(exc).strip().splitlines()[0]
                    raise InputError(f"{where}: {name}: {key}: cannot be resolved: {first}"
                                     ) from None
        groups = sorted(g.name for g in host.get_groups() if g.name not in ("all", "ungrouped"))
        return HostVars(name, groups, mail)

    def file_of(self, host: str, variable: str) -> str:
        """The file that gives `host` its value of `variable`, by Ansible's precedence:
        host_vars, the host's own entry in the inventory, group_vars (deepest group first),
        then group `vars:` in the inventory file."""
        if variable == "group_names":
            return _display(next(iter(self._inventory_files()), self.source))
        base = self.directory
        inventory_host = self._inventory.get_host(host)
        groups = sorted(inventory_host.get_groups(), key=lambda g: (g.depth, g.priority, g.name),
                        reverse=True)
        for path in _var_files(base / "host_vars", host):
            if _vars_file_sets(path, variable):
                return _display(path)
        for path in self._inventory_files():
            if _inventory_sets(path, variable, host, None):
                return _display(path)
        for group in groups:
            for path in _var_files(base / "group_vars", group.name):
                if _vars_file_sets(path, variable):
                    return _display(path)
        for group in groups:
            for path in self._inventory_files():
                if _inventory_sets(path, variable, None, group.name):
                    return _display(path)
        return _display(self.source)

    def _missing_tls_files(self, host: MailHost) -> list[Problem]:
        """mail_tls names files on this machine (mode files; mode acme's ca, directory_ca
        and dns_hook): they must exist."""
        base = self.directory
        found = []
        for key, path in (("cert", host.tls.cert_src), ("key", host.tls.key_src),
                          ("ca", host.tls.ca_src), ("directory_ca", host.tls.directory_ca),
                          ("dns_hook", host.tls.dns_hook)):
            if path and not (base / path).is_file():  # an absolute path stays as it is
                found.append(Problem(self.file_of(host.name, "mail_tls"), host.name,
                                     f"mail_tls.{key}", f"{path!r}: no such file"))
        return found

    def _dkim_problems(self, host: MailHost) -> list[Problem]:
        """mail_dkim: in mode 'files' every key the host signs or publishes with must exist;
        a per-domain selector must belong to a domain some host of the inventory serves."""
        found = []
        if host.dkim.mode == "files" and host.dkim.key_file and host.kind != "mx":
            base = self.directory
            for domain in host.domains:
                for selector in host.dkim.published(domain):
                    path = host.dkim.key_path("", domain, selector)
                    if self.source.is_dir() and (base / path).resolve().is_relative_to(
                            base.resolve()):
                        # Ansible parses every file of an inventory directory, and its
                        # warnings quote what it read
                        found.append(Problem(self.file_of(host.name, "mail_dkim"), host.name,
                                             "mail_dkim.key_file",
                                             f"{path!r} is inside the inventory directory: "
                                             "keep private keys outside it"))
                    elif not (base / path).is_file():
                        found.append(Problem(self.file_of(host.name, "mail_dkim"), host.name,
                                             "mail_dkim.key_file",
                                             f"{path!r} (domain {domain}, selector {selector}): "
                                             "no such file"))
        served = self.served_domains() if host.dkim.selectors else set()
        for domain, _selector in host.dkim.selectors:
            if domain not in served:
                found.append(Problem(self.file_of(host.name, "mail_dkim"), host.name,
                                     f"mail_dkim.selectors.{domain}",
                                     f"{domain!r} is a domain on no host of this inventory"))
        return found

    def served_domains(self) -> set[str]:
        """Every domain some host of the inventory lists in mail_domains (raw, normalised)."""
        if self._served is None:
            self._served = set()
            for name in self.host_names(None):
                try:
                    raw = self.host_vars(name).variables.get("mail_domains") or []
                except InputError:
                    continue  # that host's own finding, when it is validated
                for domain in raw if isinstance(raw, list) else []:
                    with contextlib.suppress(NameSyntaxError):  # that host's own finding
                        self._served.add(normalize_domain(domain))
        return self._served

    def _unparsable_vars_file(self) -> str | None:
        """Ansible's parse errors do not always say which file: find it ourselves."""
        base = self.directory
        for sub in ("host_vars", "group_vars"):
            for path in sorted((base / sub).rglob("*")) if (base / sub).is_dir() else []:
                if path.is_file():
                    try:
                        yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
                    except (yaml.YAMLError, UnicodeDecodeError):
                        return _display(path)
        return None

    def _inventory_files(self) -> Iterable[Path]:
        if self.source.is_file():
            yield self.source
        else:
            yield from sorted(p for p in self.source.iterdir()
                              if p.is_file() and p.suffix in (".yml", ".yaml", ".ini", ""))

    def mail_hosts(self, limit: str | None = None,
                   backend: str | None = None) -> list[MailHost]:
        """Validate every (selected) host; raise ValidationFailed listing all problems."""
        hosts, problems = [], []
        for name in self.host_names(limit):
            host, found = self._validated(self.host_vars(name), backend)
            problems += found
            if host:
                hosts.append(host)
        if problems:
            raise ValidationFailed(problems)
        return hosts

    def mail_plan(self, limit: str | None = None,
                  backend: str | None = None) -> tuple[list[MailHost], Topology]:
        """The selected hosts and the topology they take part in. The topology is built from
        every mx and mailstore host of the inventory, selected or not: an mx needs all the
        stores' domains even when it is deployed alone."""
        hosts = self.mail_hosts(limit, backend)
        if all(h.kind == "allinone" for h in hosts):
            return hosts, Topology()
        selected = {h.name: h for h in hosts}  # already validated
        members, problems = [], []
        for name in self.host_names(None):
            if name in selected:
                if selected[name].kind != "allinone":
                    members.append(selected[name])
                continue
            hv = self.host_vars(name)
            if not set(hv.groups) & set(TOPOLOGY_GROUPS):
                continue  # an all-in-one host outside the selection plays no part
            host, found = self._validated(hv, backend)
            problems += found
            if host:
                members.append(host)
        topology, found = plan(members)
        problems += [Problem(self.file_of(p.host, p.variable), p.host, p.field, p.message)
                     for p in found]
        if problems:
            raise ValidationFailed(problems)
        return hosts, topology

    def _validated(self, hv: HostVars,
                   backend: str | None) -> tuple[MailHost | None, list[Problem]]:
        name = hv.name
        host, findings = check_host(name, hv.variables, hv.groups, backend)
        problems = [Problem(self.file_of(name, f.variable), name, f.field, f.message)
                    for f in findings]
        if host:
            problems += self._missing_tls_files(host) + self._dkim_problems(host)
        return host, problems


def _ansible_load(source: Path, vault_password_file: str | None):
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import get_file_vault_secret
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    # Playbook-adjacent group_vars/host_vars are read from the loader's base directory: make
    # it the directory of the playbook deploy runs, as ansible-playbook would, never the cwd.
    loader.set_basedir(str(playbooks_dir()))
    if vault_password_file:
        path = Path(vault_password_file)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise InputError(f"{path}: vault password file not found or not readable")
        try:
            secret = get_file_vault_secret(filename=str(path), loader=loader)
            secret.load()
        except AnsibleError as exc:
            raise InputError(f"{path}: cannot read vault password: {exc}") from None
        loader.set_vault_secrets([("default", secret)])
        _activate_vault_secrets([("default", secret)])
    try:
        # absolute: Ansible caches each vars directory by the path string it was given
        inventory = InventoryManager(loader=loader, sources=[os.path.abspath(source)])
    except AnsibleError as exc:
        raise InputError(f"{source}: cannot load inventory: {exc}") from None
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


def _activate_vault_secrets(secrets: list) -> None:
    """ansible-core 2.19 decrypts lazily through a process-wide context that ansible-playbook
    sets up; set it here too (replacing any earlier one, e.g. in a long-lived process)."""
    try:
        from ansible.parsing.vault import VaultSecretsContext
    except ImportError:  # ansible-core 2.18: the loader's secrets are enough
        return
    VaultSecretsContext._current = VaultSecretsContext(secrets)


def _plain(value: Any) -> Any:
    """Ansible's tagged/lazy containers and strings → plain Python values."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _var_files(directory: Path, name: str) -> Iterable[Path]:
    for ext in _VAR_EXTENSIONS:
        candidate = directory / f"{name}{ext}"
        if candidate.is_file():
            yield candidate
        elif candidate.is_dir():
            yield from sorted(p for p in candidate.rglob("*") if p.is_file())


def _load_yaml(path: Path) -> object:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _vars_file_sets(path: Path, variable: str) -> bool:
    data = _load_yaml(path)
    return isinstance(data, dict) and variable in data


def _inventory_sets(path: Path, variable: str, host: str | None, group: str | None) -> bool:
    """Does this inventory file set `variable` for `host` (host entry) or `group` (vars:)?"""
    data = _load_yaml(path)
    if not isinstance(data, dict):  # INI: look for 'host ... variable=' or a [group:vars] entry
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        if host:
            return any(line.split()[:1] == [host] and f"{variable}=" in line
                       for line in text.splitlines())
        section = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == f"{group}:vars" and line.split("=", 1)[0].strip() == variable:
                return True
        return False
    return _yaml_sets(data, variable, host, group)


def _yaml_sets(node: object, variable: str, host: str | None, group: str | None,
               current: str | None = None) -> bool:
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if not isinstance(value, dict):
            continue
        if key == "hosts":
            entry = value.get(host) if host else None
            if isinstance(entry, dict) and variable in entry:
                return True
        elif key == "vars":
            if group and current == group and variable in value:
                return True
        elif key == "children":
            for child, child_node in value.items():
                if _yaml_sets(child_node, variable, host, group, child):
                    return True
        elif _yaml_sets(value, variable, host, group, key):
            return True
    return False


class _AnyTagLoader(yaml.SafeLoader):
    """SafeLoader that tolerates Ansible tags such as !vault."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _display(path: Path) -> str:
    """Relative to the working directory when the file is below it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


__all__ = ["DEFAULTS", "Inventory"]
