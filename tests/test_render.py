"""Rendering: golden files per backend x platform, determinism, headers, file modes, secrets,
and Ansible's variable precedence as seen in the rendered main.cf."""

from __future__ import annotations

import json
import os
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
                    "etc/dovecot/users"},
        "cyrus": {"etc/postfix/main.cf", "etc/postfix/master.cf",
                  "etc/postfix/virtual_mailboxes", "etc/postfix/virtual_aliases",
                  "etc/postfix/sender_logins", "etc/imapd.conf", "etc/cyrus.conf"},
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
    for backend in BACKENDS:
        for platform in PLATFORMS:
            want = set(expected[backend]) | mail_auth | {opendkim_conf[platform]}
            if backend == "cyrus":
                want.add(sasl[platform])
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
