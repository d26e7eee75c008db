"""Wait for a condition with one deadline, never for a fixed time.

The clock and the sleep are injectable so that tests of code built on this
never wait on the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
) -> T:
    """Call ``probe`` until it returns a truthy value and return that value.

    Exceptions of ``retry_on`` from ``probe`` count as "not yet" (a server
    that is still starting refuses connections); the last one is named in the
    timeout. Any other exception ends the wait at once: a probe that knows
    the wait is hopeless (the process it waits on died) says so by raising.
    """
    deadline = clock() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except retry_on as exc:  # a starting server fails in many ways; keep polling
            last_error = exc
            result = None
        if result:
            return result
        if clock() >= deadline:
            cause = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{cause}")
        sleep(interval)
