"""Run the real validators (postfix, postconf, doveconf, cyr_info) on rendered trees."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .model import MailHost
from .platforms import profile

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


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
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


def check_tree(host: MailHost, root: Path) -> list[CheckResult]:
    """Validate the files rendered for `host` under root (root/etc/postfix/main.cf ...)."""
    paths = profile(host.platform)["paths"]

    def at(path: str) -> str:
        return str(root / path.lstrip("/"))

    postfix_dir = at(paths["postfix_config_dir"])
    results = [
        _run(host.name, "postfix check", ["postfix", "-c", postfix_dir, "check"]),
        _run(host.name, "postconf -n", ["postconf", "-c", postfix_dir, "-n"]),
    ]
    if host.backend == "none":  # an mx host: Postfix only
        return results
    if host.backend == "dovecot":
        conf = at(paths["dovecot_config_dir"] + "/dovecot.conf")
        results.append(_run(host.name, "doveconf -n", ["doveconf", "-c", conf, "-n"]))
    else:
        # cyr_info drops to the cyrus user, which cannot enter a private temporary directory:
        # give it copies in a directory of its own under /tmp (no secrets in these two files).
        with tempfile.TemporaryDirectory(prefix="mailctl-cyrus-", dir="/tmp") as tmp:
            Path(tmp).chmod(0o755)
            copies = []
            for key in ("cyrus_imapd_conf", "cyrus_conf"):
                copy = Path(tmp) / Path(paths[key]).name
                shutil.copyfile(at(paths[key]), copy)
                copy.chmod(0o644)
                copies.append(str(copy))
            results.append(_run(host.name, "cyr_info conf-lint",
                                ["cyr_info", "-C", copies[0], "-M", copies[1], "conf-lint"],
                                silent_ok=True))
    return results
