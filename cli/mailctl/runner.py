"""The one adapter between mailctl and Ansible: runs playbooks/site.yml through
ansible-runner, turns its event stream into per-host progress, and returns a typed result."""

from __future__ import annotations

import base64
import binascii
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .paths import playbooks_dir, roles_dir


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: bool = False
    task: str = ""
    platform: str = ""  # e.g. "Debian 12 ppc64le (sysvinit)", from mail_common's preflight
    errors: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    status: str
    hosts: dict[str, HostStats]
    detail: str = ""  # why a run failed before any host reported

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.failed or s.unreachable)


ProgressCallback = Callable[[str, HostStats, str], None]


def run_site(inventory: Path, *, limit: str | None = None, extravars: dict | None = None,
             check: bool = False, diff: bool = False, verbose: bool = False,
             vault_password_file: str | None = None, forks: int | None = None,
             on_progress: ProgressCallback | None = None,
             on_diff: Callable[[str, str], None] | None = None) -> RunResult:
    """Run the site playbook; call on_progress(host, stats, event) as tasks finish."""
    import ansible_runner

    hosts: dict[str, HostStats] = {}
    current_task = {"name": ""}

    def handler(event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_task_start":
            current_task["name"] = data.get("task", "")
            return True
        host = data.get("host")
        if not host:
            return True
        if diff and on_diff and kind in ("runner_on_ok", "runner_item_on_ok"):
            text = _diff_text(data.get("res", {}) or {})
            if text:
                on_diff(host, text)
            if kind == "runner_item_on_ok":
                return True
        stats = hosts.setdefault(host, HostStats())
        stats.task = current_task["name"]
        if kind == "runner_on_ok":
            stats.ok += 1
            facts = (data.get("res", {}) or {}).get("ansible_facts") or {}
            if isinstance(facts.get("mail_common_platform_summary"), str):
                stats.platform = " ".join(facts["mail_common_platform_summary"].split())
            if data.get("res", {}).get("changed"):
                stats.changed += 1
                kind = "changed"
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            stats.failed += 1
            stats.errors.append(_failure_text(data))
        elif kind == "runner_on_unreachable":
            stats.unreachable = True
            stats.errors.append(_failure_text(data))
        else:
            return True
        if on_progress:
            on_progress(host, stats, kind)
        return True

    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    if vault_password_file:
        cmdline += ["--vault-password-file", str(Path(vault_password_file).resolve())]
    if forks:
        cmdline += ["--forks", str(forks)]
    _venv_ansible_on_path()
    private = tempfile.mkdtemp(prefix="mailctl-run-")
    try:
        result = ansible_runner.run(
            private_data_dir=private,
            playbook=str(playbooks_dir() / "site.yml"),
            inventory=str(Path(inventory).resolve()),
            limit=limit,
            extravars=extravars or {},
            cmdline=" ".join(cmdline) or None,
            envvars=_envvars(verbose),
            event_handler=handler,
            quiet=not verbose,
            verbosity=1 if verbose else 0,
        )
        detail = ""
        if result.status != "successful" and not hosts:
            lines = [x for x in result.stdout.read().splitlines() if x.strip()]
            detail = " | ".join(lines[-3:])[:600]
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot run Ansible: {exc}") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return RunResult(status=result.status, hosts=hosts, detail=detail)


def _venv_ansible_on_path() -> None:
    """ansible-runner starts ansible/ansible-playbook from PATH: use the ones next to this
    Python."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _envvars(verbose: bool) -> dict[str, str]:
    """The Ansible settings every mailctl run uses (the roles from this checkout or wheel)."""
    return {
        "ANSIBLE_ROLES_PATH": str(roles_dir()),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_INTERPRETER_PYTHON": "auto_silent",
        "ANSIBLE_NOCOLOR": "1" if not verbose else os.environ.get("ANSIBLE_NOCOLOR", "0"),
        # ansible-runner empties an event's result above 700,000 characters: a mailbox
        # manifest of a few thousand messages is larger (about 150 bytes per message)
        "MAX_EVENT_RES": str(1 << 30),
    }


def read_files(inventory: Path, path_by_host: Mapping[str, str], *,
               vault_password_file: str | None = None,
               verbose: bool = False) -> dict[str, bytes | str]:
    """Each host's file at its own path, in one ad-hoc run of ansible.builtin.slurp (become:
    root-only directories). Returns {host: the bytes, or why not (unreachable, missing)}.

    For public files only (certificates): the content travels in Ansible's event stream and
    its output, so a private key must never be read this way."""
    def content(kind: str, res: dict) -> bytes | str | None:
        if kind != "runner_on_ok":
            return None
        try:
            return base64.b64decode(res.get("content", ""), validate=True)
        except (binascii.Error, TypeError):
            return "slurp returned no base64 content"

    return _ad_hoc(inventory, path_by_host, "ansible.builtin.slurp",
                   # each host's own path, looked up by its inventory name
                   "src={{ mailctl_read_files[inventory_hostname] }}", "mailctl_read_files",
                   content, vault_password_file, verbose)


@dataclass(frozen=True)
class CommandResult:
    """What a command printed on a host, and its exit code (non-zero included)."""

    rc: int
    stdout: str
    stderr: str


def _ran(kind: str, res: dict) -> CommandResult | None:
    """A shell or script task's answer, whatever its exit code."""
    if kind in ("runner_on_ok", "runner_on_failed") and isinstance(res.get("rc"), int):
        return CommandResult(res["rc"], str(res.get("stdout") or ""), str(res.get("stderr") or ""))
    return None


