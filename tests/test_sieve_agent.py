"""The mailbox agent's Sieve side, without a store: the rule of which script a deploy
installs and activates (sieve-sync), making a user's scripts equal to a manifest's (a
migration's import), and the ManageSieve responses it parses (Cyrus). The stores themselves
are exercised by molecule/shared/mailauth/test_sieve.py."""

from __future__ import annotations

import io

import pytest

from mailctl.hostside import mailbox_agent as agent


class FakeScripts:
    """A user's scripts as a store keeps them, recording every change."""

    def __init__(self, scripts: dict[str, str] | None = None, active: str | None = None):
        self.scripts = dict(scripts or {})
        self.active = active
        self.calls: list[tuple] = []

    def listing(self):
        return sorted(self.scripts), self.active

    def get(self, name):
        return self.scripts[name]

    def put(self, name, text):
        self.calls.append(("put", name))
        self.scripts[name] = text

    def activate(self, name):
        self.calls.append(("activate", name))
        self.active = name

    def delete(self, name):
        assert name != self.active, "a store refuses to delete the active script"
        self.calls.append(("delete", name))
        del self.scripts[name]


def test_a_new_script_is_installed_and_activated():
    scripts = FakeScripts()
    assert agent.sync_inventory_script(scripts, "keep;\n", owned=False) == \
        "installed, activated"
    assert scripts.scripts == {"mailctl": "keep;\n"} and scripts.active == "mailctl"


def test_an_unchanged_script_changes_nothing():
    scripts = FakeScripts({"mailctl": "keep;\r\n"}, "mailctl")  # CRLF as a server keeps it
    assert agent.sync_inventory_script(scripts, "keep;\n", owned=False) is None
    assert scripts.calls == []


def test_the_users_own_active_script_wins_unless_the_inventory_owns_the_filters():
    scripts = FakeScripts({"mailctl": "old;\n", "roundcube": "stop;\n"}, "roundcube")
    what = agent.sync_inventory_script(scripts, "keep;\n", owned=False)
    assert what == "updated, left inactive: the user's own 'roundcube' is active " \
                   "(sieve.owned: false)"
    assert scripts.active == "roundcube" and scripts.scripts["roundcube"] == "stop;\n"
    what = agent.sync_inventory_script(scripts, "keep;\n", owned=True)
    assert what == "activated instead of 'roundcube'"
    assert scripts.active == "mailctl" and scripts.scripts["roundcube"] == "stop;\n"


def test_owned_reactivates_at_every_deploy_and_not_owned_stays_quiet():
    scripts = FakeScripts({"mailctl": "keep;\n", "mine": "stop;\n"}, "mine")
    assert agent.sync_inventory_script(scripts, "keep;\n", owned=False) is None
    assert scripts.calls == []


def test_removing_the_filters_removes_only_the_inventory_script():
    scripts = FakeScripts({"mailctl": "keep;\n", "mine": "stop;\n"}, "mailctl")
    assert agent.sync_inventory_script(scripts, None, owned=False) == "removed"
    assert scripts.scripts == {"mine": "stop;\n"} and scripts.active is None
    assert agent.sync_inventory_script(scripts, None, owned=False) is None


def test_put_sieve_makes_the_scripts_equal_to_the_manifest():
    scripts = FakeScripts({"mailctl": "keep;\n", "stale": "discard;\n"}, "mailctl")
    saved = {"active": "mine", "scripts": {"mailctl": "keep;\n", "mine": "stop;\n"}}
    agent.put_sieve_into(scripts, saved)
    assert scripts.scripts == saved["scripts"] and scripts.active == "mine"
    assert ("put", "mailctl") not in scripts.calls  # equal already: not written again


def test_put_sieve_with_none_active_deactivates_before_deleting():
    scripts = FakeScripts({"old": "stop;\n"}, "old")
    agent.put_sieve_into(scripts, {"active": None, "scripts": {}})
    assert scripts.scripts == {} and scripts.active is None


class FakeSession(agent.ManageSieve):
    def __init__(self, replies: bytes):  # no socket: the server's bytes only
        self.file = io.BytesIO(replies)


def test_managesieve_literals_and_errors():
    session = FakeSession(b'{11}\r\nrequire "x"\r\nOK\r\n'
                          b'"one"\r\n"t\\"wo" ACTIVE\r\nOK "Listscripts completed."\r\n'
                          b'NO "Script is active"\r\n')
    assert session.response() == [b'require "x"\r\n']
    assert session.response() == [b'"one"\r\n', b'"t\\"wo" ACTIVE\r\n']
    with pytest.raises(agent.Failure, match="Script is active"):
        session.response()
