"""The drill on one terminal screen: verdict, figures, run, fail back, where the files are."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from failover.drill.report.fmt import errors, failback, fmt, headline, more, run_line, unit_of
from failover.drill.results import DrillReport

WIDTH = 100  # columns of the terminal summary
SHOWN_WARNINGS = 3
SHOWN_LOST_IDS = 3  # in the summary; the Markdown shows more, report.json has them all


def _clip(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def render_summary(report: DrillReport, paths: Mapping[str, Path] | None = None) -> str:
    """The drill on one terminal screen: verdict, figures, run, failback, where the files are.

    At most ~25 lines of at most 100 columns; a path is never cut short, so a
    very long one may run past the width.
    """
    head = headline(report)
    if report.fault_at:
        head += f"   fault at {report.fault_at}"
    if report.objectives_met:
        verdict = "PASS: every objective met"
    else:
        failed = [v.objective for v in report.verdicts if not v.met]
        verdict = f"FAIL: {', '.join(failed) or 'objectives not met'}"
    lines = [head, verdict]
    for v in report.verdicts:
        unit = unit_of(v.objective)
        lines.append(
            f"  {'met   ' if v.met else 'MISSED'}  {v.objective:<14} "
            f"{fmt(v.measured, unit):>10}  (limit {fmt(v.limit, unit)})"
        )
    lines += [
        "",
        f"RTO {fmt(report.rto_seconds, 's')}"
        f"   writes unavailable {fmt(report.write_unavailable_seconds, 's')}"
        f" (longest {fmt(report.longest_write_outage_seconds, 's')})",
        f"detection {fmt(report.detection_seconds, 's')}"
        f"   DNS switch {fmt(report.dns_switch_seconds, 's')}",
        f"writes: {fmt(report.acked_writes)} acked, {fmt(report.lost_writes)} lost"
        f"   media: {fmt(report.acked_media)} acked, {fmt(report.lost_media)} lost"
        f"   split-brain writes: {fmt(report.split_brain_writes)}",
    ]
    if report.lost_write_ids:
        lines.append(f"  lost: {more(report.lost_write_ids, SHOWN_LOST_IDS)}")
    if report.split_brain_write_ids:
        lines.append(f"  split brain: {more(report.split_brain_write_ids, SHOWN_LOST_IDS)}")
    lines.append(f"requests {fmt(report.requests)}, errors: {errors(report.errors_by_cause)}")
    lines.append(f"engine: {run_line(report.run)}")
    warnings = report.run.warnings if report.run else ()
    lines += [f"  warning: {w}" for w in warnings[:SHOWN_WARNINGS]]
    if len(warnings) > SHOWN_WARNINGS:
        rest = len(warnings) - SHOWN_WARNINGS
        lines.append(f"  and {rest} more warning{'s' if rest > 1 else ''}")
    lines.append(f"failback: {failback(report.failback)}")
    lines = [_clip(line) for line in lines]
    if paths:  # not clipped: a path cut short cannot be opened
        lines.append("")
        lines += [f"{name:>9}: {path}" for name, path in paths.items()]
    return "\n".join(lines)
