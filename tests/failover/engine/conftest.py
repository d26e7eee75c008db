"""A deployment built by hand for the planner's and the checks' unit tests: no server at all.

The configuration is a real one, parsed from a dict as a file would be; the
only fake is what would cross the network: each site's readiness answers from
a dict here instead of from its app's /readyz. Topologies are written as the
servers would report them (``healthy``, ``primary``, ``standby``, ``gone``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from failover.data.postgres import StandbyLag
from failover.engine.deployment import SiteView, Topology
from failover.engine.plan import Plan
from tests.failover.handbuilt import FakeDeployment

ZONE = "example.test."
ADDRESSES = {"aws": "10.0.10.1", "hetzner": "10.0.20.1", "ovh": "10.0.30.1"}


def config_data(sites: tuple[str, ...] = ("aws", "hetzner"), *, rpo_writes: int = 0,
                without_compute: tuple[str, ...] = ()) -> dict[str, Any]:
    """A configuration file's content: ``sites`` in order, each with its own address."""
    def site(name: str) -> dict[str, Any]:
        address = ADDRESSES[name]
        data: dict[str, Any] = {
            "provider": name, "address": address, "app_url": f"http://{address}:8080",
            "database": {"host": address}, "objects": {"bucket": f"media-{name}"},
        }
        if name not in without_compute:
            data["compute"] = {"kind": "agent", "url": f"http://{address}:7070",
                               "secret_file": f"agent-{name}.secret"}
        return data

    return {
        "sites": {name: site(name) for name in sites},
        "dns_providers": {"bind9": {"kind": "rfc2136", "server": "10.0.0.53", "zone": ZONE,
                                    "tsig_key_file": "tsig.key"}},
        "dns": {"zone": ZONE, "records": [{"name": "app", "ttl": 60}], "low_ttl": 5},
        "objectives": {"rpo_writes": rpo_writes},
    }


@pytest.fixture
def deployment(tmp_path: Path) -> FakeDeployment:
    """Two sites, aws and hetzner, both with compute; no write may be lost."""
    return FakeDeployment(tmp_path, config_data())


def primary(name: str, *standbys: str, lag: int = 0, fenced: bool = False) -> SiteView:
    """A primary with ``standbys`` streaming from it, ``lag`` bytes behind."""
    return SiteView(name, "primary", "0/3000000", fenced=fenced, standbys=tuple(
        StandbyLag(s, "streaming", "async", lag, 0.0) for s in standbys))


def standby(name: str, upstream: str | None) -> SiteView:
    """A standby streaming from ``upstream`` (None: from nothing)."""
    return SiteView(name, "standby", "0/3000000", upstream=upstream)


def gone(name: str) -> SiteView:
    """A site whose database does not answer."""
    return SiteView(name, error="OperationalError: connection timed out")


def topology(*views: SiteView) -> Topology:
    """The views as ``observe`` would gather them."""
    return Topology({v.name: v for v in views})


def healthy(source: str = "aws", *others: str) -> Topology:
    """``source`` primary, every other site streaming from it."""
    others = others or tuple(s for s in ("aws", "hetzner") if s != source)
    return topology(primary(source, *others), *(standby(s, source) for s in others))


def with_view(top: Topology, view: SiteView) -> Topology:
    """``top`` with one site's view replaced."""
    return replace(top, sites={**top.sites, view.name: view})


def actions(plan: Plan) -> list[str]:
    """The plan's step actions, in order."""
    return [s.action for s in plan.steps]
