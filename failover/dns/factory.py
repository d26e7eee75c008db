"""DNS providers made from the configuration's ``dns_providers`` section, by their kind."""

from __future__ import annotations

from collections.abc import Mapping

from failover.dns.base import DnsProvider
from failover.dns.registry import DnsSettings, build_provider


def build_providers(settings: Mapping[str, DnsSettings]) -> list[DnsProvider]:
    """One provider per configured entry, in the file's order."""
    return [build_provider(name, one) for name, one in settings.items()]
