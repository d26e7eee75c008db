"""DNS providers made from the configuration's ``dns_providers`` section."""

from __future__ import annotations

from collections.abc import Mapping

from failover.dns.base import DnsProvider
from failover.dns.rfc2136 import Rfc2136Provider, Rfc2136Settings
from failover.dns.route53 import Route53Provider, Route53Settings


def build_providers(
    settings: Mapping[str, Rfc2136Settings | Route53Settings],
) -> list[DnsProvider]:
    """One provider per configured entry, in the file's order."""
    providers: list[DnsProvider] = []
    for name, one in settings.items():
        if isinstance(one, Rfc2136Settings):
            providers.append(Rfc2136Provider(name, one))
        else:
            providers.append(Route53Provider(name, one))
    return providers
