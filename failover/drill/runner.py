"""One drill: a workload through DNS, a fault, the engine's move, the figures, fail back.

The order is fixed: the workload runs until writes flow (a baseline), the
scenario injects its fault at t=0 and lets the engine act, the workload runs
on until the first write is acknowledged at the new primary and a little
after, then stops. Only then is anything counted (``measure``): what the
clients saw, what the journal says of each step, and what the new primary's
database and bucket really hold of the acknowledged writes (``losses``).
Fail back last (``failback``): the old site is rebuilt as a standby and
(unless told not to) the primary moves back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from failover.drill import measure
from failover.drill.abort import AbortLimits, AbortWatch, DrillAborted
from failover.drill.controller import DrillController
from failover.drill.failback import fail_back, primary_now
from failover.drill.faults import FaultInjector, injector_for
from failover.drill.losses import find_losses
from failover.drill.probes import DnsWatcher
from failover.drill.resolver import CachingResolver
from failover.drill.results import DrillReport, Failback, Promise
from failover.drill.scenarios import SCENARIOS, Scenario
from failover.drill.workload import Workload, WorkloadLog, WorkloadSpec
from failover.engine.deployment import Deployment, Topology
from failover.engine.executor import execute, run_lock, unfinished_run
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan, Step
from failover.engine.plans import (
    NothingToDo,
    plan_or_resume,
    plan_promote,
    plan_switchover,
)
from failover.engine.rebuild import plan_rebuild, rebuild_deployment
from failover.exceptions import FailoverError, ProviderError, StepFailed, UnsafePlan
from failover.state import local_state_note, quorum_lost_with
from failover.waiting import WaitTimeout, wait_for
from failover.watch.signals import Notice

Progress = Callable[[str], None]
REBUILD_WARMUP = 12.0  # seconds of baseline before a total loss: past the archive's bound


class DrillRefused(FailoverError):
    """The drill cannot start: no lab, an unhealthy deployment, an unfinished run."""

    exit_code = 2


@dataclass(frozen=True)
class DrillOptions:
    """How a drill runs; the defaults suit the lab on two cores."""

    scenario: str = "termination-notice"
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    notice_seconds: float = 60.0  # termination-notice: from the notice to the cut-off
    warmup_seconds: float = 5.0  # of steady load before the fault: the baseline
    settle_seconds: float = 5.0  # of load after recovery (after the cut-off, for a notice)
    recovery_timeout: float = 120.0  # fault -> the move ended / first write at the new primary
    refusal_patience: float = 30.0  # how long a refused move by hand is asked again
    failback: bool = True
    abort: AbortLimits | None = None  # the users' limits past which the drill gives up

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DrillRefused(f"unknown scenario {self.scenario!r}; choose one of "
                               f"{', '.join(SCENARIOS)}")
        for name in ("notice_seconds", "warmup_seconds", "settle_seconds", "recovery_timeout"):
            if getattr(self, name) <= 0:
                raise DrillRefused(f"{name.replace('_', ' ')} must be positive")


def _elapsed(t0: float) -> str:
    return f"[{time.monotonic() - t0:6.1f}s]"


class Drill:
    """One drill on a deployment the drill has a fault injector for (the lab).

    ``controller``: one that runs already (a scheduled drill's), else the drill starts its
    own; ``sites``: (from, standby, to) as recorded, to fail back a drill whose runner died.
    """

    def __init__(self, deployment: Deployment, options: DrillOptions,
                 progress: Progress = lambda _m: None, scenario: Scenario | None = None, *,
                 controller: DrillController | None = None,
                 sites: tuple[str, str, str] | None = None) -> None:
        self.deployment = deployment
        self.options = options
        # A scenario object instead of a named one: tests play faults of their own.
        self.scenario: Scenario = scenario or SCENARIOS[options.scenario]
        self.notice_seconds = options.notice_seconds
        self._progress = progress
        self._t0 = time.monotonic()
        self.timeline: list[tuple[float, str, str]] = []
        self.fault_at = 0.0
        self.detected_at: float | None = None  # the controller's first decision to act
        self.run_record: RunRecord | None = None
        self.refusals: list[str] = []
        self.archive_age: float | None = None  # a rebuild's: the archive's age at the fault
        self._stop = threading.Event()
        self.abort = AbortWatch(options.abort, lambda why: self.note("drill", f"abort: {why}"))
        self.failback: Failback | None = None  # once the drill has failed back
        self.from_site, self.standby_site = sites[:2] if sites else self._sites()
        self.to_site = sites[2] if sites else self.standby_site
        if self.scenario.rebuilds:  # the move's target is a spare, made from nothing
            self.to_site = sites[2] if sites else self._spare()
            self.deployment = deployment = rebuild_deployment(deployment, self.to_site)
            # The users the workload makes as it starts must be in the archive before the
            # fault, or every later write of theirs would fail at the rebuilt site.
            self.options = replace(options, warmup_seconds=max(options.warmup_seconds,
                                                               REBUILD_WARMUP))
        self.faults: FaultInjector = injector_for(deployment.config.journal.parent)
        if self.scenario.cuts and self.faults.controller_group() is None:
            raise DrillRefused(f"{self.scenario.name} cuts a site off from the controller with "
                               "nftables, which needs root; run the drill as root")
        self.controller = controller or DrillController(
            deployment, deployment.config.journal.parent / "logs" / "watch-drill.log")

    # -- DrillContext: what scenarios use -----------------------------------

    def say(self, message: str) -> None:
        """A progress line, with the time since the drill began."""
        self._progress(f"{_elapsed(self._t0)} {message}")

    def note(self, source: str, text: str, at: float | None = None) -> None:
        """An event on the timeline (now, unless ``at``); also shown as progress."""
        self.timeline.append((time.time() if at is None else at, source, text))
        self.say(f"{source}: {text}")

    def move(
        self, kind: Literal["switchover", "promote", "rebuild"], target: str, *,
        accept_data_loss: bool = False,
        before_step: Callable[[int, Step], None] | None = None,
    ) -> RunRecord | None:
        """Plan and run a move; a refused plan is asked again while the world settles.

        Right after a fault the engine may rightly refuse (a standby still
        streams from a primary that went dark until its receiver times out),
        so the drill, as the controller will, asks again for a while and notes
        each distinct refusal.
        """
        def make(d: Deployment, t: Topology) -> Plan:
            if kind == "switchover":
                return plan_switchover(d, target, t)
            if kind == "rebuild":
                return plan_rebuild(d, target, t)
            return plan_promote(d, target, t, accept_data_loss=accept_data_loss)

        give_up = time.monotonic() + self.options.refusal_patience
        while True:
            try:
                with run_lock(self.deployment):
                    plan, resume = plan_or_resume(self.deployment, kind, target, make)
                    self.note("engine", f"{plan.kind} {plan.from_site} -> {plan.to_site}: "
                              f"{len(plan.steps)} steps" + (" (resumed)" if resume else ""))
                    record = execute(self.deployment, plan, resume=resume,
                                     progress=lambda m: self.say(f"engine: {m.strip()}"),
                                     before_step=before_step)
                self.note("engine", f"{kind} done ({record.outcome}, run {record.id})")
                return record
            except NothingToDo as done:
                self.note("engine", str(done))
                return None
            except StepFailed as failed:
                self.note("engine", f"{kind} failed: {failed}")
                return self.deployment.journal.last()
            except UnsafePlan as refused:
                if str(refused) not in self.refusals:
                    self.refusals.append(str(refused))
                    self.note("engine", f"refused: {refused}")
                if time.monotonic() >= give_up:
                    self.note("engine", f"still refused after {self.options.refusal_patience:g}s;"
                              " giving up")
                    return None
                self._stop.wait(0.2)

    def signal(self, notice: Notice) -> str:
        """Deliver a notice to the controller by its signed webhook."""
        answer = self.controller.signal(notice)
        return (f"delivered by {answer.get('via', 'signed webhook')} "
                f"(notice {answer['notice']['id']})")

    def await_move(self, kinds: tuple[str, ...]) -> RunRecord | None:
        """Wait for the controller to detect the fault and finish its move."""
        run = self.controller.await_run(self.fault_at, kinds, self.options.recovery_timeout)
        self.run_record = run  # the drill's move, even if the drill is aborted before act ends
        decision = self.controller.first_decision(self.fault_at)
        if decision is not None:
            self.detected_at = decision["at"]
            self.note("controller", decision["sentence"], at=decision["at"])
        if run is None:
            self.note("controller", f"no {'/'.join(kinds)} was run in "
                      f"{self.options.recovery_timeout:g}s")
        else:
            self.note("controller", f"{run.plan.kind} {run.plan.from_site} -> "
                      f"{run.plan.to_site}: {run.outcome} (run {run.id})")
        return run

    def provider(self, site: str) -> str:
        """The provider a site runs at."""
        return self.deployment.config.site(site).provider

    def wait_until(self, at: float) -> None:
        """Let the workload run until ``at`` (time.time())."""
        if at > time.time():
            self.say(f"waiting {at - time.time():.1f}s (until +{at - self.fault_at:.1f}s)")
        self.abort.wait(at - time.time())

    def primary_now(self) -> str:
        """The move's target if it answers as the primary now, else the old primary."""
        return primary_now(self)

    def _repositories(self, timeout: float) -> list[dict[str, Any]]:
        """What the primary's agent says of its backup repositories (``backup/info``)."""
        agent = self.deployment.agent(self.from_site)
        if agent is None:
            raise DrillRefused(f"{self.from_site} has no agent to ask about its backups")
        repos: list[dict[str, Any]] = agent.run("backup/info", timeout=timeout)["repositories"]
        return repos

    def _backups_ready(self, timeout: float = 180.0) -> None:
        """Wait until every repository the primary uses holds a full backup (a lab just
        made takes its first ones in seconds); a rebuild drill needs something to restore."""
        seen: list[dict[str, Any]] = []

        def ready() -> bool:
            seen[:] = self._repositories(timeout=30)
            return all(r.get("ok") and r.get("last_full") for r in seen)

        self.say("waiting for every repository to hold a full backup")
        try:
            wait_for(ready, timeout=timeout, what="every repository to hold a full backup",
                     retry_on=ProviderError)  # an agent busy or restarting; not "no agent"
        except WaitTimeout:
            raise DrillRefused("the repositories hold no full backup yet: " + "; ".join(
                f"{r['name']}: {r['status']}" for r in seen)
                + "; see failover backup status") from None

    # -- the drill ------------------------------------------------------------

    def _sites(self) -> tuple[str, str]:
        """(primary, a standby streaming from it), or why the drill cannot start."""
        if (run := unfinished_run(self.deployment)) is not None:
            raise DrillRefused(
                f"run {run.id} ({run.plan.kind} to {run.plan.to_site}) did not finish; finish "
                f"or abandon it first (failover abandon {run.id})"
            )
        topology = self.deployment.observe()
        if len(topology.primaries) != 1:
            found = ", ".join(topology.primaries) or "none"
            raise DrillRefused(f"a drill needs exactly one primary, found {found}; see "
                               "failover status")
        primary = topology.primaries[0]
        standbys = [s.name for s in topology.sites.values() if s.upstream == primary]
        if not standbys:
            raise DrillRefused(f"no standby streams from {primary}; see failover status")
        return primary, standbys[0]

    def _spare(self) -> str:
        """The spare a rebuild drill makes (the first in the config), or why there is none."""
        spares = list(self.deployment.config.spares)
        if not spares:
            raise DrillRefused(f"{self.scenario.name} rebuilds a spare site, and the config "
                               "has none (spares: ...)")
        return spares[0]

    def _clients(self) -> tuple[Callable[[], CachingResolver], str, list[tuple[str, int]], int]:
        """How the synthetic users resolve and reach the app."""
        config = self.deployment.config
        servers = [(p.server, p.port) for p in config.dns_providers.values()
                   if p.kind == "rfc2136"]
        if not servers:
            raise DrillRefused("the drill's users resolve at RFC 2136 (BIND) servers, and "
                               "no DNS provider is one")
        name = self.deployment.records(self.from_site)[0].name
        port = urlsplit(config.site(self.from_site).app_url).port or 80
        return (lambda: CachingResolver(name, servers)), name, servers, port

    def run(self) -> DrillReport:
        """Run the drill: a baseline, the fault and recovery, then measure and fail back."""
        opts = self.options
        resolver, name, servers, port = self._clients()
        workload = Workload(opts.workload, resolver, port=port, host_header=name.rstrip("."))
        watcher = DnsWatcher(name, servers)
        ticker = threading.Thread(target=self._tick, args=(workload,), daemon=True)
        to_address = str(self.deployment.config.site(self.to_site).address)
        started = datetime.now(UTC)
        self.say(f"{self.scenario.name}: {self.from_site} -> {self.to_site}; "
                 f"{opts.workload.users} users, {opts.workload.rate:g} requests/s")
        error: BaseException | None = None
        if self.scenario.rebuilds:
            self._backups_ready()
        try:
            self._baseline(workload, watcher, ticker)
            self._fault(workload, to_address)
        except DrillAborted as aborted:  # measured and failed back like any other
            self.say(str(aborted))
        except BaseException as exc:  # stop the load, repair, then raise
            error = exc
        finally:
            self._stop.set()
            self.abort.stop()
            if self.scenario.watched:  # before the fail back, which it must not fight
                self.note("drill", self.controller.stop())
            log = workload.stop()
            watcher.stop()
            if ticker.is_alive():  # not started when the workload could not start
                ticker.join()
            ended = time.time()
        self._stop.clear()
        report: DrillReport | None = None
        try:
            if error is None:
                report = measure.report(self._observed(log, watcher, started, ended, to_address))
        finally:  # whatever went wrong, the lab is put back
            self.failback = fail_back(self)
        if error is not None:
            raise error
        assert report is not None  # measured, since nothing went wrong
        return replace(report, failback=self.failback)

    @property
    def aborted(self) -> str | None:
        """Why the drill was aborted (its users' limits passed), or None."""
        return self.abort.reason

    def _baseline(self, workload: Workload, watcher: DnsWatcher,
                  ticker: threading.Thread) -> None:
        """Start the controller and the load, and let writes flow before the fault."""
        if self.scenario.watched:
            group = self.faults.controller_group() if self.scenario.cuts else None
            self.note("drill", self.controller.start(
                group=group, leader=self.scenario.leads(self),
                leader_env=dict(self.scenario.leader_env)))
        workload.start()
        self.abort.start(workload.log)
        watcher.start()
        ticker.start()
        self.note("drill", f"workload started; baseline of {self.options.warmup_seconds:g}s")
        try:
            workload.wait_acks(1, timeout=30)
        except (TimeoutError, RuntimeError) as exc:
            raise DrillRefused(
                f"no write was acknowledged in the 30 s before the fault, so there is "
                f"nothing to measure: {exc}; see failover status"
            ) from exc
        self.abort.wait(self.options.warmup_seconds)

    def _archive_age(self) -> float | None:
        """How old the newest archived WAL is at the repository the rebuild will use first
        (the oldest of them if none is at the spare's provider); None if it cannot be told."""
        try:
            repos = self._repositories(timeout=10)
        except FailoverError:  # the drill goes on; the report says the age is unknown
            return None
        provider = self.deployment.config.site(self.to_site).provider
        ages = [r["last_wal_age_seconds"] for r in repos if r.get("provider") == provider] or [
            r["last_wal_age_seconds"] for r in repos]
        known = [a for a in ages if a is not None]
        return max(known) if known else None

    def _fault(self, workload: Workload, to_address: str) -> None:
        """Inject the fault at t=0, let the engine act, wait for writes at the new primary."""
        if self.scenario.rebuilds:  # what the backups lack at the fault bounds what is lost
            self.archive_age = self._archive_age()
            self.note("drill", "the newest archived WAL is " + (
                "of unknown age" if self.archive_age is None else f"{self.archive_age:.1f}s old"))
        self.fault_at = time.time()
        self.note("drill", self.scenario.inject(self))
        config, lost = self.deployment.config, (self.from_site, self.standby_site)
        if self.scenario.rebuilds and (why := quorum_lost_with(config, lost)):  # both are lost
            self.deployment = Deployment(config.without_cluster(), self.deployment.source)
            self.note("drill", f"{why}; the rebuild and fail back run {local_state_note(config)}")
        self.run_record = self.scenario.act(self)
        self.abort.check()
        if self.scenario.moves:
            self._await_first_ack(workload, to_address)
        self.wait_until(time.time() + self.options.settle_seconds)

    def _await_first_ack(self, workload: Workload, address: str) -> None:
        if self.run_record is None or self.run_record.outcome != "ok":
            self.note("drill", f"the move to {self.to_site} did not finish: no recovery to "
                      "wait for")
            return
        if workload.log.first_ack_at(address, self.fault_at) is None:
            try:
                workload.wait_events(
                    lambda e: e.ok and e.is_write and e.address == address, 1,
                    # A rebuild may take minutes: its app still gets a while to take writes.
                    timeout=max(30.0, self.fault_at + self.options.recovery_timeout
                                - time.time()),
                    what=f"writes acknowledged at {self.to_site}")
            except (TimeoutError, RuntimeError) as exc:
                self.note("drill", f"no write acknowledged at {self.to_site}: {exc}")
                return
        first = workload.log.first_ack_at(address, self.fault_at)
        assert first is not None  # just waited for it
        self.note("workload", f"first write acknowledged at {self.to_site} "
                  f"(+{first - self.fault_at:.1f}s)", at=first)

    def _tick(self, workload: Workload) -> None:
        """A line every 2 s: what the users see."""
        while not self._stop.wait(2.0):
            now = time.time()
            recent = [e for e in workload.log.snapshot() if e.at > now - 2.0]
            writes = sum(1 for e in recent if e.ok and e.is_write)
            reads = sum(1 for e in recent if e.ok and not e.is_write)
            errors = WorkloadLog(recent).failures_by_cause()
            text = ", ".join(f"{c} {n}" for c, n in errors.items()) or "none"
            where = sorted({e.address for e in recent if e.ok and e.address})
            self.say(f"users: {writes / 2:.0f} writes/s, {reads / 2:.0f} reads/s ok; "
                     f"errors: {text}; answered by {', '.join(where) or 'nobody'}")

    def _observed(self, log: WorkloadLog, watcher: DnsWatcher, started: datetime, ended: float,
                  to_address: str) -> measure.Observed:
        """What the drill saw, and what the new primary lacks, for ``measure.report``."""
        promised = self.deployment.config.objectives
        return measure.Observed(
            scenario=self.scenario, deployment=self.deployment.source,
            from_site=self.from_site, to_site=self.to_site, to_address=to_address,
            started=started, fault_at=self.fault_at or ended, ended=ended,
            detected_at=self.detected_at, run=self.run_record, log=log,
            dns_changes=tuple(watcher.changes), notes=tuple(self.timeline),
            refusals=tuple(self.refusals),
            # Nothing meant to move: what the primary kept, not what its standby copied.
            losses=find_losses(self.deployment, self.to_site if self.scenario.moves
                               else self.from_site, log),
            promise=Promise(promised.rto_seconds, promised.rpo_writes),
            from_address=str(self.deployment.config.site(self.from_site).address),
            workload=self.options.workload, notice_seconds=self.notice_seconds,
            archive_age=self.archive_age,
            # Only a watched drill's controllers ran (and a total loss leaves etcd no quorum).
            cluster=self.controller.cluster_facts(self.fault_at, self.run_record)
            if self.scenario.watched else None,
        )
