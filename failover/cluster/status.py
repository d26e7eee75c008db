"""The cluster as ``failover status`` shows it: who leads, which site the decision names, who
holds the primary's lease, and which etcd members answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from failover.cluster.config import ClusterConfig
from failover.cluster.election import LEADER_KEY
from failover.cluster.exceptions import ClusterUnavailable
from failover.cluster.primarylease import DECISION_KEY, HOLDER_KEY, WITHHELD
from failover.state import cluster_client

MEMBER_TIMEOUT = 2.0  # seconds for one member's /health


def _member(endpoint: str) -> str | None:
    """None when the member says it is healthy, else what is wrong."""
    try:
        answer = httpx.get(f"{endpoint}/health", timeout=MEMBER_TIMEOUT)
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})"
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    try:
        healthy = answer.json().get("health") == "true"
    except ValueError:
        return "an answer that is not etcd's"
    return None if healthy else "unhealthy (no quorum, or no leader among the members)"


def cluster_status(config: ClusterConfig) -> tuple[dict[str, Any], list[str]]:
    """The cluster's keys and members as JSON-ready data, and the warnings they call for."""
    with ThreadPoolExecutor(max_workers=len(config.endpoints)) as pool:
        members = dict(zip(config.endpoints, pool.map(_member, config.endpoints), strict=True))
    down = [f"{url} ({why})" for url, why in members.items() if why is not None]
    warnings = [f"etcd member {d} does not serve" for d in down]
    status: dict[str, Any] = {"name": config.name, "members": members, "leader": None,
                              "token": None, "decision": None, "lease_holder": None}
    cluster = cluster_client(config)
    try:
        leader, decision, holder = (cluster.get(key)
                                    for key in (LEADER_KEY, DECISION_KEY, HOLDER_KEY))
    except ClusterUnavailable as exc:
        warnings.append(f"etcd does not answer ({exc}): no controller can lead or act until "
                        "it has a quorum again")
        return status, warnings
    # No controller running is no warning, as leases off is none: moves are by hand then.
    if leader is not None:
        status.update(leader=leader.value, token=leader.create_revision)
    if decision is not None:
        status["decision"] = "withheld" if decision.value == WITHHELD else decision.value
    if holder is not None:
        status["lease_holder"] = holder.value
    return status, warnings
