"""The mail topology across hosts: which 'mailstore' host stores each domain, and what the
'mx' hosts (inbound edge relays) must know to accept mail for it and pass it on.

Hosts in neither group are all-in-one and take no part. Every mx relays every domain of every
mailstore; each domain lives on exactly one mailstore. Mail between these hosts goes over SMTP
with TLS both ways: the sending host verifies the store's certificate against the deployment's
CA and presents its own, and a mailstore accepts port-25 mail only from such clients (and its
own mynetworks).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import MailHost


@dataclass(frozen=True)
class Route:
    domain: str
    store: str  # the mailstore's mail_hostname: the SMTP next hop
    store_name: str  # its inventory name


@dataclass(frozen=True)
class Topology:
    routes: tuple[Route, ...] = ()
    # Every address some mailstore accepts: users, their aliases, inventory aliases, and
    # '@domain' for a catch-all. An mx refuses anything else at RCPT (no backscatter).
    recipients: tuple[str, ...] = ()
    # The mx hosts' names: each judges inbound mail, and each drops Authentication-Results
    # fields a sender forged in the name of any of them
    edges: tuple[str, ...] = ()
    # The public addresses (mail_public_ipv4/6) of every mx and mailstore host: peers that
    # postscreen, the anvil limits and fail2ban must never hold up
    peers: tuple[str, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(r.domain for r in self.routes)

    def routes_for(self, host: MailHost) -> tuple[Route, ...]:
        """The routes a host uses: all of them on an mx; on a mailstore, the other stores'
        domains (its own are delivered locally); none on an all-in-one host."""
        if host.kind == "mx":
            return self.routes
        if host.kind == "mailstore":
            return tuple(r for r in self.routes if r.store_name != host.name)
        return ()

    @property
    def stores(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.store for r in self.routes))


NO_TOPOLOGY = Topology()  # all-in-one hosts


@dataclass(frozen=True)
class TopologyProblem:
    host: str
    variable: str
    field: str
    message: str


def plan(hosts: list[MailHost]) -> tuple[Topology, list[TopologyProblem]]:
    """Build the topology from every valid host of the inventory (not just the --limit ones:
    an mx needs every store's domains even when only the mx is deployed)."""
    problems: list[TopologyProblem] = []
    owner: dict[str, MailHost] = {}
    routes: list[Route] = []
    recipients: list[str] = []
    stores = sorted((h for h in hosts if h.kind == "mailstore"), key=lambda h: h.name)
    for store in stores:
        for i, domain in enumerate(store.domains):
            if domain in owner:
                problems.append(TopologyProblem(
                    store.name, "mail_domains", f"mail_domains[{i}]",
                    f"{domain!r} is already stored on {owner[domain].name}; a domain lives on "
                    "one mailstore host"))
                continue
            owner[domain] = store
            routes.append(Route(domain, store.hostname, store.name))
        recipients += [u.address for u in store.users]
        recipients += [a.address for a in store.virtual_aliases]
    if not stores:
        for host in hosts:
            if host.kind == "mx":
                problems.append(TopologyProblem(
                    host.name, "group_names", "groups",
                    "is in group 'mx' but no host is in group 'mailstore' to relay mail to"))
    hostnames: dict[str, str] = {}
    for host in sorted(hosts, key=lambda h: h.name):
        if host.kind != "allinone" and host.hostname in hostnames:
            problems.append(TopologyProblem(
                host.name, "mail_hostname", "mail_hostname",
                f"{host.hostname!r} is also the mail_hostname of {hostnames[host.hostname]}"))
        hostnames.setdefault(host.hostname, host.name)
    edges = tuple(sorted(h.hostname for h in hosts if h.kind == "mx"))
    peers = tuple(sorted({a for h in hosts if h.kind != "allinone"
                          for a in (h.dns.ipv4, h.dns.ipv6) if a}))
    return Topology(tuple(routes), tuple(sorted(set(recipients))), edges, peers), problems
