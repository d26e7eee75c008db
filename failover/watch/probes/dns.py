"""What one DNS provider answers for the records that follow the primary.

How a provider is read (its server asked directly, or its API) comes from
the DNS plane's registry (``failover.dns.registry``); the probe only words
the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception

from failover.dns.records import RecordKey
from failover.dns.registry import DnsReader
from failover.watch.probes.contract import Facts, Finding, Looking, observe
from failover.watch.signals import Observation, ProbeKind


class DnsProbe(Looking):
    """What one DNS provider answers for the records that follow the primary.

    Up when the provider answered, whatever it answered: which site the
    answer points at is the policy's question. Facts: ``addresses`` (every
    value answered), ``ttl`` (the smallest), ``records`` ("name type" to
    values and TTL), ``server``.
    """

    kind: ProbeKind = "dns"

    def __init__(self, target: str, keys: Sequence[RecordKey], reader: DnsReader, *,
                 vantage: str, interval: float = 1.0, timeout: float = 1.0) -> None:
        super().__init__(target, vantage, interval, timeout)
        self.keys = tuple(keys)
        self.reader = reader

    async def look(self) -> Observation:
        """One question per record, at the provider."""
        return await observe(self, self._ask)

    async def _ask(self) -> Finding:
        try:
            found = await self.reader.read(self.keys, self.timeout)
        except dns.exception.Timeout:
            return "down", f"no answer from {self.reader.where} in {self.timeout:g}s", {}
        except OSError as exc:
            return "down", f"cannot reach {self.reader.where}: {exc.strerror or exc}", {}
        records = {f"{r.name} {r.rtype}": {"values": list(r.values), "ttl": r.ttl}
                   for r in found.values()}
        facts: Facts = {
            "server": self.reader.where, "records": records,
            "addresses": sorted({v for r in found.values() for v in r.values}),
            "ttl": min((r.ttl for r in found.values()), default=None),
        }
        missing = [f"{name} {rtype}" for name, rtype in self.keys if (name, rtype) not in found]
        return "up", (f"no record for {', '.join(missing)}" if missing else ""), facts

    async def aclose(self) -> None:
        """Nothing is kept open between looks."""
