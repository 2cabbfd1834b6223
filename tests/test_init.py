"""`mailctl init`: a new inventory that validates and checks as written, with its passwords
only in Ansible Vault, the Vault password beside it, and never a file overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from conftest import tree

from mailctl import scaffold
from mailctl.errors import InputError
from mailctl.inventory import Inventory

HOSTNAME = "mail.example.org"
ARGS = ("--hostname", HOSTNAME, "--domain", "example.org", "--domain", "example.net")


def init(mailctl, tmp_path: Path, *extra: str, name: str = "prod"):
    return mailctl("init", name, *ARGS, *extra, cwd=tmp_path)


def vault_passwords(inventory: Path, password_file: Path) -> dict[str, str]:
    """vault.yml decrypted with Ansible's own library."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    secret = VaultSecret(password_file.read_text().strip().encode())
    plain = VaultLib([("default", secret)]).decrypt(
        (inventory / "group_vars/all/vault.yml").read_text())
    return yaml.safe_load(plain)


def one_line(res) -> str:
    res.assert_clean()
    assert res.exit_code == 2, res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("backend", ["dovecot", "cyrus"])
def test_init_then_validate_and_check(mailctl, tmp_path, backend):
    res = init(mailctl, tmp_path, "--backend", backend, "--user", "alice@example.org",
               "--user", "bob@example.net")
    res.assert_clean()
    assert res.exit_code == 0, res.stderr
    # absolute: Ansible caches each inventory path's realpath per process (CANONICAL_PATHS in
    # host_group_vars), so a relative 'prod' would mean an earlier test's directory here
    opts = ("-i", tmp_path / "prod", "--vault-password-file", tmp_path / "prod.vault-pass")
    res = mailctl("validate", *opts, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"{HOSTNAME}: ok ({backend}, allinone, debian, 2 domains, 2 users)\n"
    res = mailctl("check", *opts, cwd=tmp_path)  # the real postfix, doveconf, cyr_info
    assert res.exit_code == 0, res.stdout + res.stderr
    store = "doveconf -n" if backend == "dovecot" else "cyr_info conf-lint"
    assert f"{HOSTNAME}: {store}: ok" in res.stdout
    assert f"{HOSTNAME}: postfix check: ok" in res.stdout


def test_layout_and_defaults(mailctl, tmp_path):
    assert init(mailctl, tmp_path).exit_code == 0
    inv = tmp_path / "prod"
    assert sorted(tree(inv)) == ["group_vars/all/main.yml", "group_vars/all/vault.yml",
                                 f"host_vars/{HOSTNAME}.yml", "hosts.yml"]
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    assert hosts == {"all": {"hosts": {HOSTNAME: None}}}
    assert "ansible_host" in (inv / "hosts.yml").read_text()
    main = yaml.safe_load((inv / "group_vars/all/main.yml").read_text())
    assert main["mail_users"] == [{"address": "admin@example.org",
                                   "password": "{{ vault_mail_password_admin_example_org }}"}]
    assert main["mail_aliases"] == [
        {"address": f"postmaster@{domain}", "to": "admin@example.org"}
        for domain in ("example.org", "example.net")]
    assert main["mail_tls"] == {"mode": "selfsigned"}
    # only comments: Ansible and mailctl accept it (validated above by init itself)
    assert yaml.safe_load((inv / f"host_vars/{HOSTNAME}.yml").read_text()) is None


def test_passwords_only_in_vault(mailctl, tmp_path):
    res = init(mailctl, tmp_path, "--user", "alice@example.org", "--user", "bob@example.net")
    assert res.exit_code == 0, res.stderr
    inv, password_file = tmp_path / "prod", tmp_path / "prod.vault-pass"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert inv not in password_file.resolve().parents
    generated = vault_passwords(inv, password_file)
    assert len(generated) == 2 and all(len(pw) >= 20 for pw in generated.values())
    vault_password = password_file.read_text().strip()
    for content in tree(inv).values():
        for secret in [*generated.values(), vault_password]:
            assert secret.encode() not in content
    # the output names the password file, never a password
    assert "prod.vault-pass" in res.stdout
    assert "--vault-password-file prod.vault-pass" in res.stdout
    for secret in [*generated.values(), vault_password]:
        assert secret not in res.stdout + res.stderr

    users = {u.address: u.password
             for h in Inventory(inv, str(password_file)).mail_hosts() for u in h.users}
    assert users == {"alice@example.org": generated["vault_mail_password_alice_example_org"],
                     "bob@example.net": generated["vault_mail_password_bob_example_net"]}
    with pytest.raises(InputError, match="vault password"):
        Inventory(inv).mail_hosts()


def test_library_plan_resolves_to_generated_passwords(tmp_path):
    p = scaffold.plan(HOSTNAME, ["Example.ORG"], "cyrus", ["Carol@example.org"])
    password_file = scaffold.write_inventory(tmp_path / "inv", p)
    assert password_file == tmp_path / "inv.vault-pass"
    hosts = Inventory(tmp_path / "inv", str(password_file)).mail_hosts()
    assert {u.address: u.password for u in hosts[0].users} == p.passwords
    assert list(p.passwords) == ["carol@example.org"]


def test_init_into_empty_directory(mailctl, tmp_path):
    (tmp_path / "prod").mkdir()
    res = init(mailctl, tmp_path)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "prod/hosts.yml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod", "prod.vault-pass"]


