"""The safety checks of a move, asked once when planning and again when the step runs.

A plan is refused (UnsafePlan) and a run stops (StepFailed) on the same
sentence, so both ask here: the world may change between ``failover plan``
and a resumed run, and the answer must not depend on who asks.
"""

from __future__ import annotations

import time

from failover.engine.deployment import Deployment, Topology
from failover.exceptions import FailoverError

MAX_LAG_BYTES = 16 * 1024 * 1024  # a switchover to a standby further behind is refused


def switchover_problem(
    deployment: Deployment, topology: Topology, source: str, target: str,
    max_lag_bytes: int = MAX_LAG_BYTES,
) -> str | None:
    """Why ``target`` cannot take over from ``source`` in a planned move, or None."""
    if topology.primaries != [source]:
        found = ", ".join(topology.primaries) or "none"
        return f"expected {source} to be the only primary, found {found}"
    view = topology.sites[target]
    if view.role != "standby" or view.upstream != source:
        state = view.error or f"{view.role}, streaming from {view.upstream or 'nothing'}"
        return f"{target} is not a standby streaming from {source} ({state})"
    name = deployment.application_name(target)
    lag = next((s for s in topology.sites[source].standbys if s.name == name), None)
    if lag is not None and lag.lag_bytes > max_lag_bytes:
        return (f"{target} is {lag.lag_bytes} bytes behind {source} (limit {max_lag_bytes}); "
                "wait for it to catch up")
    return _readiness_problem(deployment, target)


def emergency_problem(deployment: Deployment, topology: Topology, target: str) -> str | None:
    """Why ``target`` cannot be promoted in an emergency, or None."""
    others = [p for p in topology.primaries if p != target]
    if others:
        return (f"{others[0]} answers as a primary: promoting {target} would make two; for a "
                f"planned move use: failover switchover --to {target}")
    view = topology.sites[target]
    if not view.reachable:
        return f"{target}'s database does not answer ({view.error}); it cannot be promoted"
    # A primary whose agent holds its lease in etcd keeps it until a promote withholds it
    # (the plan's await_lease: it then fences itself, and only then is the standby
    # promoted); it must not be waited for before the plan begins.
    if view.upstream is not None and not deployment.primary_leases.ended_by_withhold and \
            not _lease_lapsed(deployment, view.upstream):
        return (f"{target} still streams from {view.upstream}: that primary is alive as "
                f"{target} sees it; for a planned move use: failover switchover --to {target}"
                " (an emergency promote waits until its lease has lapsed)")
    return _readiness_problem(deployment, target)


def _lease_lapsed(deployment: Deployment, site: str) -> bool:
    """Whether ``site``'s lease has certainly lapsed: then it has fenced itself.

    A standby may still stream from a primary that only the controller cannot
    reach (a partition): once that primary's lease has lapsed its agent has
    fenced it, it takes no more writes, and what it wrote has reached the
    standby, which may then be promoted.
    """
    try:
        lapsed_by = deployment.primary_leases.lapsed_by(site)
    except FailoverError:  # etcd out of reach: not known to have lapsed
        return False
    return lapsed_by is not None and time.time() >= lapsed_by


def _readiness_problem(deployment: Deployment, site: str) -> str | None:
    ready = deployment.readiness(site)
    return None if ready.ready else f"{site} fails its own readiness check: {ready.detail}"
