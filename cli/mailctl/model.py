"""The validated, normalised mail configuration of one host: what the templates consume."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import components
from .sieve import Filters

BACKENDS = components.stores()  # the mail stores in the component registry
PLATFORMS = components.PLATFORMS
TOPOLOGY_GROUPS = components.KINDS[1:]  # the groups that make a host an mx or a mailstore
TLS_MODES = ("selfsigned", "files", "acme")
ACME_CHALLENGES = ("http-01", "dns-01")
# Directory URLs an inventory may name by a short name
ACME_PRESETS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
DKIM_MODES = ("generate", "files", "off")
DMARC_POLICIES = ("none", "quarantine", "reject")
MTA_STS_MODES = ("testing", "enforce", "none")
BAN_ACTIONS = ("nftables", "none")


@dataclass(frozen=True)
class User:
    address: str
    password: str | None = field(repr=False)
    password_hash: str | None = field(repr=False)
    quota: int  # bytes; 0 = unlimited
    aliases: tuple[str, ...]
    # the inventory's Sieve filters (sieve.py); None: the inventory leaves the user's alone
    sieve: Filters | None = None

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
    # the CA that signed cert (mode files; default: cert itself), or the root the ACME CA's
    # chains lead to (mode acme; default: the platform's CA bundle)
    ca_src: str | None = None
    # mode 'acme': an RFC 8555 directory (a URL, or a preset of ACME_PRESETS)
    directory: str = ""
    contact: str = ""  # the account's e-mail address
    names: tuple[str, ...] = ()  # more names in the certificate, after the host name
    challenge: str = "http-01"
    dns_hook: str | None = None  # dns-01: a program on the controller, installed on the host
    directory_ca: str | None = None  # the CA of the directory's own HTTPS (a private ACME CA)
    renew_check: int = 43200  # seconds between the on-host renewal checks
    # verify and `mailctl certs` fail below this many days left (or a sixth of the lifetime,
    # for certificates shorter than six times that)
    min_days_left: int = 14

    @property
    def acme(self) -> bool:
        return self.mode == "acme"

    def all_names(self, hostname: str) -> tuple[str, ...]:
        """The names the host's certificate carries: its mail name first."""
        return tuple(dict.fromkeys((hostname, *self.names)))


@dataclass(frozen=True)
class Dkim:
    """How this host signs (mail_dkim). Keys are RSA 2048, one per domain and selector."""

    mode: str = "generate"  # generate: made on the controller beside the local CA
    selector: str = "mail"  # the default selector, for every domain without its own
    selectors: tuple[tuple[str, str], ...] = ()  # (domain, selector): per-domain selectors
    publish: tuple[str, ...] = ()  # more selectors kept in DNS (key rotation)
    # mode 'files': the private key's path on the controller, with {domain} and {selector}
    # (relative paths: to the inventory directory)
    key_file: str | None = None

    @property
    def signs(self) -> bool:
        return self.mode != "off"

    def selector_for(self, domain: str) -> str:
        return dict(self.selectors).get(domain, self.selector)

    def published(self, domain: str) -> tuple[str, ...]:
        """The selectors whose records `mailctl dns` prints for domain: the signing one
        first, then the others still (or already) published."""
        return tuple(dict.fromkeys((self.selector_for(domain), *self.publish)))

    def installed_key(self, opendkim_dir: str, domain: str) -> str:
        """Where the host keeps the domain's signing key (only that selector's goes there)."""
        return f"{opendkim_dir}/keys/{domain}.{self.selector_for(domain)}.key"

    def key_path(self, state_dir: str, domain: str, selector: str) -> str:
        """Where the private key lives on the controller (relative: to the inventory)."""
        if self.mode == "files" and self.key_file:
            return self.key_file.format(domain=domain, selector=selector)
        return f"{state_dir}/dkim/{domain}.{selector}.key"


@dataclass(frozen=True)
class Dmarc:
    """DMARC: the policy published for this host's domains, and what inbound mail gets."""

    reject: bool = True  # refuse (5xx at end of data) mail failing a p=reject domain's DMARC
    policy: str = "quarantine"  # the p= of the records `mailctl dns` prints
    report_to: str = ""  # rua address; empty: postmaster@<domain>


@dataclass(frozen=True)
class DnsPublish:
    """What `mailctl dns` needs beyond the mail settings (mail_dns, mail_public_ipv4/6)."""

    ipv4: str = ""
    ipv6: str = ""
    ttl: int = 3600
    mta_sts: str = "testing"  # the MTA-STS policy mode; none: no MTA-STS records


@dataclass(frozen=True)
class Postscreen:
    """postscreen(8) on port 25 of hosts that receive from the internet (all-in-one, mx):
    the pregreet test, and DNSBL scoring when sites are listed."""

    enabled: bool = True
    # 'domain', 'domain=filter' or either with '*weight' (postscreen_dnsbl_sites syntax)
    dnsbl_sites: tuple[str, ...] = ()
    dnsbl_threshold: int = 3
    greet_wait: int = 6  # seconds a new client must stay silent before the banner


