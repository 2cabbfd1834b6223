"""Security properties of a deployed mail host, proven on the wire (both stores): no open
relay, AUTH and logins only over TLS, sender login maps, TLS 1.2/1.3 with Mozilla
"intermediate" ciphers only, the message size limit, and tight modes on the files that hold
secrets.

Every probe runs mailclient.py on the host. Where the property depends on who the client is,
the probe connects as a client the server must treat as remote: Postfix judges relaying by
mynetworks, so the relay probes connect to the host's own non-loopback address (which is not
in mynetworks); Dovecot treats a connection whose remote address equals its local address
(127.0.0.1 -> 127.0.0.1) as secured and allows plaintext logins on it, so the IMAP and POP3
plaintext probes connect from 127.0.0.2. Each refusal is paired with a control (the same
client succeeding where it should), so a refusal cannot come from a broken probe."""

from __future__ import annotations

import ipaddress
import re

import pytest

from mailctl.render import tls_paths

FOREIGN = "elsewhere.example"  # a reserved name: never a real domain
REMOTE_SENDER = "someone@remote.mailctl.test"
REMOTE_SOURCE = "127.0.0.2"  # not the server's address: a remote client to Dovecot

# Mozilla "intermediate" (v5.7) TLS 1.2 suites: ECDHE/DHE key exchange, AEAD only.
MOZILLA_INTERMEDIATE_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
)
TLS_PORTS = [(25, "smtp"), (465, "implicit"), (587, "smtp"), (143, "imap"),
             (993, "implicit"), (110, "pop3"), (995, "implicit"), (4190, "sieve")]
# SSLv3 is not probed: Debian's OpenSSL (and so python3's ssl on the host) is built without
# it, so the client cannot offer it and a "refusal" would prove nothing.
OLD_VERSIONS = ["TLSv1", "TLSv1.1"]
CURRENT_VERSIONS = ["TLSv1.2", "TLSv1.3"]
# OpenSSL errors that mean the client never offered the handshake (not the server refusing).
CLIENT_SIDE_ERRORS = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "no protocols available",
                      "no ciphers available")

# Relay tricks: {d} is a domain this host serves, {f} the foreign domain.
RELAY_TRICKS = {
    "plain": "someone@{f}",
    "percent-hack": "user%{f}@{d}",
    "quoted-local-part": '"user@{f}"@{d}',
    "source-route": "@{d}:user@{f}",
    "bang-path": "{f}!user@{d}",
}


def _networks(tokens: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for token in tokens:
        try:
            nets.append(ipaddress.ip_network(token.replace("[", "").replace("]", ""),
                                             strict=False))
        except ValueError:
            pytest.fail(f"mynetworks entry {token!r} is not a network: cannot tell which "
                        "client addresses are outside it")
    return nets


def _in(addr: str, nets) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip.version == n.version and ip in n for n in nets)


@pytest.fixture(scope="module")
def mynetworks(host) -> list[str]:
    result = host.run("postconf -h mynetworks")
    assert result.rc == 0, f"postconf -h mynetworks failed: {result.stderr.strip()}"
    return [t for t in re.split(r"[\s,]+", result.stdout.strip()) if t]


@pytest.fixture(scope="module")
def outside_addr(host, mynetworks) -> str:
    """One of the host's own addresses that is not in mynetworks (e.g. 172.17.x.y in a
    container): a client connecting from it is, to Postfix, a client from outside."""
    result = host.run("hostname -I")
    assert result.rc == 0, f"hostname -I failed: {result.stderr.strip()}"
    nets = _networks(mynetworks)
    for addr in result.stdout.split():
        if "%" not in addr and not _in(addr, nets):
            return addr
    pytest.fail(f"every address of the host ({result.stdout.strip()}) is in mynetworks "
                f"({' '.join(mynetworks)}): no client outside mynetworks to test relaying from")


@pytest.fixture(scope="module")
def served_domain(mail) -> str:
    """A served domain without a catch-all (with one, user%x@domain would rightly be
    delivered locally)."""
    catchalls = {a.domain for a in mail.aliases if a.is_catchall}
    plain = [d for d in mail.domains if d not in catchalls]
    if not plain:
        pytest.fail("every domain has a catch-all: no domain to test relay tricks against")
    return plain[0]


@pytest.fixture(scope="module")
def local_rcpt(mail) -> str:
    if not mail.users:
        pytest.fail("verify needs at least one mail_users entry")
    return mail.users[0].address


@pytest.fixture(scope="module")
def pw_user(mail):
    users = [u for u in mail.users if u.password]
    if not users:
        pytest.fail("verify needs a mail_users entry with a clear password (from Vault)")
    return users[0]


