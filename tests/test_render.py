"""Rendering: golden files per backend x platform, determinism, headers, file modes, secrets,
and Ansible's variable precedence as seen in the rendered main.cf."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    BASE_ALL,
    BASE_HOST,
    DATA,
    EXAMPLE,
    GOLDEN,
    HOST,
    VENV_BIN,
    patched,
    run_subprocess,
    tree,
    write,
)

from mailctl.inventory import Inventory
from mailctl.passwords import derived_salt, dovecot_hash, sha512_crypt
from mailctl.platforms import profile
from mailctl.render import render_host
from mailctl.topology import Topology
from mailctl.validate import check_host

GOLDEN_INVENTORY = DATA / "golden-inventory"
BACKENDS = ("dovecot", "cyrus")
PLATFORMS = ("debian", "redhat", "suse")
GOLDEN_PASSWORDS = ("golden-alice-pw", "golden-bob-pw", "golden-jorg-pw")
EXAMPLE_PASSWORDS = ("example-alice-pw", "example-bob-pw", "example-carol-pw",
                     "example-dave-pw")


def render_to(mailctl, inventory: Path, out: Path, *args: str) -> None:
    res = mailctl("render", "-i", inventory, "-o", out, *args, cwd=out.parent)
    res.assert_clean()
    assert res.exit_code == 0, res.stderr


# --------------------------------------------------------------------------- golden files

@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_golden(mailctl, tmp_path, update_golden, backend, platform):
    host = f"mail-{platform}.example.test"
    render_to(mailctl, GOLDEN_INVENTORY, tmp_path / "out", "--backend", backend,
              "--limit", host)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [host]
    got = tree(tmp_path / "out" / host)
    golden_dir = GOLDEN / f"{backend}-{platform}"
    if update_golden:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, content in got.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_bytes(content)
    want = tree(golden_dir)
    assert sorted(got) == sorted(want), "set of rendered files differs from the golden tree"
    for rel in want:
        assert got[rel] == want[rel], (
            f"{rel} differs from {golden_dir / rel}; if the change is intended, run "
            "pytest --update-golden (or MAILCTL_UPDATE_GOLDEN=1) and review the diff")


def test_golden_trees_have_the_expected_files():
    expected = {
        "dovecot": {"etc/postfix/main.cf", "etc/postfix/master.cf",
                    "etc/postfix/virtual_mailboxes", "etc/postfix/virtual_aliases",
                    "etc/postfix/sender_logins", "etc/dovecot/dovecot.conf",
                    "etc/dovecot/users", "etc/dovecot/sieve/duplicates.sieve",
                    "etc/mailctl/sieve-filters"},
        "cyrus": {"etc/postfix/main.cf", "etc/postfix/master.cf",
                  "etc/postfix/virtual_mailboxes", "etc/postfix/virtual_aliases",
                  "etc/postfix/sender_logins", "etc/imapd.conf", "etc/cyrus.conf",
                  "etc/mailctl/sieve-filters"},
    }
    sasl = {"debian": "etc/postfix/sasl/smtpd.conf", "redhat": "etc/sasl2/smtpd.conf",
            "suse": "etc/sasl2/smtpd.conf"}
    # an all-in-one host signs and judges: OpenDKIM with its tables, OpenDMARC, and the
    # header_checks that drop forged Authentication-Results fields
    mail_auth = {"etc/opendkim/internal_hosts", "etc/opendkim/signing_table",
                 "etc/opendkim/key_table", "etc/opendmarc.conf",
                 "etc/opendmarc/ignore_hosts", "etc/postfix/header_checks"}
    opendkim_conf = {"debian": "etc/opendkim.conf", "redhat": "etc/opendkim.conf",
                     "suse": "etc/opendkim/opendkim.conf"}
    # abuse defences: the peers postscreen and the anvil limits let through, fail2ban's jails
    # and its postscreen filter (an all-in-one host screens port 25); the sending limits
    # (policyd-rate-limit) on Debian only, where it is packaged
    defences = {"etc/postfix/peers.cidr", "etc/fail2ban/jail.d/mailctl.local",
                "etc/fail2ban/filter.d/mailctl-postscreen.conf"}
    for backend in BACKENDS:
        for platform in PLATFORMS:
            want = set(expected[backend]) | mail_auth | {opendkim_conf[platform]} | defences
            if backend == "cyrus":
                want.add(sasl[platform])
            else:  # Dovecot's failed logins, each counted once
                want.add("etc/fail2ban/filter.d/mailctl-dovecot.conf")
            if platform == "debian":
                want.add("etc/policyd-rate-limit.yaml")
            assert set(tree(GOLDEN / f"{backend}-{platform}")) == want, (backend, platform)


def test_golden_content_spot_checks():
    """A few facts the golden files must show, so a bad --update-golden is caught."""
    deb = GOLDEN / "dovecot-debian" / "etc"
    main_cf = (deb / "postfix/main.cf").read_text()
    assert "\nmyhostname = mail-debian.example.test\n" in main_cf
    assert "\nvirtual_mailbox_domains = example.test, xn--bcher-kva.test\n" in main_cf
    assert "\nrelayhost = [smtp.example.test]:587\n" in main_cf
    assert "\nmynetworks = 127.0.0.0/8 [::1]/128 192.0.2.0/24\n" in main_cf
    assert f"\nmessage_size_limit = {50 * 1024**2}\n" in main_cf
    # an override of a templated setting replaces it in place; a new one is appended
    assert "\nsmtpd_banner = $myhostname ESMTP ready\n" in main_cf
    assert main_cf.count("smtpd_banner") == 1
    assert main_cf.endswith("# --- mail_postfix_overrides not set above\n"
                            "delay_warning_time = 4h\n")
    assert "\nvirtual_transport = lmtp:unix:private/dovecot-lmtp\n" in main_cf
    users = (deb / "dovecot/users").read_text().splitlines()[2:]
    assert users[0].startswith("alice@example.test:{SHA512-CRYPT}$6$")
    assert users[0].endswith(f":userdb_quota_rule=*:storage={2 * 1024**3}B")
    assert users[1].startswith("bob@example.test:{SHA512-CRYPT}$6$0123456789abcdef$")
    assert users[2].startswith("jorg@xn--bcher-kva.test:{SHA512-CRYPT}$6$")
    assert users[2].endswith("::::::")
    aliases = (deb / "postfix/virtual_aliases").read_text()
    assert "\n@xn--bcher-kva.test jorg@xn--bcher-kva.test\n" in aliases
    assert "\nteam@example.test alice@example.test, bob@example.test\n" in aliases
    assert "\na.smith@example.test alice@example.test\n" in aliases
    dovecot = (deb / "dovecot/dovecot.conf").read_text()
    assert "\nauth_verbose = no\n" in dovecot
    assert "\nlogin_greeting = mailctl ready\n" in dovecot
    cyr = GOLDEN / "cyrus-redhat" / "etc"
    imapd = (cyr / "imapd.conf").read_text()
    assert "\nquotawarn: 80\n" in imapd and imapd.count("quotawarn") == 1
    assert imapd.endswith("popminpoll: 1\n")
    assert "\nconfigdirectory: /var/lib/imap\n" in imapd
    assert "\ncyrus_sasl_config_path = /etc/sasl2\n" in (cyr / "postfix/main.cf").read_text()
    assert ("\nvirtual_transport = lmtp:unix:/run/cyrus/socket/lmtp\n"
            in (cyr / "postfix/main.cf").read_text())
    # mail authentication: an all-in-one host signs its domains and judges inbound mail
    dkim_sock, dmarc_sock = "unix:/run/opendkim/opendkim.sock", "unix:/run/opendmarc/opendmarc.sock"
    assert "\nmilter_default_action = tempfail\n" in main_cf
    assert f"\nsmtpd_milters = {dkim_sock} {dmarc_sock}\n" in main_cf
    assert f"\nnon_smtpd_milters = {dkim_sock}\n" in main_cf
    assert "\nheader_checks = regexp:${config_directory}/header_checks\n" in main_cf
    master_cf = (deb / "postfix/master.cf").read_text()
    assert master_cf.count(f"\n  -o smtpd_milters={dkim_sock}\n") == 2  # 587 and 465
    opendkim = (deb / "opendkim.conf").read_text()
    assert "\nMode                    sv\n" in opendkim
    assert "\nAuthservID              mail-debian.example.test\n" in opendkim
    assert "\nKeyTable                /etc/opendkim/key_table\n" in opendkim
    assert (deb / "opendkim/key_table").read_text().splitlines()[2:] == [
        "example.test example.test:mail:/etc/opendkim/keys/example.test.mail.key",
        "xn--bcher-kva.test xn--bcher-kva.test:mail:"
        "/etc/opendkim/keys/xn--bcher-kva.test.mail.key"]
    assert (deb / "opendkim/signing_table").read_text().splitlines()[2:] == [
        "*@example.test example.test", "*@xn--bcher-kva.test xn--bcher-kva.test"]
    assert (deb / "opendkim/internal_hosts").read_text().splitlines()[4:] == [
        "127.0.0.0/8", "::1/128", "192.0.2.0/24"]
    opendmarc = (deb / "opendmarc.conf").read_text()
    assert "\nRejectFailures          true\n" in opendmarc
    assert "\nTrustedAuthservIDs      mail-debian.example.test\n" in opendmarc
    assert (deb / "postfix/header_checks").read_text().splitlines()[-1] == (
        r"/^Authentication-Results:[[:space:]]*(\([^)]*\)[[:space:]]*)?"
        r"mail-debian\.example\.test([[:space:];(]|$)/"
        " IGNORE")
    suse = GOLDEN / "cyrus-suse" / "etc"
    assert "\nKeyTable                /etc/opendkim/key_table\n" in (
        suse / "opendkim/opendkim.conf").read_text()
    # abuse defences: postscreen on port 25, the anvil limits, the sending limits on
    # submission where policyd-rate-limit runs (Debian), login throttling in the store
    assert "\nsmtp       inet  n       -       n       -       1       postscreen\n" in master_cf
    assert "\npostscreen_greet_action = enforce\n" in main_cf
    assert "\nsmtpd_client_connection_count_limit = 20\n" in main_cf
    policy = ",check_policy_service,unix:ratelimit/policy\n"
    assert master_cf.count(policy) == 2  # 587 and 465
    assert policy not in (GOLDEN / "dovecot-redhat/etc/postfix/master.cf").read_text()
    assert "\nauth_failure_delay = 2 secs\n" in dovecot
    assert "\nfailedloginpause: 2\n" in imapd


# --------------------------------------------------------------------------- properties

@pytest.fixture(scope="module")
def rendered_trees(tmp_path_factory) -> dict[str, Path]:
    """The example and golden inventories rendered with each backend (in a subprocess:
    this is what a user runs)."""
    out = {}
    base = tmp_path_factory.mktemp("rendered")
    for name, inv in (("example", EXAMPLE), ("golden", GOLDEN_INVENTORY)):
        for backend in BACKENDS:
            target = base / f"{name}-{backend}"
            res = run_subprocess("render", "-i", inv, "-o", target, "--backend", backend,
                                 cwd=base)
            assert res.exit_code == 0, res.stderr
            out[f"{name}-{backend}"] = target
    return out


def all_files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file()]


def test_render_is_deterministic(tmp_path, rendered_trees):
    """Same input, same bytes, also across processes with different hash seeds."""
    for backend in BACKENDS:
        again = tmp_path / backend
        res = run_subprocess("render", "-i", EXAMPLE, "-o", again, "--backend", backend,
                             cwd=tmp_path, env={"PYTHONHASHSEED": "12345"})
        assert res.exit_code == 0, res.stderr
        assert tree(again) == tree(rendered_trees[f"example-{backend}"])


def test_render_in_process_twice_is_identical():
    host, _ = check_host(HOST, {**BASE_HOST, **BASE_ALL}, [])
    assert render_host(host) == render_host(host)


def test_every_file_starts_with_managed_header(rendered_trees):
    for root in rendered_trees.values():
        files = all_files(root)
        assert files
        for path in files:
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
            assert first.startswith("#") and "Managed by mailctl" in first, path


def test_header_names_the_template_and_not_the_version(monkeypatch):
    """An upgrade of mailctl alone must not change a byte of any file (the deploy half of
    this is in tests/test_e2e_sandbox.py)."""
    import mailctl

    host, _ = check_host(HOST, {**BASE_HOST, **BASE_ALL}, [])
    before = render_host(host)
    monkeypatch.setattr(mailctl, "__version__", "99.0.0")
    assert render_host(host) == before
    for f in before:
        assert f.content.split("\n", 1)[0] == (
            f"# Managed by mailctl from {f.template} — local edits are overwritten on the "
            "next deploy."), f.path
        assert mailctl.__version__ not in f.content.split("\n", 1)[0]


def _secret_paths(inventory: Path, backend: str) -> dict[str, bool]:
    """'HOST/etc/...' -> is it a secret file, from the renderer itself."""
    out = {}
    for host in Inventory(inventory).mail_hosts(backend=backend):
        for f in render_host(host):
            out[f"{host.name}{f.path}"] = f.secret
    return out


def test_secret_files_are_0600_and_others_0644(rendered_trees):
    seen_secret = False
    for name, root in rendered_trees.items():
        inventory, backend = name.split("-")
        secret = _secret_paths(EXAMPLE if inventory == "example" else GOLDEN_INVENTORY, backend)
        files = {p.relative_to(root).as_posix(): p for p in all_files(root)}
        assert set(files) == set(secret)
        for rel, path in files.items():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o600 if secret[rel] else 0o644), (path, oct(mode))
            seen_secret |= secret[rel]
    assert seen_secret


def test_users_file_is_marked_secret():
    host, _ = check_host(HOST, {**BASE_HOST, **BASE_ALL}, [])
    by_path = {f.path: f for f in render_host(host)}
    assert by_path["/etc/dovecot/users"].secret is True
    assert by_path["/etc/dovecot/users"].mode == "0640"
    assert by_path["/etc/dovecot/users"].group == "dovecot"
    assert not any(f.secret for p, f in by_path.items() if p != "/etc/dovecot/users")


def test_passwords_never_appear_in_rendered_files(rendered_trees):
    for name, root in rendered_trees.items():
        passwords = EXAMPLE_PASSWORDS if name.startswith("example") else GOLDEN_PASSWORDS
        for path in all_files(root):
            content = path.read_text(encoding="utf-8")
            for password in passwords:
                assert password not in content, (path, password)


def test_dovecot_users_hashes_verify_with_doveadm(rendered_trees):
    """The pure-Python SHA512-CRYPT is what Dovecot computes: `doveadm pw -t` accepts it."""
    doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
    users = (rendered_trees["example-dovecot"] / "mail1.example.test/etc/dovecot/users"
             ).read_text().splitlines()[2:]
    assert len(users) == 4
    for line, password in zip(users, EXAMPLE_PASSWORDS, strict=True):
        address, hashed = line.split(":")[:2]
        assert hashed.startswith("{SHA512-CRYPT}$6$")
        proc = subprocess.run([doveadm, "pw", "-t", hashed, "-p", password],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "verified" in proc.stdout + proc.stderr, (
            address, proc.stdout, proc.stderr)


@pytest.mark.parametrize("password", [
    "", "x", "pässwörd-ünïcode", "a" * 63, "b" * 64, "c" * 65, "d" * 200, "with space:colon",
])
def test_sha512_crypt_matches_doveadm(password):
    hashed = dovecot_hash(password, "mail.example.test", "alice@example.test")
    proc = subprocess.run(["doveadm", "pw", "-t", hashed, "-p", password],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (password, proc.stderr)
    wrong = subprocess.run(["doveadm", "pw", "-t", hashed, "-p", password + "!"],
                           capture_output=True, text=True, check=False)
    assert wrong.returncode != 0


def test_sha512_crypt_known_vector():
    # glibc crypt(3) test vector (Drepper's SHA-crypt specification, default rounds)
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdF"
        "CoEOfaS35inz1")


def test_salts_differ_per_user_and_host():
    assert derived_salt("h1", "a@x.test") != derived_salt("h1", "b@x.test")
    assert derived_salt("h1", "a@x.test") != derived_salt("h2", "a@x.test")
    assert derived_salt("h1", "a@x.test") == derived_salt("h1", "a@x.test")
    assert len(derived_salt("h", "a")) == 16


def test_platform_paths_reach_the_files():
    for platform in PLATFORMS:
        paths = profile(platform)["paths"]
        for backend in BACKENDS:
            host, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL,
                                               "mail_platform": platform}, [], backend)
            assert not findings
            dests = {f.path for f in render_host(host)}
            assert f"{paths['postfix_config_dir']}/main.cf" in dests
            if backend == "cyrus":
                assert {paths["cyrus_imapd_conf"], paths["cyrus_conf"],
                        paths["sasl_smtpd_conf"]} <= dests
            else:
                assert f"{paths['dovecot_config_dir']}/users" in dests


def test_render_output_layout(mailctl, tmp_path):
    out = tmp_path / "out"
    res = mailctl("render", "-i", EXAMPLE, "-o", out, cwd=tmp_path)
    res.assert_clean()
    assert res.exit_code == 0
    counts = {h.name: len(render_host(h)) for h in Inventory(EXAMPLE).mail_hosts()}
    assert res.stdout == "".join(f"{h}: {n} files -> {out}/{h}\n" for h, n in counts.items())
    assert (out / "mail1.example.test/etc/dovecot/dovecot.conf").is_file()
    assert (out / "mail2.example.test/etc/imapd.conf").is_file()
    assert not (out / "mail2.example.test/etc/dovecot").exists()
    assert not (out / "mail1.example.test/etc/imapd.conf").exists()


def test_overrides_values_are_formatted(tmp_path):
    host, findings = check_host(HOST, {**BASE_HOST, **BASE_ALL,
                                       "mail_postfix_overrides": {"biff": True,
                                                                  "smtpd_helo_required": False,
                                                                  "default_process_limit": 50},
                                       "mail_cyrus_overrides": {"allowplaintext": True}},
                                [], "cyrus")
    assert not findings
    files = {f.path: f.content for f in render_host(host)}
    main_cf = files["/etc/postfix/main.cf"]
    assert "\nbiff = yes\n" in main_cf and "\nsmtpd_helo_required = no\n" in main_cf
    assert main_cf.endswith("default_process_limit = 50\n")
    assert "\nallowplaintext: yes\n" in files["/etc/imapd.conf"]


# --------------------------------------------------------------------------- abuse defences

MX = "mx1.example.test"


def _rendered(groups: tuple[str, ...] = (), backend: str | None = None,
              topology: Topology | None = None, **variables) -> dict[str, str]:
    base = {"mail_hostname": MX} if "mx" in groups else {**BASE_HOST, **BASE_ALL}
    host, findings = check_host(MX if "mx" in groups else HOST, {**base, **variables},
                                list(groups), backend)
    assert findings == [], findings
    if topology is None:
        return {f.path: f.content for f in render_host(host)}
    return {f.path: f.content for f in render_host(host, topology)}


def _postfix_settings(main_cf: str) -> dict[str, str]:
    return {name: value.strip() for name, value in (
        line.split(" =", 1) for line in main_cf.splitlines()
        if line and not line.startswith("#"))}


def _master_services(master_cf: str) -> dict[str, str]:
    """master.cf: 'name/type' (smtp/inet, smtp/unix ...) -> its service line, -o overrides
    left out."""
    return {"/".join(line.split()[:2]): " ".join(line.split())
            for line in master_cf.splitlines() if line and not line[0].isspace()
            and not line.startswith("#")}


def test_defences_per_kind_and_switch():
    peers = Topology(peers=("198.51.100.7", "2001:db8::25"))
    screening = {"postscreen_access_list": "permit_mynetworks, cidr:${config_directory}/"
                                           "peers.cidr",
                 "postscreen_greet_action": "enforce", "postscreen_greet_wait": "6s"}
    policy = "smtpd_recipient_restrictions=reject_non_fqdn_recipient,check_policy_service," \
             "unix:ratelimit/policy"

    # an all-in-one host screens port 25 and limits what its users send
    files = _rendered()
    cf = _postfix_settings(files["/etc/postfix/main.cf"])
    assert screening.items() <= cf.items()
    assert cf["smtpd_client_event_limit_exceptions"] == \
        "$mynetworks, cidr:${config_directory}/peers.cidr"
    master = _master_services(files["/etc/postfix/master.cf"])
    assert master["smtp/inet"] == "smtp inet n - n - 1 postscreen"
    assert master["smtpd/pass"] == "smtpd pass - - n - - smtpd"
    assert "dnsblog/unix" not in master  # no DNSBL sites listed
    assert files["/etc/postfix/master.cf"].count(f"  -o {policy}\n") == 2  # 587 and 465

    # an mx screens port 25 and exempts its peers; it has no users, so no policy check
    files = _rendered(("mx",), topology=peers)
    cf = _postfix_settings(files["/etc/postfix/main.cf"])
    assert screening.items() <= cf.items()
    assert _master_services(files["/etc/postfix/master.cf"])["smtp/inet"] == \
        "smtp inet n - n - 1 postscreen"
    assert "check_policy_service" not in files["/etc/postfix/master.cf"]
    assert "/etc/policyd-rate-limit.yaml" not in files
    assert [line for line in files["/etc/postfix/peers.cidr"].splitlines()
            if not line.startswith("#")] == ["198.51.100.7/32 permit", "2001:db8::25/128 permit"]
    assert "/etc/fail2ban/filter.d/mailctl-postscreen.conf" in files

    # DNSBL sites bring the dnsblog service and the scoring settings
    files = _rendered(("mx",), mail_postscreen={"dnsbl_sites": ["zen.spamhaus.org*3"]})
    cf = _postfix_settings(files["/etc/postfix/main.cf"])
    assert cf["postscreen_dnsbl_sites"] == "zen.spamhaus.org*3"
    assert cf["postscreen_dnsbl_threshold"] == "3"
    assert "dnsblog/unix" in _master_services(files["/etc/postfix/master.cf"])

    # postscreen off: port 25 is smtpd itself, and no postscreen setting, service or filter
    for groups in ((), ("mx",)):
        files = _rendered(groups, mail_postscreen={"enabled": False})
        master = _master_services(files["/etc/postfix/master.cf"])
        assert master["smtp/inet"] == "smtp inet n - n - - smtpd", groups
        assert not {"smtpd/pass", "tlsproxy/unix", "dnsblog/unix"} & set(master), groups
        assert not [n for n in _postfix_settings(files["/etc/postfix/main.cf"])
                    if n.startswith("postscreen_")], groups
        assert "/etc/fail2ban/filter.d/mailctl-postscreen.conf" not in files
        if groups:  # an mx has no logins: without postscreen fail2ban has nothing to watch
            assert "/etc/fail2ban/jail.d/mailctl.local" not in files
        else:
            assert "[mailctl-postscreen]" not in files["/etc/fail2ban/jail.d/mailctl.local"]

    # a mailstore takes port 25 from its mx hosts only: no postscreen, but the anvil limits
    # (its peers exempt) and the sending limits on submission
    files = _rendered(("mailstore",), topology=peers)
    cf = _postfix_settings(files["/etc/postfix/main.cf"])
    # ... on submission only: its port 25 exempts every address (mx hosts may relay from
    # any address; strangers are refused by smtpd_client_restrictions anyway)
    assert "smtpd\n  -o smtpd_client_event_limit_exceptions=0.0.0.0/0,[::]/0\n" in \
        files["/etc/postfix/master.cf"]
    assert not [n for n in cf if n.startswith("postscreen_")]
    assert cf["smtpd_client_message_rate_limit"] == "100"
    assert _master_services(files["/etc/postfix/master.cf"])["smtp/inet"] == \
        "smtp inet n - n - - smtpd"
    assert files["/etc/postfix/master.cf"].count(f"  -o {policy}\n") == 2
    assert "/etc/fail2ban/filter.d/mailctl-postscreen.conf" not in files

    # each switch turns its defence off alone
    files = _rendered(mail_bans={"enabled": False})
    assert not [p for p in files if "fail2ban" in p]
    files = _rendered(mail_send_limits={"enabled": False})
    assert "/etc/policyd-rate-limit.yaml" not in files
    assert "check_policy_service" not in files["/etc/postfix/master.cf"]
    files = _rendered(mail_limits={"enabled": False})
    cf = _postfix_settings(files["/etc/postfix/main.cf"])
    assert not [n for n in cf if n.startswith(("anvil_", "smtpd_client_"))
                and n != "smtpd_client_restrictions"]
    assert "postscreen_access_list" in cf  # postscreen stays
    # login throttling in the store, or none
    assert "\nauth_failure_delay = 2 secs\n" in _rendered()["/etc/dovecot/dovecot.conf"]
    assert "\nmaxlogins_per_user: 20\n" in _rendered(backend="cyrus")["/etc/imapd.conf"]
    off = {"mail_login_throttle": {"enabled": False}}
    assert "auth_failure_delay" not in _rendered(**off)["/etc/dovecot/dovecot.conf"]
    assert "failedloginpause" not in _rendered(backend="cyrus", **off)["/etc/imapd.conf"]


def _jail(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


# the journal lines each login jail reads: those of the processes that take logins
SUBMISSION = (" SYSLOG_IDENTIFIER=postfix/submission/smtpd"
              " SYSLOG_IDENTIFIER=postfix/submissions/smtpd")
CYRUS_LOGINS = "".join(f" SYSLOG_IDENTIFIER=cyrus/{s}" for s in ("imap", "imaps", "pop3", "pop3s"))


def test_fail2ban_journal_identifiers_are_the_services_that_take_logins():
    """The jails name processes by syslog identifier; these must be the services the same
    render defines (master.cf's syslog_name, cyrus.conf's service names), or a jail would
    read nothing and never ban."""
    for backend in ("dovecot", "cyrus"):
        files = _rendered(backend=backend)
        wanted = re.findall(r"SYSLOG_IDENTIFIER=(\S+?)(?=[ '])",
                            files["/etc/fail2ban/jail.d/mailctl.local"])
        master = files["/etc/postfix/master.cf"]
        postfix_idents = {f"postfix/{name}/smtpd" for name in
                          re.findall(r"-o syslog_name=postfix/(\w+)", master)} | (
            {"postfix/postscreen"} if re.search(r"^smtp +inet .* postscreen$", master, re.M)
            else set())
        cyrus_idents = {f"cyrus/{name}" for name, cmd in re.findall(
            r"^ +(\w+) +cmd=\"(imapd|pop3d)[^\"]*\" listen=\"\d+\"",
            files.get("/etc/cyrus.conf", ""), re.M)}
        assert wanted and set(wanted) <= postfix_idents | cyrus_idents, (backend, wanted)
        if backend == "cyrus":
            assert cyrus_idents == {"cyrus/imap", "cyrus/imaps", "cyrus/pop3", "cyrus/pop3s"}
            assert cyrus_idents <= set(wanted)


def test_fail2ban_jails_never_ban_peers_and_follow_the_store_journal():
    peers = Topology(peers=("198.51.100.7", "2001:db8::25"))
    variables = {"mail_mynetworks": ["127.0.0.0/8", "[::1]/128", "192.0.2.0/24",
                                     "[2001:db8:1::]/48"],
                 "mail_bans": {"ignore": ["203.0.113.0/24", "[2001:db8:2::]/64"],
                               "action": "none", "maxretry": 3, "bantime": "1d"}}
    jail = _jail(_rendered(("mailstore",), backend="cyrus", topology=peers, **variables)[
        "/etc/fail2ban/jail.d/mailctl.local"])
    default = jail["DEFAULT"]
    ignored = default["ignoreip"].split()
    # loopback, mynetworks (without Postfix's brackets), the peers and mail_bans.ignore
    assert {"127.0.0.0/8", "::1", "192.0.2.0/24", "2001:db8:1::/48", "198.51.100.7",
            "2001:db8::25", "203.0.113.0/24", "2001:db8:2::/64"} <= set(ignored)
    assert len(ignored) == len(set(ignored)) and not any("[" in a for a in ignored)
    # action none: offenders are found and listed, nothing is blocked
    assert default["banaction"] == default["banaction_allports"] == "dummy"
    assert (default["backend"], default["maxretry"], default["bantime"]) == (
        "systemd", "3", "86400")
    # the store's jail reads its own unit's journal
    assert jail.sections() == ["mailctl-postfix-sasl", "mailctl-cyrus"]  # no postscreen
    # an all-in-one host's files do not depend on the inventory's other hosts
    alone = _jail(_rendered(backend="cyrus", topology=peers, **variables)[
        "/etc/fail2ban/jail.d/mailctl.local"])
    assert "198.51.100.7" not in alone["DEFAULT"]["ignoreip"]
    assert alone.sections() == ["mailctl-postfix-sasl", "mailctl-postscreen", "mailctl-cyrus"]
    assert jail["mailctl-cyrus"]["filter"] == \
        "cyrus-imap[journalmatch='_SYSTEMD_UNIT=cyrus-imapd.service" + CYRUS_LOGINS + "']"
    assert jail["mailctl-postfix-sasl"]["filter"] == \
        "postfix[mode=auth, journalmatch='_SYSTEMD_UNIT=postfix@-.service" + SUBMISSION + "']"
    assert jail["mailctl-cyrus"]["port"] == "25,465,587,110,143,993,995,4190"
    # SUSE names its units otherwise; the default action blocks with nftables
    suse = _jail(_rendered(backend="cyrus", mail_platform="suse")[
        "/etc/fail2ban/jail.d/mailctl.local"])
    assert suse["mailctl-cyrus"]["filter"] == \
        "cyrus-imap[journalmatch='_SYSTEMD_UNIT=cyrus.service" + CYRUS_LOGINS + "']"
    assert suse["mailctl-postfix-sasl"]["filter"] == \
        "postfix[mode=auth, journalmatch='_SYSTEMD_UNIT=postfix.service" + SUBMISSION + "']"
    assert suse["DEFAULT"]["banaction"] == "nftables-multiport"
    dovecot = _jail(_rendered()["/etc/fail2ban/jail.d/mailctl.local"])
    assert dovecot["mailctl-dovecot"]["filter"] == \
        "mailctl-dovecot[journalmatch='_SYSTEMD_UNIT=dovecot.service']"
    assert "mailctl-cyrus" not in dovecot
    # an mx: postscreen's jail alone (no logins), on port 25
    mx = _jail(_rendered(("mx",), topology=peers)["/etc/fail2ban/jail.d/mailctl.local"])
    assert mx.sections() == ["mailctl-postscreen"]
    assert mx["mailctl-postscreen"]["port"] == "25"
    assert {"198.51.100.7", "2001:db8::25"} <= set(mx["DEFAULT"]["ignoreip"].split())


def test_policyd_rate_limit_yaml_parses_with_its_limits_and_the_users_own():
    files = _rendered(mail_send_limits={"users": {"Alice@Example.TEST": [
        {"count": 50, "per": "1h"}, {"count": 100, "per": "1d"}]}})
    conf = yaml.safe_load(files["/etc/policyd-rate-limit.yaml"])  # as policyd-rate-limit does
    assert conf["limits"] == [[200, 3600], [1000, 86400]]
    assert conf["limits_by_id"] == {"alice@example.test": [[50, 3600], [100, 86400]]}
    assert conf["limit_by_sasl"] is True and conf["limit_by_ip"] is False
    # the socket Postfix's check_policy_service names (unix:ratelimit/policy in its queue
    # directory), readable by the group Postfix joins
    assert conf["SOCKET"] == "/var/spool/postfix/ratelimit/policy"
    assert conf["socket_permission"] == 0o660
    assert conf["user"] == conf["group"] == "policyd-rate-limit"
    assert conf["fail_action"].startswith("defer_if_permit 4.7.1 ")
    # no user with limits of their own: an empty mapping, not null
    conf = yaml.safe_load(_rendered()["/etc/policyd-rate-limit.yaml"])
    assert conf["limits_by_id"] == {}
    assert conf["limits"] == [[200, 3600], [1000, 86400]]


# --------------------------------------------------------------------------- precedence

def _layered_inventory(root: Path, layers: set[str]) -> Path:
    """h1 is in group eu_west, a child of eu. Each layer sets mail_message_size_limit to a
    different number of MiB; which one wins is Ansible's business."""
    hosts: dict = {"all": {"children": {"eu": {"children": {"eu_west": {"hosts": {HOST: {}}}}}}}}
    if "inv_all" in layers:
        hosts["all"]["vars"] = {"mail_message_size_limit": "1M"}
    if "inv_group" in layers:
        hosts["all"]["children"]["eu"]["vars"] = {"mail_message_size_limit": "3M"}
    if "inv_host" in layers:
        hosts["all"]["children"]["eu"]["children"]["eu_west"]["hosts"][HOST] = {
            "mail_message_size_limit": "5M"}
    write(root / "hosts.yml", hosts)
    write(root / "group_vars" / "all" / "main.yml",
          patched(BASE_ALL, {"mail_message_size_limit": "2M"} if "gv_all" in layers else {}))
    if "gv_eu" in layers:
        write(root / "group_vars" / "eu.yml", {"mail_message_size_limit": "4M"})
    if "gv_eu_west" in layers:
        write(root / "group_vars" / "eu_west" / "size.yml", {"mail_message_size_limit": "7M"})
    host_vars = dict(BASE_HOST)
    if "hv" in layers:
        host_vars["mail_message_size_limit"] = "6M"
    write(root / "host_vars" / f"{HOST}.yml", host_vars)
    return root


