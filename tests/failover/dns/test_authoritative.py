"""One authoritative question, asked blocking (the engine) and from asyncio (the probe).

Both ask the same question and read the answer the same way; a small DNS
server started here, in process (UDP and TCP on one loopback port), answers
as the test tells it: a record, a truncated UDP answer, REFUSED, no AA bit,
NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from failover.dns.authoritative import AuthoritativeReader, read_records
from failover.dns.records import Record, RecordKey
from failover.exceptions import ProviderError
from tests.conftest import free_port

NAME = "app.example.test."
KEY: RecordKey = (NAME, "A")
RECORD = Record(NAME, "A", 60, ("192.0.2.10", "192.0.2.11"))


@dataclass
class Answers:
    """How the server answers, and which transport each question came over."""

    rcode: int = dns.rcode.NOERROR
    authoritative: bool = True
    truncate_udp: bool = False
    asked: list[str] = field(default_factory=list)

    def respond(self, wire: bytes, transport: str) -> bytes:
        """The answer to one question."""
        self.asked.append(transport)
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.set_rcode(self.rcode)
        if self.authoritative:
            response.flags |= dns.flags.AA
        if transport == "udp" and self.truncate_udp:
            response.flags |= dns.flags.TC  # the answer does not fit: ask again over TCP
        elif self.rcode == dns.rcode.NOERROR and query.question[0].name.to_text() == NAME:
            response.answer.append(dns.rrset.from_text(NAME, RECORD.ttl, "IN", "A",
                                                       *RECORD.values))
        return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(self.answers.respond(data, "udp"), addr)


@asynccontextmanager
async def serving(answers: Answers) -> AsyncIterator[int]:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) for the block; yields the port."""
    port = free_port()

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
        wire = answers.respond(await reader.readexactly(length), "tcp")
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        writer.close()

    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(answers),
                                                 local_addr=("127.0.0.1", port))
    listener = await asyncio.start_server(tcp, "127.0.0.1", port)
    try:
        async with listener:
            yield port
    finally:
        udp.close()


async def both(answers: Answers) -> tuple[Any, Any]:
    """What the blocking reader and the asyncio reader made of the same answers."""
    async with serving(answers) as port:
        async def blocking() -> Any:
            return await asyncio.to_thread(read_records, "127.0.0.1", port, [KEY],
                                           timeout=2.0, provider="bind9")

        reader = AuthoritativeReader("127.0.0.1", port, provider="bind9")
        return tuple(await asyncio.gather(blocking(), reader.read([KEY], 2.0),
                                          return_exceptions=True))


def test_both_read_the_record_the_server_publishes() -> None:
    assert asyncio.run(both(Answers())) == ({KEY: RECORD}, {KEY: RECORD})


def test_both_ask_again_over_tcp_when_the_udp_answer_is_truncated() -> None:
    answers = Answers(truncate_udp=True)
    assert asyncio.run(both(answers)) == ({KEY: RECORD}, {KEY: RECORD})
    assert sorted(answers.asked) == ["tcp", "tcp", "udp", "udp"]


def test_a_name_the_server_does_not_have_is_absent_for_both() -> None:
    assert asyncio.run(both(Answers(rcode=dns.rcode.NXDOMAIN))) == ({}, {})


@pytest.mark.parametrize(("answers", "code", "says"), [
    (Answers(rcode=dns.rcode.REFUSED), "REFUSED",
     f"answered REFUSED for {NAME} A; is it authoritative for this zone?"),
    (Answers(authoritative=False), "NOTAUTH",
     f"is not authoritative for {NAME} (answer without the AA flag)"),
])
def test_an_answer_that_is_not_the_servers_own_is_the_same_error_for_both(
    answers: Answers, code: str, says: str,
) -> None:
    found = asyncio.run(both(answers))
    for error in found:
        assert isinstance(error, ProviderError), found
        assert (error.provider, error.code) == ("bind9", code)
        assert str(error).startswith("bind9 at 127.0.0.1:") and str(error).endswith(says)
