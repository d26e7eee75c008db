"""The controller's keeping of copies: the backup schedule, and the metrics of backups and objects.

The primary's agent archives WAL continuously, copies each new object to the
other providers' buckets and takes a full backup into any repository that has
none; the controller adds the rest of the schedule (incremental, differential
and full backups at ``backups.*_every``) and exports how far each copy lags.

The schedule keeps no state of its own: it reads what each repository holds
(``backup/info``) and asks for the backup that is most overdue, so a
controller that restarts, or one that takes over from another, neither
repeats nor skips a backup.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from failover.config import BackupsConfig
from failover.engine.deployment import Deployment
from failover.engine.executor import one_line
from failover.exceptions import FailoverError
from failover.logs import log_event
from failover.watch.metrics import WatchMetrics

log = logging.getLogger("failover.watch")
LOOK_EVERY = 5.0  # seconds between looks at the primary's copies (metrics)
SCHEDULE_EVERY = 60.0  # seconds between looks at the repositories (the schedule)


def _stopped(backup: dict[str, Any] | None) -> float | None:
    return None if not backup or backup.get("stopped") is None else float(backup["stopped"])


def due(report: dict[str, Any], config: BackupsConfig, now: float) -> str | None:
    """The backup most overdue in any repository (full, diff, incr), or None.

    A repository with no full backup is left to the agent, which takes one at
    once; one the primary could not read is left alone until it can.
    """
    repos = [r for r in report.get("repositories", []) if r.get("ok")]
    if not repos or any(r.get("last_full") is None for r in repos):
        return None
    oldest_full = min(_stopped(r["last_full"]) or 0.0 for r in repos)
    if now - oldest_full >= config.full_every:
        return "full"
    oldest_any = min(_stopped(r.get("last_backup")) or 0.0 for r in repos)
    oldest_base = min(max(_stopped(r["last_full"]) or 0.0, _stopped(r.get("last_diff")) or 0.0)
                      for r in repos)
    if now - oldest_base >= config.diff_every:
        return "diff"
    if now - oldest_any >= config.incr_every:
        return "incr"
    return None


class BackupKeeper:
    """Asks the primary's agent for scheduled backups; exports the copies' lags."""

    def __init__(self, deployment: Deployment, metrics: WatchMetrics,
                 primary: Callable[[], str | None], clock: Callable[[], float] = time.time,
                 look_every: float = LOOK_EVERY,
                 schedule_every: float = SCHEDULE_EVERY) -> None:
        self.deployment = deployment
        self.config = deployment.config.backups
        self.metrics = metrics
        self.primary = primary
        self.clock = clock
        self.look_every = look_every
        self.schedule_every = schedule_every
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Begin looking (and, with a backups section, scheduling)."""
        loops = [(self._look, self.look_every, "watch-copies")]
        if self.config is not None:
            loops.append((self._schedule, self.schedule_every, "watch-backups"))
        for work, every, name in loops:
            thread = threading.Thread(target=self._every, args=(work, every), name=name,
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop looking; a backup under way goes on at the agent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)  # a backup under way goes on without us

    def _every(self, work: Callable[[str], None], every: float) -> None:
        while not self._stop.wait(every):
            site = self.primary()
            if site is None or self.deployment.agent(site) is None:
                continue
            try:
                work(site)
            except FailoverError as exc:
                log_event(log, "watch.copies", site=site, outcome="failed",
                          detail=one_line(exc))

    def _look(self, site: str) -> None:
        agent = self.deployment.agent(site)
        assert agent is not None
        objects = agent.status(timeout=self.deployment.ask_timeout(site, 2.0)).get("objects")
        for target, state in dict((objects or {}).get("targets") or {}).items():
            lag = state.get("lag_seconds")
            self.metrics.object_lag.labels(site, target).set(math.nan if lag is None else lag)

    def _schedule(self, site: str) -> None:
        assert self.config is not None
        agent = self.deployment.agent(site)
        assert agent is not None
        report = agent.run("backup/info", timeout=60)
        now = self.clock()
        for repo in report.get("repositories", []):
            age = repo.get("last_wal_age_seconds")
            self.metrics.wal_age.labels(repo["name"]).set(math.nan if age is None else age)
        kind = due(report, self.config, now)
        if kind is None:
            return
        log_event(log, "watch.backup", site=site, type=kind, outcome="asked")
        result = agent.run("backup", {"type": kind}, timeout=6 * 3600)
        log_event(log, "watch.backup", site=site, type=kind, outcome="done",
                  repositories=",".join(f"{n}:{r if r == 'ok' else 'failed'}"
                                        for n, r in result.get("repositories", {}).items()))