ALL_LAYERS = {"inv_all", "gv_all", "inv_group", "gv_eu", "gv_eu_west", "inv_host", "hv"}


@pytest.mark.parametrize(("layers", "expected_mib"), [
    (ALL_LAYERS, 6),  # host_vars/ beats everything
    (ALL_LAYERS - {"hv"}, 5),  # then the host's vars in the inventory file
    (ALL_LAYERS - {"hv", "inv_host"}, 7),  # then group_vars of the deepest group
    (ALL_LAYERS - {"hv", "inv_host", "gv_eu_west"}, 4),  # then group_vars/eu.yml
    # group_vars/all/ beats the inventory file's group vars, even for a child group
    (ALL_LAYERS - {"hv", "inv_host", "gv_eu_west", "gv_eu"}, 2),
    ({"inv_all", "inv_group"}, 3),  # inventory file: child group beats all
    ({"inv_all"}, 1),
    (set(), 25),  # mailctl's default
])
def test_variable_precedence_matches_ansible(mailctl, tmp_path, layers, expected_mib):
    inv = _layered_inventory(tmp_path / "inv", set(layers))
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(inv), "--host", HOST],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    ansible_value = json.loads(proc.stdout).get("mail_message_size_limit", "25M")
    assert ansible_value == f"{expected_mib}M"
    render_to(mailctl, inv, tmp_path / "out")
    main_cf = (tmp_path / "out" / HOST / "etc/postfix/main.cf").read_text()
    assert f"\nmessage_size_limit = {expected_mib * 1024**2}\n" in main_cf


