"""Every probe the configuration asks for, built once when the controller starts."""

from __future__ import annotations

from failover.config import FailoverConfig, ProbeSettings, WatchConfig
from failover.dns.registry import build_reader
from failover.engine.deployment import Deployment
from failover.watch.probes.api import ApiProbe
from failover.watch.probes.contract import Probe
from failover.watch.probes.database import DatabaseProbe
from failover.watch.probes.dns import DnsProbe
from failover.watch.probes.http import HttpProbe, VantageClient
from failover.watch.signals import ProbeKind


def build_probes(config: FailoverConfig) -> list[Probe]:
    """Every probe the configuration asks for.

    HTTP readiness per site from every vantage point; the database, the
    provider's API (when configured) per site and every DNS provider from the
    first vantage point, which they name. HTTP and DNS leave from a vantage
    point's source address; libpq and the API clients cannot choose one, so
    database and API looks leave from the host's default address.
    """
    watch = config.watch
    deployment = Deployment(config, "watch")
    defaults = WatchConfig().probes  # for a kind the file leaves out

    def settings(kind: ProbeKind) -> ProbeSettings:
        return watch.probes.get(kind) or defaults[kind]

    http = settings("http")
    first = next(iter(watch.vantage_points))
    vantages = [
        VantageClient(name, str(v.source_address) if v.source_address else None,
                      keepalive=max(5.0, 2 * http.interval))
        for name, v in watch.vantage_points.items()
    ]
    probes: list[Probe] = [
        HttpProbe(site, f"{spec.app_url}/readyz", vantage, interval=http.interval,
                  timeout=http.timeout)
        for site, spec in config.sites.items() for vantage in vantages
    ]
    db, api, dns = settings("database"), settings("api"), settings("dns")
    names = {deployment.application_name(site): site for site in config.sites}
    for site, spec in config.sites.items():
        probes.append(DatabaseProbe(site, deployment.endpoint(site), vantage=first,
                                    interval=db.interval, timeout=db.timeout,
                                    sites_by_name=names))
        if spec.api is not None:
            probes.append(ApiProbe(site, spec.api, vantage=first, interval=api.interval,
                                   timeout=api.timeout))
    keys = [r.key for r in deployment.records(next(iter(config.sites)))]
    source = watch.vantage_points[first].source_address
    for name, provider in config.dns_providers.items():
        reader = build_reader(name, provider, str(source) if source else None, dns.timeout)
        probes.append(DnsProbe(name, keys, reader, vantage=first, interval=dns.interval,
                               timeout=dns.timeout))
    return probes
