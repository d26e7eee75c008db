"""What every probe promises: one look, one Observation, within the timeout, never a raise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any, Protocol

from failover.watch.signals import Observation, ProbeKind, Status

Facts = dict[str, Any]
Finding = tuple[Status, str, Facts]  # what one look found: status, detail, facts


class Probe(Protocol):
    """One target looked at from one vantage point, on its own interval and timeout."""

    kind: ProbeKind
    target: str  # a site's name; for DNS, the DNS provider's name
    vantage: str
    interval: float
    timeout: float

    async def look(self) -> Observation:
        """Look once, within ``timeout``; every failure is an Observation, never a raise."""
        ...

    async def aclose(self) -> None:
        """Close what the probe keeps open between looks."""
        ...


class Looking:
    """What every probe holds: its target, its vantage point, how often and how long it looks."""

    def __init__(self, target: str, vantage: str, interval: float, timeout: float) -> None:
        self.target = target
        self.vantage = vantage
        self.interval = interval
        self.timeout = timeout


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its first non-empty line, else its type's name."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return (text or type(exc).__name__)[:limit]


async def observe(probe: Probe, ask: Callable[[], Awaitable[Finding]]) -> Observation:
    """Run one look under the probe's deadline and turn whatever happened into an Observation."""
    at, started = time.time(), time.perf_counter()
    try:
        async with asyncio.timeout(probe.timeout):
            status, detail, facts = await ask()
    except TimeoutError:
        status, detail, facts = "down", f"no answer in {probe.timeout:g}s", {}
    except Exception as exc:  # the contract: a failed look is an answer, not an error
        status, detail, facts = "down", one_line(exc), {}
    return Observation(probe.kind, probe.target, probe.vantage, at, status,
                       time.perf_counter() - started, detail, MappingProxyType(facts))
