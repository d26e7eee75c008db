"""A drill's last phase: put the lab back so that the next drill starts clean.

The scenario repairs what it broke, the old site is rebuilt as a standby of
the new primary, a move the drill left unfinished is finished, and (unless
told not to) the primary moves back. It runs whatever happened before, even
when the drill itself failed, and reports instead of raising.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from failover.drill.results import Failback
from failover.engine.executor import execute, run_lock, unfinished_run
from failover.exceptions import FailoverError, StepFailed
from failover.state import open_store

if TYPE_CHECKING:  # the runner calls this module: only its type is needed here
    from failover.drill.runner import Drill


def withdraw_notices(drill: Drill) -> None:
    """Withdraw the drill's notice if no move answered it (the drill ended before its move)."""
    store = open_store(drill.deployment.config)
    for notice in store.withdraw_drill_notices(f"drill {drill.scenario.name} ended"):
        drill.note("failback", f"notice {notice} withdrawn: no move answered it")


def fail_back(drill: Drill) -> Failback:
    """Rebuild the old site as a standby; unless told not to, move the primary back."""
    t0 = time.monotonic()
    done: list[str] = []
    old, new = drill.from_site, drill.to_site
    try:
        withdraw_notices(drill)
        drill.scenario.repair(drill)
        new_primary = primary_now(drill)
        for line in drill.faults.restore_site(old, new_primary):
            drill.note("failback", line)
            done.append(line)
        run = unfinished_run(drill.deployment)
        if run is not None and run.plan.kind == "rebuild":
            # A rebuild that failed is not finished by repeating it: the lab goes back
            # to its own sites, and the spare is cleared below.
            drill.deployment.journal.ended(run.id, "abandoned", "drill failback")
            drill.note("failback", f"rebuild run {run.id} abandoned")
            run = None
        if run is not None:
            # The drill's move did not finish: finish it, as an SRE would.
            drill.note("failback", f"resuming run {run.id} ({run.plan.kind} to "
                       f"{run.plan.to_site})")
            with run_lock(drill.deployment):
                execute(drill.deployment, run.plan, resume=run,
                        progress=lambda m: drill.say(f"engine: {m.strip()}"))
            new_primary = primary_now(drill)
        if drill.options.failback or new_primary == old:
            done += move_back(drill)
    except FailoverError as exc:
        drill.note("failback", f"failed: {exc}")
        return Failback(False, round(time.monotonic() - t0, 2), f"failed: {exc}", tuple(done))
    detail = "; ".join(done[-1:]) if drill.options.failback else \
        f"--no-failback: {old} rebuilt as a standby, {new} stays primary"
    return Failback(True, round(time.monotonic() - t0, 2), detail, tuple(done))


def move_back(drill: Drill) -> list[str]:
    """The primary back at the drill's old site (if it is not), then the scenario's teardown.

    The last part of a fail back; on its own, a Chaos Toolkit experiment's rollback.
    """
    old, done = drill.from_site, []
    new_primary = primary_now(drill)
    if new_primary != old:
        back = drill.move("switchover", old)
        if back is None or back.outcome != "ok":
            raise StepFailed(f"the switchover back to {old} did not finish; "
                             "see failover status")
        done.append(f"switchover {new_primary} -> {old} ok")
    drill.scenario.teardown(drill)
    return done


def primary_now(drill: Drill) -> str:
    """The site the old one must follow: the new primary, or itself if nothing moved."""
    view = drill.deployment.observe().sites[drill.to_site]
    return drill.to_site if view.role == "primary" else drill.from_site
