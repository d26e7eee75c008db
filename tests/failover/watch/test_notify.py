"""Notifications reach a real HTTP receiver, signed, in order; a dead receiver costs nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from failover.watch.notify import Notifier
from failover.watch.webhook import ReplayGuard, verify

SECRET = b"a secret shared with the receiver"
ADDRESS = "127.98.3.1"  # this directory's loopback subnet


class Receiver(ThreadingHTTPServer):
    """Keeps every message whose signature verifies; answers 401 to the rest."""

    def __init__(self) -> None:
        super().__init__((ADDRESS, 0), Handler)
        self.messages: list[dict[str, Any]] = []
        self.refused = 0
        self.guard = ReplayGuard()


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            verify(SECRET, dict(self.headers), body, now=time.time(), max_age=60,
                   guard=self.server.guard)
        except Exception:
            self.server.refused += 1
            self.send_response(401)
        else:
            self.server.messages.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_every_message_arrives_signed_and_in_order(receiver: Receiver) -> None:
    host, port = receiver.server_address[:2]
    notifier = Notifier(f"http://{host!s}:{port}/hook", SECRET)
    for i in range(5):
        notifier.send({"event": "decision", "n": i})
    notifier.close()  # sends what is queued, then stops
    assert [m["n"] for m in receiver.messages] == [0, 1, 2, 3, 4]
    assert (notifier.sent, notifier.failed, receiver.refused) == (5, 0, 0)


def test_a_receiver_that_refuses_or_is_gone_is_counted_not_raised(receiver: Receiver) -> None:
    host, port = receiver.server_address[:2]
    wrong = Notifier(f"http://{host!s}:{port}/hook", b"another secret")
    wrong.send({"event": "decision"})
    wrong.close()
    assert (wrong.sent, wrong.failed, receiver.refused) == (0, 1, 1)
    gone = Notifier("http://127.98.3.2:9/hook", SECRET)  # nothing listens there
    gone.send({"event": "decision"})
    gone.close()
    assert (gone.sent, gone.failed) == (0, 1)


def test_without_a_url_nothing_is_sent_or_started() -> None:
    quiet = Notifier(None, SECRET)
    quiet.send({"event": "decision"})
    quiet.close()
    assert (quiet.sent, quiet.failed) == (0, 0)
