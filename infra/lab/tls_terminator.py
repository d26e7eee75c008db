"""A TLS terminator: accept TLS, relay the bytes to a plain TCP server (the lab's moto).

``python -m infra.lab.tls_terminator --listen ADDR:PORT --upstream ADDR:PORT
--cert FILE --key FILE``. Each accepted connection is given TLS, then a
connection of its own to the upstream, and the bytes flow both ways
unchanged. When the upstream has said all it will, the client gets a TLS
close_notify (what moto's own ``--ssl`` omits, and pgBackRest insists on);
when the upstream refuses, the client is closed. It logs one line per error
to stderr, none per connection. The lab's hold on it is ``infra.lab.tls``.

Standard library only: three of these run in every lab, and each is a
process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0  # to moto, on the same machine: longer means it is frozen
HANDSHAKE_TIMEOUT = 10.0


def _log(message: str) -> None:
    print(f"tls: {message}", file=sys.stderr, flush=True)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()  # TCP to moto: half-close, moto still sends what it owes
    else:
        writer.close()  # TLS to the client: close_notify, what moto's own TLS omits


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(OSError, TimeoutError):
        await writer.wait_closed()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"


async def _relay(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
    upstream: tuple[str, int], context: ssl.SSLContext,
) -> None:
    """One client's connection: TLS, then one to moto, piped both ways until it ends.

    It ends when moto's side ends, or when either side fails. A client that
    has sent all it will (its end of stream) still gets moto's answer.
    """
    try:  # here rather than by the server: asyncio would not report a failed handshake
        await client_writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        _log(f"TLS handshake with {_peer(client_writer)} failed: {_why(exc)}")
        await _close(client_writer)
        return
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*upstream),
                                                CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        _log(f"upstream {upstream[0]}:{upstream[1]}: {_why(exc)}; client closed")
        await _close(client_writer)
        return
    upload = asyncio.create_task(_pipe(client_reader, writer))
    download = asyncio.create_task(_pipe(reader, client_writer))
    try:
        await asyncio.wait((upload, download), return_when=asyncio.FIRST_COMPLETED)
        if not download.done() and upload.exception() is None:
            await asyncio.wait((download,))
    finally:
        for task in (upload, download):
            task.cancel()
        ended = await asyncio.gather(upload, download, return_exceptions=True)
        await _close(writer)
        await _close(client_writer)
    failed = [e for e in ended if isinstance(e, Exception)]  # CancelledError is no Exception
    if failed:
        _log(f"connection from {_peer(client_writer)}: {_why(failed[0])}")


def _on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own reports, as one line instead of a traceback."""
    exc = context.get("exception")
    _log(context.get("message", "error") + (f": {_why(exc)}" if exc else ""))


async def serve(listen: tuple[str, int], upstream: tuple[str, int],
                context: ssl.SSLContext) -> None:
    """Accept TLS on ``listen`` and relay each connection to ``upstream``, forever."""
    asyncio.get_running_loop().set_exception_handler(_on_loop_error)
    server = await asyncio.start_server(
        lambda r, w: _relay(r, w, upstream, context), *listen)
    _log(f"listening on {listen[0]}:{listen[1]}, relaying to {upstream[0]}:{upstream[1]}")
    async with server:
        await server.serve_forever()


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give ADDRESS:PORT, e.g. 127.0.10.1:5443")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse, load the certificate, serve until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.lab.tls_terminator",
        description="Accept TLS and relay the bytes to a plain TCP server (the lab's moto).")
    parser.add_argument("--listen", type=_host_port, required=True, metavar="ADDR:PORT")
    parser.add_argument("--upstream", type=_host_port, required=True, metavar="ADDR:PORT")
    parser.add_argument("--cert", type=Path, required=True, help="PEM certificate")
    parser.add_argument("--key", type=Path, required=True, help="PEM private key")
    args = parser.parse_args(argv)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        _log(f"cannot load certificate {args.cert} with key {args.key}: {_why(exc)}")
        return 2
    try:
        asyncio.run(serve(args.listen, args.upstream, context))
    except OSError as exc:  # the listening socket: taken, or no such address
        _log(f"cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
