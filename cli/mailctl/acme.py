"""Before a deploy touches any host: each ACME directory the selected hosts name must answer
from this machine as an RFC 8555 directory (a JSON object with newNonce, newAccount and
newOrder). A host reaches its CA by itself later; a directory that is down or mistyped is
caught here, once per directory, with one line per host that names it."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from .errors import Problem, ValidationFailed
from .inventory import Inventory
from .model import MailHost

TIMEOUT = 10  # seconds per directory
REQUIRED = ("newNonce", "newAccount", "newOrder")


def directory_problem(url: str, cafile: Path | None) -> str | None:
    """Why the directory at url is not usable, or None."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as answer:
            body = json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:
        return f"{url} answers HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} is not reachable from this machine ({reason})"
    except ValueError:
        return f"{url} does not answer with JSON: not an ACME directory"
    missing = [k for k in REQUIRED if not isinstance(body, dict) or k not in body]
    if missing:
        return f"{url} is not an ACME directory (no {', '.join(missing)})"
    return None


def check_directories(inv: Inventory, hosts: list[MailHost]) -> None:
    """Raise ValidationFailed (exit 2) naming every host whose directory does not answer."""
    answers: dict[tuple[str, str | None], str | None] = {}
    problems = []
    for host in hosts:
        if not host.tls.acme:
            continue
        cafile = inv.directory / host.tls.directory_ca if host.tls.directory_ca else None
        key = (host.tls.directory, str(cafile) if cafile else None)
        if key not in answers:
            answers[key] = directory_problem(host.tls.directory, cafile)
        if answers[key]:
            problems.append(Problem(inv.file_of(host.name, "mail_tls"), host.name,
                                    "mail_tls.directory", answers[key]))
    if problems:
        raise ValidationFailed(problems)
