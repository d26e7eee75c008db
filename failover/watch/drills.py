"""The controller's scheduled drills: started beside the loop when the guard rails allow.

Each cycle hands its snapshot to ``DrillKeeper.consider``; every few seconds
it asks the guard rails (``drillpolicy.decide``) whether a drill in
``watch.drills`` is due and may start, and if so runs it in a thread of its
own, as ``failover drill`` would but under this controller: the scenario's
notice is delivered to it, and its own policy detects the fault and moves
(``ControllerHands``). The drill is begun in the history before its fault
and ended there after its fail back, so that a controller restarted
mid-drill finds it under way, its runner gone, and fails it back
(``fail_back_orphans``) once nothing else is moving. A controller that stops
on purpose aborts its drill, which then fails back before the controller
exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, Protocol

from failover.drill.abort import AbortLimits
from failover.drill.controller import ACTING, DrillController
from failover.drill.history import DrillHistory, history_path
from failover.drill.recorded import fail_back_orphans, report_dir_for, run_recorded
from failover.drill.runner import Drill, DrillOptions
from failover.drill.workload import WorkloadSpec
from failover.engine.deployment import Deployment
from failover.engine.executor import one_line
from failover.engine.journal import RunRecord
from failover.exceptions import FailoverError
from failover.logs import log_event
from failover.state import ControllerStore
from failover.watch.drillconfig import DrillSchedule
from failover.watch.drillpolicy import DrillState, decide
from failover.watch.metrics import WatchMetrics
from failover.watch.notify import Notifier
from failover.watch.policy import Snapshot
from failover.watch.signals import Notice

log = logging.getLogger("failover.watch")
CHECK_EVERY = 5.0  # seconds between asking the guard rails
QUIET_PATIENCE = 300.0  # seconds a fail back waits for the controller's moves to end
AWAIT_SLICE = 2.0  # seconds: how often a drill waiting on a move looks whether to give up


class Watching(Protocol):
    """What the keeper needs of the controller (``Controller`` is one)."""

    deployment: Deployment
    store: ControllerStore
    metrics: WatchMetrics
    notifier: Notifier

    def deliver(self, notice: Notice) -> bool:
        """Keep a notice, as any notice path does."""
        ...


def drill_options(schedule: DrillSchedule) -> DrillOptions:
    """The runner's options for a scheduled drill (it always fails back)."""
    o, a = schedule.options, schedule.abort
    return DrillOptions(
        scenario=schedule.scenario, notice_seconds=o.notice, warmup_seconds=o.warmup,
        settle_seconds=o.settle, failback=True,
        workload=WorkloadSpec(rate=o.rate, users=o.users, write_share=o.write_share,
                              media_share=o.media_share),
        abort=AbortLimits(a.error_rate, a.write_unavailable_seconds, a.window_seconds))


def quiet(snapshot: Snapshot) -> bool:
    """Whether the controller has nothing to do: no run, no move, no notice pending."""
    return snapshot.run is None and not snapshot.notices and not any(
        m.active for m in snapshot.moves)


