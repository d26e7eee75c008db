"""The drill as a Markdown report, for on-call and SRE readers."""

from __future__ import annotations

from failover.drill.report.fmt import (
    at,
    errors,
    failback,
    fmt,
    headline,
    more,
    run_line,
    table,
    unit_of,
    verdict_word,
)
from failover.drill.results import DrillReport, StepTiming

MD_LOST_IDS = 20  # the summary shows fewer, report.json has them all


def _share(value: float) -> str:
    return f"{value:.0%}"


def render_markdown(report: DrillReport, png_name: str | None) -> str:
    """The drill as a Markdown report for on-call and SRE readers (``png_name``: the image)."""
    out = [
        f"# {headline(report, '→')} — {verdict_word(report)}",
        "",
        f"Started {report.started or '-'}, fault injected at {report.fault_at or '-'}. "
        f"Deployment `{report.deployment or '-'}`. Engine: {run_line(report.run)}. "
        "All times are seconds since the fault.",
        "",
        "## Verdict",
        "",
    ]
    out += table(
        ("Objective", "Limit", "Measured", "Met"),
        ((v.objective, fmt(v.limit, unit_of(v.objective), 2),
          fmt(v.measured, unit_of(v.objective), 2), "yes" if v.met else "**no**")
         for v in report.verdicts),
    )
    out += ["", "## Figures", ""]
    out += table(("Figure", "Value"), (
        ("RTO (first acknowledged write at the new primary)", fmt(report.rto_seconds, "s", 2)),
        ("Write unavailability (total)", fmt(report.write_unavailable_seconds, "s", 2)),
        ("Longest write outage", fmt(report.longest_write_outage_seconds, "s", 2)),
        ("Detection", fmt(report.detection_seconds, "s", 2)),
        ("DNS switch", fmt(report.dns_switch_seconds, "s", 2)),
        ("Acknowledged writes", fmt(report.acked_writes)),
        ("Lost writes", fmt(report.lost_writes)),
        ("Acknowledged media", fmt(report.acked_media)),
        ("Lost media", fmt(report.lost_media)),
        ("Split-brain writes (acknowledged by the old primary after the promotion)",
         fmt(report.split_brain_writes)),
        ("Requests", fmt(report.requests)),
        ("Errors by cause", errors(report.errors_by_cause)),
        ("Failback", failback(report.failback)),
    ))
    out += _ids("Lost write ids", report.lost_write_ids)
    out += _ids("Split-brain write ids", report.split_brain_write_ids)
    out += ["", "## Steps", "", *_steps(report.steps)]
    warnings = report.run.warnings if report.run else ()
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    out += ["", "## Timeline", ""]
    if png_name:
        out += [f"![Traffic, errors and engine steps around the fault]({png_name})", ""]
    events = sorted(report.timeline, key=lambda e: e.at)
    out += [f"- `{at(e.at)}` {e.source or '-'}: {e.event}" for e in events] or ["No events."]
    workload = report.workload
    out += ["", "## Workload", ""]
    out += table(("Setting", "Value"), (
        ("Rate (requests/s)", fmt(workload.rate)),
        ("Users", fmt(workload.users)),
        ("Write share", _share(workload.write_share)),
        ("Media share", _share(workload.media_share)),
    ))
    if report.run is not None and report.run.id:
        out += ["", f"Engine run id `{report.run.id}`: `failover status` shows its journal."]
    return "\n".join(out) + "\n"


def _ids(label: str, ids: tuple[str, ...]) -> list[str]:
    """A paragraph naming up to MD_LOST_IDS write ids; nothing when there are none."""
    if not ids:
        return []
    return ["", f"{label}: " + more([f"`{i}`" for i in ids], MD_LOST_IDS)
            + (" (all of them are in report.json)" if len(ids) > MD_LOST_IDS else "")]


def _steps(steps: tuple[StepTiming, ...]) -> list[str]:
    """The engine's steps as a table, then what each failed step ended with."""
    if not steps:
        return ["The engine ran no steps."]
    out = table(("#", "Action", "Started", "Seconds", "Outcome"), (
        (s.index, f"`{s.action}`", at(s.started, 2), fmt(s.seconds, "", 2), s.outcome or "-")
        for s in steps))
    return [*out, "", *(f"Step {s.index} `{s.action}` ended with: {s.error}"
                        for s in steps if s.error)]
