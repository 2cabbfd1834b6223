"""What the checks of molecule/shared/mailauth share: the outside world harness.py started
for this scenario (its STATE file), and the scenario's inventory directory."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest


@functools.cache
def state() -> dict:
    path = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")) / "mailauth.json"
    if not path.is_file():
        pytest.fail(f"{path}: no outside world (import molecule/shared/mailauth/up.yml)")
    return json.loads(path.read_text())


@functools.cache
def inventory_dir() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