class ControllerHands(DrillController):
    """The controller a scheduled drill runs under: the one in this process that started it.

    Nothing is spawned or stopped: notices go straight to its intake, its
    decisions are read from its store, and "stopping" it before the fail back
    means waiting until its own move has ended, so that the two never fight.
    """

    def __init__(self, keeper: DrillKeeper) -> None:
        # Its log is the controller's own: nothing is spawned to write another.
        super().__init__(keeper.deployment, keeper.deployment.config.journal.parent / "logs" /
                         "watch.log")
        self.keeper = keeper

    def start(self, timeout: float = 30.0, *, args: tuple[str, ...] = (),
              env: Any = None, group: int | None = None, leader: str | None = None,
              leader_env: Any = None) -> str:
        """Nothing to start: a line for the timeline."""
        return "the controller that scheduled this drill watches it (failover watch)"

    def stop(self, timeout: float = 15.0) -> str:
        """Wait until the controller's moves have ended; a line for the timeline."""
        asked = self.keeper.clock()
        if self.keeper.wait_quiet(after=asked, patience=QUIET_PATIENCE):
            return "the controller has no move under way; it watches on"
        return f"the controller still moves after {QUIET_PATIENCE:g}s; failing back regardless"

    def status(self) -> dict[str, Any]:
        """The controller's decisions (the part of /v1/status a drill reads)."""
        return {"decisions": self.keeper.watching.store.decisions(limit=50)}

    def signal(self, notice: Notice, site: str | None = None) -> dict[str, Any]:
        """Deliver a notice to the controller's intake, as the webhook would (any site's)."""
        self.keeper.watching.deliver(notice)
        return {"notice": {"id": notice.id}, "via": "the controller's notice intake"}

    def first_decision(self, after: float) -> dict[str, Any] | None:
        """The first decision that asked for something at or after ``after``."""
        decisions = self.keeper.watching.store.decisions(limit=50, since=after)
        return next((d for d in decisions if d["action"] in ACTING), None)

    def await_run(self, after: float, kinds: Collection[str], timeout: float,
                  ) -> RunRecord | None:
        """As the drill's own controller's, but given up when the controller stops."""
        end = time.monotonic() + timeout
        while True:
            run = super().await_run(after, kinds, min(AWAIT_SLICE, end - time.monotonic()))
            if (run is not None and run.outcome == "ok") or self.keeper.stopping.is_set() \
                    or time.monotonic() >= end:
                return run


