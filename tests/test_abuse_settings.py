"""Validation of the abuse settings: mail_postscreen, mail_limits, mail_send_limits,
mail_login_throttle and mail_bans. Good values normalise into the model; each bad value is
exactly one finding that names its field and says what is expected."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BASE_ALL, BASE_HOST, HOST

from mailctl.model import Bans, Limits, LoginThrottle, Postscreen, SendLimit, SendLimits
from mailctl.validate import check_host

MX = "mx1.example.test"
ALICE_LIMITS = [{"count": 5, "per": "1h"}]


def _check(variables: dict[str, Any], groups: tuple[str, ...] = ()):
    base = {"mail_hostname": MX} if "mx" in groups else {**BASE_HOST, **BASE_ALL}
    return check_host(HOST, {**base, **variables}, list(groups))


def valid(variables: dict[str, Any], groups: tuple[str, ...] = ()):
    host, findings = _check(variables, groups)
    assert findings == []
    return host


# --------------------------------------------------------------------------- good values

GOOD = [
    ("postscreen-defaults", {}, "postscreen", Postscreen()),
    ("postscreen-sites", {"mail_postscreen": {
        "dnsbl_sites": ["Zen.Spamhaus.ORG*3", "bücher.test=127.0.0.[2..11]*-2",
                        "bl.example.test=127.0.0.[2;4]", "list.example.test=127.0.0.2",
                        "dnsbl.example.test.", "w.example.test*-0"],
        "dnsbl_threshold": 100, "greet_wait": "1m"}},
     "postscreen", Postscreen(True, ("zen.spamhaus.org*3", "xn--bcher-kva.test=127.0.0.[2..11]*-2",
                                     "bl.example.test=127.0.0.[2;4]",
                                     "list.example.test=127.0.0.2", "dnsbl.example.test",
                                     "w.example.test*0"), 100, 60)),
    ("postscreen-off", {"mail_postscreen": {"enabled": False, "greet_wait": 1}},
     "postscreen", Postscreen(enabled=False, greet_wait=1)),
    ("limits-defaults", {}, "limits", Limits()),
    ("limits-all", {"mail_limits": {"window": "1d", "connections": 0, "connection_rate": 100000,
                                    "message_rate": 1, "recipient_rate": 0, "auth_rate": 5}},
     "limits", Limits(True, 86400, 0, 100000, 1, 0, 5)),
    ("limits-window-seconds", {"mail_limits": {"window": 10}}, "limits", Limits(window=10)),
    ("send-defaults", {}, "send_limits", SendLimits()),
    ("send-limits-and-users", {"mail_send_limits": {
        "limits": [{"count": 1000000, "per": "30d"}, {"count": 1, "per": "10s"}],
        "users": {"Bob@Corp.TEST": [{"count": 9, "per": "1m"}],
                  "alice@example.test": ALICE_LIMITS}}},
     "send_limits", SendLimits(True, (SendLimit(1000000, 30 * 86400), SendLimit(1, 10)),
                               (("alice@example.test", (SendLimit(5, 3600),)),
                                ("bob@corp.test", (SendLimit(9, 60),))))),
    ("send-off-on-redhat", {"mail_platform": "redhat", "mail_send_limits": {"enabled": False}},
     "send_limits", SendLimits(enabled=False)),
    # policyd-rate-limit is Debian's: elsewhere it is off unless asked for
    ("send-default-off-on-suse", {"mail_platform": "suse"}, "send_limits",
     SendLimits(enabled=False)),
    ("send-off-with-no-limits", {"mail_send_limits": {"enabled": False, "limits": []}},
     "send_limits", SendLimits(False, (), ())),
    ("throttle-defaults", {}, "login_throttle", LoginThrottle()),
    ("throttle-bounds", {"mail_login_throttle": {"failure_delay": "15s",
                                                 "sessions_per_user": 1000}},
     "login_throttle", LoginThrottle(True, 15, 1000)),
    ("throttle-off", {"mail_login_throttle": {"enabled": False}}, "login_throttle",
     LoginThrottle(enabled=False)),
    ("bans-defaults", {}, "bans", Bans()),
    ("bans-all", {"mail_bans": {"maxretry": 1, "findtime": "7d", "bantime": "365d",
                                "ignore": ["192.0.2.7", "[2001:DB8::]/32", "10.1.2.3/8",
                                           "2001:db8:1::1"],
                                "action": "none"}},
     "bans", Bans(True, 1, 7 * 86400, 365 * 86400,
                  ("192.0.2.7/32", "2001:db8::/32", "10.0.0.0/8", "2001:db8:1::1/128"), "none")),
    ("bans-off", {"mail_bans": {"enabled": False, "bantime": "10s"}}, "bans",
     Bans(enabled=False, bantime=10)),
]


@pytest.mark.parametrize(("variables", "attribute", "expected"),
                         [case[1:] for case in GOOD], ids=[case[0] for case in GOOD])
def test_good_values_normalise(variables, attribute, expected):
    assert getattr(valid(variables), attribute) == expected


def test_mx_ignores_send_limit_users_and_the_platform():
    """An mx host has no users and runs no policyd-rate-limit: group_vars meant for the
    stores must not fail it."""
    host = valid({"mail_platform": "redhat", "mail_send_limits": {
        "enabled": True, "users": {"ghost@example.test": ALICE_LIMITS}}}, ("mx",))
    assert not host.send_limited


def test_a_user_already_reported_is_not_reported_again():
    host, findings = _check({
        "mail_users": [*BASE_ALL["mail_users"], {"address": "carol@example.test"}],
        "mail_send_limits": {"users": {"carol@example.test": ALICE_LIMITS}}})
    assert host is None
    assert [f.field for f in findings] == ["mail_users[2]"]


# --------------------------------------------------------------------------- bad values

BAD = [
    # (id, variables, field, part of the message)
    ("postscreen-not-mapping", {"mail_postscreen": "on"}, "mail_postscreen",
     "must be a mapping (keys: enabled, dnsbl_sites, dnsbl_threshold, greet_wait)"),
    ("postscreen-unknown-key", {"mail_postscreen": {"dnsbl": []}}, "mail_postscreen.dnsbl",
     "unknown setting (use enabled, dnsbl_sites"),
    ("postscreen-enabled-string", {"mail_postscreen": {"enabled": "yes"}},
     "mail_postscreen.enabled", "'yes' is not true or false"),
    ("postscreen-sites-string", {"mail_postscreen": {"dnsbl_sites": "zen.spamhaus.org"}},
     "mail_postscreen.dnsbl_sites", "must be a list, not str"),
    ("dnsbl-comma", {"mail_postscreen": {"dnsbl_sites": ["a.example.test, b.example.test"]}},
     "mail_postscreen.dnsbl_sites[0]", "is not a DNSBL site (one site per entry): use domain, "
                                       "domain=filter or either with *weight"),
    ("dnsbl-space", {"mail_postscreen": {"dnsbl_sites": ["zen.spamhaus.org *3"]}},
     "mail_postscreen.dnsbl_sites[0]", "'zen.spamhaus.org *3' is not a DNSBL site: use"),
    ("dnsbl-newline", {"mail_postscreen": {"dnsbl_sites": ["zen.spamhaus.org\nrelayhost"]}},
     "mail_postscreen.dnsbl_sites[0]", "is not a DNSBL site"),
    ("dnsbl-three-octets", {"mail_postscreen": {"dnsbl_sites": ["bl.example.test=127.0.2"]}},
     "mail_postscreen.dnsbl_sites[0]", "e.g. zen.spamhaus.org*2 or "
                                       "bl.example.test=127.0.0.[2..11]*3"),
    ("dnsbl-octet-range", {"mail_postscreen": {"dnsbl_sites": ["bl.example.test=127.0.0.256"]}},
     "mail_postscreen.dnsbl_sites[0]", "the filter's numbers are address octets, from 0 to 255"),
    ("dnsbl-weight", {"mail_postscreen": {"dnsbl_sites": ["bl.example.test*200"]}},
     "mail_postscreen.dnsbl_sites[0]", "the weight must be from -100 to 100"),
    ("dnsbl-weight-word", {"mail_postscreen": {"dnsbl_sites": ["bl.example.test*high"]}},
     "mail_postscreen.dnsbl_sites[0]", "is not a DNSBL site"),
    ("dnsbl-bad-domain", {"mail_postscreen": {"dnsbl_sites": ["bl..example.test*2"]}},
     "mail_postscreen.dnsbl_sites[0]", "'bl..example.test' is not a valid domain name"),
    ("dnsbl-single-label", {"mail_postscreen": {"dnsbl_sites": ["localhost"]}},
     "mail_postscreen.dnsbl_sites[0]", "'localhost' is not a valid domain name"),
    ("dnsbl-number", {"mail_postscreen": {"dnsbl_sites": [3]}},
     "mail_postscreen.dnsbl_sites[0]", "3 is not a DNSBL site"),
    ("dnsbl-threshold-zero", {"mail_postscreen": {"dnsbl_threshold": 0}},
     "mail_postscreen.dnsbl_threshold", "0 is not a whole number from 1 to 100"),
    ("greet-wait-long", {"mail_postscreen": {"greet_wait": "2m"}},
     "mail_postscreen.greet_wait", "'2m' is not a duration from 1s to 1m (seconds, or a number "
                                   "with s, m, h or d)"),
    ("greet-wait-float", {"mail_postscreen": {"greet_wait": 1.5}},
     "mail_postscreen.greet_wait", "1.5 is not a duration"),
    ("postscreen-off-still-checked", {"mail_postscreen": {"enabled": False,
                                                          "dnsbl_threshold": "3"}},
     "mail_postscreen.dnsbl_threshold", "'3' is not a whole number from 1 to 100"),
    ("limits-unknown-key", {"mail_limits": {"rate": 5}}, "mail_limits.rate",
     "unknown setting (use enabled, window, connections"),
    ("limits-window-short", {"mail_limits": {"window": "5s"}}, "mail_limits.window",
     "'5s' is not a duration from 10s to 1d"),
    ("limits-window-bool", {"mail_limits": {"window": True}}, "mail_limits.window",
     "True is not a duration"),
    ("limits-negative", {"mail_limits": {"connections": -1}}, "mail_limits.connections",
     "-1 is not a whole number from 0 to 100000"),
    ("limits-too-many", {"mail_limits": {"auth_rate": 100001}}, "mail_limits.auth_rate",
     "100001 is not a whole number from 0 to 100000"),
    ("limits-off-still-checked", {"mail_limits": {"enabled": False, "message_rate": "10/m"}},
     "mail_limits.message_rate", "'10/m' is not a whole number"),
    ("limits-enabled-number", {"mail_limits": {"enabled": 1}}, "mail_limits.enabled",
     "1 is not true or false"),
    ("send-not-mapping", {"mail_send_limits": [{"count": 1, "per": 60}]}, "mail_send_limits",
     "must be a mapping (keys: enabled, limits, users)"),
    ("send-unknown-key", {"mail_send_limits": {"limit": []}}, "mail_send_limits.limit",
     "unknown setting (use enabled, limits, users)"),
    ("send-empty", {"mail_send_limits": {"limits": []}}, "mail_send_limits.limits",
     "lists no limit; turn sending limits off with enabled: false"),
    ("send-limits-not-list", {"mail_send_limits": {"limits": {"count": 5, "per": 60}}},
     "mail_send_limits.limits", "must be a list, not dict"),
    ("send-limit-not-mapping", {"mail_send_limits": {"limits": [[200, 3600]]}},
     "mail_send_limits.limits[0]", "must be a mapping such as {count: 200, per: 1h}"),
    ("send-limit-unknown-key", {"mail_send_limits": {"limits": [
        {"count": 5, "per": 60, "burst": 2}]}}, "mail_send_limits.limits[0].burst",
     "unknown setting (use count, per)"),
    ("send-limit-no-per", {"mail_send_limits": {"limits": [{"count": 5}]}},
     "mail_send_limits.limits[0].per", "is required (e.g. {count: 200, per: 1h})"),
    ("send-limit-zero", {"mail_send_limits": {"limits": [{"count": 0, "per": 60}]}},
     "mail_send_limits.limits[0].count", "0 is not a whole number from 1 to 1000000"),
    ("send-limit-per-long", {"mail_send_limits": {"limits": [{"count": 5, "per": "31d"}]}},
     "mail_send_limits.limits[0].per", "'31d' is not a duration from 10s to 30d"),
    ("send-limit-same-window", {"mail_send_limits": {"limits": [
        {"count": 5, "per": "1h"}, {"count": 9, "per": 3600}]}},
     "mail_send_limits.limits[1].per", "3600: another limit of this list is per 1h too; "
                                       "give each window one count"),
    ("send-on-redhat", {"mail_platform": "redhat", "mail_send_limits": {"enabled": True}},
     "mail_send_limits.enabled", "policyd-rate-limit is packaged for Debian only; set "
                                 "mail_send_limits: {enabled: false} on redhat hosts"),
    ("send-users-not-mapping", {"mail_send_limits": {"users": ["alice@example.test"]}},
     "mail_send_limits.users", "must be a mapping of user address to limits"),
    ("send-user-not-on-host", {"mail_send_limits": {"users": {
        "carol@example.test": ALICE_LIMITS}}},
     'mail_send_limits.users["carol@example.test"]',
     "'carol@example.test' is not one of this host's mail_users"),
    ("send-user-not-address", {"mail_send_limits": {"users": {"alice": ALICE_LIMITS}}},
     'mail_send_limits.users["alice"]', "'alice' is not an email address"),
    ("send-user-twice", {"mail_send_limits": {"users": {"alice@example.test": ALICE_LIMITS,
                                                        "Alice@Example.test": ALICE_LIMITS}}},
     'mail_send_limits.users["Alice@Example.test"]', "'alice@example.test' is listed twice"),
    ("send-user-empty", {"mail_send_limits": {"users": {"alice@example.test": []}}},
     'mail_send_limits.users["alice@example.test"]',
     "lists no limit (leave the user out to apply mail_send_limits.limits)"),
    ("send-user-bad-count", {"mail_send_limits": {"users": {"alice@example.test": [
        {"count": "many", "per": "1h"}]}}},
     'mail_send_limits.users["alice@example.test"][0].count', "'many' is not a whole number"),
    ("send-user-same-window", {"mail_send_limits": {"users": {"bob@corp.test": [
        {"count": 5, "per": "1d"}, {"count": 9, "per": "24h"}]}}},
     'mail_send_limits.users["bob@corp.test"][1].per', "another limit of this list is per 1d"),
    ("send-off-still-checked", {"mail_send_limits": {"enabled": False, "limits": [
        {"count": 5, "per": "5s"}]}},
     "mail_send_limits.limits[0].per", "'5s' is not a duration from 10s to 30d"),
    ("throttle-unknown-key", {"mail_login_throttle": {"delay": 2}},
     "mail_login_throttle.delay",
     "unknown setting (use enabled, failure_delay, sessions_per_user)"),
    ("throttle-delay-zero", {"mail_login_throttle": {"failure_delay": 0}},
     "mail_login_throttle.failure_delay", "0 is not a duration from 1s to 15s"),
    ("throttle-delay-long", {"mail_login_throttle": {"failure_delay": "1m"}},
     "mail_login_throttle.failure_delay", "'1m' is not a duration from 1s to 15s"),
    ("throttle-sessions-zero", {"mail_login_throttle": {"sessions_per_user": 0}},
     "mail_login_throttle.sessions_per_user", "0 is not a whole number from 1 to 1000"),
    ("throttle-off-still-checked", {"mail_login_throttle": {"enabled": False,
                                                            "sessions_per_user": None}},
     "mail_login_throttle.sessions_per_user", "None is not a whole number"),
    ("bans-not-mapping", {"mail_bans": None}, "mail_bans",
     "must be a mapping (keys: enabled, maxretry, findtime, bantime, ignore, action)"),
    ("bans-unknown-key", {"mail_bans": {"banaction": "nftables"}}, "mail_bans.banaction",
     "unknown setting (use enabled, maxretry"),
    ("bans-maxretry-zero", {"mail_bans": {"maxretry": 0}}, "mail_bans.maxretry",
     "0 is not a whole number from 1 to 100"),
    ("bans-findtime-long", {"mail_bans": {"findtime": "8d"}}, "mail_bans.findtime",
     "'8d' is not a duration from 10s to 7d"),
    ("bans-bantime-forever", {"mail_bans": {"bantime": -1}}, "mail_bans.bantime",
     "-1 is not a duration from 10s to 365d"),
    ("bans-bantime-digits", {"mail_bans": {"bantime": "1" * 5000}}, "mail_bans.bantime",
     "is not a duration from 10s to 365d"),
    ("bans-ignore-not-list", {"mail_bans": {"ignore": "10.0.0.0/8"}}, "mail_bans.ignore",
     "must be a list, not str"),
    ("bans-ignore-bad", {"mail_bans": {"ignore": ["10.0.0.0/8", "intranet"]}},
     "mail_bans.ignore[1]", "'intranet' is not a network in CIDR notation"),
    ("bans-action", {"mail_bans": {"action": "iptables"}}, "mail_bans.action",
     "'iptables' is not a ban action (choose nftables, none)"),
    ("bans-off-still-checked", {"mail_bans": {"enabled": False, "action": "drop"}},
     "mail_bans.action", "'drop' is not a ban action"),
    ("bans-enabled-string", {"mail_bans": {"enabled": "false"}}, "mail_bans.enabled",
     "'false' is not true or false"),
    ("renew-check-unchanged", {"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                                            "contact": "hostmaster@example.test",
                                            "renew_check": "4s"}},
     "mail_tls.renew_check", "'4s' is not a duration from 5s to 7d (seconds, or a number with "
                             "s, m, h or d)"),
]


@pytest.mark.parametrize(("variables", "field", "message"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_each_bad_value_is_one_finding(variables, field, message):
    host, findings = _check(variables)
    assert host is None
    assert len(findings) == 1, findings
    assert findings[0].field == field
    assert findings[0].variable == field.split(".", 1)[0]
    assert message in findings[0].message, findings[0].message


def test_all_problems_are_collected():
    host, findings = _check({
        "mail_postscreen": {"enabled": False, "dnsbl_sites": ["a b"], "greet_wait": 0},
        "mail_limits": {"window": 0, "connections": "x"},
        "mail_send_limits": {"limits": [{"count": 0, "per": 0}],
                             "users": {"nobody@example.test": ALICE_LIMITS}},
        "mail_login_throttle": {"failure_delay": 99},
        "mail_bans": {"maxretry": 0, "ignore": ["x"], "action": "x"},
    })
    assert host is None
    assert [f.field for f in findings] == [
        "mail_postscreen.dnsbl_sites[0]", "mail_postscreen.greet_wait", "mail_limits.window",
        "mail_limits.connections", "mail_send_limits.limits[0].count",
        "mail_send_limits.limits[0].per", 'mail_send_limits.users["nobody@example.test"]',
        "mail_login_throttle.failure_delay", "mail_bans.maxretry", "mail_bans.ignore[0]",
        "mail_bans.action"]
