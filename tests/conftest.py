"""Shared fixtures for the mailctl test suite.

- `make_inventory` writes small YAML (or INI) inventories with group_vars/host_vars to tmp_path.
- `mailctl` runs the CLI in-process (click's CliRunner) with a chosen working directory;
  `mailctl_subprocess` runs the installed console script, for what must be process-fresh.
- `--update-golden` (or MAILCTL_UPDATE_GOLDEN=1) rewrites tests/golden/ instead of comparing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
EXAMPLE = REPO / "inventories" / "example"
GOLDEN = Path(__file__).resolve().parent / "golden"
DATA = Path(__file__).resolve().parent / "data"

HOST = "mail.example.test"
DELETE = object()  # in a patch: remove this key

# A valid starting point: every case in the validation table changes one thing from here.
BASE_ALL: dict[str, Any] = {
    "mail_domains": ["example.test", "corp.test"],
    "mail_users": [
        {"address": "alice@example.test", "password": "alice-pw-1"},
        {"address": "bob@corp.test", "password": "bob-pw-2"},
    ],
    "mail_aliases": [
        {"address": "postmaster@example.test", "to": "alice@example.test"},
    ],
}
BASE_HOST: dict[str, Any] = {"mail_hostname": HOST}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/ from the current rendering instead of "
                          "comparing (same as MAILCTL_UPDATE_GOLDEN=1).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds and installs a wheel into a fresh venv (runs by default; "
                   "deselect with -m 'not slow')")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden")
                or os.environ.get("MAILCTL_UPDATE_GOLDEN") == "1")


# --------------------------------------------------------------------------- inventories

def dump_yaml(data: Any) -> str:
    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True,
                                    default_flow_style=False)


def patched(base: Mapping[str, Any], patch: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(base)
    for key, value in (patch or {}).items():
        if value is DELETE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def write(path: Path, content: str | Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else dump_yaml(content),
                    encoding="utf-8")
    return path


@dataclass
class InventoryBuilder:
    tmp_path: Path
    count: int = 0

    def __call__(self, *, all_vars: Mapping[str, Any] | None = None,
                 host_vars: Mapping[str, Mapping[str, Any]] | None = None,
                 group_vars: Mapping[str, Mapping[str, Any]] | None = None,
                 hosts: str | Mapping[str, Any] | None = None,
                 hosts_name: str = "hosts.yml") -> Path:
        """An inventory directory: hosts file, group_vars/all/main.yml, host_vars/<h>.yml.

        Defaults give one valid host (HOST) with BASE_ALL and BASE_HOST."""
        self.count += 1
        root = self.tmp_path / f"inv{self.count}"
        root.mkdir()
        if hosts is None:
            hosts = {"all": {"hosts": {HOST: None}}}
        write(root / hosts_name, hosts)
        write(root / "group_vars" / "all" / "main.yml",
              BASE_ALL if all_vars is None else all_vars)
        for name, data in (host_vars if host_vars is not None
                           else {HOST: BASE_HOST}).items():
            write(root / "host_vars" / f"{name}.yml", data)
        for name, data in (group_vars or {}).items():
            write(root / "group_vars" / f"{name}.yml", data)
        return root


@pytest.fixture
def make_inventory(tmp_path: Path) -> InventoryBuilder:
    return InventoryBuilder(tmp_path)


# --------------------------------------------------------------------------- running mailctl

@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def problems(self) -> list[tuple[str, str, str, str]]:
        """stderr as (file, host, field, message) tuples, one per line."""
        return [tuple(line.split(": ", 3)) for line in self.stderr.splitlines() if line]

    def assert_clean(self) -> None:
        """No traceback anywhere, and no exception other than the CLI's own exit."""
        assert "Traceback" not in self.stdout + self.stderr, self.stdout + self.stderr
        if self.exception is not None:
            assert isinstance(self.exception, SystemExit), repr(self.exception)


def run_inprocess(*args: str | os.PathLike, cwd: Path | None = None,
                  env: Mapping[str, str] | None = None) -> Result:
    from mailctl.cli import main

    cwd = cwd or Path.cwd()
    # Ansible's VariableManager also loads group_vars/host_vars next to the loader's basedir
    # (the working directory, "."), and host_group_vars caches what "." means for the whole
    # process: in-process runs must never start in a directory holding vars.
    assert not (cwd / "group_vars").exists() and not (cwd / "host_vars").exists(), cwd
    runner = CliRunner()
    with contextlib.chdir(cwd):
        res = runner.invoke(main, [str(a) for a in args], env=dict(env or {}),
                            catch_exceptions=True)
    exc = res.exception
    if isinstance(exc, SystemExit):
        exc = None if exc.code in (0, None) else exc
    result = Result(res.exit_code, res.stdout, res.stderr, exc)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        # Make an in-process crash look like the console script's: a traceback on stderr.
        import traceback

        result.stderr += "".join(traceback.format_exception(res.exception))
    return result


def run_subprocess(*args: str | os.PathLike, cwd: Path | None = None,
                   env: Mapping[str, str] | None = None, timeout: int = 300) -> Result:
    proc = subprocess.run([str(VENV_BIN / "mailctl"), *[str(a) for a in args]],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def mailctl() -> Callable[..., Result]:
    return run_inprocess


@pytest.fixture
def mailctl_subprocess() -> Callable[..., Result]:
    return run_subprocess


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root, by relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


class Echo:
    """click.echo's stand-in: what a command printed, in order, with err=True marked."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []

    def __call__(self, text: str = "", err: bool = False) -> None:
        self.lines.append((str(text), err))

    @property
    def text(self) -> str:
        return "\n".join(line for line, _ in self.lines)
