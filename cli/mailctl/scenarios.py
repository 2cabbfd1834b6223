"""`mailctl test`: run the molecule scenarios of a checkout, one after the other, timing
each (scripts/test prints the times in its stage table)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import InputError, MailctlError
from .paths import share_dir


def scenario_names(root: Path) -> list[str]:
    """Every scenario with a molecule.yml; a NOT_IN_CI file holds one back (it says why)."""
    return sorted(p.parent.name for p in (root / "molecule").glob("*/molecule.yml")
                  if not (p.parent / "NOT_IN_CI").exists())


def run_scenarios(scenario: str | None, echo: Callable[[str], None]) -> dict[str, float]:
    """Run `molecule test` for SCENARIO or all; seconds per scenario. Raises on a failure."""
    root = share_dir()
    if not (root / "molecule").is_dir():
        raise InputError("molecule scenarios ship with the source checkout, not the wheel")
    names = [scenario] if scenario else scenario_names(root)
    if not scenario:
        for held in sorted((root / "molecule").glob("*/NOT_IN_CI")):
            reason = held.read_text().strip().splitlines()
            echo(f"not run: {held.parent.name} ({reason[2] if len(reason) > 2 else ''}"
                 f" ... see {held.relative_to(root)})")
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    times_file = os.environ.get("MAILCTL_SCENARIO_TIMES")  # scripts/test's timing table
    durations: dict[str, float] = {}
    for name in names:
        echo(f"== molecule test -s {name}")
        started = time.monotonic()
        code = subprocess.run(["molecule", "test", "-s", name], cwd=root, env=env,
                              check=False).returncode
        durations[name] = time.monotonic() - started
        if times_file:
            with open(times_file, "a", encoding="utf-8") as handle:
                handle.write(f"{name} {durations[name]:.0f}\n")
        if code != 0:
            raise MailctlError(f"molecule scenario {name} failed")
    return durations