def run_commands(inventory: Path, command_by_host: Mapping[str, str], *,
                 vault_password_file: str | None = None,
                 verbose: bool = False) -> dict[str, CommandResult | str]:
    """Each host's shell command (/bin/sh), in one ad-hoc run of ansible.builtin.shell
    (become: root-only sockets and files). Returns {host: its CommandResult whatever the exit
    code, or why it did not run (unreachable, ...)}.

    The command travels as an extra variable, so it needs no quoting for Ansible's key=value
    parser; it must hold no Jinja2 markers ('{{', '{%', '{#'), which Ansible would expand. Its
    output goes through Ansible's event stream: nothing secret."""
    # JSON arguments: a bare '{{ ... }}' would be taken for a broken JSON object
    return _ad_hoc(inventory, command_by_host, "ansible.builtin.shell",
                   json.dumps({"cmd": "{{ mailctl_commands[inventory_hostname] }}"}),
                   "mailctl_commands", _ran, vault_password_file, verbose)


def run_scripts(inventory: Path, script: Path, args_by_host: Mapping[str, str], *,
                vault_password_file: str | None = None,
                verbose: bool = False) -> dict[str, CommandResult | str]:
    """A local Python script run on each host with that host's arguments (a shell-quoted
    string), as root, through ansible.builtin.script: it is copied over, run with the host's
    python3 and removed. Answers like run_commands."""
    cmd = f"{shlex.quote(str(script))} {{{{ mailctl_script_args[inventory_hostname] }}}}"
    return _ad_hoc(inventory, args_by_host, "ansible.builtin.script",
                   json.dumps({"cmd": cmd, "executable": "python3"}),
                   "mailctl_script_args", _ran, vault_password_file, verbose)


def copy_file(inventory: Path, host: str, src: str, dest: str, *, fetch: bool,
              vault_password_file: str | None = None, verbose: bool = False) -> str | None:
    """Copy one file from the host to this machine (fetch) or from this machine to the host
    (mode 0600, root's): None when it is done, else why not."""
    if fetch:
        module, args = "ansible.builtin.fetch", {"src": "{{ mailctl_copy[inventory_hostname] }}",
                                                 "dest": dest, "flat": True}
    else:
        module, args = "ansible.builtin.copy", {"src": src,
                                                "dest": "{{ mailctl_copy[inventory_hostname] }}",
                                                "mode": "0600"}
    answers = _ad_hoc(inventory, {host: src if fetch else dest}, module, json.dumps(args),
                      "mailctl_copy",
                      lambda kind, res: True if kind == "runner_on_ok" else None,
                      vault_password_file, verbose)
    return None if answers[host] is True else str(answers[host])


def _ad_hoc(inventory: Path, value_by_host: Mapping[str, str], module: str, module_args: str,
            variable: str, answer: Callable[[str, dict], Any], vault_password_file: str | None,
            verbose: bool) -> dict[str, Any]:
    """One ad-hoc run of `module` on the hosts of value_by_host (become), each host's value
    passed as the extra variable `variable` (a mapping by inventory name). `answer` turns a
    host's event (kind, result) into its answer, or None; failures and unreachable hosts
    answer why. Every host gets an answer."""
    import ansible_runner

    for host, value in value_by_host.items():
        # the values travel as extra variables, which Ansible would template
        if any(mark in value for mark in ("{{", "{%", "{#")):
            raise ValueError(f"{host}: a value for Ansible holds a Jinja2 marker: {value}")
    if not value_by_host:
        return {}
    got: dict[str, Any] = {}

    def handler(event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host")
        if host not in value_by_host:
            return True
        found = answer(kind, data.get("res", {}) or {})
        if found is not None:
            got[host] = found
        elif kind == "runner_on_failed":
            got[host] = _failure_message(data)
        elif kind == "runner_on_unreachable":
            got[host] = "unreachable: " + _failure_message(data)
        return True

    cmdline = ["--become"]
    if vault_password_file:
        cmdline += ["--vault-password-file", str(Path(vault_password_file).resolve())]
    _venv_ansible_on_path()
    private = tempfile.mkdtemp(prefix="mailctl-ad-hoc-")
    try:
        result = ansible_runner.run(
            private_data_dir=private,
            module=module,
            module_args=module_args,
            host_pattern=",".join(value_by_host),
            inventory=str(Path(inventory).resolve()),
            extravars={variable: dict(value_by_host)},
            cmdline=" ".join(cmdline),
            envvars=_envvars(verbose),
            event_handler=handler,
            quiet=not verbose,
        )
        if len(got) < len(value_by_host):
            lines = [x for x in result.stdout.read().splitlines() if x.strip()]
            why = " | ".join(lines[-3:])[:600] or f"Ansible run {result.status}"
            for host in value_by_host:
                got.setdefault(host, f"no answer from Ansible ({why})")
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot run Ansible: {exc}") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return got


def _diff_text(res: dict) -> str:
    """Unified diff of what a task changed (Ansible's --diff data); '' when there is none.
    Tasks that handle secrets run with no_log and diff: false, so they bring none."""
    import difflib

    entries = res.get("diff") or []
    if isinstance(entries, dict):
        entries = [entries]
    out = []
    for entry in entries:
        before, after = entry.get("before"), entry.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        out.extend(difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=str(entry.get("before_header", "before")),
            tofile=str(entry.get("after_header", "after"))))
    return "".join(out)


def _failure_text(data: dict) -> str:
    return f"{data.get('task', '')}: {_failure_message(data)}"


def _failure_message(data: dict) -> str:
    """Why a task failed on a host, on one line."""
    res = data.get("res", {}) or {}
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    text = " | ".join(line.strip() for line in str(msg).strip().splitlines() if line.strip())
    return text[:600]