def test_refuses_non_empty_directory(mailctl, tmp_path):
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod/hosts.yml").write_text("mine\n")
    line = one_line(init(mailctl, tmp_path))
    assert "prod" in line and "overwrite" in line
    assert tree(tmp_path) == {"prod/hosts.yml": b"mine\n"}


def test_refuses_existing_vault_password_file(mailctl, tmp_path):
    (tmp_path / "prod.vault-pass").write_text("keep me\n")
    line = one_line(init(mailctl, tmp_path))
    assert "prod.vault-pass" in line and "already exists" in line
    assert tree(tmp_path) == {"prod.vault-pass": b"keep me\n"}


@pytest.mark.parametrize(("extra", "expected"), [
    (("--domain", "not a domain"), "--domain: 'not a domain' is not a valid domain name"),
    (("--user", "bob@"), "--user: 'bob@' is not an email address"),
    (("--user", "bob@other.org"), "--user bob@other.org: its domain is not one of"),
    (("--domain", "mail.example.org"), "--hostname: 'mail.example.org' is also a --domain"),
])
def test_bad_input_writes_nothing(mailctl, tmp_path, extra, expected):
    line = one_line(init(mailctl, tmp_path, *extra))
    assert expected in line
    assert list(tmp_path.iterdir()) == []


def test_bad_hostname(mailctl, tmp_path):
    res = mailctl("init", "prod", "--hostname", "localhost", "--domain", "example.org",
                  cwd=tmp_path)
    assert "--hostname: 'localhost' is not a fully qualified host name" in one_line(res)
    assert list(tmp_path.iterdir()) == []


def test_failure_after_staging_leaves_nothing(mailctl, tmp_path, monkeypatch):
    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scaffold, "_check_written", broken)
    line = one_line(init(mailctl, tmp_path))
    assert "No space left on device" in line
    assert list(tmp_path.iterdir()) == []


def test_postmaster_user_and_folding_addresses(tmp_path):
    """A postmaster user gets no postmaster alias; addresses that fold to one Vault variable
    name get distinct ones."""
    p = scaffold.plan(HOSTNAME, ["example.org", "example.net"], "dovecot",
                      ["a.b@example.org", "a_b@example.org", "postmaster@example.org"])
    assert p.aliases == (("postmaster@example.net", "a.b@example.org"),)
    assert len(set(p.vault_names.values())) == 3
    password_file = scaffold.write_inventory(tmp_path / "inv", p)
    hosts = Inventory(tmp_path / "inv", str(password_file)).mail_hosts()
    assert {u.address: u.password for u in hosts[0].users} == p.passwords
