"""A caching stub resolver that asks authoritative servers and honours the TTL.

Clients of the app find it through DNS, and what makes a DNS move slow for
them is the cache: an answer is kept for its TTL. The drill's clients resolve
exactly that way, so the write-unavailability they see includes the TTL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


class ResolveError(Exception):
    """No server gave an answer for the name."""


@dataclass(frozen=True)
class Answer:
    """Addresses for a name and until when they may be used."""

    addresses: tuple[str, ...]
    expires: float  # clock() time
    server: str


class CachingResolver:
    """Resolves one name's A record at authoritative servers, cached for its TTL."""

    def __init__(
        self, name: str, servers: Sequence[tuple[str, int]], *, timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not servers:
            raise ValueError("at least one authoritative server is needed")
        self.name = name
        self.servers = tuple(servers)
        self.timeout = timeout
        self.clock = clock
        self._cached: Answer | None = None
        self._lock = threading.Lock()
        self.queries = 0  # how many times the servers were asked

    def resolve(self) -> Answer:
        """The cached answer while its TTL lasts, else a fresh one."""
        with self._lock:
            if self._cached is not None and self.clock() < self._cached.expires:
                return self._cached
            self._cached = self._ask()
            return self._cached

    def _ask(self) -> Answer:
        errors = []
        for host, port in self.servers:
            self.queries += 1
            query = dns.message.make_query(self.name, dns.rdatatype.A)
            try:
                response = dns.query.udp(query, host, port=port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError) as exc:
                errors.append(f"{host}:{port}: {type(exc).__name__}")
                continue
            if response.rcode() != dns.rcode.NOERROR:
                errors.append(f"{host}:{port}: {dns.rcode.to_text(response.rcode())}")
                continue
            for rrset in response.answer:
                if rrset.rdtype == dns.rdatatype.A:
                    addresses = tuple(sorted(r.address for r in rrset))
                    return Answer(addresses, self.clock() + rrset.ttl, f"{host}:{port}")
            errors.append(f"{host}:{port}: no A record")
        raise ResolveError(f"{self.name}: {'; '.join(errors)}")
