"""The error tree of the product: one root, a few kinds a user can act on.

Every error carries a message written for the person at the terminal: what
is wrong and what to do. The CLI prints it as one line (a traceback only
with ``--debug``) and exits non-zero.
"""

from __future__ import annotations


class FailoverError(Exception):
    """Root of every error this tool raises on purpose."""

    exit_code = 1


class ConfigError(FailoverError):
    """A configuration file, option or secret is missing or malformed."""

    exit_code = 2


class UsageError(FailoverError):
    """A command called in a way that cannot work: an option it needs is missing."""

    exit_code = 2


class ProviderError(FailoverError):
    """A provider (DNS, compute, data store) refused or failed a call."""

    def __init__(
        self, message: str, *, provider: str, code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.request_id = request_id


class StaleToken(FailoverError):
    """A leader's fencing token older than the newest one seen: its sender was deposed.

    Nothing was done. Not a failure to retry: the sender stops acting.
    """

    def __init__(self, token: int, newest: int, holder: str, why: str | None = None) -> None:
        super().__init__(why or f"token {token} is older than {newest}, the newest {holder} "
                         "has seen: a deposed leader's request; nothing was done")
        self.token = token
        self.newest = newest


class UnsafePlan(FailoverError):
    """A plan was refused by a safety check before anything was touched."""


class StepFailed(FailoverError):
    """A step of a running plan failed."""


class FatalError(FailoverError):
    """Something that stops the tool outright (a bug or a broken machine)."""
