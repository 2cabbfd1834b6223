"""Property tests: whatever an inventory holds, check_host answers (a MailHost or findings)
and never raises, and render_host renders every MailHost it accepts."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailctl.model import BACKENDS, MailHost
from mailctl.render import render_host
from mailctl.validate import DEFAULTS, Finding, check_host

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                         HealthCheck.data_too_large])

# --------------------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.binary(max_size=8), st.sampled_from(["", " ", "\n", "\x00", "@", "{{", "é", "\U0001d518"]),
)
junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), children,
                        max_size=4)),
    max_leaves=12,
)

domain_names = st.sampled_from([
    "example.test", "Example.TEST", "corp.test", "bücher.test", "BÜCHER.test.",
    "xn--bcher-kva.test", "other.test", "a.b.c.example.test", "bad domain", "localhost",
    "a..b", "-x.test", "ex_ample.test", "1.2.3.4", "example.123", "x" * 64 + ".test", ".",
    "xn--zz.test", "ß.test", "☃.test",
])
locals_ = st.one_of(
    st.sampled_from(["alice", "Bob", "postmaster", "a.smith", "x+tag", "jörg", "", " ",
                     "a..b", ".a", "a\n", "q" * 65, "o'neil", "a b"]),
    st.text(alphabet=string.ascii_letters + string.digits + "._+-!#$", min_size=1,
            max_size=12),
)
addresses = st.one_of(
    st.builds(lambda local, dom: f"{local}@{dom}", locals_, domain_names),
    st.builds(lambda dom: "@" + dom, domain_names),
    st.text(max_size=20), junk,
)
sizes = st.one_of(
    st.integers(min_value=-10, max_value=2**70),
    st.from_regex(r"-?[0-9]{1,400}(\.[0-9]{1,3})? ?[kKmMgGtTxX]?(i?[bB])?", fullmatch=True),
    st.sampled_from(["25M", "1.5G", "2GiB", "0", "0.0001K", "big", "1e5", "NaN", "inf"]),
    st.floats(), junk,
)
hashes = st.one_of(
    st.sampled_from([
        "{SHA512-CRYPT}$6$abcdefgh$" + "A" * 86, "$6$abc$def", "$2y$05$" + "a" * 53,
        "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA", "{MD5}abc", "{PLAIN}pw", "$1$x$y",
        "{ARGON2ID}$argon2id$v=19$x", "{SHA512-CRYPT}", "{}x", "",
    ]),
    st.text(max_size=30), junk,
)
passwords = st.one_of(st.text(min_size=1, max_size=16).map(lambda s: "pw-" + s), junk)
flags = st.one_of(st.booleans(), junk)
sieve_settings = st.one_of(
    st.fixed_dictionaries({}, optional={"duplicates": flags, "enabled": junk}), junk)
# a user's filters (mail_users[].sieve): any shape, rendered and compiled when accepted
sieve_filters = st.one_of(
    st.fixed_dictionaries({}, optional={
        "owned": flags,
        "vacation": st.one_of(st.fixed_dictionaries({}, optional={
            "subject": st.text(max_size=20), "body": st.text(max_size=40),
            "days": st.one_of(st.integers(min_value=-1, max_value=40), junk)}), junk),
        "rules": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
            "match": st.one_of(st.fixed_dictionaries({}, optional={
                "header": st.text(max_size=10), "contains": st.text(max_size=10)}), junk),
            "fileinto": st.text(max_size=12), "flags": junk, "stop": flags}), max_size=2),
            junk),
        "script": st.one_of(st.text(max_size=30), junk)}),
    junk)
users = st.fixed_dictionaries({}, optional={
    "address": addresses, "password": passwords, "password_hash": hashes, "quota": sizes,
    "aliases": st.one_of(st.lists(addresses, max_size=3), junk),
    "sieve": sieve_filters,
    "passwd": junk, "extra": junk,
})
served = st.sampled_from(["example.test", "Example.Test", "bücher.test",
                         "xn--bcher-kva.test"])
good_users = st.fixed_dictionaries(
    {"address": st.builds(lambda local, dom: f"{local}@{dom}",
                          st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,8}[a-z0-9]", fullmatch=True)
                          .filter(lambda x: ".." not in x), served)},
    optional={"password": st.text(min_size=1, max_size=12).map(lambda s: "pw-" + s),
              "password_hash": st.sampled_from(["$6$abc$def", "{BLF-CRYPT}$2y$05$xyz"]),
              "quota": st.one_of(st.integers(0, 2**40), st.sampled_from(["1G", "2.5M"])),
              "aliases": st.lists(st.builds(lambda n, d: f"alias{n}@{d}", st.integers(0, 9),
                                            served), max_size=2)},
)
aliases = st.fixed_dictionaries({}, optional={
    "address": addresses,
    "to": st.one_of(addresses, st.lists(addresses, max_size=3), junk),
    "target": junk,
})
relayhosts = st.one_of(
    st.sampled_from(["", "smtp.example.test", "[smtp.example.test]:587", "[192.0.2.1]",
                     "192.0.2.1", "[2001:db8::1]:25", "host:99999", "[unclosed", "a b",
                     "[::1]", "[ipv6:::1]", "smtp.example.test:0", ":25"]),
    st.text(max_size=30), junk,
)
networks = st.one_of(
    st.sampled_from(["127.0.0.0/8", "[::1]/128", "::1/128", "10.0.0.0/33", "192.0.2.7",
                     "fe80::/10", "intranet", "", "[fe80::]/200", "1.2.3.4/-1"]),
    st.text(max_size=20), junk,
)
tls = st.one_of(
    st.fixed_dictionaries({}, optional={
        "mode": st.one_of(st.sampled_from(["selfsigned", "files", "acme"]), junk),
        "cert": st.one_of(st.text(max_size=20), junk),
        "key": st.one_of(st.text(max_size=20), junk),
        "certificate": junk}),
    junk,
)
selectors = st.one_of(st.sampled_from(["mail", "s2026", "Bad_Sel", "", "-x", "a" * 64]),
                      st.text(max_size=12), junk)
dkim = st.one_of(
    st.fixed_dictionaries({}, optional={
        "mode": st.one_of(st.sampled_from(["generate", "files", "off", "on"]), junk),
        "selector": selectors,
        "selectors": st.one_of(st.dictionaries(st.one_of(domain_names, st.integers()), selectors,
                                               max_size=3), junk),
        "publish": st.one_of(st.lists(selectors, max_size=3), junk),
        "key_file": st.one_of(st.sampled_from(["k/{domain}.{selector}", "{x}", "{", ""]),
                              st.text(max_size=20), junk),
        "algorithm": junk}),
    junk,
)
dmarc = st.one_of(
    st.fixed_dictionaries({}, optional={
        "reject": st.one_of(st.booleans(), junk),
        "policy": st.one_of(st.sampled_from(["none", "quarantine", "reject", "hold"]), junk),
        "report_to": st.one_of(st.sampled_from(["dmarc@example.test", "x@", ""]), junk)}),
    junk,
)
dns_settings = st.one_of(
    st.fixed_dictionaries({}, optional={
        "ttl": st.one_of(st.integers(min_value=-10, max_value=10**7), junk),
        "mta_sts": st.one_of(st.sampled_from(["testing", "enforce", "none", "on"]), junk)}),
    junk,
)
addresses = st.one_of(
    st.sampled_from(["192.0.2.10", "2001:db8::10", "127.0.0.1", "::", "fe80::1", "300.1.1.1",
                     ""]), st.text(max_size=20), junk)
setting_names = st.one_of(
    st.sampled_from(["smtpd_banner", "biff", "quotawarn", "auth_verbose", "relayhost",
                     "bad name", "1abc", "a.b-c_d", "", "x\n"]),
    st.text(max_size=12), st.integers(),
)
overrides = st.one_of(
    st.dictionaries(setting_names, st.one_of(st.text(max_size=20), st.integers(),
                                             st.booleans(), st.floats(), junk), max_size=4),
    junk,
)
durations = st.one_of(
    st.integers(min_value=-5, max_value=10**8),
    st.sampled_from(["10s", "1m", "5 min", "1h", "1d", "30d", "365d", "0", "-1", "1.5h", "6",
                     "9" * 12, "1" * 4400, "1w", " 2h "]),
    st.text(max_size=8), junk,
)
dnsbl_sites = st.one_of(
    st.sampled_from(["zen.spamhaus.org*3", "bl.example.test=127.0.0.[2..11]*-2",
                     "b.example.test=127.0.0.[2;4]", "x.test=127.0.0.256", "a b", "a,b.test",
                     "bücher.test*2", "localhost", "x.test*101", "x.test=127.0.0.2\n"]),
    st.from_regex(r"[a-z.\-]{1,12}(=[0-9.\[\];]{1,20})?(\*-?[0-9]{1,4})?", fullmatch=True),
    st.text(max_size=20), junk,
)
postscreen = st.one_of(
    st.fixed_dictionaries({}, optional={
        "enabled": flags, "dnsbl_sites": st.one_of(st.lists(dnsbl_sites, max_size=3), junk),
        "dnsbl_threshold": st.one_of(st.integers(min_value=-1, max_value=200), junk),
        "greet_wait": durations, "dnsbl": junk}),
    junk,
)
rates = st.one_of(st.integers(min_value=-1, max_value=200000), junk)
limits = st.one_of(
    st.fixed_dictionaries({}, optional={
        "enabled": flags, "window": durations, "connections": rates, "connection_rate": rates,
        "message_rate": rates, "recipient_rate": rates, "auth_rate": rates, "rate": junk}),
    junk,
)
send_limit = st.one_of(
    st.fixed_dictionaries({"count": st.integers(min_value=1, max_value=1000),
                           "per": st.sampled_from(["10s", "1h", "1d", 600, "30d"])}),
    st.fixed_dictionaries({}, optional={
        "count": st.one_of(st.integers(min_value=-1, max_value=2 * 10**6), junk),
        "per": durations, "burst": junk}),
    junk,
)
send_limit_lists = st.one_of(st.lists(send_limit, max_size=3), junk)
send_limits = st.one_of(
    st.fixed_dictionaries({}, optional={
        "enabled": flags, "limits": send_limit_lists,
        "users": st.one_of(st.dictionaries(
            st.one_of(st.sampled_from(["alice@example.test", "ALICE@Example.test",
                                       "jorg@bücher.test", "jorg@xn--bcher-kva.test",
                                       "ghost@example.test", "x", ""]),
                      st.text(max_size=12), st.integers(), st.none()),
            send_limit_lists, max_size=3), junk),
        "limit": junk}),
    junk,
)
login_throttle = st.one_of(
    st.fixed_dictionaries({}, optional={
        "enabled": flags, "failure_delay": durations,
        "sessions_per_user": st.one_of(st.integers(min_value=-1, max_value=2000), junk),
        "delay": junk}),
    junk,
)
bans = st.one_of(
    st.fixed_dictionaries({}, optional={
        "enabled": flags, "maxretry": st.one_of(st.integers(min_value=-1, max_value=200), junk),
        "findtime": durations, "bantime": durations,
        "ignore": st.one_of(st.lists(networks, max_size=3), junk),
        "action": st.one_of(st.sampled_from(["nftables", "none", "drop", ""]), junk),
        "banaction": junk}),
    junk,
)

PER_KEY: dict[str, st.SearchStrategy[Any]] = {
    "mail_backend": st.one_of(st.sampled_from([*BACKENDS, "exim", "Dovecot", ""]), junk),
    "mail_hostname": st.one_of(domain_names, st.text(max_size=30), junk),
    "mail_domains": st.one_of(st.lists(domain_names, max_size=4), domain_names, junk),
    "mail_users": st.one_of(st.lists(good_users, max_size=4),
                            st.lists(st.one_of(good_users, users, junk), max_size=4), junk),
    "mail_aliases": st.one_of(st.lists(st.one_of(aliases, junk), max_size=4), junk),
    "mail_relayhost": relayhosts,
    "mail_mynetworks": st.one_of(st.lists(networks, max_size=4), junk),
    "mail_message_size_limit": sizes,
    "mail_tls": tls,
    "mail_dkim": dkim,
    "mail_dmarc": dmarc,
    "mail_public_ipv4": addresses,
    "mail_public_ipv6": addresses,
    "mail_dns": dns_settings,
    "mail_postscreen": postscreen,
    "mail_limits": limits,
    "mail_send_limits": send_limits,
    "mail_login_throttle": login_throttle,
    "mail_bans": bans,
    "mail_sieve": sieve_settings,
    "mail_platform": st.one_of(st.sampled_from(["debian", "redhat", "suse", "arch"]), junk),
    "mail_postfix_overrides": overrides,
    "mail_dovecot_overrides": overrides,
    "mail_cyrus_overrides": overrides,
}
assert set(PER_KEY) == set(DEFAULTS)

inventories = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=PER_KEY),
    st.dictionaries(st.one_of(st.text(max_size=15).map(lambda s: "mail_" + s),
                              st.text(max_size=10), st.integers()), junk, max_size=3),
)
groups = st.lists(st.sampled_from(["mx", "mailstore", "eu", "all", "ungrouped"]),
                  max_size=3, unique=True)
backend_overrides = st.one_of(st.none(), st.sampled_from(BACKENDS))


# A valid host that mutations start from, so that the interesting (accepted) space is reached.
VALID: dict[str, Any] = {
    "mail_hostname": "mail.example.test",
    "mail_domains": ["example.test", "bücher.test"],
    "mail_users": [{"address": "alice@example.test", "password": "pw-alice-secret",
                    "quota": "1G", "aliases": ["a.smith@example.test"]},
                   {"address": "jorg@bücher.test", "password_hash": "$6$abc$def"}],
    "mail_aliases": [{"address": "postmaster@example.test", "to": "alice@example.test"},
                     {"address": "@bücher.test", "to": ["jorg@xn--bcher-kva.test"]}],
    "mail_postscreen": {"dnsbl_sites": ["zen.spamhaus.org*3", "bl.example.test=127.0.0.[2..4]"]},
    "mail_send_limits": {"users": {"Jorg@bücher.test": [{"count": 5, "per": "1h"}]}},
    "mail_bans": {"ignore": ["192.0.2.0/24", "2001:db8::/32"]},
}
one_change = st.sampled_from(sorted(PER_KEY)).flatmap(
    lambda key: PER_KEY[key].map(lambda value: {key: value}))
mutated = st.builds(
    lambda changes, drop: {k: v for k, v in
                           {**VALID, **{k: v for c in changes for k, v in c.items()}}.items()
                           if k not in drop},
    st.lists(one_change, max_size=2),
    st.sets(st.sampled_from(sorted(VALID)), max_size=1),
)


# --------------------------------------------------------------------------- properties

def _answer(variables, grps, backend) -> tuple[MailHost | None, list[Finding]]:
    result = check_host("fuzz.example.test", variables, grps, backend)
    assert isinstance(result, tuple) and len(result) == 2
    host, findings = result
    assert isinstance(findings, list)
    if host is None:
        assert findings, "no MailHost and no findings"
        for f in findings:
            assert isinstance(f, Finding)
            assert all(isinstance(x, str) and x for x in (f.variable, f.field, f.message))
    else:
        assert isinstance(host, MailHost) and findings == []
    return host, findings


def _render_ok(host: MailHost) -> None:
    files = render_host(host)
    assert files
    for f in files:
        assert "Managed by mailctl" in f.content.split("\n", 1)[0], f.path
    for user in host.users:
        if user.password and len(user.password) >= 8:
            assert not any(user.password in f.content for f in files), "password leaked"


@settings(SETTINGS, max_examples=1500)
@given(variables=st.one_of(inventories, mutated), grps=groups, backend=backend_overrides)
@example(variables={**VALID, "mail_message_size_limit": "9" * 400 + "M"}, grps=[],
         backend=None)
@example(variables={**VALID, "mail_users": [{"address": "a@example.test", "password": "x",
                                             "quota": "1" * 320}]}, grps=[], backend=None)
def test_check_host_never_raises_and_render_works(variables, grps, backend):
    host, _ = _answer(variables, grps, backend)
    if host is not None:
        _render_ok(host)


@settings(SETTINGS, max_examples=300)
@given(variables=mutated, grps=groups, backend=backend_overrides)
def test_mutations_of_a_valid_host(variables, grps, backend):
    host, _ = _answer(variables, grps, backend)
    if host is not None:
        _render_ok(host)


def _entry_lines(content: str) -> list[str]:
    return [line for line in content.split("\n") if line and not line.startswith("#")]


@settings(SETTINGS, max_examples=400)
@given(variables=mutated, backend=backend_overrides)
@example(variables={**VALID, "mail_users": [{"address": "x\n@example.test",
                                             "password": "pw"}], "mail_aliases": []},
         backend=None)
@example(variables={**VALID, "mail_users": [{"address": "alice@example.test",
                                             "password_hash": "$6$a\nevil@example.test:{PLAIN}x"}],
                    "mail_aliases": []}, backend="dovecot")
@example(variables={**VALID, "mail_postfix_overrides": {"relayhost\n": "[x.example.test]"}},
         backend=None)
def test_accepted_hosts_render_one_line_per_entry(variables, backend):
    """No accepted value can smuggle a line break into a map, passwd-file or main.cf."""
    host, _ = _answer(variables, [], backend)
    if host is None:
        return
    files = {f.path.rsplit("/", 1)[-1]: f.content for f in render_host(host)}
    assert len(_entry_lines(files["virtual_mailboxes"])) == len(host.users)
    assert _entry_lines(files["virtual_mailboxes"]) == [f"{u.address} OK" for u in host.users]
    assert len(_entry_lines(files["virtual_aliases"])) == (
        len(host.users) + len(host.virtual_aliases))
    if "users" in files:
        lines = _entry_lines(files["users"])
        assert len(lines) == len(host.users)
        for line, user in zip(lines, host.users, strict=True):
            fields = line.split(":")  # user:hash:uid:gid:gecos:home:shell:extra
            assert fields[0] == user.address and fields[2:7] == [""] * 5, line
    for line in _entry_lines(files["main.cf"]):
        assert " = " in line or line.endswith(" ="), line


@settings(SETTINGS, max_examples=300)
@given(key=st.text(min_size=1, max_size=10), where=st.sampled_from(["top", "user", "override"]))
@example(key="x\ny", where="user")
def test_each_finding_is_one_line(key, where):
    """The CLI prints one `FILE: HOST: FIELD: MESSAGE` line per finding: neither the field nor
    the message may contain a line break, whatever keys the YAML had."""
    variables: dict[str, Any] = dict(VALID)
    if where == "top":
        variables["mail_" + key] = 1
    elif where == "user":
        variables["mail_users"] = [{"address": "alice@example.test", "password": "x", key: 1}]
    else:
        variables["mail_postfix_overrides"] = {key: [1]}
    _, findings = _answer(variables, [], None)
    for f in findings:
        assert "\n" not in f.field and "\r" not in f.field, f
        assert "\n" not in f.message and "\r" not in f.message, f
