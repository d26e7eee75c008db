"""What the drill watches while a fault plays out: the DNS answers.

``DnsWatcher`` asks the authoritative servers the clients use, without a
cache, and notes when each answer changed: the moment the servers first name
the new site (or a client was sent there, if that came first) is the drill's
DNS switch (``measure.dns_switched``). (Detection is the controller's:
``failover watch``, run by the drill.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from failover.drill.resolver import CachingResolver, ResolveError


@dataclass(frozen=True)
class DnsChange:
    """An answer the authoritative servers gave from ``at`` on (time.time())."""

    at: float
    addresses: tuple[str, ...]  # empty: no server answered
    detail: str = ""


class DnsWatcher:
    """Polls the authoritative servers for one name in a thread; keeps each change."""

    def __init__(self, name: str, servers: Sequence[tuple[str, int]], *,
                 interval: float = 0.1, timeout: float = 0.5) -> None:
        # A resolver whose cache is always stale: every look asks the servers.
        self._resolver = CachingResolver(name, servers, timeout=timeout,
                                         clock=lambda: float("inf"))
        self.interval = interval
        self.changes: list[DnsChange] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns-watcher", daemon=True)

    def start(self) -> DnsWatcher:
        """Start watching; returns self."""
        self._look()
        self._thread.start()
        return self

    def stop(self) -> list[DnsChange]:
        """Stop watching; returns the changes seen."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.changes

    def _look(self) -> None:
        try:
            answer = self._resolver.resolve()
            addresses, detail = answer.addresses, answer.server
        except ResolveError as exc:
            addresses, detail = (), str(exc)
        if not self.changes or self.changes[-1].addresses != addresses:
            self.changes.append(DnsChange(time.time(), addresses, detail))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._look()
