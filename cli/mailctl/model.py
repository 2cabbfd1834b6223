"""The validated, normalised mail configuration of one host: what the templates consume."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import components

BACKENDS = components.stores()  # the mail stores in the component registry
PLATFORMS = components.PLATFORMS
TOPOLOGY_GROUPS = components.KINDS[1:]  # the groups that make a host an mx or a mailstore
TLS_MODES = ("selfsigned", "files")


@dataclass(frozen=True)
class User:
    address: str
    password: str | None = field(repr=False)
    password_hash: str | None = field(repr=False)
    quota: int  # bytes; 0 = unlimited
    aliases: tuple[str, ...]

    @property
    def local(self) -> str:
        return self.address.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]


@dataclass(frozen=True)
class Alias:
    address: str  # 'local@domain', or '@domain' for a catch-all
    targets: tuple[str, ...]

    @property
    def is_catchall(self) -> bool:
        return self.address.startswith("@")

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]


@dataclass(frozen=True)
class Tls:
    mode: str
    # mode 'files': files on the controller (relative paths: to the inventory directory)
    cert_src: str | None = None
    key_src: str | None = None
    ca_src: str | None = None  # the CA that signed cert (default: cert itself)


@dataclass(frozen=True)
class MailHost:
    """Everything mailctl knows about one host after validation."""

    name: str  # inventory_hostname
    hostname: str
    backend: str | None  # the mail store; None on an mx host (it relays to the stores)
    kind: str  # one of KINDS: 'allinone' | 'mx' | 'mailstore'
    platform: str
    domains: tuple[str, ...]
    users: tuple[User, ...]
    aliases: tuple[Alias, ...]
    relayhost: str
    mynetworks: tuple[str, ...]
    message_size_limit: int
    tls: Tls
    postfix_overrides: dict = field(default_factory=dict)
    dovecot_overrides: dict = field(default_factory=dict)
    cyrus_overrides: dict = field(default_factory=dict)
    # The distribution release a deploy found ("Debian 12"): selects the platform profile's
    # per-release values. None offline (mailctl render): the family's own values.
    release: str | None = None

    @property
    def virtual_aliases(self) -> tuple[Alias, ...]:
        """Inventory aliases plus each user's own aliases, in a stable order."""
        own = tuple(Alias(a, (u.address,)) for u in self.users for a in u.aliases)
        return self.aliases + own
