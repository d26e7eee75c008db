"""A virtual clock for asyncio code that takes its clock and sleep injected (tenacity style).

Time moves only when every task waits: ``run`` drives an event loop whose
selector, at the moment the loop would block, moves the clock to the earliest
sleeper's wake-up time instead. A schedule of hours runs in milliseconds and
every instant is exact, so tests assert on times, not on margins.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _IdleSelector(selectors.DefaultSelector):
    """A selector that, where the loop would wait, moves the clock on instead (``on_idle``)."""

    def __init__(self, on_idle: Callable[[], bool]) -> None:
        super().__init__()
        self._on_idle = on_idle

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        # timeout 0: callbacks are ready, the loop is not idle; time stands still.
        if timeout != 0 and self._on_idle():
            timeout = 0
        events: list[tuple[Any, int]] = super().select(timeout)
        return events


class VirtualClock:
    """Seconds that pass only when every task sleeps on this clock (or by ``spend``)."""

    def __init__(self, horizon: float = 3600.0) -> None:
        self.now = 0.0
        self.horizon = horizon  # a run that sleeps past this is stuck: fail, never spin
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The virtual now, in seconds."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock reaches now + ``seconds``."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), woken))
        await woken

    def spend(self, seconds: float) -> None:
        """Time passes while the caller holds the loop (a look that hogs the CPU)."""
        self.now += seconds

    def _wake_next(self) -> bool:
        """Move to the earliest sleeper's time and wake everyone due; False if nobody sleeps."""
        while self._sleepers and self._sleepers[0][2].done():  # a cancelled sleep
            heapq.heappop(self._sleepers)
        if not self._sleepers:
            return False
        at = self._sleepers[0][0]
        if at > self.horizon:
            raise TimeoutError(f"still running at virtual time {self.horizon:g}s")
        self.now = max(self.now, at)
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)
        return True

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to its end on a fresh event loop driven by this clock."""
        loop = asyncio.SelectorEventLoop(_IdleSelector(self._wake_next))
        try:
            return loop.run_until_complete(main)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
