"""``failover status``: who is primary, how far each standby lags, what DNS answers.

Everything is asked of the servers themselves at the moment of asking: the
databases for their roles, each DNS provider's authoritative servers for
their answers, each app for its readiness, and the journal for the last run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from failover.dns.base import DnsProvider
from failover.engine.deployment import Deployment
from failover.exceptions import FailoverError


def _dns_answers(
    deployment: Deployment, provider: DnsProvider, primary: str | None
) -> dict[str, Any]:
    site = primary or next(iter(deployment.config.sites))
    desired = deployment.records(site)
    result = provider.verify(desired)
    answers = sorted({v for check in result.servers for r in check.answered for v in r.values})
    by_address = {str(s.address): name for name, s in deployment.config.sites.items()}
    errors = [f"{c.server}: {c.error}" for c in result.servers if c.error]
    return {
        "answers": answers,
        "sites": [by_address.get(a, "?") for a in answers],  # the site of each answer
        "points_at_primary": (
            primary is not None and answers == [str(deployment.config.site(primary).address)]
        ),
        "servers": {c.server: [v for r in c.answered for v in r.values] for c in result.servers},
        "ttl": sorted({r.ttl for c in result.servers for r in c.answered}),
        "error": "; ".join(errors) or None,
    }


def _agent_status(deployment: Deployment, site: str) -> dict[str, Any]:
    """What the site's agent says of itself; empty without an agent or an answer."""
    agent = deployment.agent(site)
    if agent is None:
        return {}
    try:
        return agent.status(timeout=deployment.ask_timeout(site, 2.0))
    except FailoverError:
        return {}


def deployment_status(deployment: Deployment) -> dict[str, Any]:
    """The deployment's state as JSON-ready data (see DESIGN.md, "Commands")."""
    topology = deployment.observe()
    primaries = topology.primaries
    primary = primaries[0] if len(primaries) == 1 else None
    lags = {
        lag.name: lag for name in primaries for lag in topology.sites[name].standbys
    }
    with ThreadPoolExecutor(max_workers=8) as pool:
        ready = dict(zip(
            deployment.config.sites,
            pool.map(lambda s: deployment.readiness(s, timeout=2.0), deployment.config.sites),
            strict=True,
        ))
        dns = dict(zip(
            [p.name for p in deployment.dns_providers],
            pool.map(lambda p: _dns_answers(deployment, p, primary), deployment.dns_providers),
            strict=True,
        ))
        agents = dict(zip(
            deployment.config.sites,
            pool.map(lambda s: _agent_status(deployment, s), deployment.config.sites),
            strict=True,
        ))
    leases = {name: dict(a["lease"]) if a.get("lease") else None for name, a in agents.items()}
    sites: dict[str, Any] = {}
    for name, view in topology.sites.items():
        lag = lags.get(deployment.application_name(name))
        sites[name] = {
            "role": view.role or "unreachable",
            "address": str(deployment.config.site(name).address),
            "provider": deployment.config.site(name).provider,
            "fenced": view.fenced,
            "lsn": view.lsn,
            "upstream": view.upstream,
            "lag_bytes": lag.lag_bytes if lag else None,
            "lag_seconds": lag.lag_seconds if lag else None,
            "sync_state": lag.sync_state if lag else None,
            "app_ready": ready[name].ready,
            "app": ready[name].detail,
            "lease": leases[name],
            # Where the site's objects are copied while it is the primary, and how far behind.
            "objects": dict((agents[name].get("objects") or {}).get("targets") or {}) or None,
            "error": view.error,
        }
    warnings = []
    if len(primaries) > 1:
        warnings.append(f"{' and '.join(primaries)} both answer as primary: fence one now")
    if not primaries:
        warnings.append("no site answers as an unfenced primary")
    warnings += [f"{name} is a fenced primary: it takes no writes (a move is under way, "
                 "or was cut short: see the last run)" for name in topology.fenced]
    for name, answer in dns.items():
        if primary and not answer["points_at_primary"]:
            warnings.append(f"DNS provider {name} does not answer {primary} "
                            f"({answer['error'] or ', '.join(answer['answers']) or 'nothing'})")
    for name, site in sites.items():
        if site["role"] == "standby" and site["upstream"] is None:
            warnings.append(f"{name} is a standby that streams from no one")
    lease = leases.get(primary) if primary else None
    leases_on = lease is not None and lease.get("state") == "held"
    for name in topology.fenced:  # fenced for want of a lease: say what lifts it
        if (leases.get(name) or {}).get("state") == "lapsed":
            warnings.append(f"{name}'s lease has lapsed, so it has fenced itself; if it is "
                            "still the primary, start the controller (failover watch): once "
                            "it sees no other primary it renews the lease and lifts the fence")
    cluster, leases_said = None, (
        "on: a controller renews the primary's lease" if leases_on else
        "off: no controller renews the primary's lease (moves by hand only)")
    config = deployment.config
    if config.watch.cluster is not None and not config.local_state:
        from failover.cluster.status import cluster_status  # etcd's client: a cluster's only

        cluster, said = cluster_status(config.watch.cluster)
        warnings += said
        if config.watch.cluster.agent_leases:
            holder = cluster["lease_holder"]
            leases_said = (f"on: {holder}'s agent holds the primary's lease in etcd"
                           if holder else "off: no agent holds the primary's lease in etcd "
                           f"(the decision names {cluster['decision'] or 'no site'})")
    last = deployment.journal.last()
    return {
        "config": deployment.source,
        "primary": primary,
        "leases": leases_said,
        "cluster": cluster,
        "healthy": not warnings,
        "sites": sites,
        "dns": dns,
        "last_run": last.to_dict() if last else None,
        "warnings": warnings,
    }


