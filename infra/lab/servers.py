"""The lab's Python servers, started together at ``lab up``.

moto (each site's object store, Route 53, EC2), the TLS terminators in
front of the stores and the fake Hetzner Cloud APIs are forked from one
parent that imported them first, and the sites' agents (once their
databases can start) from another (``infra.lab.prefork``: they share what
they imported, and the lab's memory falls by some 200 MiB). Each is still a
process of its own, recorded by its PID as it is known; a part started
again later (``LabFaults.restore_site``) is spawned alone by its module's
``start``, running the same command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from failover.processes import ProcessRecord
from infra.lab import agents, ec2, hcloud_api, moto, prefork, refapp, tls
from infra.lab.layout import EC2_PART, HCLOUD_SPARE_PART, ROUTE53_PART, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.prefork import Part

# What an agent imports only once it runs: the object copies of a primary's agent (boto3),
# the primary's lease in etcd. Imported before the fork, they are shared by both.
AGENT_PRELOAD = ("failover.data.replicate", "failover.agent.cluster")


def parts(layout: LabLayout, paths: LabPaths) -> list[tuple[Part, str]]:
    """Every server, in start order, with where it answers (for ``lab up``'s progress)."""
    out = [(moto.server(layout, paths, part), moto.endpoint(layout, part))
           for part in [*(f"moto@{site}" for site in layout.sites), ROUTE53_PART]]
    out += [(tls.server(layout, paths, f"tls@{site}"),
             f"{layout.s3_tls_endpoint(site)} (TLS in front of moto@{site})")
            for site in layout.sites]  # each opens a connection to moto per connection
    out += [(moto.server(layout, paths, EC2_PART), layout.ec2_endpoint),
            (hcloud_api.server(layout, paths), f"{layout.hcloud_endpoint} (a fake)"),
            (hcloud_api.server(layout, paths, HCLOUD_SPARE_PART),
             f"{layout.hcloud_spare_endpoint} (a fake, no server yet)")]
    return out


def _fork(servers: list[tuple[Part, str]], env: dict[str, str],
          started: Callable[[ProcessRecord, str], None], preload: Sequence[str] = ()) -> None:
    """Fork ``servers`` from one parent; ``started`` records each, even after a failure half
    way (so that the lab stops them), before it raises."""
    where = {part.name: answers for part, answers in servers}
    try:
        records = prefork.start([part for part, _ in servers], env=env, preload=preload)
    except prefork.ForkFailed as exc:
        for record in exc.records:
            started(record, where[record.name])
        raise
    for record in records:
        started(record, where[record.name])


def start(layout: LabLayout, paths: LabPaths,
          started: Callable[[ProcessRecord, str], None]) -> None:
    """Fork every server (their TLS certificates written first); ``started`` records each."""
    # EC2's environment for all: none of them is meant to see AWS credentials of ours.
    _fork(parts(layout, paths), ec2.server_env(), started)


def start_agents(layout: LabLayout, paths: LabPaths, sites: Sequence[str],
                 started: Callable[[ProcessRecord, str], None]) -> None:
    """Fork the sites' agents (their configs written) from one parent, as the servers."""
    _fork([(agents.server(paths, site), f"{agents.agent_url(layout, site)} (it starts "
            f"postgres@{site} and app@{site})") for site in sites], refapp.clean_env(), started,
          AGENT_PRELOAD)
