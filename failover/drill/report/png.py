"""The drill's timeline image: traffic, errors by cause and the engine's steps on one axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from failover.drill.report.fmt import at, fmt, headline, number, verdict_word
from failover.drill.results import DrillReport, Series, StepTiming

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LABELLED_STEP = 0.5  # seconds: steps at least this long get their own row in the image
ERROR_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:gray")


def _per_second(counts: Sequence[int], length: int, bin_seconds: float) -> list[float]:
    """A per-bin series as a rate, padded with zeros to ``length`` bins."""
    return [c / bin_seconds for c in counts] + [0.0] * (length - len(counts))


def _stack(ax: Axes, lefts: list[float], width: float, layers: list[tuple[str, list[float]]],
           colors: Sequence[str]) -> None:
    bottom = [0.0] * len(lefts)
    for (label, heights), color in zip(layers, colors, strict=False):
        ax.bar(lefts, heights, width=width, bottom=bottom, align="edge", label=label,
               color=color, linewidth=0)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]


def render_timeline_png(report: DrillReport, path: Path) -> None:
    """Traffic, errors by cause and the engine's steps on one time axis, as a PNG at ``path``."""
    # matplotlib costs a process some 40 MiB: imported when a drill draws, not by the
    # controller that only might run one.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to the figure: no pyplot, no global backend
    grid = fig.add_gridspec(3, 1, height_ratios=(3, 2, 1.6))
    traffic = fig.add_subplot(grid[0])
    errors = fig.add_subplot(grid[1], sharex=traffic)
    engine = fig.add_subplot(grid[2], sharex=traffic)

    series = report.series or Series(1.0, 0.0, (), (), {})
    width = number(series.bin_seconds) or 1.0
    start = number(series.start) or 0.0
    causes = series.errors
    bins = max(len(a) for a in (series.ok_writes, series.ok_reads, *causes.values()))
    lefts = [start + i * width for i in range(bins)]
    _stack(traffic, lefts, width, [
        ("ok writes/s", _per_second(series.ok_writes, bins, width)),
        ("ok reads/s", _per_second(series.ok_reads, bins, width)),
    ], ("tab:blue", "tab:cyan"))
    traffic.set_ylabel("ok requests/s")
    _stack(errors, lefts, width,
           [(cause, _per_second(causes[cause], bins, width)) for cause in sorted(causes)],
           [ERROR_COLORS[i % len(ERROR_COLORS)] for i in range(len(causes))])
    errors.set_ylabel("errors/s")
    if causes:
        errors.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")
    else:
        errors.text(0.5, 0.5, "no errors", transform=errors.transAxes, ha="center",
                    va="center", color="gray")

    ends = _draw_steps(engine, report.steps, start + bins * width)
    markers = [
        (0.0, "fault", "black", "-"),
        (report.detection_seconds, "detected", "tab:orange", "--"),
        (report.dns_switch_seconds, "DNS switched", "tab:purple", "--"),
        (report.rto_seconds, f"first write at {report.to_site or 'new site'}", "tab:green", "--"),
    ]
    for when, label, color, style in markers:
        if when is None:
            continue
        for ax in (traffic, errors, engine):
            ax.axvline(when, color=color, linestyle=style, linewidth=1.2,
                       label=f"{label} ({at(when)})" if ax is traffic else None)
    traffic.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")

    xs = [0.0, *lefts, start + bins * width, *ends,
          *(m[0] for m in markers if m[0] is not None)]
    lo, hi = min(xs), max(xs)
    pad = max((hi - lo) * 0.02, 0.5)
    engine.set_xlim(lo - pad, hi + pad)
    for ax in (traffic, errors):
        ax.tick_params(labelbottom=False)
    for ax in (traffic, errors, engine):
        ax.grid(axis="x", alpha=0.3)
    engine.set_xlabel("seconds since the fault")
    fig.suptitle(
        f"{headline(report, '→')} — {verdict_word(report)}   "
        f"(RTO {fmt(report.rto_seconds, 's')}, lost writes {fmt(report.lost_writes)})",
        fontsize="large", fontweight="bold",
    )
    fig.savefig(path, format="png")


def _draw_steps(ax: Axes, steps: Sequence[StepTiming], right: float) -> list[float]:
    """The engine's steps as bars: a labelled row for each long one, one row for the rest.

    A step that never ended is drawn hatched up to ``right`` (the end of the
    traffic series). Returns the times the bars end, to fit the x axis to them.
    """
    colors = {"ok": "tab:green", "failed": "tab:red"}
    bars: list[tuple[StepTiming, float, float, bool]] = []  # step, start, end, unfinished
    for step in steps:
        if step.started is None:
            continue
        ended = step.ended
        if ended is None and step.seconds is not None:
            ended = step.started + step.seconds
        bars.append((step, step.started, max(right, step.started) if ended is None else ended,
                     ended is None))
    rows: list[str] = []
    placed: list[tuple[int, bool]] = []  # (row, labelled) for each bar
    for step, began, ended, unfinished in bars:
        if unfinished or ended - began >= LABELLED_STEP:
            rows.append(f"{step.index} {step.action or '?'}")
            placed.append((len(rows) - 1, True))
        else:
            placed.append((-1, False))  # the shared row, numbered once all are known
    if any(not labelled for _, labelled in placed):
        rows.append("other steps")
    for (step, began, ended, unfinished), (row, labelled) in zip(bars, placed, strict=True):
        y = row if labelled else len(rows) - 1
        ax.barh(y, max(ended - began, 0.05), left=began, height=0.6,
                color=colors.get(step.outcome, "tab:gray"),
                hatch="//" if unfinished else None, edgecolor="white", linewidth=0.5)
        if labelled:
            label = "never ended" if unfinished else fmt(ended - began, "s")
            ax.text(ended, y, f" {label}", va="center", fontsize="x-small")
    if rows:
        ax.set_yticks(range(len(rows)), rows, fontsize="x-small")
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first step on top
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "the engine ran no steps", transform=ax.transAxes, ha="center",
                va="center", color="gray")
    ax.set_ylabel("engine")
    return [end for _, _, end, _ in bars]
