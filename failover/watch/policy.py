"""The controller's judgement: one ``run_cycle`` per tick over an immutable snapshot.

Patroni's shape: every tick the controller takes a fresh ``Snapshot`` of
what it has heard (probe observations, notices, the moves it has made, the
journal's last run), and ``run_cycle`` decides and *returns a sentence* that
is logged. It touches nothing: the controller carries the decision out. The
rules, in the order they are asked:

1. A run is under way: let it finish.
2. The journal holds a run that did not finish: resume it (interrupted at
   once; failed, a few times, a little apart; then an operator must look).
3. The primary is down (a quorum of vantage points each saw ``failures``
   failed looks in a row: hysteresis, so flapping triggers nothing): the
   emergency promote of a standby at another provider.
4. A notice for the primary's provider: the planned switchover, due a margin
   before the deadline (at once when less is left), prepared at once.
   One move per provider, however many notices say so.
5. Otherwise all is well, and the sentence says what was seen.

In ``approve`` mode a move is proposed and waits for ``failover approve``;
preparation, which loses nothing and can be undone, does not wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from failover.watch.signals import Notice, Observation, ProbeKind

MoveKind = Literal["switchover", "promote"]
MoveState = Literal["scheduled", "preparing", "prepared", "proposed", "approved", "started",
                    "done", "failed", "superseded"]
ACTIVE: frozenset[str] = frozenset({"scheduled", "preparing", "prepared", "proposed",
                                    "approved", "started"})
Action = Literal["none", "prepare", "start", "propose", "resume", "abandon", "relax"]
RESUME_ATTEMPTS = 3  # a run that failed is tried this many times in all
RESUME_PAUSE = 5.0  # seconds between them
REFUSAL_PAUSE = 2.0  # seconds before a plan the engine refused is asked for again
# Looks that start this late mean the controller itself is overloaded: its
# timeouts then say more about its own loop than about the target.
BLIND_LATENESS = 0.5


@dataclass(frozen=True)
class Move:
    """A move the controller decided on: what, why, when, and how far it got."""

    id: str
    kind: MoveKind
    from_site: str
    to_site: str
    provider: str  # the from site's provider: one move per provider at a time
    reason: str
    created: float
    due: float  # when it should start (time.time())
    state: MoveState
    notice_id: str | None = None
    run_id: str | None = None
    approved: float | None = None
    # A letter is easy to forge: a move a mailbox notice asked for waits for a
    # person whatever the mode (preparing for it does not).
    needs_approval: bool = False
    refused_at: float | None = None  # the engine refused its plan then
    refusal: str = ""
    approved_by: str | None = None  # who ran `failover approve` (the evidence names them)

    @property
    def active(self) -> bool:
        """Whether the move is still to happen or under way."""
        return self.state in ACTIVE


@dataclass(frozen=True)
class RunSummary:
    """The journal's last run that did not settle (or the one under way)."""

    id: str
    kind: str
    from_site: str
    to_site: str
    outcome: str  # interrupted | failed | running (under way, here or ``elsewhere``)
    attempts: int
    ended: float | None
    error: str | None = None
    elsewhere: bool = False  # another process runs it (it holds the run lock), not us


@dataclass(frozen=True)
class Settings:
    """The knobs of the policy (from WatchConfig)."""

    failures: int = 3
    needed: int = 1  # vantage points that must agree
    vantages: tuple[str, ...] = ("local",)
    margin: float = 7200.0
    mode: Literal["auto", "approve"] = "auto"


@dataclass(frozen=True)
class Snapshot:
    """Everything ``run_cycle`` may look at, taken at one moment; never changed."""

    now: float
    sites: Mapping[str, str]  # site -> provider
    primary: str | None  # the last site seen as the one primary
    history: Mapping[tuple[ProbeKind, str, str], tuple[Observation, ...]]  # newest last
    notices: tuple[Notice, ...] = ()
    moves: tuple[Move, ...] = ()
    run: RunSummary | None = None
    settings: Settings = field(default_factory=Settings)
    lateness: float = 0.0  # how late the probes' latest looks started (the worst)

    def looks(self, kind: ProbeKind, target: str, vantage: str) -> tuple[Observation, ...]:
        """The recent looks of one probe, newest last."""
        return self.history.get((kind, target, vantage), ())

    def latest(self, kind: ProbeKind, target: str) -> Observation | None:
        """The newest look of a kind at a target, from any vantage point."""
        found = [o for (k, t, _v), looks in self.history.items() if k == kind and t == target
                 for o in looks[-1:]]
        return max(found, key=lambda o: o.at, default=None)


