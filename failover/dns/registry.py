"""The DNS plane's registry: every kind of DNS provider, found by its ``kind`` tag.

As octoDNS loads a provider from its ``class:`` and Patroni finds a DCS by its
module's name, everything that depends on a provider's kind comes from here:
the configuration's union (``DnsSettings``, discriminated by ``kind``), the
provider the engine acts through (``build_provider``) and the reader the
controller's DNS probe looks through (``build_reader``). Adding a kind is its
own module (settings and a ``DnsProvider``) plus one line in ``DnsSettings``
and one ``DnsKind`` in ``KINDS``; nothing else names kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, get_args

from pydantic import BaseModel

from failover.dns.authoritative import AuthoritativeReader
from failover.dns.base import DnsProvider
from failover.dns.records import Record, RecordKey
from failover.dns.rfc2136 import Rfc2136Provider, Rfc2136Settings
from failover.dns.route53 import Route53Provider, Route53Settings
from failover.threads import OneThread

DnsSettings = Rfc2136Settings | Route53Settings  # one member per kind in KINDS


class DnsReader(Protocol):
    """Where the controller's DNS probe asks: a provider's server or its API."""

    where: str  # e.g. "127.0.0.1:53" or "api https://route53.amazonaws.com"

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """The RRsets the provider answers for ``keys`` (absent ones left out)."""
        ...


class ApiReader:
    """A provider read through its own client (its API), in a thread, one read at a time."""

    def __init__(self, provider: DnsProvider, where: str | None = None) -> None:
        self.provider = provider
        self.where = where or f"api {provider.name}"
        self._thread = OneThread()

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """The provider's records, read by its own client (which bounds its own calls)."""
        return await self._thread.call(self.provider.records, keys)


S = TypeVar("S", bound=BaseModel)
# A reader for one provider: its name, its settings, the vantage point's source
# address (None: the host's default) and the probe's timeout.
ReaderFactory = Callable[[str, S, str | None, float], DnsReader]


@dataclass(frozen=True)
class DnsKind(Generic[S]):
    """One kind of DNS provider: its settings, its provider, how the controller reads it."""

    settings: type[S]  # the config file's section; its ``kind`` Literal is the tag
    provider: Callable[[str, S], DnsProvider]
    reader: ReaderFactory[S]

    @property
    def tag(self) -> str:
        """The ``kind`` written in the config file, e.g. ``rfc2136``."""
        tag: str = get_args(self.settings.model_fields["kind"].annotation)[0]
        return tag


def _server_reader(name: str, settings: Rfc2136Settings, source: str | None,
                   timeout: float) -> DnsReader:
    """The server that takes the updates, asked directly from the vantage point."""
    return AuthoritativeReader(settings.server, settings.port, source, provider=name)


def _route53_reader(name: str, settings: Route53Settings, source: str | None,
                    timeout: float) -> DnsReader:
    """Route 53's API (boto3 cannot choose a source address), its calls within the probe's."""
    bounded = settings.model_copy(update={"timeout": min(settings.timeout, timeout)})
    provider = Route53Provider(name, bounded)
    return ApiReader(provider, f"api {provider.endpoint}")


KINDS: Mapping[str, DnsKind[Any]] = MappingProxyType({kind.tag: kind for kind in (
    DnsKind(Rfc2136Settings, Rfc2136Provider, _server_reader),
    DnsKind(Route53Settings, Route53Provider, _route53_reader),
)})


def kind_of(settings: DnsSettings) -> DnsKind[Any]:
    """The registered kind of a provider's settings."""
    return KINDS[settings.kind]


def build_provider(name: str, settings: DnsSettings) -> DnsProvider:
    """The provider named ``name`` in the config file, of its kind."""
    return kind_of(settings).provider(name, settings)


def build_reader(name: str, settings: DnsSettings, source: str | None,
                 timeout: float) -> DnsReader:
    """How the controller's DNS probe reads the provider named ``name``."""
    return kind_of(settings).reader(name, settings, source, timeout)


def build_providers(settings: Mapping[str, DnsSettings]) -> list[DnsProvider]:
    """One provider per configured ``dns_providers`` entry, in the file's order."""
    return [build_provider(name, one) for name, one in settings.items()]
