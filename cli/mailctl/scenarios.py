"""`mailctl test`: run the molecule scenarios of a checkout, timing each (scripts/test prints
the times in its stage table). With --jobs N they run in N lanes at once: one scenario's
Ansible keeps about one core busy (each task waits on a round trip), so two lanes on two cores
take about half the time. Each scenario's output is printed whole when it ends."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import InputError, MailctlError
from .paths import share_dir

# Seconds each scenario took in CI (2026-12-03, second fresh clone, two lanes): what the lanes are
# balanced by. A scenario not listed counts as the longest one listed (never underestimated).
CI_SECONDS = {
    "default": 850, "cyrus": 880, "faults": 490, "faults-cyrus": 520, "multihost": 760,
    "ppc64le": 880, "ppc64le-cyrus": 720,
}

FAILED_TAIL = 120  # lines of a failed scenario's output printed again after every lane has ended


# molecule's line as an action begins, once its colours are taken out
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ACTION = re.compile(r"➜ (\w+): Executing")
_CLEAN_UP = ("cleanup", "destroy")


def failure_tail(output: str) -> list[str]:
    """The last lines of a failed `molecule test` before the clean-up that followed its last
    action (cleanup, destroy): where the failing task or test is."""
    lines = output.splitlines()
    actions = [(i, m.group(1)) for i, line in enumerate(lines)
               if (m := _ACTION.search(_ANSI.sub("", line)))]
    last_work = max((i for i, action in actions if action not in _CLEAN_UP), default=-1)
    cut = next((i for i, action in actions if i > last_work and action in _CLEAN_UP),
               len(lines))
    return lines[:cut][-FAILED_TAIL:]


def scenario_names(root: Path) -> list[str]:
    """Every scenario with a molecule.yml; a NOT_IN_CI file holds one back (it says why)."""
    return sorted(p.parent.name for p in (root / "molecule").glob("*/molecule.yml")
                  if not (p.parent / "NOT_IN_CI").exists())


def plan_lanes(names: list[str], jobs: int) -> list[list[str]]:
    """Split NAMES into at most JOBS lanes so that the longest lane is as short as it can be
    (every split is tried when there are few; else longest first, each to the lane that
    ends soonest). Each lane runs its longest scenario first."""
    longest = max(CI_SECONDS.values())
    cost = {n: CI_SECONDS.get(n, longest) for n in names}
    count = max(1, min(jobs, len(names)))
    ordered = sorted(names, key=lambda n: -cost[n])
    if count ** len(ordered) <= 50_000:
        best: tuple[int, list[int]] | None = None
        for split in itertools.product(range(count), repeat=len(ordered)):
            loads = [0] * count
            for name, lane in zip(ordered, split, strict=True):
                loads[lane] += cost[name]
            if best is None or max(loads) < best[0]:
                best = (max(loads), list(split))
        assignment = best[1] if best else []
    else:
        assignment, loads = [], [0] * count
        for name in ordered:
            lane = loads.index(min(loads))
            assignment.append(lane)
            loads[lane] += cost[name]
    lanes: list[list[str]] = [[] for _ in range(count)]
    for name, lane in zip(ordered, assignment, strict=True):
        lanes[lane].append(name)
    return [lane for lane in lanes if lane]


def run_scenarios(scenario: str | None, echo: Callable[[str], None],
                  jobs: int = 1) -> dict[str, float]:
    """Run `molecule test` for SCENARIO or all; seconds per scenario. Raises on a failure
    (once the scenarios already running have ended; no lane starts another after it)."""
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
    failed: list[str] = []
    failed_tails: dict[str, list[str]] = {}  # repeated at the end: a CI log keeps only its tail
    lock = threading.Lock()
    lanes = plan_lanes(names, jobs)
    if len(lanes) > 1:
        echo("lanes: " + " | ".join(", ".join(lane) for lane in lanes))

    def run_one(name: str) -> None:
        started = time.monotonic()
        if len(lanes) == 1:  # one lane: the output streams as it comes
            echo(f"== molecule test -s {name}")
            code = subprocess.run(["molecule", "test", "-s", name], cwd=root, env=env,
                                  check=False).returncode
        else:
            with lock:
                echo(f"== molecule test -s {name}: started")
            with tempfile.TemporaryFile() as log:
                code = subprocess.run(["molecule", "test", "-s", name], cwd=root, env=env,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      check=False).returncode
                log.seek(0)
                if code != 0:
                    failed_tails[name] = failure_tail(log.read().decode(errors="replace"))
                    log.seek(0)
                with lock:
                    echo(f"== molecule test -s {name}: output")
                    sys.stdout.flush()
                    while chunk := log.read(1 << 16):
                        sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
        seconds = time.monotonic() - started
        with lock:
            durations[name] = seconds
            if len(lanes) > 1:
                echo(f"== molecule test -s {name}: {'passed' if code == 0 else 'FAILED'}"
                     f" in {seconds:.0f} s")
            if times_file:
                with open(times_file, "a", encoding="utf-8") as handle:
                    handle.write(f"{name} {seconds:.0f}\n")
            if code != 0:
                failed.append(name)

    def run_lane(lane: list[str]) -> None:
        for name in lane:
            if failed:
                return
            run_one(name)

    threads = [threading.Thread(target=run_lane, args=(lane,)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, tail in failed_tails.items():
        echo(f"== molecule test -s {name} FAILED: its last {len(tail)} lines again")
        for line in tail:
            echo(line)
    if failed:
        raise MailctlError(f"molecule scenario(s) failed: {', '.join(failed)}")
    return {name: durations[name] for name in names if name in durations}
