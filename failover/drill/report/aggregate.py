"""Repeated runs of one drill (``--repeat``): each figure's median and worst, and the pass count."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from failover.drill.report.fmt import fmt, number, table
from failover.drill.results import DrillReport, jsonable

Figure = float | int | None

# The figures an aggregate of repeated runs reports: (the report's field, label, unit).
# Larger is worse for all of them except acked_writes.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("rto_seconds", "RTO", "s"),
    ("write_unavailable_seconds", "write unavailability", "s"),
    ("longest_write_outage_seconds", "longest write outage", "s"),
    ("detection_seconds", "detection", "s"),
    ("dns_switch_seconds", "DNS switch", "s"),
    ("lost_writes", "lost writes", ""),
    ("lost_media", "lost media", ""),
    ("split_brain_writes", "split-brain writes", ""),
    ("acked_writes", "acked writes", ""),
)
SMALLER_IS_WORSE = frozenset({"acked_writes"})


@dataclass(frozen=True)
class FigureSummary:
    """One figure over the runs: its median, its worst, and every run's value in run order."""

    median: Figure
    worst: Figure
    values: tuple[Figure, ...]


@dataclass(frozen=True)
class Aggregate:
    """Repeated runs of one drill, summarised."""

    scenario: str  # the scenarios' names, joined, should runs of several be aggregated
    repeat: int
    figures: Mapping[str, FigureSummary]  # by the report's field, in FIGURES' order
    objectives_met: bool
    runs_failed: int
    met_by_run: tuple[bool, ...]

    def to_dict(self) -> dict[str, Any]:
        """The aggregate as JSON-ready data (summary.json, without the runs)."""
        data: dict[str, Any] = jsonable(asdict(self))
        return data


def _summarise(key: str, values: tuple[Figure, ...]) -> FigureSummary:
    """Median and worst of one figure over runs (see ``aggregate`` for None)."""
    numbers = [x for x in values if x is not None and number(x) is not None]  # ints stay ints
    if key == "rto_seconds":
        # None is "never recovered": infinitely bad. The median is then taken over
        # every run, so it is a number only while more than half the runs recovered.
        ranked: list[float] = sorted(numbers) + [math.inf] * (len(values) - len(numbers))
        median = statistics.median(ranked) if ranked else math.inf
        worst = ranked[-1] if ranked else math.inf
        return FigureSummary(median if math.isfinite(median) else None,
                             worst if math.isfinite(worst) else None, values)
    if not numbers:
        return FigureSummary(None, None, values)
    worst_of = min if key in SMALLER_IS_WORSE else max
    return FigureSummary(statistics.median(numbers), worst_of(numbers), values)


def aggregate(reports: Sequence[DrillReport]) -> Aggregate:
    """Median and worst of each figure over the repeated runs of one drill.

    Worst is the largest value, except for acked_writes where it is the
    smallest. A None RTO means writes never recovered: it counts as infinitely
    long, so the worst RTO is then None, and the median is None unless more than
    half the runs recovered. For every other figure None means "not measured" or
    "not applicable" and is left out; ``values`` keeps every run's value, None
    included, in run order. Raises ValueError for an empty list: there is
    nothing to pass.
    """
    if not reports:
        raise ValueError("no drill reports to aggregate")
    met = tuple(r.objectives_met for r in reports)
    return Aggregate(
        scenario=", ".join(sorted({r.scenario for r in reports})),
        repeat=len(reports),
        figures={key: _summarise(key, tuple(getattr(r, key) for r in reports))
                 for key, _, _ in FIGURES},
        objectives_met=all(met),
        runs_failed=met.count(False),
        met_by_run=met,
    )


def _figure(value: Figure, unit: str, digits: int) -> str:
    """An aggregated figure: counts as whole numbers unless a median fell between two."""
    if not unit and isinstance(value, float) and value.is_integer():
        return fmt(int(value))
    return fmt(value, unit, digits)


def _pass_count(agg: Aggregate) -> str:
    return f"{agg.repeat - agg.runs_failed}/{agg.repeat} runs met the objectives"


def _never_recovered(agg: Aggregate) -> str | None:
    values = agg.figures["rto_seconds"].values
    never = sum(1 for v in values if v is None)
    return f"{never} of {len(values)} runs never recovered writes (RTO None)" if never else None


def _link(text: str, target: str) -> str:
    return f"[{text}](<{target}>)" if " " in target else f"[{text}]({target})"


def render_aggregate(agg: Aggregate) -> str:
    """Repeated runs as a terminal table: each figure's median and worst, and the pass count."""
    verdict = "PASS" if agg.objectives_met else "FAIL"
    lines = [f"Drill {agg.scenario} x{agg.repeat}: {verdict}, {_pass_count(agg)}",
             "", f"{'figure':<24}{'median':>12}{'worst':>12}"]
    for key, label, unit in FIGURES:
        figure = agg.figures[key]
        lines.append(f"{label:<24}{_figure(figure.median, unit, 1):>12}"
                     f"{_figure(figure.worst, unit, 1):>12}")
    never = _never_recovered(agg)
    if never:
        lines += ["", never]
    return "\n".join(lines)


def render_aggregate_markdown(agg: Aggregate, run_dirs: list[str]) -> str:
    """Repeated runs as Markdown: the figures table and a link to each run's report.md.

    ``run_dirs`` are in run order, relative to where this Markdown is written.
    """
    verdict = "PASS" if agg.objectives_met else "FAIL"
    out = [f"# Drill {agg.scenario}, {agg.repeat} runs — {verdict}", "",
           f"{_pass_count(agg)}.", ""]
    out += table(("Figure", "Median", "Worst", "Each run"), (
        (label, _figure(agg.figures[key].median, unit, 2),
         _figure(agg.figures[key].worst, unit, 2),
         ", ".join(_figure(v, unit, 2) for v in agg.figures[key].values))
        for key, label, unit in FIGURES))
    never = _never_recovered(agg)
    if never:
        out += ["", never + "."]
    met = agg.met_by_run
    out += ["", "## Runs", ""]
    for n, run_dir in enumerate(run_dirs):
        word = ("PASS" if met[n] else "FAIL") if n < len(met) else "?"
        out.append(f"{n + 1}. {_link(run_dir, run_dir.rstrip('/') + '/report.md')} — {word}")
    return "\n".join(out) + "\n"