def test_host_vars_override_whole_lists(mailctl, tmp_path):
    """Ansible replaces (does not merge) lists and dicts: a host's own mail_users wins."""
    inv = _layered_inventory(tmp_path / "inv", set())
    write(inv / "host_vars" / f"{HOST}.yml", patched(BASE_HOST, {
        "mail_users": [{"address": "zed@example.test", "password": "z"}],
        "mail_aliases": [],
        "mail_postfix_overrides": {"delay_warning_time": "1h"},
    }))
    write(inv / "group_vars" / "eu.yml", {"mail_postfix_overrides": {"biff": True}})
    render_to(mailctl, inv, tmp_path / "out")
    etc = tmp_path / "out" / HOST / "etc"
    assert (etc / "postfix/virtual_mailboxes").read_text().splitlines()[2:] == [
        "zed@example.test OK"]
    main_cf = (etc / "postfix/main.cf").read_text()
    assert "delay_warning_time = 1h" in main_cf
    assert "biff = no" in main_cf  # the group's override was replaced, not merged


def test_rendering_does_not_depend_on_the_working_directory(tmp_path):
    """mailctl lets Ansible load group_vars/host_vars next to the *working directory* as
    playbook-adjacent vars (DataLoader basedir '.'), which outrank the inventory's own: running
    from inside another inventory silently changes the render."""
    target = _layered_inventory(tmp_path / "prod", {"gv_all"})  # 2M
    elsewhere = _layered_inventory(tmp_path / "staging", {"gv_all", "hv"})
    write(elsewhere / "group_vars" / "all" / "main.yml",
          patched(BASE_ALL, {"mail_message_size_limit": "9M",
                             "mail_relayhost": "[staging-relay.example.test]"}))
    outs = {}
    for cwd in (tmp_path, elsewhere):
        out = tmp_path / f"out-{cwd.name}"
        res = run_subprocess("render", "-i", target, "-o", out, cwd=cwd)
        assert res.exit_code == 0, res.stderr
        outs[cwd.name] = tree(out)
    assert outs[elsewhere.name] == outs[tmp_path.name]
    main_cf = outs[tmp_path.name][f"{HOST}/etc/postfix/main.cf"].decode()
    assert f"\nmessage_size_limit = {2 * 1024**2}\n" in main_cf


def test_example_inventory_is_valid_yaml_and_renders(mailctl, tmp_path):
    for path in EXAMPLE.rglob("*.yml"):
        yaml.safe_load(path.read_text())
    render_to(mailctl, EXAMPLE, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["mail1.example.test", "mail2.example.test"]
