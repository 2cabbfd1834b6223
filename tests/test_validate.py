"""Every validation error mailctl knows, through the CLI: exit code 2, one line per problem as
`FILE: HOST: FIELD: MESSAGE`, naming the file that set the variable, and never a traceback.
Plus the positive cases: normalisation (IDNA, case), catch-alls, sizes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_ALL, BASE_HOST, DELETE, HOST, patched, write

from mailctl.model import MailHost
from mailctl.names import NameSyntaxError, normalize_address, normalize_domain, parse_size
from mailctl.render import render_host
from mailctl.validate import check_host

HOST_FILE = f"host_vars/{HOST}.yml"
ALL_FILE = "group_vars/all/main.yml"
FILES = {"host": HOST_FILE, "all": ALL_FILE, "hosts": "hosts.yml", "inventory": "."}

SHA512 = ("{SHA512-CRYPT}$6$0123456789abcdef$yYBBA/930szjHGlNlCz8Lfmn1PzhTI7llhSywcpARrHqGz15"
          "fj7dPKcFeTAOmLg/Tchevq57E.Dpey01UD17F0")
ALICE = {"address": "alice@example.test", "password": "alice-pw-1"}
BOB = {"address": "bob@corp.test", "password": "bob-pw-2"}
POSTMASTER = {"address": "postmaster@example.test", "to": "alice@example.test"}


def users(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [ALICE, BOB, *extra]


def aliases(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [POSTMASTER, *extra]


@dataclass
class Case:
    id: str
    expect: list[tuple[str, str, str]]  # (file key, field, stable part of the message)
    host: dict[str, Any] = field(default_factory=dict)  # patch for host_vars/<host>.yml
    all: dict[str, Any] = field(default_factory=dict)  # patch for group_vars/all/main.yml
    args: tuple[str, ...] = ()
    hosts: Any = None  # hosts.yml content (default: one host in `all`)
    source: str = ""  # -i INVENTORY/source (default: the inventory directory)


CASES = [
    # --- backend, platform
    Case("unknown-backend", [("host", "mail_backend",
                              "'exim' is not a backend (choose dovecot or cyrus)")],
         host={"mail_backend": "exim"}),
    Case("unknown-backend-type", [("host", "mail_backend", "is not a backend")],
         host={"mail_backend": ["dovecot"]}),
    Case("unknown-platform", [("host", "mail_platform", "'gentoo' is not a platform")],
         host={"mail_platform": "gentoo"}),
    # --- host name
    Case("hostname-not-fqdn", [("host", "mail_hostname",
                                "'mail' is not a fully qualified host name")],
         host={"mail_hostname": "mail"}),
    Case("hostname-underscore", [("host", "mail_hostname", "is not a fully qualified host name")],
         host={"mail_hostname": "mail_1.example.test"}),
    Case("hostname-label-dash", [("host", "mail_hostname", "is not a fully qualified host name")],
         host={"mail_hostname": "-mail.example.test"}),
    Case("hostname-number", [("host", "mail_hostname", "is not a fully qualified host name")],
         host={"mail_hostname": 42}),
    Case("hostname-numeric-tld", [("host", "mail_hostname", "is not a fully qualified host name")],
         host={"mail_hostname": "192.0.2.1"}),
    # --- domains
    Case("domains-required", [("inventory", "mail_domains", "is required")],
         all={"mail_domains": DELETE}),
    Case("domain-space", [("all", "mail_domains[1]", "'exa mple.test' is not a valid domain name")],
         all={"mail_domains": ["example.test", "exa mple.test", "corp.test"]}),
    Case("domain-single-label", [("all", "mail_domains[2]", "'localhost' is not a valid domain")],
         all={"mail_domains": ["example.test", "corp.test", "localhost"]}),
    Case("domain-long-label", [("all", "mail_domains[2]", "is not a valid domain name")],
         all={"mail_domains": ["example.test", "corp.test", "a" * 64 + ".test"]}),
    Case("domain-not-string", [("all", "mail_domains[2]", "42 is not a domain name")],
         all={"mail_domains": ["example.test", "corp.test", 42]}),
    Case("domains-not-list", [("all", "mail_domains", "must be a list, not str")],
         all={"mail_domains": "example.test", "mail_users": [], "mail_aliases": []}),
    Case("domain-twice", [("all", "mail_domains[2]", "'Example.TEST' is listed twice")],
         all={"mail_domains": ["example.test", "corp.test", "Example.TEST"]}),
    # --- addresses
    Case("address-no-at", [("all", "mail_users[2].address", "'carol' is not an email address")],
         all={"mail_users": users({"address": "carol", "password": "x"})}),
    Case("address-two-at", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "carol@@example.test", "password": "x"})}),
    Case("address-space", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "car ol@example.test", "password": "x"})}),
    Case("address-non-ascii-local", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "jörg@example.test", "password": "x"})}),
    Case("address-bad-domain", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "carol@example..test", "password": "x"})}),
    Case("address-double-dot", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "car..ol@example.test", "password": "x"})}),
    Case("address-missing", [("all", "mail_users[2].address", "None is not an email address")],
         all={"mail_users": users({"password": "x"})}),
    Case("address-local-too-long", [("all", "mail_users[2].address", "is not an email address")],
         all={"mail_users": users({"address": "c" * 65 + "@example.test", "password": "x"})}),
    # --- users
    Case("users-not-list", [("all", "mail_users", "must be a list, not dict")],
         all={"mail_users": {"alice@example.test": "pw"}, "mail_aliases": []}),
    Case("user-not-mapping", [("all", "mail_users[2]", "must be a mapping")],
         all={"mail_users": users("carol@example.test")}),
    Case("user-unserved-domain", [("all", "mail_users[2].address",
                                   "user 'carol@other.test' is in 'other.test', which this host "
                                   "does not serve (mail_domains: example.test, corp.test)")],
         all={"mail_users": users({"address": "carol@other.test", "password": "x"})}),
    Case("user-alias-unserved-domain", [("all", "mail_users[2].aliases[0]",
                                         "alias 'c@other.test' is in 'other.test', which this "
                                         "host does not serve")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "aliases": ["c@other.test"]})}),
    Case("user-alias-malformed", [("all", "mail_users[2].aliases[0]", "is not an email address")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "aliases": ["c at example.test"]})}),
    Case("user-aliases-not-list", [("all", "mail_users[2].aliases", "must be a list, not str")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "aliases": "c@example.test"})}),
    Case("user-alias-is-user", [("all", "mail_users[2].aliases[0]",
                                 "'bob@corp.test' is already a user")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "aliases": ["bob@corp.test"]})}),
    Case("user-alias-in-mail-aliases", [("all", "mail_users[2].aliases[0]",
                                         "'postmaster@example.test' is also defined in "
                                         "mail_aliases")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "aliases": ["postmaster@example.test"]})}),
    Case("user-duplicate", [("all", "mail_users[2].address",
                             "'alice@example.test' is defined twice")],
         all={"mail_users": users({"address": "Alice@EXAMPLE.test", "password": "x"})}),
    Case("user-duplicate-idna", [("all", "mail_users[1].address",
                                  "'carol@xn--bcher-kva.test' is defined twice")],
         all={"mail_domains": ["bücher.test"], "mail_aliases": [],
              "mail_users": [{"address": "carol@bücher.test", "password": "x"},
                             {"address": "carol@xn--bcher-kva.test", "password": "y"}]}),
    Case("user-no-password", [("all", "mail_users[2]",
                               "has neither 'password' nor 'password_hash'")],
         all={"mail_users": users({"address": "carol@example.test"})}),
    Case("user-empty-password", [("all", "mail_users[2]",
                                  "has neither 'password' nor 'password_hash'")],
         all={"mail_users": users({"address": "carol@example.test", "password": "",
                                   "password_hash": ""})}),
    Case("user-password-not-string", [("all", "mail_users[2].password", "must be a string")],
         all={"mail_users": users({"address": "carol@example.test", "password": ["x"]})}),
    Case("user-unknown-setting", [("all", "mail_users[2].passwd",
                                   "unknown user setting; did you mean password?")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "passwd": "y"})}),
    Case("user-unknown-setting-no-hint", [("all", "mail_users[2].shoe_size",
                                           "unknown user setting")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "shoe_size": 44})}),
    # --- password hashes
    Case("hash-md5", [("all", "mail_users[2].password_hash",
                       "scheme 'MD5' is weak or unknown; use one of SHA512-CRYPT")],
         all={"mail_users": users({"address": "carol@example.test",
                                   "password_hash": "{MD5}1a1dc91c907325c69271ddf0c944bc72"})}),
    Case("hash-plain", [("all", "mail_users[2].password_hash", "scheme 'PLAIN' is weak")],
         all={"mail_users": users({"address": "carol@example.test",
                                   "password_hash": "{PLAIN}secret"})}),
    Case("hash-sha", [("all", "mail_users[2].password_hash", "scheme 'SHA' is weak")],
         all={"mail_users": users({"address": "carol@example.test",
                                   "password_hash": "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="})}),
    Case("hash-md5-crypt", [("all", "mail_users[2].password_hash",
                             "is not a password hash mailctl accepts")],
         all={"mail_users": users({"address": "carol@example.test",
                                   "password_hash": "$1$saltsalt$abcdefghijklmnopqrstuv"})}),
    Case("hash-not-string", [("all", "mail_users[2].password_hash", "must be a string")],
         all={"mail_users": users({"address": "carol@example.test", "password_hash": 12345})}),
    Case("cyrus-hash-only", [("all", "mail_users[2].password",
                              "the cyrus backend keeps SASL secrets in sasldb, which needs the "
                              "clear password")],
         host={"mail_backend": "cyrus"},
         all={"mail_users": users({"address": "carol@example.test", "password_hash": SHA512})}),
    Case("cyrus-hash-only-by-option", [("all", "mail_users[2].password",
                                        "a password_hash alone is not enough")],
         args=("--backend", "cyrus"),
         all={"mail_users": users({"address": "carol@example.test", "password_hash": SHA512})}),
    # --- quota, message size
    Case("quota-negative", [("all", "mail_users[2].quota",
                             "-1 is negative; a quota must be 0 or more")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": -1})}),
    Case("quota-negative-unit", [("all", "mail_users[2].quota", "'-5M' is negative")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": "-5M"})}),
    Case("quota-garbled-unit", [("all", "mail_users[2].quota",
                                 "'5 parsecs' is not a quota (use bytes or a number with K, M, "
                                 "G or T)")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": "5 parsecs"})}),
    Case("quota-bad-unit-suffix", [("all", "mail_users[2].quota", "'10XB' is not a quota")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": "10XB"})}),
    Case("quota-iB-without-unit", [("all", "mail_users[2].quota", "'10iB' is not a quota")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": "10iB"})}),
    Case("quota-bool", [("all", "mail_users[2].quota", "True is not a quota")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": True})}),
    Case("quota-float", [("all", "mail_users[2].quota", "1.5 is not a quota")],
         all={"mail_users": users({"address": "carol@example.test", "password": "x",
                                   "quota": 1.5})}),
    Case("size-zero", [("host", "mail_message_size_limit", "must be more than 0")],
         host={"mail_message_size_limit": 0}),
    Case("size-garbled", [("host", "mail_message_size_limit",
                           "'big' is not a message size limit")],
         host={"mail_message_size_limit": "big"}),
    Case("size-negative", [("host", "mail_message_size_limit", "is negative")],
         host={"mail_message_size_limit": "-25M"}),
    # --- relay host
    Case("relayhost-bare-ip", [("host", "mail_relayhost",
                                "'192.0.2.25': an IP address relay host must be written in "
                                "[brackets]")],
         host={"mail_relayhost": "192.0.2.25"}),
    Case("relayhost-bare-ipv6", [("host", "mail_relayhost", "is not a relay host")],
         host={"mail_relayhost": "2001:db8::25"}),
    Case("relayhost-unclosed", [("host", "mail_relayhost",
                                 "'[smtp.example.test' is not a relay host (use host, [host], "
                                 "host:port or [host]:port)")],
         host={"mail_relayhost": "[smtp.example.test"}),
    Case("relayhost-port-range", [("host", "mail_relayhost", "is not a relay host (use host")],
         host={"mail_relayhost": "smtp.example.test:70000"}),
    Case("relayhost-port-zero", [("host", "mail_relayhost", "is not a relay host (use host")],
         host={"mail_relayhost": "[smtp.example.test]:0"}),
    Case("relayhost-port-name", [("host", "mail_relayhost", "is not a relay host (use host")],
         host={"mail_relayhost": "[smtp.example.test]:smtp"}),
    Case("relayhost-space", [("host", "mail_relayhost", "is not a relay host (use host")],
         host={"mail_relayhost": "smtp example.test"}),
    Case("relayhost-bad-name", [("host", "mail_relayhost",
                                 "is not a relay host: 'smtp..example.test' is not a host name")],
         host={"mail_relayhost": "smtp..example.test:587"}),
    Case("relayhost-list", [("host", "mail_relayhost", "is not a relay host")],
         host={"mail_relayhost": ["smtp.example.test"]}),
    Case("relayhost-int", [("host", "mail_relayhost", "25 is not a relay host")],
         host={"mail_relayhost": 25}),
    # --- unknown variables
    Case("unknown-var-suggestion", [("host", "mail_domain",
                                     "unknown mailctl variable; did you mean mail_domains?")],
         host={"mail_domain": "example.test"}),
    Case("unknown-var-suggestion-users", [("host", "mail_user",
                                           "unknown mailctl variable; did you mean mail_users?")],
         host={"mail_user": []}),
    Case("unknown-var-no-suggestion", [("host", "mail_xyzzy", "unknown mailctl variable")],
         host={"mail_xyzzy": 1}),
    # --- networks
    Case("mynetworks-prefix", [("host", "mail_mynetworks[1]",
                                "'10.0.0.0/33' is not a network in CIDR notation")],
         host={"mail_mynetworks": ["127.0.0.0/8", "10.0.0.0/33"]}),
    Case("mynetworks-garbage", [("host", "mail_mynetworks[0]", "'intranet' is not a network")],
         host={"mail_mynetworks": ["intranet"]}),
    Case("mynetworks-not-list", [("host", "mail_mynetworks", "must be a list, not str")],
         host={"mail_mynetworks": "127.0.0.0/8"}),
    Case("mynetworks-int", [("host", "mail_mynetworks[0]", "is not a network in CIDR notation")],
         host={"mail_mynetworks": [10]}),
    # --- TLS
    Case("tls-files-no-cert-key", [("host", "mail_tls.cert", "is required when mode is 'files'"),
                                   ("host", "mail_tls.key", "is required when mode is 'files'")],
         host={"mail_tls": {"mode": "files"}}),
    Case("tls-files-no-key", [("host", "mail_tls.key", "is required when mode is 'files'")],
         host={"mail_tls": {"mode": "files", "cert": "files/mail.crt"}}),
    Case("tls-bad-mode", [("host", "mail_tls.mode",
                           "'letsencrypt' is not a TLS mode (choose selfsigned or files or "
                           "acme)")],
         host={"mail_tls": {"mode": "letsencrypt"}}),
    Case("acme-no-directory-no-contact",
         [("host", "mail_tls.directory", "is required when mode is 'acme'"),
          ("host", "mail_tls.contact", "is required when mode is 'acme'")],
         host={"mail_tls": {"mode": "acme"}}),
    Case("acme-http-directory", [("host", "mail_tls.directory",
                                  "'http://acme.example/dir' is not an https:// URL")],
         host={"mail_tls": {"mode": "acme", "directory": "http://acme.example/dir",
                            "contact": "hostmaster@example.test"}}),
    Case("acme-bad-contact", [("host", "mail_tls.contact", "'hostmaster' is not an email address")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster"}}),
    Case("acme-foreign-name", [("host", "mail_tls.names[1]",
                                "'www.elsewhere.example' is neither this host's name nor under "
                                "one of its mail domains")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt-staging",
                            "contact": "hostmaster@example.test",
                            "names": ["imap.example.test", "www.elsewhere.example"]}}),
    Case("acme-dns-without-hook", [("host", "mail_tls.dns_hook",
                                    "is required when challenge is 'dns-01'")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster@example.test", "challenge": "dns-01"}}),
    Case("acme-bad-challenge", [("host", "mail_tls.challenge",
                                 "'tls-alpn-01' is not an ACME challenge")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster@example.test", "challenge": "tls-alpn-01"}}),
    Case("acme-bad-renew-check", [("host", "mail_tls.renew_check", "'4s' is not a duration")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster@example.test", "renew_check": "4s"}}),
    Case("acme-cert-setting", [("host", "mail_tls.cert", "is not a setting of mode 'acme'")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster@example.test", "cert": "x.crt"}}),
    Case("acme-missing-hook-file", [("host", "mail_tls.dns_hook", "'hooks/dns.sh': no such file")],
         host={"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                            "contact": "hostmaster@example.test", "challenge": "dns-01",
                            "dns_hook": "hooks/dns.sh"}}),
    Case("tls-bad-min-days", [("host", "mail_tls.min_days_left",
                               "-3 is not a whole number from 0 to 3650")],
         host={"mail_tls": {"mode": "selfsigned", "min_days_left": -3}}),
    Case("tls-unknown-key", [("host", "mail_tls.certificate", "unknown TLS setting")],
         host={"mail_tls": {"mode": "selfsigned", "certificate": "x"}}),
    Case("tls-not-mapping", [("host", "mail_tls", "must be a mapping")],
         host={"mail_tls": "selfsigned"}),
    # --- DKIM, DMARC, DNS: one finding per problem, in the file that set the setting
    Case("dkim-bad-selector", [("host", "mail_dkim.selector",
                                "'Bad_Sel' is not a valid selector (one DNS label: lower-case "
                                "letters, digits and '-', at most 63)")],
         host={"mail_dkim": {"selector": "Bad_Sel"}}),
    Case("dkim-selector-too-long", [("host", "mail_dkim.selector", "is not a valid selector")],
         host={"mail_dkim": {"selector": "s" * 64}}),
    Case("dkim-selector-dotted", [("host", "mail_dkim.selector", "is not a valid selector")],
         host={"mail_dkim": {"selector": "2024.mail"}}),
    Case("dkim-selector-number", [("host", "mail_dkim.selector",
                                   "2024 is not a valid selector")],
         host={"mail_dkim": {"selector": 2024}}),
    Case("dkim-selectors-bad-selector", [("all", "mail_dkim.selectors.corp.test",
                                          "'x_y' is not a valid selector")],
         all={"mail_dkim": {"selectors": {"example.test": "good", "corp.test": "x_y"}}}),
    Case("dkim-selectors-bad-domain", [("host", "mail_dkim.selectors.exa mple.test",
                                        "'exa mple.test' is not a valid domain name")],
         host={"mail_dkim": {"selectors": {"exa mple.test": "s1"}}}),
    Case("dkim-selectors-not-mapping", [("host", "mail_dkim.selectors",
                                         "must be a mapping of domain to selector")],
         host={"mail_dkim": {"selectors": ["example.test"]}}),
    Case("dkim-publish-bad-selector", [("host", "mail_dkim.publish[1]",
                                        "'Old!' is not a valid selector")],
         host={"mail_dkim": {"publish": ["old", "Old!"]}}),
    Case("dkim-publish-not-list", [("host", "mail_dkim.publish", "must be a list, not str")],
         host={"mail_dkim": {"publish": "old"}}),
    Case("dkim-files-without-key-file", [("host", "mail_dkim.key_file",
                                          "is required when mode is 'files' (a path with "
                                          "{domain} and {selector})")],
         host={"mail_dkim": {"mode": "files"}}),
    Case("dkim-key-file-unknown-placeholder", [("host", "mail_dkim.key_file",
                                                "may hold only {domain} and {selector} "
                                                "('sel')")],
         host={"mail_dkim": {"mode": "files", "key_file": "dkim/{domain}.{sel}.key"}}),
    Case("dkim-key-file-positional", [("host", "mail_dkim.key_file",
                                       "may hold only {domain} and {selector}")],
         host={"mail_dkim": {"mode": "files", "key_file": "dkim/{}.key"}}),
    Case("dkim-key-file-unclosed-brace", [("host", "mail_dkim.key_file",
                                           "may hold only {domain} and {selector}")],
         host={"mail_dkim": {"mode": "files", "key_file": "dkim/{domain.key"}}),
    Case("dkim-key-file-without-files-mode", [("host", "mail_dkim.key_file",
                                               "is read only when mode is 'files'")],
         host={"mail_dkim": {"key_file": "dkim/{domain}.{selector}.key"}}),
    Case("dkim-bad-mode", [("host", "mail_dkim.mode",
                            "'sometimes' is not a DKIM mode (choose generate, files, off)")],
         host={"mail_dkim": {"mode": "sometimes"}}),
    Case("dkim-unknown-key", [("host", "mail_dkim.selektor",
                               "unknown setting (use mode, selector, selectors, publish, "
                               "key_file)")],
         host={"mail_dkim": {"selektor": "s1"}}),
    Case("dkim-not-mapping", [("host", "mail_dkim", "must be a mapping (keys: mode, selector")],
         host={"mail_dkim": "generate"}),
    Case("dmarc-bad-policy", [("host", "mail_dmarc.policy",
                               "'hold' is not a DMARC policy (choose none, quarantine, reject)")],
         host={"mail_dmarc": {"policy": "hold"}}),
    Case("dmarc-reject-not-bool", [("host", "mail_dmarc.reject", "must be true or false")],
         host={"mail_dmarc": {"reject": "yes"}}),
    Case("dmarc-bad-report-to", [("host", "mail_dmarc.report_to",
                                  "'reports' is not an email address")],
         host={"mail_dmarc": {"report_to": "reports"}}),
    Case("dmarc-unknown-key", [("host", "mail_dmarc.p", "unknown setting (use reject, policy, "
                                                        "report_to)")],
         host={"mail_dmarc": {"p": "reject"}}),
    Case("dns-ttl-too-small", [("host", "mail_dns.ttl",
                                "must be a number of seconds from 60 to 604800")],
         host={"mail_dns": {"ttl": 59}}),
    Case("dns-ttl-too-large", [("host", "mail_dns.ttl", "from 60 to 604800")],
         host={"mail_dns": {"ttl": 604801}}),
    Case("dns-ttl-string", [("host", "mail_dns.ttl", "from 60 to 604800")],
         host={"mail_dns": {"ttl": "1h"}}),
    Case("dns-ttl-bool", [("host", "mail_dns.ttl", "from 60 to 604800")],
         host={"mail_dns": {"ttl": True}}),
    Case("dns-unknown-mta-sts", [("host", "mail_dns.mta_sts",
                                  "'strict' is not an MTA-STS mode (choose testing, enforce, "
                                  "none)")],
         host={"mail_dns": {"mta_sts": "strict"}}),
    Case("dns-unknown-key", [("host", "mail_dns.spf", "unknown setting (use ttl, mta_sts)")],
         host={"mail_dns": {"spf": "-all"}}),
    Case("public-ipv4-is-ipv6", [("host", "mail_public_ipv4",
                                  "'2001:db8::25': is an IPv6 address")],
         host={"mail_public_ipv4": "2001:db8::25"}),
    Case("public-ipv6-is-ipv4", [("host", "mail_public_ipv6", "'192.0.2.25': is an IPv4 address")],
         host={"mail_public_ipv6": "192.0.2.25"}),
    Case("public-ipv4-loopback", [("host", "mail_public_ipv4",
                                   "'127.0.0.1': is not an address other hosts can reach")],
         host={"mail_public_ipv4": "127.0.0.1"}),
    Case("public-ipv6-loopback", [("host", "mail_public_ipv6",
                                   "'::1': is not an address other hosts can reach")],
         host={"mail_public_ipv6": "::1"}),
    Case("public-ipv4-unspecified", [("host", "mail_public_ipv4", "other hosts can reach")],
         host={"mail_public_ipv4": "0.0.0.0"}),
    Case("public-ipv6-link-local", [("host", "mail_public_ipv6", "other hosts can reach")],
         host={"mail_public_ipv6": "fe80::1"}),
    Case("public-ipv4-garbage", [("host", "mail_public_ipv4",
                                  "'192.0.2.256': '192.0.2.256' does not appear to be an IPv4 "
                                  "or IPv6 address")],
         host={"mail_public_ipv4": "192.0.2.256"}),
    Case("dkim-dmarc-dns-together", [("host", "mail_dkim.selector", "is not a valid selector"),
                                     ("host", "mail_dmarc.policy", "is not a DMARC policy"),
                                     ("host", "mail_dns.ttl", "from 60 to 604800"),
                                     ("all", "mail_public_ipv4", "is an IPv6 address")],
         host={"mail_dkim": {"selector": "_"}, "mail_dmarc": {"policy": "p"},
               "mail_dns": {"ttl": 0}},
         all={"mail_public_ipv4": "::2"}),
    # --- abuse settings (every case: tests/test_abuse_settings.py)
    Case("bans-bad-action", [("host", "mail_bans.action",
                              "'drop' is not a ban action (choose nftables, none)")],
         host={"mail_bans": {"action": "drop"}}),
    Case("send-limits-user-elsewhere", [("all", 'mail_send_limits.users["carol@example.test"]',
                                         "'carol@example.test' is not one of this host's "
                                         "mail_users")],
         all={"mail_send_limits": {"users": {"carol@example.test": [{"count": 5,
                                                                      "per": "1h"}]}}}),
    Case("send-limits-off-platform", [("all", "mail_send_limits.enabled",
                                       "packaged for Debian only; set mail_send_limits: "
                                       "{enabled: false} on suse hosts")],
         host={"mail_platform": "suse"}, all={"mail_send_limits": {"enabled": True}}),
    # --- topology
    Case("mx-and-mailstore", [("hosts", "groups",
                               "a host cannot be in both 'mx' and 'mailstore'")],
         hosts={"all": {"children": {"mx": {"hosts": {HOST: None}},
                                     "mailstore": {"hosts": {HOST: None}}}}},
         source="hosts.yml"),
    # --- overrides
    Case("override-nested", [("host", "mail_postfix_overrides.smtpd_banner",
                              "must be a single value (string, number or boolean)")],
         host={"mail_postfix_overrides": {"smtpd_banner": {"text": "hi"}}}),
    Case("override-list", [("host", "mail_dovecot_overrides.protocols",
                            "must be a single value")],
         host={"mail_dovecot_overrides": {"protocols": ["imap", "pop3"]}}),
    Case("override-null", [("host", "mail_cyrus_overrides.quotawarn", "must be a single value")],
         host={"mail_cyrus_overrides": {"quotawarn": None}}),
    Case("override-newline", [("host", "mail_postfix_overrides.smtpd_banner",
                               "must not contain a newline")],
         host={"mail_postfix_overrides": {"smtpd_banner": "hi\nrelayhost = [evil.test]"}}),
    Case("override-bad-name", [("host", "mail_postfix_overrides.bad name",
                                "is not a setting name")],
         host={"mail_postfix_overrides": {"bad name": "x"}}),
    Case("override-not-mapping", [("host", "mail_cyrus_overrides", "must be a mapping")],
         host={"mail_cyrus_overrides": ["quotawarn: 80"]}),
    # --- aliases
    Case("aliases-not-list", [("all", "mail_aliases", "must be a list, not dict")],
         all={"mail_aliases": {"postmaster@example.test": "alice@example.test"}}),
    Case("alias-not-mapping", [("all", "mail_aliases[1]", "must be a mapping with 'address' "
                                                          "and 'to'")],
         all={"mail_aliases": aliases("abuse@example.test: alice@example.test")}),
    Case("alias-malformed", [("all", "mail_aliases[1].address",
                              "is not an email address (a catch-all is written '@domain')")],
         all={"mail_aliases": aliases({"address": "abuse", "to": "alice@example.test"})}),
    Case("alias-bad-catchall", [("all", "mail_aliases[1].address", "is not a valid domain")],
         all={"mail_aliases": aliases({"address": "@corp", "to": "alice@example.test"})}),
    Case("alias-unserved-domain", [("all", "mail_aliases[1].address",
                                    "alias 'abuse@other.test' is in 'other.test', which this "
                                    "host does not serve")],
         all={"mail_aliases": aliases({"address": "abuse@other.test",
                                       "to": "alice@example.test"})}),
    Case("catchall-unserved-domain", [("all", "mail_aliases[1].address",
                                       "is in 'other.test', which this host does not serve")],
         all={"mail_aliases": aliases({"address": "@other.test", "to": "alice@example.test"})}),
    Case("alias-duplicate", [("all", "mail_aliases[1].address",
                              "'postmaster@example.test' is defined twice")],
         all={"mail_aliases": aliases({"address": "PostMaster@example.test",
                                       "to": "bob@corp.test"})}),
    Case("alias-is-user", [("all", "mail_aliases[1].address",
                            "'bob@corp.test' is already a user; a user cannot also be an alias")],
         all={"mail_aliases": aliases({"address": "bob@corp.test", "to": "alice@example.test"})}),
    Case("alias-unknown-setting", [("all", "mail_aliases[1].target",
                                    "unknown alias setting (use address, to)")],
         all={"mail_aliases": aliases({"address": "abuse@example.test",
                                       "to": "alice@example.test", "target": "x"})}),
    Case("alias-no-recipient", [("all", "mail_aliases[1].to", "names no recipient")],
         all={"mail_aliases": aliases({"address": "abuse@example.test", "to": []})}),
    Case("alias-bad-target", [("all", "mail_aliases[1].to[1]",
                               "'alice' is not an email address")],
         all={"mail_aliases": aliases({"address": "abuse@example.test",
                                       "to": ["bob@corp.test", "alice"]})}),
    Case("alias-dangling-target", [("all", "mail_aliases[1].to[0]",
                                    "'ghost@example.test' is in a served domain but is neither "
                                    "a user nor an alias")],
         all={"mail_aliases": aliases({"address": "abuse@example.test",
                                       "to": "ghost@example.test"})}),
    Case("alias-loop-two", [("all", "mail_aliases[1]",
                             "alias loop: a@example.test -> b@example.test -> a@example.test"),
                            ("all", "mail_aliases[2]",
                             "alias loop: b@example.test -> a@example.test -> b@example.test")],
         all={"mail_aliases": aliases({"address": "a@example.test", "to": "b@example.test"},
                                      {"address": "b@example.test", "to": "a@example.test"})}),
    Case("alias-loop-self", [("all", "mail_aliases[1]",
                              "alias loop: a@example.test -> a@example.test")],
         all={"mail_aliases": aliases({"address": "a@example.test",
                                       "to": ["alice@example.test", "A@example.test"]})}),
    Case("alias-loop-three", [("all", "mail_aliases[1]", "alias loop: a@example.test -> "
                                                         "b@corp.test -> c@example.test -> "
                                                         "a@example.test"),
                              ("all", "mail_aliases[2]", "alias loop: b@corp.test"),
                              ("all", "mail_aliases[3]", "alias loop: c@example.test")],
         all={"mail_aliases": aliases({"address": "a@example.test", "to": "b@corp.test"},
                                      {"address": "b@corp.test", "to": "c@example.test"},
                                      {"address": "c@example.test", "to": "a@example.test"})}),
    # team -> nobody (not a user: the catch-all catches it) -> team again
    Case("alias-loop-catchall", [("all", "mail_aliases[1]",
                                  "alias loop: team@example.test -> nobody@example.test -> "
                                  "team@example.test")],
         all={"mail_aliases": aliases({"address": "team@example.test",
                                       "to": ["alice@example.test", "nobody@example.test"]},
                                      {"address": "@example.test", "to": "team@example.test"})}),
    # across domains: a@corp.test -> x@example.test -(catch-all @example.test)-> a@corp.test
    Case("alias-loop-catchall-cross-domain",
         [("all", "mail_aliases[1]", "alias loop: a@corp.test -> x@example.test -> a@corp.test")],
         all={"mail_aliases": aliases({"address": "a@corp.test", "to": "x@example.test"},
                                      {"address": "@example.test", "to": "a@corp.test"})}),
]


def problems(res, inv: Path) -> list[tuple[str, ...]]:
    """The result's lines with the file relative to the inventory directory ('.' for itself);
    mailctl runs from the inventory's parent, so it prints 'inv1/host_vars/...'."""
    out = []
    for file, *rest in res.problems:
        if file == inv.name:
            file = "."
        out.append((file.removeprefix(inv.name + "/"), *rest))
    return out


