"""A drill run and kept: begun in the history before its fault, ended there with its report.

Every way a drill is started (``failover drill``, the controller's schedule,
a Chaos Toolkit experiment) goes through ``run_recorded``, so the history
holds every drill, and a drill whose runner dies mid-way is still known to
be under way (with its scenario and sites). Whoever runs drills next (the
controller as it starts, ``failover drill``) first fails such a drill back
from what was recorded: ``fail_back_orphans``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from failover.drill import report as reports
from failover.drill.failback import fail_back
from failover.drill.history import DrillHistory, HistoryEntry, UnderWay, history_path
from failover.drill.results import DrillReport
from failover.drill.runner import Drill, DrillOptions, DrillRefused
from failover.engine.deployment import Deployment
from failover.engine.executor import one_line
from failover.exceptions import FailoverError


@dataclass(frozen=True)
class Recorded:
    """A drill that ended: its report, the files written, its row in the history."""

    report: DrillReport
    paths: dict[str, Path]
    entry: HistoryEntry


def history_of(deployment: Deployment) -> DrillHistory:
    """The drill history of a deployment (beside its journal)."""
    return DrillHistory(history_path(deployment.config.journal))


def report_dir_for(deployment: Deployment, scenario: str) -> Path:
    """Where a drill begun now writes its reports: drills/<time>-<scenario> beside the config."""
    return (Path(deployment.source).parent / "drills" /
            f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{scenario}")


def run_recorded(drill: Drill, *, trigger: str, report_dir: Path,
                 history: DrillHistory | None = None) -> Recorded:
    """Run ``drill``, write its reports into ``report_dir`` and record it as ``trigger``'s.

    Refused while another drill is under way. A drill that raises is recorded
    too (with its error and whether it failed back), then the error goes on.
    """
    history = history or history_of(drill.deployment)
    busy = next((d for d in history.under_way() if d.owner_alive), None)
    if busy is not None:
        raise DrillRefused(f"drill {busy.id} ({busy.scenario}, {busy.trigger}, pid "
                           f"{busy.owner_pid}) is under way since {busy.started:%H:%M:%S} "
                           "UTC: one drill at a time")
    begun = history.begin(drill.scenario.name, trigger=trigger, from_site=drill.from_site,
                          standby_site=drill.standby_site, to_site=drill.to_site)
    try:
        report = drill.run()
    except BaseException as exc:
        history.fail(begun, error=one_line(exc),
                     failed_back=drill.failback is not None and drill.failback.done)
        raise
    try:
        paths = reports.write_reports(report, report_dir)
    finally:  # the figures are kept even when the files could not be written
        entry = history.add(report, trigger=trigger, report_dir=report_dir,
                            aborted=drill.aborted, begun=begun)
    return Recorded(report, paths, entry)


def fail_back_orphans(deployment: Deployment, history: DrillHistory,
                      progress: Callable[[str], None]) -> list[HistoryEntry]:
    """Fail back every drill whose runner died mid-way; each is ended in the history.

    Such a drill is claimed first (so two processes never fail one drill back
    twice), then failed back as its own runner would have: the scenario's
    repair, the old site rebuilt as a standby, a move left unfinished
    finished, the primary moved back.
    """
    ended: list[HistoryEntry] = []
    under_way = history.under_way()
    if any(d.owner_alive for d in under_way):
        return ended  # a drill runs (or is being failed back): never beside it
    for left in under_way:
        if not history.claim(left):
            continue
        progress(f"drill {left.id} ({left.scenario}, {left.trigger}) was left under way by "
                 f"pid {left.owner_pid}; failing it back from the history")
        ended.append(_fail_back_one(deployment, history, left, progress))
    return ended


def _fail_back_one(deployment: Deployment, history: DrillHistory, left: UnderWay,
                   progress: Callable[[str], None]) -> HistoryEntry:
    why = f"its runner (pid {left.owner_pid}) stopped mid-drill"
    try:
        drill = Drill(deployment, DrillOptions(scenario=left.scenario), progress,
                      sites=(left.from_site, left.standby_site, left.to_site))
    except FailoverError as exc:  # no lab, an unknown scenario: an operator must look
        progress(f"drill {left.id} cannot be failed back here: {one_line(exc)}")
        return history.fail(left.id, aborted=why, failed_back=False,
                            error=f"not failed back: {one_line(exc)}")
    result = fail_back(drill)
    progress(f"drill {left.id} failed back: {result.detail}")
    return history.fail(left.id, aborted=f"{why}; failed back from the history",
                        failed_back=result.done)
