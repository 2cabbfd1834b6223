"""Run the real validators (postfix, postconf, doveconf, cyr_info) on rendered trees."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .components import Validator
from .inventory import Inventory
from .model import MailHost
from .passwords import hash_users
from .render import host_components, render_host, write_tree
from .sieve import render_script

# Where distributions keep the tools when they are not on PATH.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/cyrus/bin", "/usr/libexec/cyrus-imapd",
               "/usr/lib/cyrus-imapd")


@dataclass(frozen=True)
class CheckResult:
    host: str
    validator: str
    ok: bool | None  # None: the validator is not installed here
    output: str

    def line(self) -> str:
        if self.ok is None:
            return f"{self.host}: {self.validator}: NOT RUN: {self.output}"
        status = "ok" if self.ok else "FAILED"
        detail = f": {self.output}" if self.output and not self.ok else ""
        return f"{self.host}: {self.validator}: {status}{detail}"


def find_tool(name: str, *, cyrus: bool = False) -> str | None:
    """The tool on PATH, else in a distribution's directory for it; `cyrus`: Cyrus's own only
    (its sievec shares a name with Dovecot's, which is on PATH)."""
    found = None if cyrus else shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / name
        if (not cyrus or "cyrus" in directory) and candidate.is_file() \
                and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _run(host: str, label: str, argv: list[str], *, silent_ok: bool = False,
         warnings_fail: bool = True) -> CheckResult:
    tool = find_tool(argv[0])
    if tool is None:
        return CheckResult(host, label, None, f"{argv[0]} is not installed on this machine")
    proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, timeout=120,
                          check=False)
    output = (proc.stderr + ("" if not silent_ok else proc.stdout)).strip()
    ok = proc.returncode == 0
    if warnings_fail and "warning:" in output.lower():
        ok = False
    if silent_ok and output:
        ok = False
    return CheckResult(host, label, ok, " | ".join(output.splitlines()[:5]))


def check_inventory(inv: Inventory, limit: str | None = None,
                    backend: str | None = None) -> list[CheckResult]:
    """Render every selected host into a temporary tree and run its validators there, then
    compile each user's Sieve script with the host's store's own compiler."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mailctl-check-") as tmp:
        hosts, topology = inv.mail_plan(limit, backend)
        hash_users(hosts)
        for host in hosts:
            root = Path(tmp) / host.name
            write_tree(render_host(host, topology), root)
            results.extend(check_tree(host, root))
            source = inv.file_of(host.name, "mail_users")
            results.extend(compile_scripts(host, Path(tmp) / f"{host.name}.sieve", source))
    return results


def compile_scripts(host: MailHost, work: Path, source: str) -> list[CheckResult]:
    """Each user's rendered Sieve script through the compiler of the host's store (Dovecot's
    or Cyrus's sievec): what a deploy would install, judged as the store will judge it."""
    scripts = {u.address: render_script(u.sieve, u.address)
               for u in host.users if u.sieve}
    scripts = {address: text for address, text in scripts.items() if text}
    if not scripts:
        return []
    work.mkdir()
    if host.backend == "cyrus":
        # Cyrus's sievec reads imapd.conf for its configuration directory only
        (work / "config").mkdir()
        (work / "imapd.conf").write_text(f"configdirectory: {work / 'config'}\n"
                                         f"partition-default: {work / 'config'}\n")
        options = ["-C", str(work / "imapd.conf")]
        tool = find_tool("sievec", cyrus=True)
    else:
        options, tool = [], find_tool("sievec")
    results = []
    for n, (address, text) in enumerate(sorted(scripts.items())):
        label = f"sievec {address} ({source}: mail_users, sieve)"
        if tool is None:
            results.append(CheckResult(host.name, label, None,
                                       "sievec is not installed on this machine"))
            continue
        script = work / f"{n}.sieve"
        script.write_text(text, encoding="utf-8")
        proc = subprocess.run([tool, *options, str(script), str(work / f"{n}.bin")],
                              capture_output=True, text=True, timeout=120, check=False)
        # the compilers name the script by its temporary file: drop that name
        lines = [line.replace(f"{script}: ", "").replace(f"{n}: ", "", 1)
                 for line in (proc.stdout + proc.stderr).splitlines()
                 if line.strip() and "parse failed" not in line and "Fatal:" not in line]
        # line numbers count in the whole rendered script (header, vacation, rules, raw)
        results.append(CheckResult(host.name, label, proc.returncode == 0,
                                   "the rendered script: " + " | ".join(lines[:5])
                                   if proc.returncode else ""))
    return results


def check_tree(host: MailHost, root: Path) -> list[CheckResult]:
    """Run every validator of the host's components (the registry) on the files rendered
    for `host` under root (root/etc/postfix/main.cf ...)."""
    results = []
    for component in host_components(host):
        dests = {entry["dest"] for entry in component.files}
        for validator in component.validators:
            results.append(_run_offline(host.name, validator, root, dests))
    return results


def _run_offline(host: str, validator: Validator, root: Path, dests: set[str]) -> CheckResult:
    """The validator's argv with its host paths moved under root; a tool given by absolute
    path on the host is looked up by name here (the platform may not be this machine's)."""
    argv = [Path(validator.argv[0]).name]
    for arg in validator.argv[1:]:
        argv.append(str(root / arg.lstrip("/")) if arg.startswith("/") else arg)
    if validator.rebase:
        # the configuration names its tables by their host paths: point a copy at the
        # rendered ones instead
        for i, arg in enumerate(validator.argv[1:], start=1):
            if arg in dests:
                text = Path(argv[i]).read_text(encoding="utf-8")
                for dest in sorted(dests, key=len, reverse=True):
                    text = text.replace(dest, str(root / dest.lstrip("/")))
                rebased = Path(argv[i]).with_name(Path(argv[i]).name + ".offline")
                rebased.write_text(text, encoding="utf-8")
                argv[i] = str(rebased)
    if not validator.readable_copy:
        return _run(host, validator.name, argv, silent_ok=validator.silent)
    # Tools that drop to a service user cannot enter a private temporary directory: give
    # them copies in a directory of their own under /tmp (never of secret files).
    with tempfile.TemporaryDirectory(prefix="mailctl-check-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)
        for i, arg in enumerate(validator.argv[1:], start=1):
            if arg in dests:
                copy = Path(tmp) / Path(arg).name
                shutil.copyfile(argv[i], copy)
                copy.chmod(0o644)
                argv[i] = str(copy)
        return _run(host, validator.name, argv, silent_ok=validator.silent)