@pytest.fixture(scope="module")
def alias_user(mail):
    """A user with a clear password and at least one alias of their own, and another user
    whose address they do not own."""
    for user in mail.users:
        if not (user.password and user.aliases):
            continue
        others = [o for o in mail.users if o.address != user.address
                  and o.address not in user.aliases]
        if others:
            return user, others[0]
    pytest.fail("verify needs a mail_users entry with a clear password and aliases, and a "
                "second user: sender login maps cannot be tested")


@pytest.fixture(scope="module")
def tls_scan(client):
    """One scan per port (every protocol version, and TLS 1.2 with non-intermediate ciphers),
    shared by the tests of that port."""
    cache: dict[int, dict] = {}

    def scan(port: int, mode: str) -> dict:
        if port not in cache:
            result = client("tls_scan", port, mode, ":".join(MOZILLA_INTERMEDIATE_TLS12))
            assert result["ok"], result
            cache[port] = result["results"]
        return cache[port]

    return scan


# --- 1. Not an open relay

def test_mynetworks_is_what_the_inventory_says(mail, mynetworks):
    override = mail.postfix_overrides.get("mynetworks")
    if override is not None:
        expected = [t for t in re.split(r"[\s,]+", str(override)) if t]
    else:
        expected = list(mail.mynetworks)
    assert mynetworks == expected, \
        f"postconf mynetworks is {mynetworks}, the inventory says {expected}"


@pytest.mark.parametrize("trick", list(RELAY_TRICKS))
def test_no_relay_from_outside_mynetworks(client, mynetworks, outside_addr, served_domain,
                                          local_rcpt, trick):
    rcpt = RELAY_TRICKS[trick].format(d=served_domain, f=FOREIGN)
    result = client("relay", outside_addr, REMOTE_SENDER, local_rcpt, rcpt)
    assert result["ok"], f"relay probe via {outside_addr}:25 failed: {result}"
    seen_as = result["client_addr"]
    assert not _in(seen_as, _networks(mynetworks)), \
        f"the probe's address {seen_as} is in mynetworks {mynetworks}: it proves nothing"
    assert result["mail"][0] == 250, f"MAIL FROM refused, probe is broken: {result}"
    assert result["local"][0] == 250, \
        f"control: RCPT to the local user {local_rcpt} from {seen_as} refused: {result}"
    code, reply = result["trick"]
    assert 500 <= code < 600, f"RCPT TO:<{rcpt}> from {seen_as} got {code} {reply}: relay"


# --- 2. AUTH and logins only over TLS; wrong passwords refused

@pytest.mark.parametrize("port", [25, 587])
def test_smtp_auth_not_offered_before_starttls(client, pw_user, port):
    result = client("smtp_auth", port, "starttls", pw_user.address, pw_user.password)
    assert result["ok"], result
    assert "starttls" in result["before"], f"port {port} offers no STARTTLS: {result['before']}"
    assert "auth" not in result["before"], \
        f"port {port} offers AUTH before STARTTLS: {result['before']['auth']}"
    code, reply = result["auth_before_tls"]
    assert 500 <= code < 600, f"AUTH before STARTTLS on {port} got {code} {reply}"
    if port == 587:
        assert "auth" in result["after"], f"587 offers no AUTH after STARTTLS: {result['after']}"
    else:  # port 25 is for inbound mail: no AUTH at all
        assert "auth" not in result["after"], f"port 25 offers AUTH after STARTTLS: {result}"


def test_smtps_offers_auth(client, pw_user):
    result = client("smtp_auth", 465, "implicit", pw_user.address, pw_user.password)
    assert result["ok"], result
    assert "auth" in result["after"], f"465 offers no AUTH: {result['after']}"


def test_imap_login_disabled_before_starttls(client, pw_user):
    result = client("imap_plain", 143, REMOTE_SOURCE, pw_user.address, pw_user.password)
    assert result["ok"], result
    assert result["client_addr"] == REMOTE_SOURCE, result
    before = result["caps_before"]
    assert "STARTTLS" in before, f"143 offers no STARTTLS: {before}"
    assert "LOGINDISABLED" in before, f"143 does not say LOGINDISABLED before STARTTLS: {before}"
    mechs = [c for c in before if c.startswith("AUTH=")]
    assert not mechs, f"143 offers {mechs} before STARTTLS"
    assert result["login_before"][0] != "OK", \
        f"LOGIN with a valid password succeeded in clear text on 143: {result['login_before']}"
    assert "LOGINDISABLED" not in result["caps_after"], result["caps_after"]
    assert result["login_after"][0] == "OK", \
        f"control: LOGIN after STARTTLS failed: {result['login_after']}"


