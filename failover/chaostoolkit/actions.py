"""The experiment's method (the drill's fault) and its rollback (the fail back).

``run_drill`` is the drill itself, told not to move the primary back: the
workload runs across it, the fault is injected, the engine moves, the
figures are measured against the objectives, the old site is repaired and
rebuilt as a standby, and the drill is kept in the history (trigger
``chaostoolkit``). ``fail_back`` moves the primary home and tears down what
the scenario made; if the drill could not even repair the old site, it runs
the whole fail back again. Both are safe to run when nothing happened.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

from failover.chaostoolkit import session
from failover.drill.failback import fail_back as full_fail_back
from failover.drill.failback import move_back, withdraw_notices
from failover.drill.recorded import fail_back_orphans, history_of, report_dir_for, run_recorded
from failover.drill.runner import Drill, DrillOptions
from failover.drill.workload import WorkloadSpec
from failover.engine.executor import one_line
from failover.exceptions import StepFailed

log = logging.getLogger("chaostoolkit")  # extensions log where chaos run logs
DEFAULTS = DrillOptions()


def say(line: str) -> None:
    """The drill's progress, in chaos run's log."""
    log.info("failover: %s", line)


def run_drill(scenario: str, notice_seconds: float = DEFAULTS.notice_seconds,
              warmup_seconds: float = DEFAULTS.warmup_seconds,
              settle_seconds: float = DEFAULTS.settle_seconds,
              rate: float = DEFAULTS.workload.rate, users: int = DEFAULTS.workload.users,
              config: str | None = None, state_dir: str | None = None) -> dict[str, Any]:
    """Inject ``scenario``'s fault under load and measure; the primary stays where it moved.

    Returns the drill's figures and verdicts, which the journal keeps.
    """
    now = session.begin()
    try:
        deployment = session.deployment(config, state_dir)
        options = DrillOptions(
            scenario=scenario, notice_seconds=notice_seconds, warmup_seconds=warmup_seconds,
            settle_seconds=settle_seconds, failback=False,
            workload=WorkloadSpec(rate=rate, users=users))
        history = history_of(deployment)
        fail_back_orphans(deployment, history, say)  # a drill whose runner died, first
        now.drill = Drill(deployment, options, say)
        report_dir = report_dir_for(deployment, scenario)
        now.recorded = run_recorded(now.drill, trigger="chaostoolkit", report_dir=report_dir,
                                    history=history)
    except BaseException as exc:  # the probes and the rollback after it must know
        now.error = one_line(exc)
        raise
    report, entry = now.recorded.report, now.recorded.entry
    return {
        "drill": entry.id, "scenario": report.scenario, "from_site": report.from_site,
        "to_site": report.to_site, "objectives_met": report.objectives_met,
        "aborted": entry.aborted, "rto_seconds": report.rto_seconds,
        "write_unavailable_seconds": report.write_unavailable_seconds,
        "lost_writes": report.lost_writes, "acked_writes": report.acked_writes,
        "verdicts": [asdict(v) for v in report.verdicts],
        "repaired": None if report.failback is None else report.failback.detail,
        "report_dir": str(report_dir),
    }


def fail_back() -> str:
    """Move the primary back to where the fault found it; what was done, in a line."""
    now = session.current()
    if now is None or now.drill is None or not now.drill.fault_at:
        return "no fault was injected in this run: nothing to roll back"
    drill = now.drill
    withdraw_notices(drill)  # an interrupted method may leave its notice unanswered
    if drill.failback is not None and drill.failback.done:
        done = move_back(drill)
        return "; ".join(done) or f"{drill.from_site} is the primary already"
    # The drill could not repair the old site (or broke first): the whole fail back again.
    drill.options = replace(drill.options, failback=True)
    again = full_fail_back(drill)
    if not again.done:
        raise StepFailed(f"the fail back did not finish: {again.detail}")
    return again.detail
