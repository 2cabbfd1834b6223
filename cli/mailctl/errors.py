"""Errors a person can act on. The CLI turns them into one-line messages, never tracebacks."""

from __future__ import annotations

from dataclasses import dataclass


class MailctlError(Exception):
    """A user-facing failure; str(error) is the whole message."""

    exit_code = 1


class InputError(MailctlError):
    """Bad input (inventory, options, files): exit code 2, nothing touched."""

    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding: where it is and what is wrong."""

    file: str
    host: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.host}: {self.field}: {self.message}"


class ValidationFailed(InputError):
    """The inventory has one or more problems; each prints on its own line."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))
