"""The controller's Prometheus metrics, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from failover.drill.history import DrillHistory
from failover.engine.journal import RunRecord
from failover.exceptions import FailoverError
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

    def drills_from(self, history: DrillHistory) -> None:
        """Export the drills kept in ``history`` (read afresh at every scrape)."""
        self.registry.register(DrillCollector(history))

    def text(self) -> bytes:
        """The exposition format."""
        return generate_latest(self.registry)


class DrillCollector(Collector):
    """The drill history as series: each scenario's last drill, its last success, counts.

    Read from the history at every scrape, so a drill run by hand
    (``failover drill``) counts as much as one the controller scheduled.
    """

    def __init__(self, history: DrillHistory) -> None:
        self.history = history

    def collect(self) -> Iterator[Metric]:
        """The series, from every drill that ended (none when the history cannot be read:
        the rest of /metrics still answers)."""
        try:
            entries = self.history.entries()
        except FailoverError:
            return
        last = {e.scenario: e for e in entries}  # oldest first: the last one wins
        success = GaugeMetricFamily(
            "failover_drill_last_success_timestamp_seconds", "When the last drill of each "
            "scenario that passed and failed back ended (Unix time)", labels=["scenario"])
        for scenario in last:
            passed = [e for e in entries if e.scenario == scenario and e.passed and e.failed_back]
            if passed:
                ended = passed[-1].ended or passed[-1].started
                success.add_metric([scenario], ended.timestamp())
        yield success
        figures = (
            ("failover_drill_rto_seconds", "RTO of each scenario's last drill (NaN: writes "
             "never came back, or not measured)", "rto_seconds"),
            ("failover_drill_write_unavailable_seconds", "The unluckiest user's time without "
             "writes in each scenario's last drill", "write_unavailable_seconds"),
            ("failover_drill_lost_writes", "Acknowledged writes lost in each scenario's last "
             "drill", "lost_writes"),
        )
        for name, text, field in figures:
            family = GaugeMetricFamily(name, text, labels=["scenario"])
            for scenario, entry in last.items():
                value = None if entry.error is not None else getattr(entry, field)
                family.add_metric([scenario], math.nan if value is None else float(value))
            yield family
        total = CounterMetricFamily("failover_drills", "Drills that ended, by scenario and "
                                    "outcome (passed, failed, aborted, error)",
                                    labels=["scenario", "outcome"])
        for (scenario, outcome), count in sorted(Tally((e.scenario, e.outcome)
                                                       for e in entries).items()):
            total.add_metric([scenario, outcome], count)
        yield total
