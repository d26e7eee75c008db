"""Ask one authoritative DNS server directly what it holds, with one deadline per question.

Used to read an RFC 2136 server before planning, to verify any provider from
its own name servers (``ask``, ``read_records``: blocking), and by the
controller's DNS probe (``AuthoritativeReader``: asyncio, from a vantage
point's own address). Both ask the same question and read the answer the same
way. No recursion is asked for and no cache sits in between, so the answer is
what the server itself publishes (TTLs are the configured ones, not counted
down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from failover.dns.exceptions import ProviderUnreachable
from failover.dns.records import Record, RecordKey
from failover.exceptions import ProviderError

EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: no IP fragmentation


def _question(key: RecordKey) -> dns.message.Message:
    """The question for one RRset, authoritative only: never recurse."""
    name, rtype = key
    request = dns.message.make_query(name, rtype, use_edns=0, payload=EDNS_PAYLOAD)
    request.flags &= ~dns.flags.RD
    return request


def _answer(response: dns.message.Message, key: RecordKey, *, where: str,
            provider: str) -> Record | None:
    """The RRset ``key`` in the server's response, None when it has none; ProviderError else."""
    name, rtype = key
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        raise ProviderError(
            f"{provider} at {where} answered {dns.rcode.to_text(rcode)} for {name} "
            f"{rtype}; is it authoritative for this zone?",
            provider=provider, code=dns.rcode.to_text(rcode),
        )
    if not response.flags & dns.flags.AA:
        # A referral or a cached answer: not what this server itself publishes.
        raise ProviderError(
            f"{provider} at {where} is not authoritative for {name} "
            "(answer without the AA flag)", provider=provider, code="NOTAUTH",
        )
    wanted = dns.rdatatype.from_text(rtype)
    for rrset in response.answer:
        if (rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN
                and rrset.name.to_text().lower() == name):
            return Record(name, rtype, rrset.ttl, tuple(rd.to_text() for rd in rrset))
    return None  # NODATA: the name exists without this type


def _exchange(
    request: dns.message.Message, server: str, port: int, timeout: float, provider: str
) -> dns.message.Message:
    """UDP, then TCP when the answer was truncated, both inside one deadline."""
    where = f"{server}:{port}"
    deadline = time.monotonic() + timeout
    try:
        response = dns.query.udp(request, server, port=port, timeout=timeout)
        if response.flags & dns.flags.TC:
            remaining = max(0.001, deadline - time.monotonic())
            response = dns.query.tcp(request, server, port=port, timeout=remaining)
    except dns.exception.Timeout:
        raise ProviderUnreachable(
            f"no answer from {provider} at {where} within {timeout:g}s", provider=provider,
            code="TIMEOUT",
        ) from None
    except OSError as exc:
        raise ProviderUnreachable(
            f"cannot reach {provider} at {where}: {exc.strerror or exc}", provider=provider,
            code="UNREACHABLE",
        ) from exc
    except dns.exception.DNSException as exc:
        raise ProviderError(
            f"{provider} at {where} sent a malformed answer: {exc}", provider=provider,
            code="FORMERR",
        ) from exc
    return response


def ask(
    server: str, port: int, key: RecordKey, *, timeout: float, provider: str
) -> Record | None:
    """The RRset ``key`` as the server publishes it, or None when it has none."""
    response = _exchange(_question(key), server, port, timeout, provider)
    return _answer(response, key, where=f"{server}:{port}", provider=provider)


def read_records(
    server: str, port: int, keys: Sequence[RecordKey], *, timeout: float, provider: str
) -> dict[RecordKey, Record]:
    """Every RRset of ``keys`` the server publishes, one question each."""
    found: dict[RecordKey, Record] = {}
    for key in keys:
        record = ask(server, port, key, timeout=timeout, provider=provider)
        if record is not None:
            found[key] = record
    return found


class AuthoritativeReader:
    """An authoritative server asked from asyncio over UDP (TCP when truncated).

    dnspython's own exceptions are left to the caller (``dns.exception.Timeout``,
    ``OSError``): the probe words them with its own deadline.
    """

    def __init__(self, server: str, port: int = 53, source: str | None = None, *,
                 provider: str = "the DNS server") -> None:
        self.server = server
        self.port = port
        self.source = source  # the local address the questions leave from
        self.provider = provider
        self.where = f"{server}:{port}"

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """Every key asked at once; ``timeout`` bounds each question."""
        answers = await asyncio.gather(*(self._ask(key, timeout) for key in keys))
        return {r.key: r for r in answers if r is not None}

    async def _ask(self, key: RecordKey, timeout: float) -> Record | None:
        request = _question(key)
        deadline = time.monotonic() + timeout
        response = await dns.asyncquery.udp(request, self.server, timeout=timeout,
                                            port=self.port, source=self.source)
        if response.flags & dns.flags.TC:
            remaining = max(0.001, deadline - time.monotonic())
            response = await dns.asyncquery.tcp(request, self.server, timeout=remaining,
                                                port=self.port, source=self.source)
        return _answer(response, key, where=self.where, provider=self.provider)
