"""The evidence's chart: RTO, write unavailability and lost writes of each drill in the period."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from failover.drill.history import HistoryEntry
from failover.evidence.document import verdict

VERDICT_COLORS = {"PASS": "tab:green", "FAIL": "tab:red", "ABORTED": "tab:gray",
                  "ERROR": "tab:gray"}
BAR = 0.38  # width of each of the two bars a drill gets in the upper panel


def render_chart(drills: Sequence[HistoryEntry], rto_seconds: float, rpo_writes: int,
                 path: Path) -> None:
    """Each drill's figures against the objectives, as a PNG at ``path``."""
    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to the figure: no pyplot, no global backend
    seconds, lost = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    xs = list(range(len(drills)))
    if not drills:
        seconds.text(0.5, 0.5, "no drill in the period", transform=seconds.transAxes,
                     ha="center", va="center", color="gray", fontsize="large")
    rto = [d.rto_seconds or 0.0 for d in drills]
    seconds.bar([x - BAR / 2 for x in xs], rto, width=BAR, color="tab:blue", label="RTO")
    seconds.bar([x + BAR / 2 for x in xs], [d.write_unavailable_seconds or 0.0 for d in drills],
                width=BAR, color="tab:cyan", label="write unavailability")
    seconds.axhline(rto_seconds, color="black", linestyle="--", linewidth=1,
                    label=f"RTO objective ({rto_seconds:g} s)")
    top = max([rto_seconds, *rto, *(d.write_unavailable_seconds or 0.0 for d in drills)])
    for x, d in zip(xs, drills, strict=True):
        word = verdict(d)
        note = word
        if d.error is not None:
            note += "\nno figures"
        elif d.rto_seconds is None:
            note += "\nno recovery"
        seconds.text(x, top * 1.04, note, ha="center", va="bottom", fontsize="small",
                     fontweight="bold", color=VERDICT_COLORS[word])
    seconds.set_ylim(0, top * 1.25 or 1.0)
    seconds.set_ylabel("seconds")
    seconds.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")

    lost.bar(xs, [d.lost_writes for d in drills], width=BAR * 2, color="tab:red",
             label="lost writes")
    for x, d in zip(xs, drills, strict=True):  # a zero must read as measured, not missing
        lost.text(x, d.lost_writes, "-" if d.error is not None else str(d.lost_writes),
                  ha="center", va="bottom", fontsize="small")
    lost.axhline(rpo_writes, color="black", linestyle="--", linewidth=1,
                 label=f"RPO objective ({rpo_writes} writes)")
    lost.set_ylim(0, max([rpo_writes, *(d.lost_writes for d in drills)]) * 1.25 + 1)
    lost.set_ylabel("acknowledged writes lost")
    lost.yaxis.set_major_locator(MaxNLocator(integer=True))
    lost.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")
    lost.set_xticks(xs, [f"{d.started:%m-%d %H:%M}\n{d.scenario}" for d in drills],
                    fontsize="x-small", rotation=30, ha="right")
    lost.set_xlim(-0.6, max(len(drills), 1) - 0.4)
    for ax in (seconds, lost):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Drills in the period: figures against the objectives", fontweight="bold")
    fig.savefig(path, format="png")