@dataclass(frozen=True)
class Decision:
    """What one cycle decided, in a sentence, and what the controller must do about it."""

    action: Action
    sentence: str
    move: Move | None = None  # prepare/start/propose: the move (new or known)
    run_id: str | None = None  # resume: the journal's run
    supersedes: str | None = None  # a scheduled move this one replaces

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data."""
        return {"action": self.action, "sentence": self.sentence,
                "move": None if self.move is None else self.move.__dict__,
                "run_id": self.run_id, "supersedes": self.supersedes}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _in(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


# -- what the looks say -------------------------------------------------------------

def down_at(snapshot: Snapshot, site: str) -> dict[str, Observation]:
    """The vantage points that call ``site`` down, each with its last failed look.

    A vantage point calls a site down when its last ``failures`` looks at the
    site's app all failed: one bad look, or looks that flap, do not.
    """
    n = snapshot.settings.failures
    out = {}
    for vantage in snapshot.settings.vantages:
        looks = snapshot.looks("http", site, vantage)[-n:]
        if len(looks) == n and not any(o.ok for o in looks):
            out[vantage] = looks[-1]
    return out


def is_down(snapshot: Snapshot, site: str) -> bool:
    """Whether a quorum of vantage points calls ``site`` down."""
    return len(down_at(snapshot, site)) >= snapshot.settings.needed


def refusal_notice(looks: Sequence[Observation], failures: int, provider: str) -> Notice | None:
    """A notice heard from the provider's API: ``failures`` looks in a row refused us.

    Refused credentials or a blocked account are how a provider ends service
    without a letter; the deadline is now, when the last look confirmed it (the
    first refusal may be minutes old at a long API interval, and a notice that
    old would be refused as a replay).
    """
    last = list(looks)[-failures:]
    if len(last) < failures or any(o.status != "refused" for o in last):
        return None
    return Notice(provider, last[-1].at + last[-1].seconds, "api",
                  f"the {provider} API refused the account: {last[-1].detail}",
                  received=last[-1].at, reference=f"api:{provider}")


def _standby_for(snapshot: Snapshot, primary: str) -> str | None:
    """The best site to take over: a standby at another provider whose app answers."""
    candidates = []
    for site, provider in snapshot.sites.items():
        if site == primary:
            continue
        db = snapshot.latest("database", site)
        if db is None or not db.ok or db.facts.get("role") != "standby":
            continue
        other_provider = provider != snapshot.sites.get(primary)
        app_up = not is_down(snapshot, site)
        candidates.append((other_provider, app_up, site))
    if not candidates:
        return None
    best = max(candidates)
    return best[2] if best[1] else None


def _new_move(snapshot: Snapshot, kind: MoveKind, primary: str, target: str, reason: str,
              due: float, notice: Notice | None, state: MoveState) -> Move:
    seed = f"{kind}|{primary}|{target}|{snapshot.now}|{notice.id if notice else ''}"
    return Move(hashlib.sha256(seed.encode()).hexdigest()[:8], kind, primary, target,
                snapshot.sites[primary], reason, snapshot.now, due, state,
                notice_id=notice.id if notice else None,
                needs_approval=notice is not None and notice.source == "mailbox")


def _cooling(snapshot: Snapshot, move: Move) -> bool:
    """Whether the engine refused the move's plan a moment ago (ask again a little later)."""
    return move.refused_at is not None and snapshot.now - move.refused_at < REFUSAL_PAUSE


