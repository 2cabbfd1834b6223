"""What the Ansible roles call (through roles/mail_common/filter_plugins/): the same schema
and the same renderer as the CLI, so a plain ansible-playbook run validates exactly like
`mailctl validate` and installs exactly what `mailctl render` writes."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import components, platforms
from .model import MailHost
from .paths import MAILBOX_AGENT
from .platforms import OS_FAMILIES
from .render import host_components, render_host, tls_paths
from .topology import Route, Topology, plan
from .validate import ROLE_PREFIXES, check_host


class BridgeError(Exception):
    """Raised with one line per problem; the filter plugin re-raises it for Ansible."""


_VALIDATED: dict[str, Any] = {}  # input (as JSON) -> MailHost, within one process


def _host(data: dict[str, Any]):
    """The validated host. The roles' set_fact asks for its summary and its files in one
    task (one process): they share one validation, not one each."""
    key = json.dumps(data, sort_keys=True, default=repr)
    if key not in _VALIDATED:
        _VALIDATED.clear()  # one host per task: keep only the latest
        _VALIDATED[key] = _validated_host(data)
    return _VALIDATED[key]


def _validated_host(data: dict[str, Any]):
    variables = dict(data.get("variables") or {})
    family = data.get("os_family")
    fact_platform = OS_FAMILIES.get(family) if family else None
    if family and fact_platform is None:
        raise BridgeError(f"{data.get('name')}: ansible_os_family {family!r} is not supported "
                          f"(supported: {', '.join(OS_FAMILIES)})")
    if "mail_platform" in variables and fact_platform and \
            variables["mail_platform"] != fact_platform:
        raise BridgeError(f"{data.get('name')}: mail_platform is {variables['mail_platform']!r} "
                          f"but the host reports {family!r} ({fact_platform})")
    if fact_platform:
        variables.setdefault("mail_platform", fact_platform)
    host, findings = check_host(str(data.get("name")), variables,
                                list(data.get("groups") or []), data.get("backend") or None)
    if findings:
        raise BridgeError("\n".join(f"{data.get('name')}: {f.field}: {f.message}"
                                    for f in findings))
    # the release the host reports selects the profile's per-release values
    return replace(host, release=data.get("os_release") or None,
                   resolvers=tuple(data.get("resolvers") or ()),
                   systemd=data.get("service_manager", "systemd") == "systemd")


def _topology(data: dict[str, Any]) -> Topology:
    """The topology planned once for the play (data['topology'], see plan_topology)."""
    planned = data.get("topology") or {}
    return Topology(
        routes=tuple(Route(r["domain"], r["store"], r["store_name"])
                     for r in planned.get("routes", [])),
        recipients=tuple(planned.get("recipients", [])),
        edges=tuple(planned.get("edges", [])),
        peers=tuple(planned.get("peers", [])))


def plan_topology(hostvars: Any, groups: dict[str, list[str]],
                  backend: str | None = None) -> dict[str, Any]:
    """Validate every mx and mailstore host once and plan the routes between them, as plain
    data for every host's mailctl_host/mailctl_files call (run once per play, not once per
    host: the cost stays linear in the number of hosts)."""
    hosts, lines = [], []
    for peer in topology_peers(hostvars, groups):
        host, findings = check_host(str(peer["name"]), dict(peer["variables"]),
                                    list(peer["groups"]), backend or None)
        lines += [f"{peer['name']}: {f.field}: {f.message}" for f in findings]
        if host:
            hosts.append(host)
    if not hosts:
        return {"routes": [], "recipients": [], "edges": [], "peers": []}
    topology, problems = plan(hosts)
    lines += [f"{p.host}: {p.field}: {p.message}" for p in problems]
    if lines:
        raise BridgeError("\n".join(lines))
    return {"routes": [{"domain": r.domain, "store": r.store, "store_name": r.store_name}
                       for r in topology.routes],
            "recipients": list(topology.recipients), "edges": list(topology.edges),
            "peers": list(topology.peers)}


def host_files(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rendered file for the host described by data (see the mail_common role)."""
    host = _host(data)
    topology = _topology(data) if host.kind != "allinone" else Topology()
    return [f.as_dict() for f in render_host(host, topology)]