@dataclass(frozen=True)
class Limits:
    """Postfix anvil limits per client address (0: no limit), over `window` seconds."""

    enabled: bool = True
    window: int = 60
    connections: int = 20  # at once
    connection_rate: int = 60
    message_rate: int = 100
    recipient_rate: int = 500
    auth_rate: int = 30  # AUTH commands


@dataclass(frozen=True)
class SendLimit:
    count: int  # accepted recipients
    per: int  # seconds (a sliding window)


@dataclass(frozen=True)
class SendLimits:
    """What one authenticated user may send (policyd-rate-limit on submission): recipients
    per sliding window, the same for everyone unless a user has limits of their own."""

    enabled: bool = True
    limits: tuple[SendLimit, ...] = (SendLimit(200, 3600), SendLimit(1000, 86400))
    users: tuple[tuple[str, tuple[SendLimit, ...]], ...] = ()  # (address, limits)


@dataclass(frozen=True)
class LoginThrottle:
    """Failed logins in the store: a delay per failure (Dovecot's grows, up to 15 s, from
    this base; Cyrus pauses this long every time) and sessions per user."""

    enabled: bool = True
    failure_delay: int = 2  # seconds
    sessions_per_user: int = 20  # Dovecot: per user and client address; Cyrus: per user


@dataclass(frozen=True)
class Bans:
    """fail2ban: addresses that fail too often are banned from the mail ports."""

    enabled: bool = True
    maxretry: int = 5
    findtime: int = 600  # seconds
    bantime: int = 3600  # seconds
    ignore: tuple[str, ...] = ()  # networks never banned (proxies, monitoring)
    action: str = "nftables"  # or 'none': find and list offenders, block nothing


@dataclass(frozen=True)
class SieveSettings:
    """The stores' Sieve: duplicate suppression by Message-ID (Dovecot: a global script
    before the user's; Cyrus: duplicatesuppression)."""

    duplicates: bool = True


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
    dkim: Dkim = Dkim()
    dmarc: Dmarc = Dmarc()
    dns: DnsPublish = DnsPublish()
    postscreen: Postscreen = Postscreen()
    limits: Limits = Limits()
    send_limits: SendLimits = SendLimits()
    login_throttle: LoginThrottle = LoginThrottle()
    bans: Bans = Bans()
    sieve: SieveSettings = SieveSettings()
    # The distribution release a deploy found ("Debian 12"): selects the platform profile's
    # per-release values. None offline (mailctl render): the family's own values.
    release: str | None = None
    # The resolvers of the host's /etc/resolv.conf (facts at deploy; () offline): OpenDKIM's
    # resolver library does not read that file, so it is told them.
    resolvers: tuple[str, ...] = ()
    # systemd runs the host's services (facts at deploy: False on SysV hosts)
    systemd: bool = True

    @property
    def virtual_aliases(self) -> tuple[Alias, ...]:
        """Inventory aliases plus each user's own aliases, in a stable order."""
        own = tuple(Alias(a, (u.address,)) for u in self.users for a in u.aliases)
        return self.aliases + own

    @property
    def authserv_id(self) -> str:
        """The name in this host's Authentication-Results fields."""
        return self.hostname

    @property
    def receives_from_internet(self) -> bool:
        """Judges inbound mail (DKIM, SPF, DMARC): all-in-one and mx hosts."""
        return self.kind != "mailstore"

    @property
    def signs(self) -> bool:
        """Signs outgoing mail with DKIM: hosts with users (all-in-one, mailstore)."""
        return self.kind != "mx" and self.dkim.signs

    @property
    def acme(self) -> bool:
        """Gets its certificate from an ACME CA and renews it on the host."""
        return self.tls.acme

    @property
    def runs_opendkim(self) -> bool:
        return self.signs or self.receives_from_internet

    @property
    def screens(self) -> bool:
        """postscreen guards port 25: hosts that receive from the internet."""
        return self.receives_from_internet and self.postscreen.enabled

    @property
    def send_limited(self) -> bool:
        """Authenticated submission is rate-limited per user: hosts with users, under
        systemd (Debian's SysV script cannot stop policyd-rate-limit: start-stop-daemon
        refuses the pidfile the daemon writes as its own user)."""
        return self.kind != "mx" and self.send_limits.enabled and self.systemd

    @property
    def sieve_duplicates(self) -> bool:
        """The store drops a message whose Message-ID the user already received."""
        return self.kind != "mx" and self.sieve.duplicates

    @property
    def dovecot_logins(self) -> bool:
        """Dovecot takes the logins (IMAP, POP3, ManageSieve): fail2ban's Dovecot jail."""
        return self.backend == "dovecot"

    @property
    def bans_offenders(self) -> bool:
        """fail2ban runs: it reads the systemd journal, so SysV hosts do not run it yet; an
        mx has a jail only with postscreen (it has no logins)."""
        return self.bans.enabled and self.systemd and (self.kind != "mx" or self.screens)
