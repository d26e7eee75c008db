"""Blocking calls made from asyncio: in a thread, never more than one at a time per caller.

The controller reads provider APIs through blocking clients (boto3, hcloud)
from its event loop; the probe that does so, and the DNS plane's API reader,
share this guard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's outcome as seen (no "exception never retrieved")."""
    if not task.cancelled():
        task.exception()


class OneThread:
    """Blocking calls in a thread, never more than one at a time for one caller.

    A thread cannot be cancelled: when a look gives up at its deadline the
    call runs on. Starting another each look would pile threads up behind a
    dark endpoint and starve asyncio's shared pool, so while one is still
    out, the call says so instead.
    """

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None
        self._since = 0.0

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a thread; RuntimeError when the previous call has not returned."""
        if self._pending is not None and not self._pending.done():
            raise RuntimeError(f"still waiting for the answer to a look started "
                               f"{time.monotonic() - self._since:.1f}s ago")
        self._since = time.monotonic()
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        future.add_done_callback(retrieve)
        self._pending = future
        # Shielded: a look cut short must not forget that its thread still runs.
        result: _T = await asyncio.shield(future)
        return result
