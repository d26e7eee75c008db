"""The engine's runs a controller starts: planned, run and recorded in its worker thread.

A mixin of ``watch.controller.Controller``: one run at a time, each under the
run lock; how it ended goes to the store's move, the metrics and the
notifications. A run refused for a stale fencing token belongs to a deposed
leader: it leaves the store to the controller that leads now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from failover.data.replication import set_asynchronous
from failover.engine.deployment import Deployment, Topology
from failover.engine.executor import RunBusy, one_line, run_lock
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan
from failover.engine.plans import NothingToDo, plan_prepare, plan_promote, plan_switchover
from failover.exceptions import FailoverError, StaleToken, UnsafePlan
from failover.logs import log_event
from failover.state import ControllerStore
from failover.watch.leadership import Leadership
from failover.watch.metrics import WatchMetrics
from failover.watch.notify import Notifier
from failover.watch.policy import Move

log = logging.getLogger("failover.watch")


class RunActions:
    """What the controller does in its worker thread (see the module)."""

    deployment: Deployment
    store: ControllerStore
    execute: Callable[..., RunRecord]
    metrics: WatchMetrics
    notifier: Notifier
    clock: Callable[[], float]
    primary: str | None
    accept_data_loss: bool
    leadership: Leadership

    def _owns_moves(self, why: str) -> bool:
        """Whether this controller may write the moves in the store: alone, or leading. A
        deposed leader's run leaves them to the leader (the store is every site's)."""
        if self.leadership.alone or self.leadership.leading:
            return True
        log_event(log, "watch.run", outcome="not-leading", detail=f"{why}: left to the leader")
        return False

    def _plan(self, move: Move, kind: str, topology: Topology) -> Plan:
        if kind == "prepare":
            return plan_prepare(self.deployment, move.to_site, topology)
        if kind == "switchover":
            return plan_switchover(self.deployment, move.to_site, topology)
        return plan_promote(self.deployment, move.to_site, topology,
                            accept_data_loss=self.accept_data_loss)

    def _run(self, move: Move | None, kind: str, run_id: str | None) -> None:
        """Run a plan (or resume a run) in the worker thread; record how it ended.

        Only the run this call began (or resumed) is ever tied to the move:
        another process's run (a switchover by hand holding the run lock) is
        none of its business.
        """
        d = self.deployment
        begun: list[str] = [run_id] if run_id else []

        def progress(message: str) -> None:
            log_event(log, "watch.engine", message=message.strip())

        def first_step(index: int, _step: object) -> None:
            if index == 0 and not begun and (last := d.journal.last()) is not None:
                begun.append(last.id)  # execute() journaled it under our lock just now
                if move is not None and self._owns_moves("tying the move to its run"):
                    self.store.save_move(replace(move, run_id=last.id))

        try:
            with run_lock(d):
                if run_id is not None:
                    resume = d.journal.run(run_id)
                    move = next((m for m in self.store.moves(active=False)
                                 if m.run_id == run_id), None)
                    self.execute(d, resume.plan, resume=resume, progress=progress)
                else:
                    assert move is not None
                    plan = self._plan(move, kind, d.observe())
                    log_event(log, "watch.run", kind=plan.kind, source=plan.from_site,
                              target=plan.to_site, steps=len(plan.steps), move=move.id)
                    self.execute(d, plan, progress=progress, before_step=first_step)
        except StaleToken as deposed:
            # Another controller leads now and owns the move: leave its state alone.
            log_event(log, "watch.run", outcome="deposed", detail=one_line(deposed))
            return
        except RunBusy as busy:
            log_event(log, "watch.run", outcome="busy", detail=one_line(busy))
            self._put_back(move)
            return
        except NothingToDo as done:
            log_event(log, "watch.run", outcome="nothing-to-do", detail=str(done))
            if move is not None:
                self.store.save_move(replace(move, state="done"))
            return
        except UnsafePlan as refused:
            # The world may settle (a standby still streaming from a frozen primary
            # until its receiver times out): the policy asks again in a moment.
            log_event(log, "watch.run", outcome="refused", detail=one_line(refused))
            self._put_back(move, refused=one_line(refused))
            self.notifier.send({"event": "refused", "move": move.id if move else None,
                                "detail": one_line(refused)})
            return
        except FailoverError as exc:
            log_event(log, "watch.run", outcome="failed", detail=one_line(exc))
        if not begun:
            self._put_back(move)
            return
        self._ended(d.journal.run(begun[0]), move)

    def _put_back(self, move: Move | None, refused: str = "") -> None:
        """A move whose run never began waits again (an approval it had still counts)."""
        if move is None or not self._owns_moves(f"putting move {move.id} back"):
            return
        self.store.save_move(replace(
            move, state="approved" if move.approved is not None else "scheduled",
            refused_at=self.clock() if refused else None, refusal=refused))

    def _ended(self, record: RunRecord, move: Move | None) -> None:
        """Count, tell and record a run that this controller ran."""
        self.metrics.run_ended(record)
        outcome = record.outcome
        log_event(log, "watch.run", run=record.id, kind=record.plan.kind, outcome=outcome,
                  error=record.error or "")
        self.notifier.send({"event": "run", **{k: v for k, v in record.to_dict().items()
                                               if k != "steps"}})
        if move is None or not self._owns_moves(f"recording move {move.id}'s run"):
            return
        if outcome == "ok" and record.plan.kind == "prepare":
            self.store.save_move(replace(move, state="prepared", run_id=record.id))
        elif outcome == "ok":
            self.primary = record.plan.to_site
            self.store.save_move(replace(move, state="done", run_id=record.id))
        else:
            self.store.save_move(replace(move, run_id=record.id))

    def _abandon(self, run_id: str, reason: str) -> None:
        """Give up a failed preparation (the move repeats its steps)."""
        with run_lock(self.deployment):
            self.deployment.journal.ended(run_id, "abandoned", reason)
        for move in self.store.moves():
            if move.run_id == run_id:
                self.store.save_move(replace(move, state="scheduled", run_id=None))
        log_event(log, "watch.run", run=run_id, outcome="abandoned", detail=reason)

    def _relax(self, move: Move) -> None:
        """Commits at the primary stop waiting for a standby that is gone."""
        if not self._owns_moves(f"relaxing {move.from_site}'s commits"):
            return
        with self.deployment.endpoint(move.from_site).connect(timeout=5.0) as conn:
            set_asynchronous(conn)
        self.store.save_move(replace(move, state="scheduled"))
        log_event(log, "watch.relax", primary=move.from_site, standby=move.to_site)
