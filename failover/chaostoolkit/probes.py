"""The experiment's steady state: the deployment whole, and the objectives kept.

``deployment_healthy`` asks the servers, before the fault and after it: one
primary, every other site a standby streaming from it, every DNS provider
answering it, no move left unfinished. ``figure`` and ``objectives_met`` read
what the method's drill measured; before any fault in this run there is no
outage to measure, so a figure is 0 and every objective holds. A drill that
broke, or could not start, measured nothing: its figures are -1 (outside
every tolerance) and its objectives are not met.
"""

from __future__ import annotations

import logging

from failover.chaostoolkit import session
from failover.engine.executor import unfinished_run
from failover.engine.status import deployment_status

log = logging.getLogger("chaostoolkit")  # extensions log where chaos run logs
NOT_MEASURED = -1.0


def deployment_healthy(config: str | None = None, state_dir: str | None = None) -> bool:
    """One primary, the other sites streaming from it, DNS answering it, no unfinished run."""
    found = session.deployment(config, state_dir)
    status = deployment_status(found)
    primary = status["primary"]
    problems = list(status["warnings"])
    problems += [f"{name} is {site['role']}, not a standby of {primary}"
                 for name, site in status["sites"].items()
                 if name != primary and (site["role"], site["upstream"]) != ("standby", primary)]
    if (run := unfinished_run(found)) is not None:
        problems.append(f"run {run.id} ({run.plan.kind} to {run.plan.to_site}) is unfinished")
    for problem in problems:
        log.warning("failover: %s", problem)
    return primary is not None and not problems


def figure(objective: str) -> float:
    """What the drill measured for ``objective`` (its verdict's figure), as a number.

    0 before any fault in this run, and when the objective did not apply to
    the drill (it gave no verdict); -1 when it was not measured (the drill
    broke, or the writes never came back) or is not a number.
    """
    now = session.current()
    if now is None:
        return 0.0
    if now.recorded is None:
        return NOT_MEASURED
    verdict = next((v for v in now.recorded.report.verdicts if v.objective == objective), None)
    if verdict is None:
        return 0.0
    measured = verdict.measured
    if isinstance(measured, bool) or not isinstance(measured, int | float):
        return NOT_MEASURED
    return float(measured)


def objectives_met() -> bool:
    """Every objective the drill was judged on was met, and it was not aborted."""
    now = session.current()
    if now is None:
        return True
    if now.recorded is None:
        log.warning("failover: the drill measured nothing: %s", now.error)
        return False
    report, entry = now.recorded.report, now.recorded.entry
    for verdict in report.verdicts:
        if not verdict.met:
            log.warning("failover: %s measured %s, limit %s", verdict.objective,
                        verdict.measured, verdict.limit)
    return report.objectives_met and entry.aborted is None
