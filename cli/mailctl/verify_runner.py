"""Run the testinfra verify suite (mailctl/verify/) against an inventory's hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .paths import roles_dir

VERIFY_DIR = Path(__file__).resolve().parent / "verify"


def run_verify(inventory: Path, *, limit: str | None = None, backend: str | None = None,
               vault_password_file: str | None = None, verbose: bool = False) -> int:
    """pytest exit code: 0 when every check passed on every selected host."""
    env = dict(os.environ)
    env["ANSIBLE_ROLES_PATH"] = str(roles_dir())
    env["ANSIBLE_INTERPRETER_PYTHON"] = "auto_silent"
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # ansible-* from this venv
    if backend:
        env["MAILCTL_BACKEND"] = backend
    if vault_password_file:
        env["MAILCTL_VAULT_PASSWORD_FILE"] = str(Path(vault_password_file).resolve())
    argv = [sys.executable, "-m", "pytest", str(VERIFY_DIR), "-p", "no:cacheprovider",
            "--rootdir", str(VERIFY_DIR), "-c", os.devnull,
            "--hosts=" + ",".join(f"ansible://{h}" for h in (limit or "all").split(",")),
            f"--ansible-inventory={Path(inventory).resolve()}",
            "-v" if verbose else "-q", "-rf"]
    return subprocess.run(argv, env=env, check=False).returncode