def topology_peers(hostvars: Any, groups: dict[str, list[str]]) -> list[dict[str, Any]]:
    """What _topology needs from Ansible: name, groups and mail_* variables of every host in
    group mx or mailstore (hostvars holds every inventory host, whatever --limit says)."""
    names = dict.fromkeys([*groups.get("mx", []), *groups.get("mailstore", [])])
    peers = []
    for name in names:
        variables = hostvars[name]
        mail = {k: variables[k] for k in variables
                if isinstance(k, str) and k.startswith("mail_") and not k.startswith(ROLE_PREFIXES)}
        peers.append({"name": name, "variables": mail,
                      "groups": [g for g in ("mx", "mailstore") if name in groups.get(g, [])]})
    return peers


def stale_files(files: list[dict[str, Any]], installed: list[str]) -> list[dict[str, Any]]:
    """The rendered files that the host does not hold exactly: `installed` has one line per
    file, in order, "owner:group:mode sha256" (mode in octal, as stat -c %a) or "missing"."""
    wanted = [_probe_line(f["owner"], f["group"], f["mode"], f["content"].encode("utf-8"))
              for f in files]
    return _differing(files, wanted, installed)


def stale_sources(files: list[dict[str, Any]], installed: list[str]) -> list[dict[str, Any]]:
    """Like stale_files for files copied from the controller ({src, group, mode}, owner root):
    the sources are read here, where the filter runs."""
    wanted = []
    for f in files:
        try:
            wanted.append(_probe_line("root", f["group"], f["mode"], Path(f["src"]).read_bytes()))
        except OSError:
            wanted.append(None)  # always copied: the copy task reports the missing source
    return _differing(files, wanted, installed)


def _probe_line(owner: str, group: str, mode: str, content: bytes) -> str:
    """What roles/mail_common's probe prints for a file that is exactly as wanted."""
    return f"{owner}:{group}:{int(mode, 8):o} {hashlib.sha256(content).hexdigest()}"


def _differing(files: list, wanted: list[str | None], installed: list[str]) -> list:
    return [f for i, (f, want) in enumerate(zip(files, wanted, strict=True))
            if want is None or i >= len(installed) or installed[i].strip() != want]


def _controller_path(path: str | None, data: dict[str, Any]) -> str | None:
    """mail_tls files live on the controller; relative paths are relative to the inventory."""
    if not path or os.path.isabs(path):
        return path
    return os.path.join(str(data.get("inventory_dir") or "."), path)


