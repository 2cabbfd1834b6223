"""Ansible filters backed by the mailctl package: the one schema and the one renderer.

When mailctl is not installed (roles used straight from a checkout, e.g. by AWX), the
package is imported from the checkout's cli/ directory next to roles/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    from mailctl import ansible_bridge
except ImportError:  # running from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from mailctl import ansible_bridge


def _wrap(func):
    def call(data):
        try:
            return func(data)
        except ansible_bridge.BridgeError as exc:
            raise AnsibleFilterError(f"mailctl: invalid mail settings:\n{exc}") from None
    return call


def _wrap_args(func):
    def call(*args):
        try:
            return func(*args)
        except ansible_bridge.BridgeError as exc:
            raise AnsibleFilterError(f"mailctl: invalid mail settings:\n{exc}") from None
    return call


class FilterModule:
    def filters(self):
        return {
            "mailctl_files": _wrap(ansible_bridge.host_files),
            "mailctl_host": _wrap(ansible_bridge.host_summary),
            "mailctl_topology": _wrap_args(ansible_bridge.plan_topology),
            "mailctl_stale": ansible_bridge.stale_files,
            "mailctl_stale_sources": ansible_bridge.stale_sources,
            "mailctl_installed": ansible_bridge.installed_stores,
            "mailctl_departing": ansible_bridge.departing_domains,
            "mailctl_failure_text": ansible_bridge.failure_text,
        }
