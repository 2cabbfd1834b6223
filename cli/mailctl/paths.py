"""Where mailctl's Ansible content lives: the checkout, or the copy inside an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def share_dir() -> Path:
    """Directory holding templates/, roles/, playbooks/ and inventories/."""
    installed = _PACKAGE / "_share"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent.parent  # cli/mailctl -> repository root


def templates_dir() -> Path:
    return share_dir() / "templates"


def roles_dir() -> Path:
    return share_dir() / "roles"


def playbooks_dir() -> Path:
    return share_dir() / "playbooks"


def inventories_dir() -> Path:
    return share_dir() / "inventories"
