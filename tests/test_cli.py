"""The command line as a user meets it: options, exit codes, one-line errors, Ansible Vault."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import BASE_ALL, BASE_HOST, EXAMPLE, HOST, VENV_BIN, patched, write

import mailctl

VAULT_PASSWORD = "correct horse battery staple"
ALICE_PASSWORD = "alice-vaulted-pw-7Qx"


def no_traceback(res) -> None:
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr


# --------------------------------------------------------------------------- basics

def test_version_and_help(mailctl, tmp_path):
    res = mailctl("--version", cwd=tmp_path)
    assert res.exit_code == 0
    assert res.stdout == f"mailctl, version {mailctl_version()}\n"
    res = mailctl("-h", cwd=tmp_path)
    assert res.exit_code == 0
    for command in ("validate", "render", "check"):
        assert command in res.stdout
    res = mailctl("check", "--help", cwd=tmp_path)
    assert "--skip-missing" in res.stdout and "--vault-password-file" in res.stdout


def mailctl_version() -> str:
    return mailctl.__version__


def test_console_script_and_module(tmp_path):
    for argv in ([str(VENV_BIN / "mailctl"), "validate", "-i", str(EXAMPLE)],
                 [str(VENV_BIN / "python"), "-m", "mailctl.cli", "validate", "-i", str(EXAMPLE)]):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ("mail1.example.test: ok (dovecot, allinone, debian, 2 domains, "
                               "4 users)\nmail2.example.test: ok (cyrus, allinone, debian, 2 "
                               "domains, 4 users)\n")


def test_validate_json(mailctl, tmp_path):
    res = mailctl("validate", "-i", EXAMPLE, "--json", cwd=tmp_path)
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {"valid": True,
                                      "hosts": ["mail1.example.test", "mail2.example.test"]}


@pytest.mark.parametrize("option", ["--limit", "-l", "--host"])
def test_limit(mailctl, tmp_path, option):
    res = mailctl("validate", "-i", EXAMPLE, option, "mail2*", cwd=tmp_path)
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        "mail2.example.test: ok (cyrus, allinone, debian, 2 domains, 4 users)"]


def test_backend_option_overrides_inventory(mailctl, tmp_path):
    res = mailctl("validate", "-i", EXAMPLE, "--backend", "cyrus", cwd=tmp_path)
    assert res.exit_code == 0
    assert all("(cyrus," in line for line in res.stdout.splitlines())


def test_unknown_backend_option_is_a_usage_error(mailctl, tmp_path):
    res = mailctl("validate", "-i", EXAMPLE, "--backend", "exim", cwd=tmp_path)
    assert res.exit_code == 2
    assert "Invalid value for '--backend'" in res.stderr
    no_traceback(res)


@pytest.mark.parametrize("command", ["validate", "render", "check"])
def test_missing_inventory(mailctl, tmp_path, command):
    res = mailctl(command, "-i", "nope", cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr == "error: nope: inventory not found\n"


def test_inventory_option_required(mailctl, tmp_path):
    res = mailctl("validate", cwd=tmp_path)
    assert res.exit_code == 2
    assert "Missing option '-i'" in res.stderr


def test_limit_matches_nothing(mailctl, tmp_path):
    res = mailctl("validate", "-i", EXAMPLE, "--limit", "nosuchhost", cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1].endswith(
        "inventories/example: no host matches --limit/--host 'nosuchhost'")


def test_inventory_without_hosts(mailctl, tmp_path):
    write(tmp_path / "inv" / "hosts.yml", {"all": {"hosts": {}}})
    res = mailctl("validate", "-i", "inv", cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == "error: inv: the inventory has no hosts"


def test_unparsable_inventory_file(mailctl, tmp_path):
    write(tmp_path / "hosts.yml", "all:\n  hosts:\n    h1: [\n")
    res = mailctl("validate", "-i", "hosts.yml", cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == "error: hosts.yml: the inventory has no hosts"


def test_yaml_syntax_error_in_group_vars(make_inventory, mailctl):
    """A broken group_vars file escapes as a traceback: VariableManager.get_vars() raises
    AnsibleParserError outside the try in Inventory.host_vars()."""
    inv = make_inventory()
    write(inv / "group_vars" / "all" / "broken.yml", "mail_relayhost: [unclosed\nfoo: : bar\n")
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    no_traceback(res)
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1
    assert "broken.yml" in res.stderr


def test_undefined_variable_in_template(make_inventory, mailctl):
    inv = make_inventory(host_vars={HOST: patched(BASE_HOST, {
        "mail_relayhost": "{{ no_such_variable }}"})})
    res = mailctl("validate", "-i", inv, cwd=inv.parent)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr.startswith(
        f"error: {inv.name}/host_vars/{HOST}.yml: {HOST}: mail_relayhost: cannot be resolved: ")
    assert len(res.stderr.splitlines()) == 1


def test_templated_values_are_resolved(make_inventory, mailctl, tmp_path):
    inv = make_inventory(
        all_vars=patched(BASE_ALL, {"relay_name": "smtp.example.test",
                                    "mail_relayhost": "[{{ relay_name }}]:587",
                                    "mail_message_size_limit": "{{ 10 * 1024 * 1024 }}"}))
    res = mailctl("render", "-i", inv, "-o", tmp_path / "out", cwd=inv.parent)
    assert res.exit_code == 0, res.stderr
    main_cf = (tmp_path / "out" / HOST / "etc/postfix/main.cf").read_text()
    assert "\nrelayhost = [smtp.example.test]:587\n" in main_cf
    assert "\nmessage_size_limit = 10485760\n" in main_cf


def test_render_default_output_dir(mailctl, tmp_path):
    res = mailctl("render", "-i", EXAMPLE, "--limit", "mail1.example.test", cwd=tmp_path)
    assert res.exit_code == 0
    assert (tmp_path / "rendered" / "mail1.example.test/etc/postfix/main.cf").is_file()


def test_envvar_prefix(mailctl, tmp_path):
    """auto_envvar_prefix=MAILCTL: options can come from MAILCTL_<COMMAND>_<OPTION>."""
    res = mailctl("validate", cwd=tmp_path, env={"MAILCTL_VALIDATE_INVENTORY": str(EXAMPLE)})
    assert res.exit_code == 0, res.stderr


# --------------------------------------------------------------------------- Ansible Vault

@pytest.fixture
def vault_inventory(tmp_path: Path):
    """An inventory whose group_vars/all/vault.yml holds an `encrypt_string` value, with the
    password file *outside* the inventory directory (Ansible reads every file in it)."""
    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(password_file), "--name", "vault_alice_password", ALICE_PASSWORD],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "!vault |" in proc.stdout and ALICE_PASSWORD not in proc.stdout
    inv = tmp_path / "inv"
    write(inv / "hosts.yml", {"all": {"hosts": {HOST: None}}})
    write(inv / "group_vars" / "all" / "vault.yml", "---\n" + proc.stdout)
    write(inv / "group_vars" / "all" / "main.yml", patched(BASE_ALL, {"mail_users": [
        {"address": "alice@example.test", "password": "{{ vault_alice_password }}"},
        {"address": "bob@corp.test", "password": "bob-pw-2"}]}))
    write(inv / "host_vars" / f"{HOST}.yml", BASE_HOST)
    return inv, password_file


def test_vault_validate_and_render(vault_inventory, mailctl_subprocess, tmp_path):
    inv, password_file = vault_inventory
    res = mailctl_subprocess("validate", "-i", inv, "--vault-password-file", password_file,
                             cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"{HOST}: ok (dovecot, allinone, debian, 2 domains, 2 users)\n"

    out = tmp_path / "out"
    res = mailctl_subprocess("render", "-i", inv, "--vault-password-file", password_file,
                             "-o", out, cwd=tmp_path)
    assert res.exit_code == 0, res.stderr
    users = (out / HOST / "etc/dovecot/users").read_text()
    alice = next(line for line in users.splitlines() if line.startswith("alice@"))
    hashed = alice.split(":")[1]
    assert hashed.startswith("{SHA512-CRYPT}$6$")
    for path in (out / HOST).rglob("*"):
        if path.is_file():
            assert ALICE_PASSWORD not in path.read_text(), path
    proc = subprocess.run(["doveadm", "pw", "-t", hashed, "-p", ALICE_PASSWORD],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_vault_in_process_twice(vault_inventory, mailctl, tmp_path):
    """Library/in-process use: two runs in one process (Ansible's vault context is global)."""
    inv, password_file = vault_inventory
    for n in range(2):
        res = mailctl("render", "-i", inv, "--vault-password-file", password_file,
                      "-o", tmp_path / f"out{n}", cwd=tmp_path)
        no_traceback(res)
        assert res.exit_code == 0, res.stderr
    assert ((tmp_path / "out0" / HOST / "etc/dovecot/users").read_bytes()
            == (tmp_path / "out1" / HOST / "etc/dovecot/users").read_bytes())


@pytest.mark.parametrize("command", ["validate", "render"])
def test_vault_without_password_file(vault_inventory, mailctl_subprocess, tmp_path, command):
    inv, _ = vault_inventory
    res = mailctl_subprocess(command, "-i", inv, "-o", tmp_path / "out", cwd=tmp_path) \
        if command == "render" else mailctl_subprocess(command, "-i", inv, cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert HOST in lines[0] and "mail_users" in lines[0]
    assert "inv/group_vars/all/main.yml" in lines[0]
    assert not (tmp_path / "out").exists()


def test_vault_wrong_password(vault_inventory, mailctl_subprocess, tmp_path):
    inv, _ = vault_inventory
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not the password\n")
    res = mailctl_subprocess("validate", "-i", inv, "--vault-password-file", wrong,
                             cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1
    assert HOST in res.stderr and "mail_users" in res.stderr


def test_vault_missing_password_file(vault_inventory, mailctl_subprocess, tmp_path):
    inv, _ = vault_inventory
    res = mailctl_subprocess("validate", "-i", inv, "--vault-password-file", "no-such-file",
                             cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert res.stderr == "error: no-such-file: vault password file not found or not readable\n"


def test_vault_password_file_is_a_directory(vault_inventory, mailctl, tmp_path):
    inv, _ = vault_inventory
    res = mailctl("validate", "-i", inv, "--vault-password-file", tmp_path, cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert "vault password file not found or not readable" in res.stderr


@pytest.fixture
def vault_file_inventory(tmp_path: Path):
    """The whole group_vars/all/vault.yml encrypted with `ansible-vault encrypt`."""
    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    inv = tmp_path / "inv"
    write(inv / "hosts.yml", {"all": {"hosts": {HOST: None}}})
    vault_file = write(inv / "group_vars" / "all" / "vault.yml",
                       {"vault_alice_password": ALICE_PASSWORD})
    subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file",
                    str(password_file), str(vault_file)], capture_output=True, check=True)
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;")
    write(inv / "group_vars" / "all" / "main.yml", patched(BASE_ALL, {"mail_users": [
        {"address": "alice@example.test", "password": "{{ vault_alice_password }}"}],
        "mail_aliases": []}))
    write(inv / "host_vars" / f"{HOST}.yml", BASE_HOST)
    return inv, password_file


def test_vault_encrypted_file(vault_file_inventory, mailctl_subprocess, tmp_path):
    inv, password_file = vault_file_inventory
    res = mailctl_subprocess("validate", "-i", inv, "--vault-password-file", password_file,
                             cwd=tmp_path)
    assert res.exit_code == 0, res.stderr


def test_vault_encrypted_file_without_password(vault_file_inventory, mailctl_subprocess,
                                               tmp_path):
    """Without the password, Ansible fails while *loading* the vars file; that escapes
    Inventory.host_vars() as a traceback with exit code 1."""
    inv, _ = vault_file_inventory
    res = mailctl_subprocess("validate", "-i", inv, cwd=tmp_path)
    no_traceback(res)
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert HOST in res.stderr
