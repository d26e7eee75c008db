"""``watch.cluster``: the etcd members the controllers share, and the leader key's timing.

Without the section the controller runs alone, as before. With it, every
controller (one per site) elects a leader on the cluster. The timing rules are
Patroni's and live here, in one validator: a leader that loses etcd must have
stepped down before its key can expire and another controller take over.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Seconds a leader keeps in hand: it counts itself the leader until this long before
# its key could expire, less a loop (election.Election). Covers the time a renewal's
# answer takes to come back, and the clocks of two machines running at slightly
# different rates.
MARGIN = 1.0
DEFAULT_PORT = 2379


def timing_problems(ttl: float, loop_wait: float, retry_timeout: float) -> list[str]:
    """What is wrong with the leader key's timing, one sentence a rule (none: it is sound)."""
    problems = []
    if loop_wait + 2 * retry_timeout > ttl:
        problems.append(
            f"loop_wait ({loop_wait:g}s) + 2 * retry_timeout ({retry_timeout:g}s) must be at "
            f"most ttl ({ttl:g}s): a leader that cannot reach etcd must have stepped down "
            "before its key expires and another controller takes over")
    if 2 * loop_wait + MARGIN >= ttl:
        problems.append(
            f"ttl ({ttl:g}s) must be more than 2 * loop_wait ({loop_wait:g}s) + {MARGIN:g}s: "
            f"a leader is sure of its key for ttl - loop_wait - {MARGIN:g}s after a renewal, "
            "which must outlast the loop to the next one")
    return problems


class ClusterConfig(BaseModel):
    """The etcd cluster across the sites, and how the controllers elect their leader on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: list[str] = Field(min_length=1, description="the members' client URLs, e.g. "
                                 "http://10.0.0.5:2379, one per site; each request tries them "
                                 "in turn")
    name: str = Field("default", pattern=r"^[A-Za-z0-9_-]{1,63}$", description="the "
                      "deployment's keys live under /failover/<name>/ (several deployments "
                      "may share one cluster)")
    ttl: int = Field(30, ge=2, le=3600, description="seconds the leader key outlives the "
                     "leader's last renewal: a follower takes over that long after a leader "
                     "went dark (etcd grants no lease under about 2 s)")
    loop_wait: float = Field(10.0, gt=0, le=600, description="seconds between two cycles of a "
                             "controller: the leader renews its key, a follower looks at it")
    retry_timeout: float = Field(10.0, gt=0, le=600, description="seconds one request to "
                                 "etcd may take, all endpoints tried, before the cycle gives up")
    controllers: dict[str, str] = Field(
        default_factory=dict, description="site -> host:port where that site's controller "
        "(`failover watch --site SITE`) serves its API; the CLI and the drills reach the "
        "controllers there, and a follower names its leader's address")
    agent_leases: bool = Field(False, description="the primary's agent holds the primary's "
                               "lease in etcd itself (its config's cluster section) and a "
                               "promote waits on etcd for it (failover.cluster.primarylease); "
                               "false: the controller renews it through the agent")

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        problems = []
        for url in value:
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 (raises on a port that is no number)
            except ValueError:
                problems.append(f"{url!r} has a port that is no number")
                continue
            if parts.scheme not in ("http", "https") or not parts.hostname or \
                    parts.path.strip("/") or parts.query:
                problems.append(f"{url!r} must be http(s)://host:port, e.g. "
                                "http://10.0.0.5:2379")
        if len(set(value)) != len(value):
            problems.append("names an endpoint twice")
        if problems:
            raise ValueError("; ".join(problems))
        return [url.rstrip("/") for url in value]

    @field_validator("controllers")
    @classmethod
    def _listen_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for site, listen in value.items():
            host, _, port = listen.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                problems.append(f"{site}: {listen!r} must be host:port, e.g. 10.0.0.5:8470")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _timing(self) -> ClusterConfig:
        problems = timing_problems(self.ttl, self.loop_wait, self.retry_timeout)
        if problems:
            raise ValueError("; ".join(problems))
        return self