def _go(snapshot: Snapshot, move: Move, sentence: str,
        supersedes: str | None = None) -> Decision:
    """Start ``move`` (auto, or approved), or propose it (approve mode, or a letter's)."""
    if _cooling(snapshot, move):
        ago = snapshot.now - (move.refused_at or 0.0)
        return Decision("none", f"{sentence}; the engine refused the {move.kind} {ago:.1f}s "
                        f"ago ({move.refusal}); asking again shortly", move,
                        supersedes=supersedes)
    approval = snapshot.settings.mode == "approve" or move.needs_approval
    if approval and move.approved is None:
        if move.state == "proposed":
            return Decision("none", f"{sentence}; waiting for approval: failover approve "
                            f"{move.id}", move)
        return Decision("propose", f"{sentence}; proposed, waiting for approval: failover "
                        f"approve {move.id}", replace(move, state="proposed"),
                        supersedes=supersedes)
    return Decision("start", f"{sentence}; starting {move.kind} {move.from_site} -> "
                    f"{move.to_site} (move {move.id})", replace(move, state="started"),
                    supersedes=supersedes)


# -- the cycle ------------------------------------------------------------------------

def run_cycle(snapshot: Snapshot) -> Decision:
    """Decide what to do now; the sentence says why, whatever the answer."""
    run = snapshot.run
    if run is not None and run.outcome == "running":
        where = " in another process (it holds the run lock)" if run.elsewhere else ""
        what = (f"run {run.id} ({run.kind} {run.from_site} -> {run.to_site})" if run.id
                else "a run")
        return Decision("none", f"{what} is under way{where}; waiting for it")
    if run is not None:
        return _unfinished(snapshot, run)
    primary = snapshot.primary
    if primary is None:
        return Decision("none", "no site is known as the primary yet; watching")
    active = [m for m in snapshot.moves if m.active and m.provider == snapshot.sites[primary]
              and m.from_site == primary]
    if is_down(snapshot, primary):
        if snapshot.lateness > BLIND_LATENESS:
            return Decision("none", f"{primary} looks down, but the controller's own looks "
                            f"start {snapshot.lateness:.1f}s late (it is overloaded): its "
                            "timeouts are no evidence; not failing over")
        return _emergency(snapshot, primary, active)
    # An emergency that did not happen (the primary came back before its promote
    # started) is dropped: an old approval must not start it at the next outage.
    stale = next((m for m in active if m.kind == "promote" and m.state != "started"), None)
    if stale is not None:
        return Decision("none", f"{primary} answers again: promote {stale.id} is dropped",
                        supersedes=stale.id)
    notices = [n for n in snapshot.notices if n.provider == snapshot.sites[primary]]
    if notices or active:
        return _planned(snapshot, primary, notices, active)
    return Decision("none", _all_well(snapshot, primary))


def _unfinished(snapshot: Snapshot, run: RunSummary) -> Decision:
    what = f"run {run.id} ({run.kind} {run.from_site} -> {run.to_site})"
    if run.kind == "prepare" and run.outcome == "failed":
        # Its steps are the move's first ones: the move repeats them. Left
        # unfinished, it would block every other plan, the emergency's too.
        return Decision("abandon", f"{what} failed ({run.error}); abandoning it: the move "
                        "itself repeats the preparation", run_id=run.id)
    if run.outcome == "interrupted":
        return Decision("resume", f"{what} was interrupted; resuming it from the journal",
                        run_id=run.id)
    if run.attempts >= RESUME_ATTEMPTS:
        return Decision("none", f"{what} failed {run.attempts} times ({run.error}); an operator "
                        f"must look: failover status, then resume or failover abandon {run.id}")
    if run.ended is not None and snapshot.now - run.ended < RESUME_PAUSE:
        return Decision("none", f"{what} failed ({run.error}); trying again in "
                        f"{RESUME_PAUSE - (snapshot.now - run.ended):.0f}s")
    return Decision("resume", f"{what} failed ({run.error}); trying again (attempt "
                    f"{run.attempts + 1} of {RESUME_ATTEMPTS})", run_id=run.id)


def _emergency(snapshot: Snapshot, primary: str, active: list[Move]) -> Decision:
    down = down_at(snapshot, primary)
    last = max(down.values(), key=lambda o: o.at)
    why = (f"{primary} is down: {len(down)} of {len(snapshot.settings.vantages)} vantage "
           f"points saw {snapshot.settings.failures} failed looks in a row (last: "
           f"{last.detail})")
    promote = next((m for m in active if m.kind == "promote"), None)
    if promote is not None:
        return _go(snapshot, promote, why)
    target = _standby_for(snapshot, primary)
    if target is None:
        return Decision("none", f"{why}; no standby is ready to take over (none answers as a "
                        "standby with its app up): nothing to promote")
    # A switchover that was scheduled or proposed for a notice gives way: the
    # primary is gone, so only a promote can move now.
    replaced = next((m.id for m in active if m.state != "started"), None)
    move = _new_move(snapshot, "promote", primary, target, why, snapshot.now, None, "scheduled")
    return _go(snapshot, move, why, supersedes=replaced)


