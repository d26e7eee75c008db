"""The controllers a drill runs: real ``failover watch`` processes beside the workload.

The drill starts them before the baseline (so their probes have a history
when the fault comes), delivers notices the way a provider would (a signed
webhook), and then only watches: what the controllers decided and when, and
the runs they made, from the journal. They are stopped by their PIDs before
the drill fails back, so they never fight the fail back.

Alone (no ``watch.cluster.controllers``) that is one controller, as it always
was. With a cluster, one runs at each site (``failover watch --site S``),
the drill chooses which one leads (it starts it first and waits until it
leads), asks whoever leads for its status, and can freeze a site's
controller with the site (``freeze``/``thaw``). Decisions and runs are then
read from the shared store and journal, never from one controller, since the
leader may change in the middle of the drill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from failover.cluster.exceptions import ClusterUnavailable
from failover.drill.leadership import ClusterFacts, LeaderWatch, gather
from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.exceptions import FailoverError
from failover.processes import (
    ProcessRecord,
    is_alive,
    log_tail,
    signal_tree,
    spawn,
    state_of,
    stop,
)
from failover.state import open_store
from failover.waiting import WaitTimeout, wait_for
from failover.watch.signals import Notice
from failover.watch.webhook import controller_url, load_secret, post_signal

ACTING = ("start", "prepare", "propose", "resume")  # decisions that ask for something
ASK_TIMEOUT = 2.0  # seconds one controller of a cluster gets to answer before the next is asked


class ControllerFailed(FailoverError):
    """The drill's controller could not start, or stopped answering."""

    exit_code = 2


@dataclass
class _Member:
    """One ``failover watch`` process: the lone controller (site None), or a site's."""

    site: str | None
    url: str
    log: Path
    record: ProcessRecord | None = None
    frozen: bool = False

    @property
    def name(self) -> str:
        return "failover watch" if self.site is None else f"{self.site}'s controller"

    def stopped(self) -> bool:
        """Whether its process is stopped (SIGSTOP: frozen, or it stopped itself)."""
        return self.record is not None and state_of(self.record.pid) == "T"


