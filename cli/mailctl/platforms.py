"""Platform profiles: package names, paths, users and services per OS family, as data.

The profiles live in roles/mail_common/vars/<Family>.yml so the roles load the very same
files (first-found on ansible_os_family) that `mailctl render` reads here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from .paths import roles_dir

FAMILY_FILES = {"debian": "Debian.yml", "redhat": "RedHat.yml", "suse": "Suse.yml"}
# ansible_os_family values → mailctl platform names
OS_FAMILIES = {"Debian": "debian", "RedHat": "redhat", "Suse": "suse"}


@cache
def profile(platform: str) -> dict[str, Any]:
    path = roles_dir() / "mail_common" / "vars" / FAMILY_FILES[platform]
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)["__mail_common_platform"]


@cache
def names(platform: str) -> dict[str, str]:
    """The profile's paths and users by name: what {placeholders} in the component registry
    and in file destinations stand for."""
    plat = profile(platform)
    return {**plat["paths"], **{k: str(v) for k, v in plat["users"].items()}}
