"""Notifications: every decision and run outcome POSTed to a configured webhook, signed.

Sending must never hold up a decision, so a thread of its own takes the
messages from a queue and POSTs each once with a short timeout; a receiver
that is down costs a log line, not a late failover. The body is signed (the
same scheme as ``/v1/signals``), so the receiver can tell the controller's
word from anyone else's. The secret is its own (``watch.notify_secret_file``
or ``$FAILOVER_NOTIFY_SECRET``), never the webhook's: a receiver holding the
webhook's secret could sign signals that the controller would obey.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import httpx

from failover.logs import log_event
from failover.watch.webhook import sign

log = logging.getLogger("failover.watch")
TIMEOUT = 3.0
_STOP = object()


class Notifier:
    """Sends JSON messages to ``url`` in the background (nothing when url is None)."""

    def __init__(self, url: str | None, secret: bytes | None = None) -> None:
        self.url = url
        self.secret = secret
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        if url is not None:
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (thread-safe); dropped, with a log line, when the queue is full."""
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log_event(log, "watch.notify", outcome="dropped", detail="queue full")

    def close(self) -> None:
        """Send what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        assert self.url is not None
        with httpx.Client(timeout=TIMEOUT) as client:
            while (message := self._queue.get()) is not _STOP:
                body = json.dumps(message, default=str).encode()
                headers = {"Content-Type": "application/json"}
                if self.secret is not None:
                    headers.update(sign(self.secret, body))
                try:
                    response = client.post(self.url, content=body, headers=headers)
                    response.raise_for_status()
                    self.sent += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log_event(log, "watch.notify", outcome="failed", url=self.url,
                              detail=f"{type(exc).__name__}: {exc}")