def host_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The facts the roles' tasks need (backend, hostname, users, the host's components
    from the registry, the TLS files ...), as plain data."""
    host = _host(data)
    names = platforms.names(host.platform, host.release)
    picked = host_components(host)
    key_groups = [c.tls_key_group for c in picked if c.tls_key_group]
    profile = platforms.profile(host.platform, host.release)
    return {
        "name": host.name,
        "hostname": host.hostname,
        "backend": host.backend,
        "kind": host.kind,
        "platform": host.platform,
        "domains": list(host.domains),
        "users": [{"address": u.address, "password": u.password, "quota": u.quota}
                  for u in host.users],
        # in the order a deploy applies them
        "components": [c.as_dict() for c in components.apply_order(picked)],
        "mta_groups": list(dict.fromkeys(g for c in picked for g in c.mta_groups)),
        "packages": list(dict.fromkeys(
            profile["common_packages"]
            + [p for c in picked for p in c.packages])),
        # the stores this host does not run: a switch away from one must not strand mail
        "other_stores": [
            components.resolve(name, host.platform, host.kind, host.backend or "", names)
            .as_dict() for name in components.stores() if name != host.backend],
        "sieve_duplicates": host.sieve_duplicates,
        "mailbox_agent": str(MAILBOX_AGENT),  # on the controller: the sieve role copies it
        "tls_mode": host.tls.mode,
        "tls_files": _tls_files(host, data, key_groups[0] if key_groups else "root"),
        # mail_tls is not acme (any more): what the acme component installs goes
        "acme_retired": [] if host.acme else [
            f["dest"] for f in components.resolve("acme", host.platform, host.kind,
                                                  host.backend or "", names).files],
        "dkim_mode": host.dkim.mode,
        # the signing keys: made on the controller (generate) or read there (files); only
        # the selector each domain signs with goes to the host
        "dkim_keys": [
            {"domain": d, "selector": host.dkim.selector_for(d),
             "src": _controller_path(host.dkim.key_path(str(data.get("ca_dir") or "."), d,
                                                        host.dkim.selector_for(d)), data),
             "dest": host.dkim.installed_key(profile["paths"]["opendkim_dir"], d)}
            for d in (host.domains if host.signs else ())],
    }


def _tls_files(host: MailHost, data: dict[str, Any], key_group: str) -> list[dict[str, str]]:
    """The TLS files copied from the controller: the local CA's directory (selfsigned; the
    key alone in mode acme, whose certificate the host obtains), or the mail_tls files."""
    tls = tls_paths(host)
    local_ca = str(data.get("ca_dir") or ".")
    key = {"dest": tls["key"], "group": key_group, "mode": "0640"}
    public = {"group": "root", "mode": "0644"}
    if host.tls.mode == "selfsigned":
        return [{"src": f"{local_ca}/{host.hostname}.crt", "dest": tls["cert"], **public},
                {"src": f"{local_ca}/{host.hostname}.key", **key},
                {"src": f"{local_ca}/ca.crt", "dest": tls["ca"], **public}]
    if host.tls.mode == "files":
        return [{"src": _controller_path(host.tls.cert_src, data), "dest": tls["cert"], **public},
                {"src": _controller_path(host.tls.key_src, data), **key},
                {"src": _controller_path(host.tls.ca_src or host.tls.cert_src, data),
                 "dest": tls["ca"], **public}]
    extra = [(host.tls.ca_src, tls["ca"], "0644"),
             (host.tls.directory_ca, tls.get("directory_ca"), "0644"),
             (host.tls.dns_hook, tls.get("dns_hook"), "0700")]
    return [{"src": f"{local_ca}/{host.hostname}.key", **key}] + [
        {"src": _controller_path(src, data), "dest": dest, "group": "root", "mode": mode}
        for src, dest, mode in extra if src]


def installed_stores(stores: list[dict[str, Any]], absent: list[str]) -> list[dict]:
    """The stores (as in host_summary's other_stores) whose IMAP server is installed on the
    host (`absent`: the packages the role's probe found not installed, the servers among
    them)."""
    return [s for s in stores if s["mail"]["server"] not in absent]


def departing_domains(stored: list[dict[str, Any]], topology: dict[str, Any]
                      ) -> list[dict[str, str]]:
    """The domains that a mailstore stored at its last deploy (`stored`: the loop results of
    reading each store's stored-domains file, item = its name) and that the inventory now puts
    on another mailstore, as {domain, from, to}. A domain dropped from every store is not
    moving: its mail stays where it is."""
    owner = {r["domain"]: r["store_name"] for r in topology.get("routes", [])}
    moves = []
    for result in stored:
        for line in result.get("stdout_lines") or []:
            domain = line.strip()
            to = owner.get(domain)
            if to and to != result.get("item"):
                moves.append({"domain": domain, "from": result.get("item"), "to": to})
    return moves


def failure_text(result: dict[str, Any]) -> str:
    """One loop item's failure as a line: what a validator printed, else the module's
    message."""
    for key in ("stderr", "stdout", "msg"):
        text = " | ".join(line.strip() for line in str(result.get(key) or "").splitlines()
                          if line.strip())
        if text:
            return text
    return "failed"
