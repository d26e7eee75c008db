"""The controller's Prometheus metrics, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from failover.engine.journal import RunRecord
from failover.watch.signals import Observation

# Probe latencies on loopback are milliseconds; a timeout is the probe's 1-5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class WatchMetrics:
    """Every series the controller exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ("kind", "target", "vantage")
        self.probe_up = Gauge("failover_probe_up", "1 if the last look found the target "
                              "healthy, else 0", labels, registry=r)
        self.probe_seconds = Histogram("failover_probe_seconds", "How long looks took",
                                       labels, buckets=LATENCY_BUCKETS, registry=r)
        self.looks = Counter("failover_probe_looks", "Looks by outcome",
                             ("kind", "target", "status"), registry=r)
        self.decisions = Counter("failover_decisions", "Decisions that asked for an action",
                                 ("action",), registry=r)
        self.cycles = Counter("failover_cycles", "Policy cycles run", registry=r)
        self.cycle_lateness = Gauge("failover_cycle_lateness_seconds", "How late the last "
                                    "cycle started against its tick", registry=r)
        self.step_seconds = Histogram("failover_step_seconds", "Duration of the engine's "
                                      "steps in runs the controller made",
                                      ("kind", "action", "outcome"), buckets=STEP_BUCKETS,
                                      registry=r)
        self.lag = Gauge("failover_replication_lag_bytes", "Replay lag of each standby as its "
                         "primary reports it", ("site",), registry=r)
        self.object_lag = Gauge("failover_object_replication_lag_seconds", "How long ago "
                                "the last object the target surely has was uploaded at the "
                                "primary (NaN: unknown)", ("source", "target"), registry=r)
        self.wal_age = Gauge("failover_backup_wal_age_seconds", "Age of the newest WAL segment "
                             "in each repository: what a rebuild from it would lose at most, "
                             "once writes come", ("repository",), registry=r)
        self.notices = Gauge("failover_notices_pending", "Termination notices no move has "
                             "answered yet", registry=r)
        self.signals_refused = Counter("failover_signals_refused", "Webhook requests refused",
                                       ("reason",), registry=r)
        self.notices_refused = Counter("failover_notices_refused", "Notices refused for their "
                                       "deadline (long past, or years ahead), by source",
                                       ("source", "reason"), registry=r)

    def observe(self, obs: Observation) -> None:
        """Count one look."""
        self.probe_up.labels(obs.kind, obs.target, obs.vantage).set(1 if obs.ok else 0)
        self.probe_seconds.labels(obs.kind, obs.target, obs.vantage).observe(obs.seconds)
        self.looks.labels(obs.kind, obs.target, obs.status).inc()
        if obs.kind == "database" and obs.ok:
            for site, lag in dict(obs.facts.get("standbys", {})).items():
                if isinstance(lag, int | float):
                    self.lag.labels(site).set(lag)

    def run_ended(self, record: RunRecord) -> None:
        """Count the steps of a run the controller made."""
        for step in record.steps():
            if step.seconds is not None:
                self.step_seconds.labels(record.plan.kind, step.action,
                                         step.outcome or "unknown").observe(step.seconds)

    def text(self) -> bytes:
        """The exposition format."""
        return generate_latest(self.registry)