class DrillKeeper:
    """Starts the scheduled drills a cycle's guard rails allow; fails back those left behind."""

    def __init__(self, watching: Watching, clock: Callable[[], float] = time.time,
                 make_drill: Callable[..., Drill] = Drill) -> None:
        self.watching = watching
        self.make_drill = make_drill  # the unit layer's stands in for a drill in the lab
        deployment = watching.deployment
        # The drill's own Deployment: its caches (agents, dark sites) are not the loop's.
        self.deployment = Deployment(deployment.config, deployment.source)
        self.drills = tuple(deployment.config.watch.drills)
        self.windows = tuple(deployment.config.watch.freeze_windows)
        self.history = DrillHistory(history_path(deployment.config.journal))
        watching.metrics.drills_from(self.history)
        self.clock = clock
        self.since = clock()
        self.stopping = threading.Event()
        self.sentence = ""
        self._latest: Snapshot | None = None
        self._latest_changed = threading.Condition()
        self._checked = float("-inf")
        self._refused: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._drill: Drill | None = None

    # -- the loop's side --------------------------------------------------------------

    def consider(self, snapshot: Snapshot) -> None:
        """Take a cycle's snapshot; now and then, fail back a drill left under way (this
        controller, restarted mid-drill) or start a drill if the guard rails allow."""
        with self._latest_changed:
            self._latest = snapshot
            self._latest_changed.notify_all()
        if self.busy or snapshot.now - self._checked < CHECK_EVERY:
            return
        self._checked = snapshot.now
        try:
            left = [d for d in self.history.under_way() if not d.owner_alive]
            if left:
                self._say(f"drill {left[0].id} ({left[0].scenario}) was left under way by "
                          f"pid {left[0].owner_pid}: failing it back once nothing moves")
                self._spawn(self._recover, "watch-drill-recovery")
                return
            if not self.drills:
                return
            decision = decide(self._state(snapshot))
        except FailoverError as exc:  # the history cannot be read: no drill, said once
            self._say(f"no drill: {one_line(exc)}")
            return
        self._say(decision.sentence)
        if decision.action == "start" and decision.drill is not None:
            self._spawn(partial(self._run, decision.drill), "watch-drill")

    def status(self) -> dict[str, Any]:
        """The drills' part of ``/v1/status``: the schedule, the drill under way, the last word."""
        drill = self._drill
        return {
            "scheduled": [{"scenario": d.scenario, "schedule": str(d.schedule)}
                          for d in self.drills],
            "under_way": None if drill is None else {
                "scenario": drill.scenario.name, "from": drill.from_site, "to": drill.to_site},
            "busy": self.busy,
            "sentence": self.sentence or None,
        }

    @property
    def busy(self) -> bool:
        """Whether a drill (or a fail back) of this controller's is under way."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """The controller stops: abort the drill under way and wait for its fail back."""
        self.stopping.set()
        drill = self._drill
        if drill is not None:
            drill.abort.fire("the controller is stopping")
        if self._thread is not None:
            if self._thread.is_alive():
                log_event(log, "watch.drill", detail="waiting for the drill to fail back")
            self._thread.join()

    def wait_quiet(self, after: float, patience: float) -> bool:
        """Wait for a snapshot newer than ``after`` in which the controller has nothing to do;
        False when ``patience`` ran out (or the controller stopped, and will not cycle)."""
        end = time.monotonic() + patience
        with self._latest_changed:
            while True:
                latest = self._latest
                if latest is not None and latest.now > after and quiet(latest):
                    return True
                left = end - time.monotonic()
                if left <= 0 or self.stopping.is_set():
                    return False
                self._latest_changed.wait(min(left, 1.0))

    # -- the drill's side -------------------------------------------------------------

    def _state(self, snapshot: Snapshot) -> DrillState:
        last_runs: dict[str, float] = {}
        for entry in self.history.entries():
            if entry.trigger == "schedule":
                last_runs[entry.scenario] = entry.started.timestamp()
        under_way = tuple(f"drill {d.id} ({d.scenario}, {d.trigger}"
                          f"{'' if d.owner_alive else ', its runner gone'})"
                          for d in self.history.under_way())
        return DrillState(now=snapshot.now, snapshot=snapshot, drills=self.drills,
                          freeze_windows=self.windows, watching_since=self.since,
                          last_runs=last_runs, under_way=under_way, refused=self._refused)

    def _say(self, sentence: str) -> None:
        if sentence != self.sentence:
            log_event(log, "watch.drill", sentence=sentence)
            self.sentence = sentence

    def _spawn(self, work: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=work, name=name, daemon=True)
        self._thread.start()

    def _progress(self, message: str) -> None:
        log_event(log, "watch.drill", message=message)

    def _run(self, schedule: DrillSchedule) -> None:
        scenario = schedule.scenario
        try:
            drill = self.make_drill(self.deployment, drill_options(schedule), self._progress,
                                    controller=ControllerHands(self))
        except FailoverError as exc:  # refused (e.g. no standby streams): asked again later
            self._refused[scenario] = self.clock()
            log_event(log, "watch.drill", scenario=scenario, outcome="refused",
                      detail=one_line(exc))
            return
        self._drill = drill
        self.watching.notifier.send({"event": "drill", "scenario": scenario,
                                     "state": "started", "from": drill.from_site,
                                     "to": drill.to_site})
        try:
            done = run_recorded(drill, trigger="schedule", history=self.history,
                                report_dir=report_dir_for(self.deployment, scenario))
        except Exception as exc:  # recorded as broken by run_recorded; the loop goes on
            self._refused[scenario] = self.clock()
            log_event(log, "watch.drill", scenario=scenario, outcome="error",
                      detail=one_line(exc))
            self.watching.notifier.send({"event": "drill", "scenario": scenario,
                                         "state": "error", "detail": one_line(exc)})
            return
        finally:
            self._drill = None
        entry = done.entry
        log_event(log, "watch.drill", scenario=scenario, id=entry.id, outcome=entry.outcome,
                  rto=entry.rto_seconds, failed_back=entry.failed_back,
                  aborted=entry.aborted or "", report=entry.report_dir or "")
        self.watching.notifier.send({"event": "drill", "state": "ended", **entry.to_dict()})

    def _recover(self) -> None:
        """Once the controller is quiet (a notice the drill gave is answered, say), fail back
        the drills whose runner died."""
        if not self.wait_quiet(after=self.clock(), patience=QUIET_PATIENCE) \
                and self.stopping.is_set():
            return  # the next start fails them back
        try:
            for entry in fail_back_orphans(self.deployment, self.history, self._progress):
                log_event(log, "watch.drill", id=entry.id, outcome=entry.outcome,
                          failed_back=entry.failed_back, aborted=entry.aborted or "")
        except FailoverError as exc:
            log_event(log, "watch.drill", outcome="recovery-failed", detail=one_line(exc))