class DrillController:
    """The ``failover watch`` processes of a drill, started and stopped by it."""

    def __init__(self, deployment: Deployment, log: Path) -> None:
        self.deployment = deployment
        self.log = log
        watch = deployment.config.watch
        cluster = watch.cluster
        self.cluster = cluster if cluster is not None and cluster.controllers else None
        if self.cluster is None:
            self.members = [_Member(None, controller_url(watch.listen), log)]
        else:
            self.members = [_Member(site, controller_url(listen),
                                    log.with_name(f"{log.stem}-{site}{log.suffix}"))
                            for site, listen in self.cluster.controllers.items()]
        self._leader = self.members[0]  # asked first: the one that led when last asked
        self.leaders: LeaderWatch | None = None
        self.facts: ClusterFacts | None = None if self.cluster is None else ClusterFacts(
            self.cluster.ttl, self.cluster.loop_wait)

    # -- which one ----------------------------------------------------------------

    @property
    def sites(self) -> list[str]:
        """The sites with a controller (none when it runs alone)."""
        return [m.site for m in self.members if m.site is not None]

    @property
    def url(self) -> str:
        """The API of the controller that led when last asked (the lone one's)."""
        return self._leader.url

    @property
    def record(self) -> ProcessRecord | None:
        """The process of the controller that led when last asked (the lone one's)."""
        return self._leader.record

    def member(self, site: str) -> _Member:
        """The controller at ``site``."""
        for member in self.members:
            if member.site == site:
                return member
        raise ControllerFailed(f"no controller runs at site {site!r}; the controllers' sites: "
                               f"{', '.join(self.sites) or 'none (it runs alone)'}")

    def _leader_first(self) -> list[_Member]:
        return [self._leader, *(m for m in self.members if m is not self._leader)]

    # -- start and stop -----------------------------------------------------------

    def start(self, timeout: float = 30.0, *, args: tuple[str, ...] = (),
              env: Mapping[str, str] | None = None, group: int | None = None,
              leader: str | None = None, leader_env: Mapping[str, str] | None = None) -> str:
        """Start the controller(s) and wait until they answer; a line for the timeline.

        ``args`` are more options for ``failover watch`` (e.g. ``--mode approve``);
        ``env`` more environment (tests set the engine's chaos hook there);
        ``group`` a gid to run them with (root only: a partition cuts that group off).
        With a cluster, ``leader``'s controller (default: the first) is started
        first, with ``leader_env`` too, and leads before the others start.
        """
        if self.cluster is None:
            member = self.members[0]
            self._spawn(member, args, env, group)
            self._await(member, timeout, lambda: self._healthy(member))
            assert member.record is not None
            return f"failover watch (pid {member.record.pid}) answers at {member.url}"
        first = self.member(leader) if leader is not None else self.members[0]
        try:
            self._spawn(first, args, {**(env or {}), **(leader_env or {})}, group)
            self._await(first, timeout, lambda: self._leading(first))
            self._leader = first
            for member in self.members:
                if member is not first:
                    self._spawn(member, args, env, group)
            for member in self.members:
                self._await(member, timeout, partial(self._healthy, member))
        except BaseException:
            self.stop()
            raise
        self.leaders = LeaderWatch(self.cluster)
        self.leaders.start()
        pids = ", ".join(f"{m.site} pid {m.record.pid}" for m in self.members if m.record)
        said = self.leader()
        token = f" (token {said[1]})" if said else ""
        return f"failover watch at each site ({pids}); {first.site} leads{token}"

    def _spawn(self, member: _Member, args: tuple[str, ...], env: Mapping[str, str] | None,
               group: int | None) -> None:
        site = () if member.site is None else ("--site", member.site)
        argv = [sys.executable, "-m", "failover", "watch", "--config", self.deployment.source,
                *site, *args]
        member.log.parent.mkdir(parents=True, exist_ok=True)
        member.record = spawn("watch" if member.site is None else f"watch@{member.site}", argv,
                              log=member.log, group=group,
                              env=None if env is None else {**os.environ, **env})

    def _await(self, member: _Member, timeout: float, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; a controller that exits meanwhile is hopeless."""
        record = member.record
        assert record is not None

        def answers() -> bool:
            if not is_alive(record):
                raise ControllerFailed(f"{member.name} exited while starting: "
                                       f"{log_tail(record, 3) or 'no output'} (log: {member.log})")
            return ready()

        try:
            # Refused or unanswered while it starts: not yet. It exiting is hopeless.
            wait_for(answers, timeout=timeout, what=f"{member.name} at {member.url}",
                     retry_on=httpx.TransportError, interval=0.2)
        except WaitTimeout as exc:
            if self.cluster is None:
                self.stop()
            raise ControllerFailed(f"{exc} (log: {member.log})") from exc

    def _healthy(self, member: _Member) -> bool:
        return httpx.get(f"{member.url}/healthz", timeout=1.0).status_code == 200

    def _leading(self, member: _Member) -> bool:
        answer = httpx.get(f"{member.url}/v1/status", timeout=1.0)
        return answer.status_code == 200 and bool((answer.json().get("cluster") or {})
                                                  .get("leading"))

    def stop(self, timeout: float = 15.0) -> str:
        """Stop the controller(s) by PID (SIGKILL after ``timeout``); a line for the timeline.

        A frozen one is thawed first: it must see its stop signal, and wake to
        find it leads no more before it is stopped.
        """
        if all(m.record is None for m in self.members):
            return "failover watch was not started"
        if self.leaders is not None:
            self.leaders.stop()
        for member in self.members:  # all thawed before any is stopped
            if member.frozen and member.record is not None:
                signal_tree(member.record, signal.SIGCONT)
                member.frozen = False
        said = []
        for member in self.members:
            if member.record is not None:
                try:  # each on its own: one that will not die must not spare the others
                    outcome = stop(member.record, timeout)
                except WaitTimeout as exc:
                    outcome = f"NOT stopped ({exc})"
                said.append(f"{member.site + ' ' if member.site else ''}(pid {member.record.pid})"
                            f": {outcome}")
                member.record = None
        return f"failover watch {'; '.join(said)}"

    def freeze(self, site: str) -> str:
        """SIGSTOP ``site``'s controller, as its site going dark would; a line for the timeline."""
        member = self.member(site)
        if member.record is None:
            raise ControllerFailed(f"{member.name} is not running")
        signal_tree(member.record, signal.SIGSTOP)
        member.frozen = True
        return f"froze {member.name} (pid {member.record.pid})"

    def thaw(self, site: str) -> str:
        """SIGCONT ``site``'s controller (frozen by ``freeze`` or by itself)."""
        member = self.member(site)
        member.frozen = False
        if member.record is None:
            return f"{member.name} is not running"
        signal_tree(member.record, signal.SIGCONT)
        return f"thawed {member.name} (pid {member.record.pid})"

    def stopped(self, site: str) -> bool:
        """Whether ``site``'s controller is stopped (frozen, or it stopped itself)."""
        return self.member(site).stopped()

    # -- asking -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``/v1/status`` of the controller that leads (the lone one's; with a cluster, of
        the first that answers if none says it leads)."""
        if self.cluster is None:
            return self._status(self.members[0], 5.0)
        todo, asked, first = self._leader_first(), [], None
        while todo:
            member = todo.pop(0)
            asked.append(member)
            if member.record is None or member.stopped():
                continue
            try:
                data = self._status(member, ASK_TIMEOUT)
            except ControllerFailed:
                continue
            first = first or data
            cluster = data.get("cluster") or {}
            if cluster.get("leading"):
                self._leader = member
                return data
            named = next((m for m in todo if m.site == cluster.get("leader")), None)
            if named is not None:  # it knows who leads: ask that one next
                todo = [named, *(m for m in todo if m is not named)]
        if first is None:
            raise ControllerFailed("no controller answered: " + ", ".join(
                f"{m.site} at {m.url}" for m in asked))
        return first

    def status_of(self, site: str) -> dict[str, Any]:
        """``/v1/status`` of ``site``'s controller, whether it leads or not."""
        return self._status(self.member(site), ASK_TIMEOUT)

    def _status(self, member: _Member, timeout: float) -> dict[str, Any]:
        try:
            response = httpx.get(f"{member.url}/v1/status", timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ControllerFailed(f"{member.name} at {member.url} did not answer: {exc}") \
                from exc
        data: dict[str, Any] = response.json()
        return data

    def leader(self) -> tuple[str, int] | None:
        """(site, token) of the controller that leads, as the controllers say; None: no one."""
        cluster = self.status().get("cluster") or {}
        if cluster.get("leader") is None or cluster.get("token") is None:
            return None
        return str(cluster["leader"]), int(cluster["token"])

    def signal(self, notice: Notice, site: str | None = None) -> dict[str, Any]:
        """Deliver a notice by the signed webhook, as a provider's system would.

        To ``site``'s controller when given (any controller takes a notice);
        else to the one that leads, or the next that answers.
        """
        secret = load_secret(self.deployment.config.watch)
        targets = [self.member(site)] if site is not None else self._leader_first()
        problems = []
        for member in targets:
            if member.stopped():
                problems.append(f"{member.name} is stopped")
                continue
            try:
                response = post_signal(member.url, secret, notice, 5.0)
            except httpx.HTTPError as exc:
                problems.append(f"{member.name} at {member.url} did not answer: {exc}")
                continue
            if response.status_code != 202:
                raise ControllerFailed(f"{member.name} refused the notice: HTTP "
                                       f"{response.status_code} {response.text[:200]}")
            answer: dict[str, Any] = response.json()
            return {**answer, "controller": member.site}
        raise ControllerFailed("; ".join(problems))

    def first_decision(self, after: float) -> dict[str, Any] | None:
        """The first decision that asked for something at or after ``after``."""
        if self.cluster is None:
            decisions: list[dict[str, Any]] = self.status()["decisions"]
        else:  # the shared store: whoever led when it was decided
            decisions = open_store(self.deployment.config).decisions(limit=100, since=after)
        return next((d for d in decisions if d["at"] >= after and d["action"] in ACTING), None)

    def await_run(self, after: float, kinds: Collection[str], timeout: float,
                  ) -> RunRecord | None:
        """Wait until a run of one of ``kinds``, begun after ``after``, has ended well.

        A run that failed is waited on too: the controller tries it again. When
        ``timeout`` passes, the newest such run (ended or not), or None.
        """
        journal = self.deployment.journal

        def newest() -> RunRecord | None:
            runs = [r for r in journal.runs(limit=10)
                    if r.created >= after and r.plan.kind in kinds]
            return max(runs, key=lambda r: r.created, default=None)

        def done() -> bool:
            for member in self.members:
                if member.record is not None and not is_alive(member.record):
                    raise ControllerFailed(f"{member.name} died: {log_tail(member.record, 3)} "
                                           f"(log: {member.log})")
            run = newest()
            return run is not None and run.outcome == "ok"

        # "Not yet" is a run not yet ended well, or an etcd cluster electing a new raft
        # leader (its member went dark with a site); a journal file that cannot be read
        # or a controller that died will not get better by waiting.
        with contextlib.suppress(WaitTimeout):  # then the newest run says how far it got
            wait_for(done, timeout=timeout, interval=0.2,
                     what=f"the controller's {'/'.join(kinds)}", retry_on=ClusterUnavailable)
        return newest()

    def cluster_facts(self, fault_at: float, run: RunRecord | None) -> ClusterFacts | None:
        """What the drill saw of the cluster, completed from the journal and the store
        (None: the controller ran alone). Read before the fail back makes runs of its own."""
        if self.facts is None:
            return None
        changes = tuple(self.leaders.changes) if self.leaders is not None else ()
        return gather(self.facts, self.deployment, changes, fault_at, run, ACTING)
