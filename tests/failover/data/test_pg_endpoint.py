"""Reaching a PostgreSQL server: the postmaster's one-byte answer, on plain loopback sockets."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg
import pytest

from failover.data.postgres import SSL_REQUEST_CODE, PgEndpoint


@contextmanager
def listening(answer: bytes | None) -> Iterator[int]:
    """A loopback port whose server reads the SSLRequest and answers ``answer``.

    With None the port is only listened on: the kernel completes the TCP
    handshake and nothing ever answers, as with a frozen postmaster.
    """
    with closing(socket.socket()) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        if answer is None:
            yield port
            return
        got: list[bytes] = []

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(8))
                conn.sendall(answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield port
        thread.join(timeout=5)
        assert got == [struct.pack("!II", 8, SSL_REQUEST_CODE)]


def test_a_postmaster_that_answers_answers() -> None:
    with listening(b"N") as port:
        assert PgEndpoint("127.0.0.1", port).answers(2.0) is None


def test_a_server_that_closes_without_a_byte_is_named() -> None:
    with listening(b"") as port:
        assert PgEndpoint("127.0.0.1", port).answers(2.0) == (
            f"127.0.0.1:{port} closed the connection without answering")


def test_a_frozen_server_fails_within_the_short_timeout() -> None:
    with listening(None) as port:
        endpoint = PgEndpoint("127.0.0.1", port)
        assert endpoint.answers(0.2) == f"127.0.0.1:{port} did not answer within 0.2s"
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match=r"did not answer within 0\.3s"):
            endpoint.connect(timeout=0.3)
        assert time.monotonic() - started < 1.5  # not libpq's 2 s floor


def test_a_closed_port_is_refused() -> None:
    with closing(socket.socket()) as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listened on: refused
        why = PgEndpoint("127.0.0.1", port).answers(1.0)
    assert why is not None and why.startswith(f"127.0.0.1:{port}: ")
    assert "refused" in why.lower()


def test_the_password_is_never_printed() -> None:
    endpoint = PgEndpoint("db.example", 5433, "app", "social", password="s3cret")
    assert repr(endpoint) == "PgEndpoint(app@db.example:5433/social)"
    assert "s3cret" not in f"{endpoint!r} {endpoint}"
