"""End to end through the CLI a user runs: `mailctl sandbox up` (the README's main job) in a
real container, then secrets are looked for in every output a deploy produces, and user
mistakes against real infrastructure end in one clean line, not a traceback.

Needs the Docker engine and the base image (scripts/test starts and builds them first)."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailctl.inventory import Inventory
from mailctl.names import resolv_conf_nameservers
from mailctl.passwords import dovecot_hash
from mailctl.render import render_host

MAILCTL = [sys.executable, "-m", "mailctl.cli"]
SANDBOX = Path(__file__).resolve().parents[1] / "inventories" / "sandbox"
CA_DIR = Path.home() / ".local" / "share" / "mailctl" / "sandbox" / "ca"


def run(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*MAILCTL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def sandbox_up() -> subprocess.CompletedProcess:
    result = run("sandbox", "up")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def secrets() -> list[str]:
    """Every clear password and every hash the sandbox's users have."""
    host = Inventory(SANDBOX).mail_hosts()[0]
    found = []
    for user in host.users:
        found.append(user.password)
        found.append(dovecot_hash(user.password, host.hostname, user.address).split("$")[-1])
    return [s for s in found if s] + dkim_key_lines()


def dkim_key_lines() -> list[str]:
    """The base64 lines of every DKIM private key the sandbox has (beside its CA)."""
    return [line for key in sorted((CA_DIR / "dkim").glob("*.key"))
            for line in key.read_text().splitlines() if line and not line.startswith("-----")]


def test_sandbox_up_delivers_a_message_and_prints_connection_details(sandbox_up):
    out = sandbox_up.stdout
    assert "delivered: alice@sandbox.test -> bob@sandbox.test" in out
    assert "read back on 127.0.0.1:10993 (IMAPS)" in out
    assert f"CA file      {CA_DIR / 'ca.crt'}" in out
    assert "Traceback" not in out + sandbox_up.stderr


def test_sandbox_status(sandbox_up):
    result = run("sandbox", "status")
    assert result.returncode == 0 and "mailctl-sandbox: running" in result.stdout


def test_verify_command_passes_against_the_sandbox(sandbox_up):
    """`mailctl verify` as a user runs it: the whole testinfra suite against the sandbox."""
    result = run("verify", "-i", str(SANDBOX))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "verify: all checks passed on 1 host(s)"
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_no_secret_in_deploy_output_even_verbose_with_diff(sandbox_up, tmp_path):
    # A changed password forces the secret files to change, so their tasks really run.
    inventory = tmp_path / "sandbox"
    subprocess.run(["cp", "-r", str(SANDBOX), str(inventory)], check=True)
    main = inventory / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text().replace("sandbox-bob-pw", "sandbox-bob-pw-changed")
                    # a new DKIM selector: a key is made and copied to the host
                    + "\nmail_dkim: {selector: rotated}\n")
    changed = Inventory(inventory).mail_hosts()[0]
    changed_secrets = [changed.users[1].password,
                       dovecot_hash(changed.users[1].password, changed.hostname,
                                    changed.users[1].address).split("$")[-1]]
    outputs = []
    for extra in (["--check", "--diff", "-v"], ["--diff", "-v"], ["--diff"]):
        result = run("deploy", "-i", str(inventory), "--ca-dir", str(CA_DIR), *extra)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, outputs[-1][-2000:]
    restore = run("deploy", "-i", str(SANDBOX), "--ca-dir", str(CA_DIR), "--diff", "-v")
    outputs.append(restore.stdout + restore.stderr)
    assert restore.returncode == 0, outputs[-1][-2000:]
    text = "\n".join(outputs)
    assert "changed=" in text  # the runs did report their work
    assert (CA_DIR / "dkim" / "sandbox.test.rotated.key").is_file()
    leaked = [s for s in secrets() + changed_secrets if s in text]
    assert not leaked, f"{len(leaked)} secret(s) appear in deploy output"


