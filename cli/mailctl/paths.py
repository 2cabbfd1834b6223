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


# The script mailctl runs on mail hosts to read and write users' mailboxes and Sieve scripts
# (mailctl mailbox/migrate through Ansible's script module; the sieve role copies it).
MAILBOX_AGENT = _PACKAGE / "hostside" / "mailbox_agent.py"


def templates_dir() -> Path:
    return share_dir() / "templates"


def roles_dir() -> Path:
    return share_dir() / "roles"


def playbooks_dir() -> Path:
    return share_dir() / "playbooks"


def inventories_dir() -> Path:
    return share_dir() / "inventories"
