"""One schema: the README's inventory table and the mail_common role's argument_specs are
generated from cli/mailctl/schema.py, and this fails when either drifts from it (fix with
`python -m mailctl.schema`)."""

from __future__ import annotations

import yaml
from conftest import BASE_ALL, BASE_HOST, HOST

from mailctl import schema
from mailctl.model import Bans, Limits, LoginThrottle, Postscreen, SendLimits
from mailctl.validate import DEFAULTS, check_host


def test_argument_specs_are_generated_from_the_schema():
    assert schema.SPECS_FILE.read_text(encoding="utf-8") == schema.argument_specs(), (
        "roles/mail_common/meta/argument_specs.yml drifted: run python -m mailctl.schema")


def test_readme_table_is_generated_from_the_schema():
    text = schema.README.read_text(encoding="utf-8")
    assert schema.readme_with_table(text) == text, (
        "the README's inventory table drifted: run python -m mailctl.schema")


def test_validation_reads_every_variable_of_the_schema_and_no_other():
    assert list(DEFAULTS) == [s.name for s in schema.SETTINGS]
    required = [name for name, default in DEFAULTS.items() if default is None]
    assert required == ["mail_hostname", "mail_domains"]


def test_role_defaults_match_the_schema():
    defaults = yaml.safe_load((schema.ROOT / "roles" / "mail_common" / "defaults" / "main.yml")
                              .read_text(encoding="utf-8"))
    assert defaults == {s.name: s.default for s in schema.ROLE_SETTINGS}


def test_the_specs_describe_every_setting_with_its_default():
    options = yaml.safe_load(schema.argument_specs())["argument_specs"]["main"]["options"]
    assert options["mail_backend"]["choices"] == ["dovecot", "cyrus"]
    assert options["mail_hostname"]["required"] is True
    assert options["mail_mynetworks"]["default"] == ["127.0.0.0/8", "[::1]/128"]
    assert "default" not in options["mail_platform"]  # a deploy reads the host's facts
    assert all(o["description"] for o in options.values())


def test_the_abuse_defaults_of_the_schema_are_the_models():
    """The schema shows a few keys of each abuse setting: validated, they are the model's
    defaults (the README cannot promise other values than the hosts get)."""
    variables = {**BASE_HOST, **BASE_ALL, **{k: DEFAULTS[k] for k in (
        "mail_postscreen", "mail_limits", "mail_send_limits", "mail_login_throttle",
        "mail_bans")}}
    host, findings = check_host(HOST, variables, [])
    assert findings == []
    assert (host.postscreen, host.limits, host.send_limits, host.login_throttle, host.bans) == (
        Postscreen(), Limits(), SendLimits(), LoginThrottle(), Bans())