def build(make_inventory, case: Case) -> Path:
    return make_inventory(all_vars=patched(BASE_ALL, case.all),
                          host_vars={HOST: patched(BASE_HOST, case.host)},
                          hosts=case.hosts)


def test_base_inventory_is_valid(make_inventory, mailctl):
    inv = make_inventory()
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"{HOST}: ok (dovecot, allinone, debian, 2 domains, 2 users)\n"
    assert res.stderr == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validation_error(make_inventory, mailctl, case: Case):
    inv = build(make_inventory, case)
    res = mailctl("validate", "-i", inv / case.source, *case.args, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    got = problems(res, inv)
    assert len(got) == len(case.expect), res.stderr
    for where, fld, fragment in case.expect:
        matches = [p for p in got if p[2] == fld]
        assert matches, f"no line for field {fld!r} in:\n{res.stderr}"
        file, host, _, message = matches[0]
        assert host == HOST
        assert file == FILES[where], res.stderr
        assert fragment in message, res.stderr


@pytest.mark.parametrize("command", ["validate", "render", "check"])
def test_every_command_validates_first(make_inventory, mailctl, tmp_path, command):
    inv = build(make_inventory, Case("x", [], host={"mail_backend": "exim"}))
    extra = ("-o", str(tmp_path / "out")) if command == "render" else ()
    res = mailctl(command, "-i", inv, *extra, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert res.stderr == (f"{inv.name}/{HOST_FILE}: {HOST}: mail_backend: 'exim' is not a backend "
                          "(choose dovecot or cyrus)\n")
    assert not (tmp_path / "out").exists()


def test_all_errors_are_collected_and_attributed(make_inventory, mailctl):
    """Five problems in three files give five lines, each naming the file that set the value."""
    inv = make_inventory(
        hosts={"all": {"hosts": {HOST: {"mail_message_size_limit": 0}}}},
        all_vars=patched(BASE_ALL, {
            "mail_users": users({"address": "carol@example.test", "password": "x",
                                 "quota": "lots"}),
            "mail_aliases": aliases({"address": "postmaster@example.test",
                                     "to": "bob@corp.test"}),
        }),
        host_vars={HOST: patched(BASE_HOST, {"mail_backend": "exim",
                                             "mail_relayhost": "192.0.2.1:25"})},
    )
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert res.stdout == ""
    assert sorted((p[0], p[2]) for p in problems(res, inv)) == sorted([
        (ALL_FILE, "mail_aliases[1].address"),
        (ALL_FILE, "mail_users[2].quota"),
        (HOST_FILE, "mail_backend"),
        (HOST_FILE, "mail_relayhost"),
        ("hosts.yml", "mail_message_size_limit"),
    ]), res.stderr


def test_problems_of_every_host_are_reported(make_inventory, mailctl):
    other = "mail2.example.test"
    inv = make_inventory(
        hosts={"all": {"hosts": {HOST: None, other: None}}},
        host_vars={HOST: patched(BASE_HOST, {"mail_backend": "exim"}),
                   other: {"mail_hostname": "mail2", "mail_platform": "bsd"}},
    )
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert {(p[0], p[1], p[2]) for p in problems(res, inv)} == {
        (HOST_FILE, HOST, "mail_backend"),
        (f"host_vars/{other}.yml", other, "mail_hostname"),
        (f"host_vars/{other}.yml", other, "mail_platform"),
    }
    # --limit narrows validation to the selected host
    res = mailctl("validate", "-i", inv, "--limit", other, cwd=inv.parent)
    assert res.exit_code == 2
    assert {p[1] for p in problems(res, inv)} == {other}


def test_lines_name_yaml_inventory_file_for_inline_vars(make_inventory, mailctl):
    inv = make_inventory(
        hosts={"all": {"hosts": {HOST: {"mail_relayhost": "192.0.2.1"}}}},
    )
    res = mailctl("validate", "-i", inv / "hosts.yml", cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert problems(res, inv) == [("hosts.yml", HOST, "mail_relayhost",
                             "'192.0.2.1': an IP address relay host must be written in "
                             "[brackets]")]


def test_ini_inventory(tmp_path, mailctl):
    """An INI inventory with inline host vars, [all:vars] and group_vars/all.yml beside it."""
    root = tmp_path / "ini"
    write(root / "hosts.ini",
          f"[mailhosts]\n{HOST} mail_hostname={HOST} mail_relayhost=192.0.2.1\n\n"
          "[all:vars]\nmail_domains=['example.test']\nmail_backend=exim\n")
    write(root / "group_vars" / "all.yml",
          {"mail_users": [{"address": "alice@other.test", "password": "x"}]})
    res = mailctl("validate", "-i", root / "hosts.ini", cwd=root.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert sorted(problems(res, root)) == [
        ("group_vars/all.yml", HOST, "mail_users[0].address",
         "user 'alice@other.test' is in 'other.test', which this host does not serve "
         "(mail_domains: example.test)"),
        ("hosts.ini", HOST, "mail_backend",
         "'exim' is not a backend (choose dovecot or cyrus)"),
        ("hosts.ini", HOST, "mail_relayhost",
         "'192.0.2.1': an IP address relay host must be written in [brackets]"),
    ]


def test_ini_inventory_valid(tmp_path, mailctl):
    root = tmp_path / "ini"
    write(root / "inventory.ini",
          f"[mailstore]\n{HOST} mail_hostname={HOST}\n\n[all:vars]\n"
          "mail_domains=['example.test']\nmail_backend=cyrus\n")
    write(root / "group_vars" / "all.yml",
          {"mail_users": [{"address": "alice@example.test", "password": "x"}]})
    res = mailctl("validate", "-i", root / "inventory.ini", cwd=root.parent)
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"{HOST}: ok (cyrus, mailstore, debian, 1 domains, 1 users)\n"


def test_missing_required_variable_is_reported_once(make_inventory, mailctl):
    """A missing mail_hostname is one problem and must give one line, not two (check_host
    adds 'is required' and then parses the None default: 'None is not a fully qualified...')."""
    inv = make_inventory(host_vars={HOST: {"mail_backend": "dovecot"}})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert problems(res, inv) == [(".", HOST, "mail_hostname", "is required")], res.stderr


# --------------------------------------------------------------------------- attribution bugs

def test_file_attribution_is_not_a_substring_match(make_inventory, mailctl):
    """host_vars only *mentions* mail_domains inside a template; the bad list is in group_vars.

    (inventory.py `_defines` answers "is the name anywhere in the text?" for vars files.)"""
    inv = make_inventory(
        all_vars=patched(BASE_ALL, {"mail_domains": ["example.test", "corp.test", "bad domain"]}),
        host_vars={HOST: {"mail_hostname": "mx.{{ mail_domains[0] }}"}},
    )
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert problems(res, inv) == [(ALL_FILE, HOST, "mail_domains[2]",
                             "'bad domain' is not a valid domain name")]


def test_file_attribution_of_a_typo_next_to_the_real_name(make_inventory, mailctl):
    """'mail_domain' (typo, group_vars) must not be blamed on host_vars, which sets
    'mail_domains' (a different variable that merely contains the typo as a substring)."""
    inv = make_inventory(
        all_vars=patched(BASE_ALL, {"mail_domain": "example.test"}),
        host_vars={HOST: patched(BASE_HOST, {"mail_domains": ["example.test", "corp.test"]})},
    )
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert problems(res, inv) == [(ALL_FILE, HOST, "mail_domain",
                             "unknown mailctl variable; did you mean mail_domains?")]


def test_file_attribution_follows_ansible_precedence(make_inventory, mailctl):
    """group_vars/all/ beats the inventory file's `all: vars:` in Ansible, so the bad value
    (-5, from group_vars) must be blamed on group_vars/all/main.yml, not hosts.yml."""
    inv = make_inventory(
        hosts={"all": {"vars": {"mail_message_size_limit": "10M"}, "hosts": {HOST: None}}},
        all_vars=patched(BASE_ALL, {"mail_message_size_limit": -5}),
    )
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert problems(res, inv) == [(ALL_FILE, HOST, "mail_message_size_limit",
                             "-5 is negative; a message size limit must be 0 or more")]


def test_topology_conflict_names_the_inventory_file(make_inventory, mailctl):
    """With a directory inventory the group membership comes from hosts.yml: name that file,
    not the directory."""
    inv = make_inventory(hosts={"all": {"children": {"mx": {"hosts": {HOST: None}},
                                                     "mailstore": {"hosts": {HOST: None}}}}})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    assert res.exit_code == 2
    assert problems(res, inv) == [("hosts.yml", HOST, "groups",
                             "a host cannot be in both 'mx' and 'mailstore'")]


# --------------------------------------------------------------------------- validation gaps

def test_huge_size_string_is_an_error_not_a_crash(make_inventory, mailctl):
    """parse_size: float('9'*400) is inf, int(inf * unit) raises OverflowError."""
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_message_size_limit": "9" * 400 + "M"})})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert [p[2] for p in problems(res, inv)] == ["mail_message_size_limit"]


@pytest.mark.parametrize("value", ["9" * 400 + "M", "1" * 320, "1e400", "9" * 309 + ".5K"])
def test_parse_size_never_overflows(value):
    with contextlib.suppress(NameSyntaxError):
        parse_size(value, what="quota")


def test_message_size_limit_beyond_postfix_range_is_rejected(make_inventory, mailctl):
    """Postfix keeps message_size_limit in a signed 64-bit long: `postfix check` fails on
    2**63, so validate should refuse it instead of passing it on to the render."""
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_message_size_limit": 2**63})})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert [p[2] for p in problems(res, inv)] == ["mail_message_size_limit"]


@pytest.mark.parametrize("command", ["validate", "render"])
def test_empty_domain_list_is_rejected(make_inventory, mailctl, tmp_path, command):
    """`mail_domains: []` passes the 'is required' check (it only looks for None and ''), the
    served-domain checks are skipped for an empty list, and render_host then crashes in the
    templates on host.domains[0] (jinja2 UndefinedError, a traceback)."""
    inv = make_inventory(all_vars=patched(BASE_ALL, {"mail_domains": []}))
    extra = ("-o", tmp_path / "out") if command == "render" else ()
    res = mailctl(command, "-i", inv, *extra, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert [p[2] for p in problems(res, inv)] == ["mail_domains"]


def test_hostname_must_not_be_a_served_domain(make_inventory, mailctl):
    """main.cf puts $myhostname in mydestination; a domain listed in both mydestination and
    virtual_mailbox_domains is delivered locally, so the virtual users would never get mail."""
    inv = make_inventory(host_vars={HOST: {"mail_hostname": "example.test"}})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 2
    assert [p[2] for p in problems(res, inv)] == ["mail_hostname"]


def _check(variables: dict[str, Any], backend: str | None = None):
    return check_host(HOST, {**BASE_HOST, **BASE_ALL, **variables}, [], backend)


@pytest.mark.parametrize("address", ["x\n@example.test", "alice\n@example.test"])
def test_newline_in_local_part_is_rejected(address):
    """`_LOCAL` ends in `$`, which also matches before a trailing newline: the address is
    accepted and the newline lands in virtual_mailboxes and the Dovecot users file."""
    with pytest.raises(NameSyntaxError):
        normalize_address(address)
    host, findings = _check({"mail_users": [{"address": address, "password": "x"}],
                             "mail_aliases": []})
    assert host is None
    assert [f.field for f in findings] == ["mail_users[0].address"]


@pytest.mark.parametrize("value", [
    "$6$abc\nevil@example.test:{PLAIN}secret",  # adds a second passwd-file line
    "{SHA512-CRYPT}$6$abc\n",
    "$6$abc:def::::::",  # shifts the passwd-file fields
])
def test_password_hash_cannot_inject_passwd_file_lines(value):
    host, findings = _check({"mail_users": [{"address": "alice@example.test",
                                             "password_hash": value}],
                             "mail_aliases": []})
    assert host is None, "\n".join(f.content for f in render_host(host)
                                   if f.path.endswith("/users"))
    assert [f.field for f in findings] == ["mail_users[0].password_hash"]


@pytest.mark.parametrize("key", ["relayhost\n", "smtpd_banner\n"])
def test_override_key_with_newline_is_rejected(key):
    host, findings = _check({"mail_postfix_overrides": {key: "x"}})
    assert host is None
    assert [f.message for f in findings] == ["is not a setting name"]


def test_loop_is_found_even_when_another_loop_is_reached_first():
    """`_find_loop` gives up (returns None) as soon as it meets *any* cycle not through the
    start, so the a <-> b loop is never reported when both also reach the d <-> e loop."""
    host, findings = _check({"mail_aliases": [
        {"address": "a@example.test", "to": ["b@example.test", "d@example.test"]},
        {"address": "b@example.test", "to": ["a@example.test", "d@example.test"]},
        {"address": "d@example.test", "to": "e@example.test"},
        {"address": "e@example.test", "to": "d@example.test"},
    ]})
    assert host is None
    loops = {f.field for f in findings if f.message.startswith("alias loop")}
    assert loops == {"mail_aliases[0]", "mail_aliases[1]", "mail_aliases[2]",
                     "mail_aliases[3]"}


def test_catchall_to_a_nonexistent_address_is_rejected():
    """'@example.test -> ghost@example.test' with no user ghost: the dangling-target check
    exempts every target in a catch-all domain, and the loop search stops at the cycle
    ghost -> @example.test -> ghost, so this passes although no mail can ever be delivered."""
    host, findings = _check({"mail_aliases": [
        {"address": "@example.test", "to": "ghost@example.test"}]})
    assert host is None
    assert any(f.field.startswith("mail_aliases[0]") for f in findings), findings


# --------------------------------------------------------------------------- positive cases

def valid(variables: dict[str, Any], backend: str | None = None) -> MailHost:
    host, findings = _check(variables, backend)
    assert findings == []
    assert host is not None
    return host


def test_idna_and_case_are_normalised():
    host = valid({
        "mail_hostname": "Mail.Bücher.TEST.",
        "mail_domains": ["Bücher.test", "Example.TEST"],
        "mail_users": [{"address": "Alice@Example.TEST", "password": "x",
                        "aliases": ["A.Smith@EXAMPLE.test"]},
                       {"address": "Jorg@bücher.test", "password": "y"}],
        "mail_aliases": [{"address": "PostMaster@BÜCHER.test", "to": "JORG@xn--bcher-kva.test"},
                         {"address": "@Example.Test", "to": ["alice@example.test"]}],
    })
    assert host.hostname == "mail.xn--bcher-kva.test"
    assert host.domains == ("xn--bcher-kva.test", "example.test")
    assert [u.address for u in host.users] == ["alice@example.test", "jorg@xn--bcher-kva.test"]
    assert host.users[0].aliases == ("a.smith@example.test",)
    assert [(a.address, a.targets) for a in host.aliases] == [
        ("postmaster@xn--bcher-kva.test", ("jorg@xn--bcher-kva.test",)),
        ("@example.test", ("alice@example.test",)),
    ]
    assert normalize_domain("bücher.test") == "xn--bcher-kva.test"
    assert normalize_address("Alice@Example.TEST") == "alice@example.test"
    files = {f.path: f.content for f in render_host(host)}
    assert "virtual_mailbox_domains = xn--bcher-kva.test, example.test" in files[
        "/etc/postfix/main.cf"]
    assert "\n@example.test alice@example.test\n" in files["/etc/postfix/virtual_aliases"]
    assert "bücher" not in "".join(files.values()).lower()


def test_catchall_is_accepted(make_inventory, mailctl, tmp_path):
    inv = make_inventory(all_vars=patched(BASE_ALL, {"mail_aliases": aliases(
        {"address": "@corp.test", "to": "bob@corp.test"})}))
    res = mailctl("render", "-i", inv, "-o", tmp_path / "out", cwd=inv.parent)
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    text = (tmp_path / "out" / HOST / "etc/postfix/virtual_aliases").read_text()
    lines = text.splitlines()
    # users map to themselves before the catch-all, so it never swallows a mailbox
    assert lines.index("bob@corp.test bob@corp.test") < lines.index("@corp.test bob@corp.test")


@pytest.mark.parametrize(("value", "expected"), [
    ("25M", 25 * 1024**2), ("1.5G", 1610612736), ("2GiB", 2 * 1024**3), (1048576, 1048576),
    ("512k", 512 * 1024), ("10 MB", 10 * 1024**2), ("1T", 1024**4), ("4096", 4096),
    (" 3m ", 3 * 1024**2), ("2b", 2),
])
def test_sizes(value, expected):
    assert parse_size(value) == expected
    host = valid({"mail_message_size_limit": value,
                  "mail_users": [{"address": "alice@example.test", "password": "x",
                                  "quota": value}], "mail_aliases": []})
    assert host.message_size_limit == expected
    assert host.users[0].quota == expected
    files = {f.path: f.content for f in render_host(host)}
    assert f"\nmessage_size_limit = {expected}\n" in files["/etc/postfix/main.cf"]
    assert f"userdb_quota_rule=*:storage={expected}B" in files["/etc/dovecot/users"]


def test_quota_zero_means_unlimited():
    host = valid({"mail_users": [{"address": "alice@example.test", "password": "x",
                                  "quota": 0}], "mail_aliases": []})
    users_file = next(f.content for f in render_host(host) if f.path.endswith("/users"))
    assert "quota" not in users_file.split("\n", 2)[2]


@pytest.mark.parametrize(("value", "expected"), [
    ("", ""), (None, ""), ("smtp.example.test", "smtp.example.test"),
    ("[Smtp.Example.TEST]:587", "[smtp.example.test]:587"),
    ("smtp.example.test:25", "smtp.example.test:25"), ("[192.0.2.1]", "[192.0.2.1]"),
    ("[192.0.2.1]:2525", "[192.0.2.1]:2525"), ("[2001:db8::1]:587", "[2001:db8::1]:587"),
])
def test_relayhost_accepted(value, expected):
    assert valid({"mail_relayhost": value}).relayhost == expected


@pytest.mark.parametrize(("value", "expected"), [
    (["10.1.2.3/8"], ("10.0.0.0/8",)),
    (["::1/128", "[fe80::]/10"], ("[::1]/128", "[fe80::]/10")),
    (["192.0.2.7"], ("192.0.2.7/32",)),
    ([], ()),
])
def test_mynetworks_accepted(value, expected):
    assert valid({"mail_mynetworks": value}).mynetworks == expected


@pytest.mark.parametrize("value", [
    SHA512, SHA512.removeprefix("{SHA512-CRYPT}"), "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu",
    "$2b$12$abcdefghijklmnopqrstuu", "$y$j9T$abc$def", "$argon2id$v=19$m=65536,t=3,p=1$abc$def",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$abc$def", "{SHA256-CRYPT}$5$abc$def",
])
def test_strong_hashes_accepted(value):
    host = valid({"mail_users": [{"address": "alice@example.test", "password_hash": value}],
                  "mail_aliases": []})
    stored = host.users[0].password_hash
    assert stored.startswith("{") and stored.endswith(value.split("}", 1)[-1])


def test_cyrus_accepts_password_and_hash_together():
    valid({"mail_users": [{"address": "alice@example.test", "password": "pw",
                           "password_hash": SHA512}], "mail_aliases": []}, backend="cyrus")


def test_mx_and_mailstore_kinds():
    assert _check({}, None)[0].kind == "allinone"
    assert check_host(HOST, {"mail_hostname": "mx1.example.test"}, ["mx"])[0].kind == "mx"
    assert check_host(HOST, {**BASE_HOST, **BASE_ALL}, ["mailstore", "eu"])[0].kind == \
        "mailstore"


def test_non_mail_variables_are_ignored():
    valid({"ansible_host": "192.0.2.1", "vault_mail_passwords": {"a": "b"}, "mailbox": 1})


def test_acme_is_refused_on_mx_and_mailstore_hosts():
    """A mailstore lets in every client certificate from the CA its peers use: a public
    ACME CA there would let in anyone holding one of its certificates."""
    acme = {"mail_tls": {"mode": "acme", "directory": "letsencrypt",
                         "contact": "hostmaster@example.test"}}
    for group, extra in (("mx", {"mail_hostname": "mx1.example.test"}),
                         ("mailstore", {**BASE_HOST, **BASE_ALL})):
        host, findings = check_host(HOST, {**extra, **acme}, [group])
        assert host is None
        assert [f.field for f in findings] == ["mail_tls.mode"], findings
        assert "all-in-one hosts" in findings[0].message
