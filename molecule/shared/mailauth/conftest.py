"""Test order for the verifier runs that add these modules: test_acme_outage.py stops the
scenario's ACME CA, so it runs after every other check (molecule passes these files before
the verify suite's directory)."""

from __future__ import annotations


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name == "test_acme_outage.py")
