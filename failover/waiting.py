"""Wait for a condition with one deadline, never for a fixed time.

Every caller names the errors that mean "not yet" (``retry_on``): a server
that is still starting refuses connections, and that is worth another look;
a connection that drops in the middle of a database move is not, and must end
the wait at once rather than let it run out its deadline. ``retry_on=()``
says that the probe answers "not yet" only by returning a falsy value.

The clock and the sleep are injectable so that tests of code built on this
never wait on the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

RetryOn = type[BaseException] | tuple[type[BaseException], ...]


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    retry_on: RetryOn,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until it returns a truthy value and return that value.

    Exceptions of ``retry_on`` from ``probe`` count as "not yet"; the last one
    is named in the timeout. Any other exception ends the wait at once: a
    probe that knows the wait is hopeless (the process it waits on died, the
    connection it polls on is gone) says so by raising.
    """
    deadline = clock() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except retry_on as exc:  # the caller said these mean "not yet"
            last_error = exc
            result = None
        if result:
            return result
        if clock() >= deadline:
            cause = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{cause}")
        sleep(interval)