def test_pop3_user_pass_refused_before_stls(client, pw_user):
    result = client("pop3_plain", 110, REMOTE_SOURCE, pw_user.address, pw_user.password)
    assert result["ok"], result
    assert result["client_addr"] == REMOTE_SOURCE, result
    assert "STLS" in result["capa_before"], f"110 offers no STLS: {result['capa_before']}"
    assert "USER" not in result["capa_before"], \
        f"110 offers USER before STLS: {result['capa_before']}"
    steps = result["login_before"]
    assert steps and steps[-1][1].startswith("ERR"), \
        f"USER/PASS with a valid password accepted in clear text on 110: {steps}"
    assert result["login_after"] == "ok", \
        f"control: USER/PASS after STLS failed: {result['login_after']}"


def test_managesieve_offers_no_login_before_starttls(client, pw_user):
    result = client("sieve_plain", 4190, REMOTE_SOURCE, pw_user.address, pw_user.password)
    assert result["ok"], result
    assert result["client_addr"] == REMOTE_SOURCE, result
    before = result["caps_before"]
    assert "STARTTLS" in before, f"4190 offers no STARTTLS: {before}"
    assert not before.get("SASL"), f"4190 offers SASL {before.get('SASL')!r} before STARTTLS"
    assert not result["auth_before"].startswith("OK"), \
        f"AUTHENTICATE with a valid password succeeded in clear text: {result['auth_before']}"
    assert "PLAIN" in result["caps_after"].get("SASL", "").upper().split(), result["caps_after"]
    assert result["auth_wrong"].startswith("NO"), \
        f"a wrong password for {pw_user.address} was accepted on 4190: {result['auth_wrong']}"
    assert result["auth_after"].startswith("OK"), \
        f"control: AUTHENTICATE after STARTTLS failed: {result['auth_after']}"


@pytest.mark.parametrize("port", [587, 465, 993, 995])
def test_wrong_password_refused(client, pw_user, port):
    result = client("badpass", port, pw_user.address, pw_user.password)
    assert result["ok"], result
    assert result["wrong_error"], f"a wrong password for {pw_user.address} was accepted on {port}"
    assert result["right_error"] is None, \
        f"control: the right password was refused on {port}: {result['right_error']}"


# --- 3. Sender login maps

def _refused(result) -> bool:
    if 500 <= result["mail"][0] < 600:
        return True
    return result["rcpt"] is not None and 500 <= result["rcpt"][0] < 600


@pytest.mark.parametrize("port", [587, 465])
def test_cannot_send_as_another_user(client, alias_user, port):
    user, other = alias_user
    result = client("sender", port, user.address, user.password, other.address, other.address)
    assert result["ok"], result
    assert _refused(result), \
        f"{user.address} may send as {other.address} on {port}: {result}"


@pytest.mark.parametrize("port", [587, 465])
def test_cannot_send_as_a_foreign_address(client, alias_user, port):
    user, other = alias_user
    result = client("sender", port, user.address, user.password, f"someone@{FOREIGN}",
                    other.address)
    assert result["ok"], result
    assert _refused(result), f"{user.address} may send as someone@{FOREIGN} on {port}: {result}"


@pytest.mark.parametrize("port", [587, 465])
def test_can_send_with_own_alias(client, alias_user, port):
    user, other = alias_user
    alias = user.aliases[0]
    result = client("sender", port, user.address, user.password, alias, other.address)
    assert result["ok"], result
    assert result["mail"][0] == 250 and result["rcpt"] and result["rcpt"][0] == 250, \
        f"{user.address} may not send as their alias {alias} on {port}: {result}"


# --- 4. TLS 1.2 and 1.3 only, Mozilla intermediate ciphers

def _client_side(entry: dict) -> str | None:
    if "client_error" in entry:
        return entry["client_error"]
    if not entry.get("offered"):
        return "the client offered no cipher"
    error = entry.get("error", "")
    return error if any(m in error for m in CLIENT_SIDE_ERRORS) else None


@pytest.mark.parametrize("version", OLD_VERSIONS)
@pytest.mark.parametrize(("port", "mode"), TLS_PORTS)
def test_old_tls_versions_refused(tls_scan, port, mode, version):
    scan = tls_scan(port, mode)
    entry = scan[version]
    assert not entry["ok"], f"{port} negotiated {entry.get('version')} ({entry.get('cipher')})"
    problem = _client_side(entry)
    assert problem is None, f"inconclusive: the client could not offer {version}: {problem}"
    assert scan["TLSv1.2"]["ok"], \
        f"control: TLS 1.2 on {port} fails too ({scan['TLSv1.2'].get('error')}), so the " \
        f"{version} failure says nothing about versions"


@pytest.mark.parametrize("version", CURRENT_VERSIONS)
@pytest.mark.parametrize(("port", "mode"), TLS_PORTS)
def test_current_tls_versions_accepted(tls_scan, port, mode, version):
    entry = tls_scan(port, mode)[version]
    assert entry["ok"], f"{version} handshake on {port} failed: {entry.get('error')}"
    assert entry["version"] == version, entry


