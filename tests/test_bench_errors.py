"""The bench scripts fail like the CLI: one `error:` line and exit 1, never a traceback
(here with the Docker engine out of reach, the first thing a new machine may lack)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", ["throughput", "deploy", "scale"])
def test_bench_error_is_one_line(script, tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    args = ["--only", "deploy"] if script == "deploy" else []
    proc = subprocess.run([str(BENCH / script), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: the Docker engine is not running: start it (scripts/bootstrap does, or run "
        "`dockerd &` as root)"]
