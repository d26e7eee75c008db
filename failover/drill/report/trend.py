"""The drills kept, over time: a text listing and a trend chart (RTO, write unavailability,
lost writes per drill), both pure functions of the history's entries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from failover.drill.history import HistoryEntry
from failover.drill.report.fmt import fmt

OUTCOME_COLORS = {"passed": "tab:green", "failed": "tab:red", "aborted": "tab:orange",
                  "error": "tab:gray"}


def render_history(entries: Sequence[HistoryEntry]) -> str:
    """One line a drill, oldest first: when, what, how it went, its figures."""
    head = (f"{'started (UTC)':<20} {'scenario':<20} {'trigger':<12} {'outcome':<8} "
            f"{'RTO':>8} {'no write':>9} {'lost':>10} failed back")
    lines = [head]
    for e in entries:
        lost = "-" if e.error else f"{e.lost_writes}/{e.acked_writes}"
        lines.append(
            f"{e.started:%Y-%m-%d %H:%M:%S} {e.scenario:<20} {e.trigger:<12} {e.outcome:<8} "
            f"{fmt(e.rto_seconds, 's'):>8} "
            f"{'-' if e.error else fmt(e.write_unavailable_seconds, 's'):>9} {lost:>10} "
            f"{fmt(e.failed_back)}")
        why = e.aborted or e.error
        if why:
            lines.append(f"{'':<20} {why}")
    return "\n".join(lines)


def _figure(entry: HistoryEntry, value: float | int | None) -> float:
    """A figure to plot; NaN (a gap) when it was not measured."""
    return math.nan if entry.error is not None or value is None else float(value)


def render_trend_png(entries: Sequence[HistoryEntry], path: Path) -> None:
    """RTO, write unavailability and lost writes per drill, as a PNG at ``path``."""
    fig = Figure(figsize=(10, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to the figure: no pyplot, no global backend
    axes = fig.subplots(3, 1, sharex=True)
    xs = list(range(1, len(entries) + 1))
    colors = [OUTCOME_COLORS[e.outcome] for e in entries]
    rows = [
        ("RTO (s)", [_figure(e, e.rto_seconds) for e in entries]),
        ("write unavailable (s)", [_figure(e, e.write_unavailable_seconds) for e in entries]),
        ("lost writes", [_figure(e, e.lost_writes) for e in entries]),
    ]
    for ax, (label, values) in zip(axes, rows, strict=True):
        if label == "lost writes":
            ax.bar(xs, [0.0 if math.isnan(v) else v for v in values], color=colors)
        else:
            ax.plot(xs, values, color="lightgray", linewidth=1, zorder=1)
            ax.scatter(xs, values, c=colors, zorder=2)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    for outcome, color in OUTCOME_COLORS.items():
        if any(e.outcome == outcome for e in entries):
            axes[0].scatter([], [], c=color, label=outcome)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")
    last = axes[-1]
    last.set_xticks(xs, [f"{e.started:%m-%d %H:%M}\n{e.scenario}" for e in entries],
                    fontsize="x-small", rotation=30 if len(entries) > 6 else 0)
    last.set_xlim(0.5, len(entries) + 0.5)
    fig.suptitle(f"{len(entries)} drill{'s' if len(entries) != 1 else ''}, "
                 f"{sum(e.passed for e in entries)} passed", fontweight="bold")
    fig.savefig(path, format="png")