def render(status: dict[str, Any]) -> str:
    """The status as a few lines for a terminal."""
    lines = [f"primary: {status['primary'] or 'NONE'}   ({status['config']})",
             f"  leases {status['leases']}"]
    if (cluster := status.get("cluster")) is not None:
        serving = sum(1 for why in cluster["members"].values() if why is None)
        leader = (f"{cluster['leader']} leads (token {cluster['token']})" if cluster["leader"]
                  else "none leads (start `failover watch --site SITE` at each site)")
        lines.append(f"  controllers: {leader}; etcd {serving} of {len(cluster['members'])} "
                     f"members serve")
    for name, site in status["sites"].items():
        facts = [f"streams from {site['upstream']}"] if site["upstream"] else []
        if site["lag_bytes"] is not None:
            facts.append(f"lag {site['lag_bytes']} bytes / {site['lag_seconds']:.2f}s "
                         f"({site['sync_state']})")
        facts.append("app ready" if site["app_ready"] else f"app NOT ready: {site['app']}")
        if site.get("objects") and site["role"] == "primary" and not site["fenced"]:
            facts.append("objects to " + ", ".join(
                f"{t} " + (f"lag {o['lag_seconds']:.1f}s" if o.get("lag_seconds") is not None
                           else f"lag unknown ({o.get('error') or 'no pass yet'})")
                for t, o in site["objects"].items()))
        role = site["role"] + (" FENCED" if site["fenced"] else "")
        lines.append(f"  {name:<10} {role:<15} {site['address']:<15} {'; '.join(facts)}")
        if site["error"]:
            lines.append(f"  {'':<10} {site['error']}")
    for name, answer in status["dns"].items():
        said = ", ".join(f"{a} ({s})" for a, s in zip(answer["answers"], answer["sites"],
                                                       strict=True))
        ttl = f" ttl {'/'.join(map(str, answer['ttl']))}" if answer["ttl"] else ""
        lines.append(f"  dns {name:<10} answers {said or 'nothing'}{ttl}"
                     + (f"; error: {answer['error']}" if answer["error"] else ""))
    run = status["last_run"]
    if run:
        error = f" ({run['error']})" if run["error"] else ""
        lines.append(f"  last run {run['id']}: {run['kind']} {run['from_site']} -> "
                     f"{run['to_site']}: {run['outcome']}{error}")
    lines.extend(f"  WARNING: {w}" for w in status["warnings"])
    return "\n".join(lines)
