"""``failover watch``: probes, notices, one policy cycle per tick, the engine's runs.

One asyncio loop holds it all: the probe scheduler feeds observations into a
bounded history; every tick (or at once when a look fails or a notice
arrives) the controller takes an immutable ``Snapshot`` of what it heard and
asks ``run_cycle``; it logs the sentence (when it changed), keeps decisions
that ask for something, and carries them out. The engine's runs are
blocking and long, so one worker thread runs them, one at a time, each
under the journal's run lock. Restarted, the controller reads its store and
the journal, so an interrupted move is resumed and a scheduled one kept.

With ``watch.cluster`` a controller runs at each site; all of them probe and
hear, only the elected leader decides and acts (``leadership``). A follower
that takes over resumes the old leader's move from the shared journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from failover.engine.deployment import Deployment
from failover.engine.executor import execute, one_line, run_lock_held
from failover.engine.journal import RunRecord
from failover.exceptions import FailoverError
from failover.logs import log_event
from failover.state import open_store
from failover.watch.backups import BackupKeeper
from failover.watch.drills import DrillKeeper
from failover.watch.guard import PrimaryGuard
from failover.watch.leadership import Alone, Leadership
from failover.watch.metrics import WatchMetrics
from failover.watch.notify import Notifier
from failover.watch.policy import (
    Decision,
    Move,
    RunSummary,
    Settings,
    Snapshot,
    refusal_notice,
    run_cycle,
)
from failover.watch.probes import ProbeScheduler, build_probes
from failover.watch.runs import RunActions
from failover.watch.signals import Notice, NoticeRefused, Observation, ProbeKind

log = logging.getLogger("failover.watch")
HISTORY = 10  # looks kept per probe: more than any sane `failures`
DECISIONS_KEPT = 50
WAKE_SPACING = 0.1  # seconds: the least time between two cycles
LEASE_FAILED_LOOKS = 2  # failed looks at the primary's database that stop its renewals
DARK_FOR = 120.0  # seconds an emergency's old primary is asked only briefly


def _summary(record: RunRecord) -> RunSummary:
    starts = sum(1 for e in record.events if e.step is None and e.event == "start")
    return RunSummary(record.id, record.plan.kind, record.plan.from_site, record.plan.to_site,
                      record.outcome, starts, record.ended, record.error)


class Controller(RunActions):
    """The controller of one deployment."""

    def __init__(self, deployment: Deployment, *, mode: str | None = None,
                 notify_secret: bytes | None = None,
                 clock: Callable[[], float] = time.time,
                 executor: Callable[..., RunRecord] = execute,
                 leadership: Leadership | None = None) -> None:
        self.deployment = deployment
        self.leadership = leadership or Alone()
        self._led: int | None = None  # the token of the leadership this controller took over
        self._adopted = False  # whether a decision in etcd names the primary (agent leases)
        if not self.leadership.alone:
            deployment.use_token(lambda: self.leadership.token)
        self.execute = executor  # the engine's executor; tests give one that touches no host
        self.config = deployment.config.watch
        if mode is not None:
            self.config = self.config.model_copy(update={"mode": mode})
        self.accept_data_loss = self.config.accept_data_loss
        self.clock = clock
        self.store = open_store(deployment.config)  # etcd with watch.cluster: every site's
        self.metrics = WatchMetrics()
        # Notifications have a secret of their own: never the webhook's (see notify.py).
        self.notifier = Notifier(self.config.notify_url, notify_secret)
        self.settings = Settings(
            failures=self.config.failures, needed=self.config.needed,
            vantages=tuple(self.config.vantage_points), margin=self.config.notice_margin_seconds,
            mode=self.config.mode)
        self.sites = {name: s.provider for name, s in deployment.config.sites.items()}
        self.history: dict[tuple[ProbeKind, str, str], deque[Observation]] = {}
        self.primary: str | None = None
        self.started = clock()
        self.last_sentence = ""
        self.recent: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)
        self._running: RunSummary | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refused: dict[str, bool] = {}
        self.scheduler = ProbeScheduler(build_probes(deployment.config), self.hear)
        self.guard = PrimaryGuard(deployment, self._lease_holder)
        self.copies = BackupKeeper(deployment, self.metrics,
                                   lambda: self.primary if self.leadership.leading else None)
        self.drills = DrillKeeper(self, clock)

    # -- hearing -------------------------------------------------------------------

    def hear(self, obs: Observation) -> None:
        """Take one observation (the probes' sink)."""
        key = (obs.kind, obs.target, obs.vantage)
        self.history.setdefault(key, deque(maxlen=HISTORY)).append(obs)
        self.metrics.observe(obs)
        if obs.kind == "database":
            self._learn_primary()
        if obs.kind == "api" and obs.target in self.sites:
            self._api_refusal(obs.target)
        if not obs.ok:
            self.wake()

    def _looks(self, kind: ProbeKind, site: str) -> list[Observation]:
        """Every kept look of ``kind`` at ``site``, from every vantage point, oldest first."""
        return sorted((o for (k, t, _v), h in self.history.items() if k == kind and t == site
                       for o in h), key=lambda o: o.at)

    def _learn_primary(self) -> None:
        """The primary is the one site whose database says so (fenced ones aside, by moves)."""
        roles = {}
        for site in self.sites:
            if looks := self._looks("database", site):
                roles[site] = looks[-1].facts.get("role") if looks[-1].ok else None
        primaries = [s for s, role in roles.items() if role == "primary"]
        if len(primaries) > 1 and self._running is None and self.leadership.leading:
            self.guard.fence_second_primary()
        if len(primaries) == 1 and primaries[0] != self.primary and self._running is None:
            # Two answering as primary is a fenced old one mid-move: keep what we knew.
            if self.primary is not None:
                log_event(log, "watch.primary", was=self.primary, now=primaries[0])
            self.primary = primaries[0]

    def _lease_holder(self) -> str | None:
        """The site whose lease to renew: the primary, unless it is failing or being replaced.

        Once the primary's database failed its last two looks, its lease is left
        to lapse, so that an emergency promote, if it comes, need not wait for it.
        """
        primary = self.primary
        if primary is None or not self.leadership.leading or (self._running is not None
                               and self._running.kind in ("promote", "resume")):
            return None
        looks = self._looks("database", primary)
        if len(looks) >= LEASE_FAILED_LOOKS and not any(
                o.ok for o in looks[-LEASE_FAILED_LOOKS:]):
            return None
        return primary if self.deployment.agent(primary) is not None else None

    def _api_refusal(self, site: str) -> None:
        notice = refusal_notice(self._looks("api", site), self.config.failures, self.sites[site])
        refused = notice is not None
        # Every controller sees the refusal; the leader's notice is the one kept.
        if refused and not self._refused.get(site) and self.leadership.leading:
            assert notice is not None
            with contextlib.suppress(NoticeRefused):  # counted and logged; a sink must not raise
                self.deliver(notice)
        self._refused[site] = refused

    def deliver(self, notice: Notice) -> bool:
        """Keep a notice (any path: webhook, mailbox, CLI, API refusal); True when new.

        Raises NoticeRefused, counted in /metrics, for a deadline long past or
        years ahead. A notice for the provider that holds the primary is taken
        even when a finished move answered it before: the primary came back.
        """
        if notice.provider not in set(self.sites.values()):
            raise FailoverError(f"no site runs at provider {notice.provider!r}; providers: "
                                f"{', '.join(sorted(set(self.sites.values())))}")
        now = self.clock()
        problem = notice.deadline_problem(now)
        if problem is not None:
            reason, why = problem
            self.metrics.notices_refused.labels(notice.source, reason).inc()
            log_event(log, "watch.notice", outcome="refused", reason=reason,
                      provider=notice.provider, source=notice.source, detail=why)
            raise NoticeRefused(reason, f"notice for {notice.provider} refused: {why}")
        if not notice.received:
            notice = replace(notice, received=now)
        leaving = self.primary is not None and self.sites[self.primary] == notice.provider
        new = self.store.add_notice(notice, reopen=leaving)
        log_event(log, "watch.notice", id=notice.id, provider=notice.provider,
                  source=notice.source, deadline=round(notice.deadline, 3), new=new)
        self.wake()
        return new

    def wake(self) -> None:
        """Run the next cycle now (thread-safe)."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- deciding ------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What the controller knows now, frozen."""
        run = self._running
        if run is None:
            last = self.deployment.journal.last()
            # A run whose lock is held is under way (a switchover by hand, say), not
            # interrupted: it is waited for, never resumed beside its own executor.
            busy = run_lock_held(self.deployment)
            if last is not None and not last.settled and (busy or last.changed_anything()):
                run = _summary(last)
                if busy:
                    run = replace(run, outcome="running", elsewhere=True)
            elif busy:
                run = RunSummary("", "run", "?", "?", "running", 1, None, elsewhere=True)
        return Snapshot(
            now=self.clock(), sites=dict(self.sites), primary=self.primary,
            history={k: tuple(v) for k, v in self.history.items()},
            notices=tuple(self.store.notices()), moves=tuple(self.store.moves()),
            run=run, settings=self.settings,
            lateness=max((t.lateness_last for t in self.scheduler.tracks), default=0.0))

    def cycle(self) -> Decision:
        """One policy cycle: decide, log, keep, act (a follower only keeps its probes warm)."""
        if not self.leadership.leading:
            return self._follow()
        if self._led != self.leadership.token:
            self._take_over()
        if not self._adopted:
            self._adopted = self._adopt_primary()
        snapshot = self.snapshot()
        decision = run_cycle(snapshot)
        self.metrics.cycles.inc()
        self.metrics.notices.set(len(snapshot.notices))
        if decision.sentence != self.last_sentence or decision.action != "none":
            log_event(log, "watch.decision", action=decision.action, sentence=decision.sentence)
            self.last_sentence = decision.sentence
            entry = {"at": snapshot.now, **decision.to_dict()}
            self.recent.append(entry)
            if decision.action != "none":
                self.metrics.decisions.labels(decision.action).inc()
                self.store.add_decision(snapshot.now, decision)
                self.notifier.send({"event": "decision", **entry})
        self._act(decision)
        self.drills.consider(snapshot)
        return decision

    def _follow(self) -> Decision:
        leader = self.leadership.leader()
        decision = Decision("none", f"{self.leadership.name} follows "
                            f"{leader or 'no leader yet'}: the leader decides and acts")
        if decision.sentence != self.last_sentence:
            log_event(log, "watch.decision", action="none", sentence=decision.sentence)
            self.last_sentence = decision.sentence
        self._led = None
        self._adopted = False
        return decision

    def _take_over(self) -> None:
        """Now leading: read what the last leader left (its moves, its run) before deciding.

        Marked done only once it succeeded: a store that did not answer is asked
        again at the next cycle, before anything is decided.
        """
        token = self.leadership.token
        log_event(log, "watch.leading", controller=self.leadership.name, token=token,
                  primary=self.primary or "unknown")
        self.store.recover_moves(self.deployment.journal)
        self._led = token

    def _adopt_primary(self) -> bool:
        """With the agents holding the lease in etcd, make sure a decision names the primary
        (the first leader of a new cluster writes it; later ones find it there); whether
        one does, or none is needed. Asked each cycle until then (the primary may not be
        known yet)."""
        cluster = self.deployment.config.watch.cluster
        if cluster is None or not cluster.agent_leases:
            return True
        if self.primary is None:
            return False
        from failover.cluster.primarylease import EtcdLeases  # etcd's client: a cluster's only

        leases = self.deployment.primary_leases
        if not isinstance(leases, EtcdLeases):
            return True
        if leases.adopt(self.primary):
            log_event(log, "watch.lease", primary=self.primary,
                      detail="the decision in etcd names it: its agent holds the lease")
        return True

    def _act(self, decision: Decision) -> None:
        if decision.supersedes:
            old = self.store.move(decision.supersedes)
            if old is not None:
                self.store.save_move(replace(old, state="superseded"))
        move = decision.move
        if decision.action == "propose" and move is not None:
            self.store.save_move(move)
        elif decision.action == "prepare" and move is not None:
            self._start_run(replace(move, state="preparing"), "prepare")
        elif decision.action == "start" and move is not None:
            if move.kind == "promote":  # the site is gone: the engine need not wait on it
                self.deployment.mark_dark(move.from_site, DARK_FOR)
            self._start_run(move, move.kind)
        elif decision.action == "resume" and decision.run_id:
            self._start_run(None, "resume", decision.run_id)
        elif decision.action == "abandon" and decision.run_id:
            self._start_run(None, "abandon", decision.run_id)
        elif decision.action == "relax" and move is not None:
            self._start_run(move, "relax")

    # -- acting --------------------------------------------------------------------

    def _start_run(self, move: Move | None, kind: str, run_id: str | None = None) -> None:
        if self._worker is not None and not self._worker.done():
            return
        if move is not None and kind != "relax":
            self.store.save_move(move)
        target = move.to_site if move else "?"
        self._running = RunSummary(run_id or "(new)", kind, move.from_site if move else "?",
                                   target, "running", 1, None)
        self._worker = asyncio.get_running_loop().create_task(
            self._run_in_thread(move, kind, run_id))

    async def _run_in_thread(self, move: Move | None, kind: str, run_id: str | None) -> None:
        try:
            if kind == "abandon" and run_id is not None:
                await asyncio.to_thread(self._abandon, run_id, "its move repeats it")
            elif kind == "relax" and move is not None:
                await asyncio.to_thread(self._relax, move)
            else:
                await asyncio.to_thread(self._run, move, kind, run_id)
        except Exception as exc:  # a bug or a broken server must not leave a move "started"
            log_event(log, "watch.error", kind=kind, detail=one_line(exc))
            if move is not None and kind not in ("relax",):
                try:
                    self._put_back(move)
                except FailoverError as lost:  # the store is out of reach: the next leader's
                    log_event(log, "watch.error", kind="put back", detail=one_line(lost))
        finally:
            self._running = None
            self.wake()

    # -- the loop ------------------------------------------------------------------

    def initial_primary(self) -> None:
        """Ask the databases once, with the engine's own view (it knows about fences)."""
        topology = self.deployment.observe()
        if len(topology.primaries) == 1:
            self.primary = topology.primaries[0]
        log_event(log, "watch.start", primary=self.primary or "unknown",
                  mode=self.config.mode, probes=len(self.scheduler.probes),
                  vantage_points=",".join(self.config.vantage_points))

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Watch and act until ``stop`` is set."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await asyncio.to_thread(self.initial_primary)
        if self.leadership.alone:  # with a cluster, the leader does it when it takes over
            await asyncio.to_thread(self.store.recover_moves, self.deployment.journal)
        probes = asyncio.create_task(self.scheduler.run(stop))
        # The lead is kept until the run under way and a drill have ended: a key left to
        # expire mid-run would hand the move over half done.
        elected = asyncio.Event()
        election = asyncio.create_task(self.leadership.run(elected))
        self.guard.start()
        self.copies.start()
        if ready is not None:
            ready()
        tick = self.config.tick
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                self.metrics.cycle_lateness.set(max(0.0, time.monotonic() - next_at))
                try:
                    self.cycle()
                except FailoverError as exc:  # e.g. the store or journal cannot be opened
                    log_event(log, "watch.error", detail=one_line(exc))
                next_at = max(next_at + tick, time.monotonic())
                # A wake (a failed look, a notice) runs the cycle early, but not more
                # than every WAKE_SPACING: a hundred failing probes are one cycle.
                await asyncio.sleep(WAKE_SPACING)
                self._wake.clear()
                waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(waits, timeout=max(0.0, next_at - time.monotonic()),
                                   return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
        finally:
            stop.set()
            await asyncio.to_thread(self.guard.stop, turn_off=self.leadership.alone)
            await asyncio.to_thread(self.copies.stop)
            await probes
            if self._worker is not None and not self._worker.done():
                log_event(log, "watch.stop", detail="waiting for the run under way to end")
                await self._worker
            await asyncio.to_thread(self.drills.stop)  # aborted, then failed back
            elected.set()
            await election
            await asyncio.to_thread(self.leadership.resign)  # a follower takes over at once
            await asyncio.to_thread(self.notifier.close)
