"""What one look at a provider's API found, and the words every kind's checker shares."""

from __future__ import annotations

from dataclasses import dataclass

from failover.watch.signals import Status


@dataclass(frozen=True)
class ApiAnswer:
    """What one look at a provider's API found."""

    status: Status  # up | down (unreachable, slow, 5xx, throttled) | refused (credentials, block)
    detail: str  # one line, e.g. "EC2 DescribeInstances: AuthFailure (credentials refused)"
    code: str | None  # the provider's error code, if it gave one


def line(exc: BaseException) -> str:
    """An exception's first line (at most 200 characters), else its type's name."""
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


def seconds(value: float) -> str:
    """A duration as the detail lines write it, e.g. ``2s``."""
    return f"{value:g}s"
