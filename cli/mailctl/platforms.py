"""Platform profiles: paths, users, package index commands and Postfix syntax per OS family
(with per-release values), as data; the components' packages and services are in the
component registry (templates/components.yml).

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
def profile(platform: str, release: str | None = None) -> dict[str, Any]:
    """The profile of a platform family; for a release whose syntax or paths differ (the
    profile's `releases`, keyed like "RedHat 10"), with that release's values merged in."""
    path = roles_dir() / "mail_common" / "vars" / FAMILY_FILES[platform]
    with path.open(encoding="utf-8") as handle:
        family = yaml.safe_load(handle)["__mail_common_platform"]
    return _merged(family, (family.get("releases") or {}).get(release or "", {}))


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Like Ansible's combine(recursive=True), which the roles use for the same merge."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


@cache
def names(platform: str, release: str | None = None) -> dict[str, str]:
    """The profile's paths and users by name: what {placeholders} in the component registry
    and in file destinations stand for."""
    plat = profile(platform, release)
    return {**plat["paths"], **{k: str(v) for k, v in plat["users"].items()}}