def test_a_new_mailctl_version_alone_changes_nothing_on_the_host(sandbox_up, tmp_path):
    """The same inventory deployed by a mailctl whose only difference is its version (a copy
    of the package, first on PYTHONPATH for the CLI and the roles' filters alike)."""
    package = Path(__file__).resolve().parents[1] / "cli" / "mailctl"
    shutil.copytree(package, tmp_path / "mailctl", ignore=shutil.ignore_patterns("__pycache__"))
    share = tmp_path / "mailctl" / "_share"  # laid out like an installed wheel
    share.mkdir()
    for name in ("templates", "roles", "playbooks", "inventories"):
        (share / name).symlink_to(package.parents[1] / name)
    init = tmp_path / "mailctl" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "99.'))
    env = {"PYTHONPATH": str(tmp_path)}
    version = run("--version", env=env)
    assert "99." in version.stdout, version.stdout
    result = run("deploy", "-i", str(SANDBOX), "--ca-dir", str(CA_DIR), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 host(s): 1 ok (0 changed)" in result.stdout, result.stdout[-2000:]


def test_no_secret_in_the_hosts_logs(sandbox_up):
    journal = subprocess.run(["docker", "exec", "mailctl-sandbox", "journalctl", "--no-pager",
                              "-o", "cat"], capture_output=True, text=True, check=True).stdout
    assert journal, "the sandbox journal is empty"
    leaked = [s for s in secrets() if s in journal]
    assert not leaked, f"{len(leaked)} secret(s) appear in the host's journal"


def test_rendered_files_match_the_sandbox(sandbox_up):
    # with the fact a deploy adds: the resolvers OpenDKIM's configuration names
    resolv_conf = subprocess.run(["docker", "exec", "mailctl-sandbox", "cat", "/etc/resolv.conf"],
                                 capture_output=True, text=True, check=True).stdout
    host = replace(Inventory(SANDBOX).mail_hosts()[0],
                   resolvers=resolv_conf_nameservers(resolv_conf))
    for rendered in render_host(host):
        installed = subprocess.run(["docker", "exec", "mailctl-sandbox", "cat", rendered.path],
                                   capture_output=True, text=True, check=True).stdout
        assert installed == rendered.content, rendered.path


def test_unreachable_host_is_one_clean_failure(tmp_path):
    inventory = tmp_path / "inv"
    subprocess.run(["cp", "-r", str(SANDBOX), str(inventory)], check=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    ghost:\n      ansible_connection: community.docker.docker\n"
        "      ansible_host: mailctl-no-such-container\n")
    result = run("deploy", "-i", str(inventory), "--ca-dir", str(tmp_path / "ca"))
    assert result.returncode == 1
    # a missing container fails fact gathering (docker connection); over SSH it is UNREACHABLE
    assert "ghost: FAILED" in result.stdout or "ghost: UNREACHABLE" in result.stdout
    assert "error: deploy failed on: ghost" in result.stderr
    assert "  ghost: FAILED Gathering Facts" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_docker_not_running_is_one_clean_error(tmp_path):
    result = run("sandbox", "up", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the Docker engine is not running: start it (scripts/bootstrap does, or run "
        "`dockerd &` as root)"]
    assert result.stdout == ""



def test_the_sandbox_shows_its_defences(sandbox_up):
    """What the README says a user sees in the sandbox ([5/8]): a client that talks before
    the banner is refused on 25, a second failed login waits longer than the first, and
    `mailctl bans` reads the host's bans (docker's port publishing makes every client one
    address, so the checks stay below the five failures that would ban it)."""
    with socket.create_connection(("127.0.0.1", 10025), timeout=30) as sock:
        sock.sendall(b"EHLO early.example\r\nMAIL FROM:<x@early.example>\r\n"
                     b"RCPT TO:<bob@sandbox.test>\r\n")
        sock.settimeout(30)
        reply = b""
        while not re.search(rb"^5\d\d ", reply, re.M) and len(reply) < 4096:
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    assert re.search(rb"^5\d\d ", reply, re.M), reply
    ctx = ssl.create_default_context(cafile=str(CA_DIR / "ca.crt"))
    ctx.check_hostname = False  # reached as 127.0.0.1; the chain is still verified
    delays = []
    for _ in range(2):
        with imaplib.IMAP4("127.0.0.1", 10143, timeout=60) as imap:
            imap.starttls(ssl_context=ctx)
            start = time.monotonic()
            with pytest.raises(imaplib.IMAP4.error):
                imap.login("alice@sandbox.test", "not-the-password")
            delays.append(time.monotonic() - start)
    assert delays[1] >= 2 and delays[1] > delays[0], delays
    result = run("bans", "-i", str(SANDBOX))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "none" in result.stdout, result.stdout


def test_the_sandbox_backs_up_and_restores_in_one_command_each(sandbox_up, tmp_path):
    """What the README shows a user ([6/8]): a backup of the sandbox, a restore that proves
    itself by the manifest, a manifest and a diff of two manifests."""
    backups = tmp_path / "backups"
    done = run("backup", "-i", str(SANDBOX), "--host", "mailctl-sandbox", "--to", str(backups))
    assert done.returncode == 0, done.stdout + done.stderr
    (version,) = backups.iterdir()
    assert {p.name for p in version.iterdir()} == {"mail.tar.gz", "mailctl-backup.json",
                                                  "manifest.json"}
    assert all(p.stat().st_mode & 0o077 == 0 for p in version.iterdir())
    done = run("restore", "-i", str(SANDBOX), "--from", str(backups))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the host's manifest equals the backup's" in done.stdout
    done = run("mailbox", "manifest", "-i", str(SANDBOX), "--host", "mailctl-sandbox",
               "-o", str(tmp_path / "now.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run("mailbox", "diff", str(version / "manifest.json"), str(tmp_path / "now.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the manifests are equal" in done.stdout