def _planned(snapshot: Snapshot, primary: str, notices: list[Notice],
             active: list[Move]) -> Decision:
    margin = snapshot.settings.margin
    first = min(notices, key=lambda n: n.deadline) if notices else None
    move = next((m for m in active if m.kind == "switchover"), None)
    if move is None and first is None:
        stray = active[0]
        return Decision("none", f"move {stray.id} ({stray.kind}) is {stray.state}; waiting")
    if move is None:
        assert first is not None
        target = _standby_for(snapshot, primary)
        count = f" ({len(notices)} notices)" if len(notices) > 1 else ""
        why = (f"{first.source} notice{count}: {first.provider} ends service at "
               f"{_when(first.deadline)}")
        if target is None:
            return Decision("none", f"{why}; no standby at another provider is ready: nothing "
                            "to move to yet")
        due = max(snapshot.now, first.deadline - margin)
        move = _new_move(snapshot, "switchover", primary, target, why, due, first, "scheduled")
        if due > snapshot.now:
            return Decision("prepare", f"{why}; switchover to {target} due at {_when(due)} "
                            f"(in {_in(due - snapshot.now)}, {_in(margin)} before the "
                            "deadline); preparing now", move)
        return _go(snapshot, move, f"{why}, in {_in(max(0.0, first.deadline - snapshot.now))}"
                   f" (less than the {_in(margin)} margin)")
    # A move exists for this provider: a second notice does not start a second one,
    # but an earlier deadline brings it forward.
    if first is not None and first.deadline - margin < move.due:
        move = replace(move, due=max(snapshot.now, first.deadline - margin))
    if move.state == "started":
        return Decision("none", f"move {move.id} ({move.kind} to {move.to_site}) has started",
                        move)
    if move.state == "prepared" and move.due > snapshot.now and _lost(snapshot, move.to_site):
        # Synchronous commits wait for a standby that is gone: every write would
        # hang until it came back (DESIGN.md). Back to asynchronous; prepare again later.
        return Decision("relax", f"{move.to_site} stopped answering while commits at "
                        f"{primary} wait for it (prepared for move {move.id}); making them "
                        "asynchronous again", move)
    if move.due > snapshot.now and move.state != "proposed":
        if move.state == "scheduled" and _cooling(snapshot, move):
            return Decision("none", f"{move.reason}; the engine refused to prepare "
                            f"({move.refusal}); asking again shortly", move)
        if move.state == "scheduled":
            return Decision("prepare", f"{move.reason}; preparing the switchover to "
                            f"{move.to_site} due at {_when(move.due)}", move)
        return Decision("none", f"{move.reason}; switchover to {move.to_site} "
                        f"{move.state}, due at {_when(move.due)} (in "
                        f"{_in(move.due - snapshot.now)})", move)
    return _go(snapshot, move, f"{move.reason}; the switchover to {move.to_site} is due")


def _lost(snapshot: Snapshot, site: str) -> bool:
    """Whether a site's database failed its last ``failures`` looks (from any vantage point)."""
    looks = sorted((o for (k, t, _v), h in snapshot.history.items()
                    if k == "database" and t == site for o in h), key=lambda o: o.at)
    last = looks[-snapshot.settings.failures:]
    return len(last) == snapshot.settings.failures and not any(o.ok for o in last)


def _all_well(snapshot: Snapshot, primary: str) -> str:
    parts = []
    for site in snapshot.sites:
        vantages = snapshot.settings.vantages
        up = sum(1 for v in vantages if (looks := snapshot.looks("http", site, v))
                 and looks[-1].ok)
        db = snapshot.latest("database", site)
        role = ("not yet probed" if db is None else db.facts.get("role", "?") if db.ok
                else "unreachable")
        parts.append(f"{site} ({role}) app up at {up}/{len(vantages)}")
    return f"all well: primary {primary}; " + "; ".join(parts)