@pytest.mark.parametrize(("port", "mode"), TLS_PORTS)
def test_tls12_cipher_is_intermediate_aead(tls_scan, port, mode):
    entry = tls_scan(port, mode)["TLSv1.2"]
    assert entry["ok"], f"TLS 1.2 handshake on {port} failed: {entry.get('error')}"
    assert entry["cipher"] in MOZILLA_INTERMEDIATE_TLS12, \
        f"{port} negotiated {entry['cipher']} (offered every cipher)"


@pytest.mark.parametrize("kx", ["ECDHE", "RSA", "DHE"])
@pytest.mark.parametrize(("port", "mode"), TLS_PORTS)
def test_tls12_other_ciphers_refused(tls_scan, port, mode, kx):
    """TLS 1.2 offering every cipher with this key exchange except the intermediate ones
    (CBC, SHA-1, 3DES, RC4, NULL, anonymous, static RSA ...) must fail."""
    scan = tls_scan(port, mode)
    entry = scan[f"TLSv1.2-other-{kx}"]
    assert not entry["ok"], f"{port} accepted the non-intermediate cipher {entry.get('cipher')}"
    problem = _client_side(entry)
    assert problem is None, f"inconclusive: the client offered no other {kx} cipher: {problem}"
    assert scan["TLSv1.2"]["ok"], \
        f"control: TLS 1.2 with every cipher on {port} fails too: {scan['TLSv1.2'].get('error')}"


# --- 5. Message size limit (unknown recipients: test_mailhost)

@pytest.mark.parametrize("port", [25, 587, 465])
def test_message_size_limit(client, mail, pw_user, port):
    limit = mail.message_size_limit
    if port == 25:
        args = (port, "plain", "-", "-", REMOTE_SENDER, limit)
    else:
        args = (port, "starttls" if port == 587 else "implicit", pw_user.address,
                pw_user.password, pw_user.address, limit)
    result = client("size", *args)
    assert result["ok"], result
    assert result["size"] == str(limit), f"EHLO SIZE on {port} is {result['size']}, not {limit}"
    assert result["over"][0] == 552, f"MAIL FROM SIZE={limit + 1} on {port}: {result['over']}"
    assert result["at"][0] == 250, f"control: MAIL FROM SIZE={limit} on {port}: {result['at']}"


# --- 6. Files holding secrets

def _secret_files(mail, platform) -> tuple[list[tuple[str, str, str | None, str]], list[str]]:
    """(path, owner, group or None for any, mode) the backend must have, and the other
    backend's secret files (if left behind, they must still not be world-readable)."""
    paths, users = platform["paths"], platform["users"]
    key = tls_paths(mail)["key"]
    dovecot = [(f"{paths['dovecot_config_dir']}/users", "root", users["dovecot_internal"],
                "0640")]
    cyrus = [(paths["sasldb"], "root", users["sasl_group"], "0640"),
             (f"{paths['state_dir']}/cyrus-admin.pw", "root", None, "0600"),
             (f"{paths['state_dir']}/cyrus-sasldb.state", "root", None, "0600")]
    own = {"dovecot": [*dovecot, (key, "root", "root", "0640")],
           "cyrus": [*cyrus, (key, "root", users["cyrus_group"], "0640")]}
    left = {"dovecot": [f for f, *_ in cyrus], "cyrus": [f for f, *_ in dovecot]}
    # DKIM signing keys: OpenDKIM's alone
    dkim_dir = f"{paths['opendkim_dir']}/keys"
    dkim = [(dkim_dir, users["opendkim"], users["opendkim"], "0700")] + [
        (mail.dkim.installed_key(paths["opendkim_dir"], d), users["opendkim"],
         users["opendkim"], "0600") for d in mail.domains] if mail.signs else []
    # a new store must say what it keeps
    return own[mail.backend] + dkim, left[mail.backend]


def test_secret_files_have_tight_modes(host, mail, platform):
    wanted, leftovers = _secret_files(mail, platform)
    problems = []
    for path, owner, group, mode in wanted:
        f = host.file(path)
        if not f.exists:
            problems.append(f"{path}: missing")
            continue
        got = (f.user, f.group, f"{f.mode:04o}")
        if got != (owner, group or f.group, mode):
            problems.append(f"{path}: {got[0]}:{got[1]} {got[2]}, expected "
                            f"{owner}:{group or '*'} {mode}")
        if f.mode & 0o007:
            problems.append(f"{path}: world-accessible ({f.mode:04o})")
    for path in leftovers:
        f = host.file(path)
        if f.exists and f.mode & 0o007:
            problems.append(f"{path} (left from the other store): world-accessible "
                            f"({f.mode:04o})")
    assert not problems, "; ".join(problems)
