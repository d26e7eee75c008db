"""How the report's renderers write figures, times and the run as text.

Any figure may be None (not measured, not applicable): it renders as "-"
and never raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from failover.drill.results import DrillReport, Failback, RunSummary


def fmt(value: object, unit: str = "", digits: int = 1) -> str:
    """A figure as text: "-" for None, floats to ``digits`` places, then the unit."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        text = f"{value:.{digits}f}"
    elif isinstance(value, int):
        text = str(value)
    else:
        return str(value)
    return f"{text} {unit}" if unit else text


def at(value: float | None, digits: int = 1) -> str:
    """A time on the drill's timeline, signed: "+7.0 s", "-3.0 s"."""
    return "-" if value is None else f"{value:+.{digits}f} s"


def number(value: object) -> float | None:
    """``value`` as a finite float, or None for anything else (None, NaN, text, a bool)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def unit_of(objective: str) -> str:
    """The unit an objective is measured in, from its name (``rto_seconds`` -> s)."""
    if objective.endswith("_seconds"):
        return "s"
    if objective.endswith("_writes"):
        return "writes"
    return ""


def more(items: Sequence[object], shown: int) -> str:
    """The first ``shown`` items joined, with "and N more" for the rest."""
    text = ", ".join(str(i) for i in items[:shown])
    rest = len(items) - shown
    return f"{text} and {rest} more" if rest > 0 else text


def errors(causes: Mapping[str, int]) -> str:
    """Errors by cause, most frequent first: "read-only 5, timeout 3"."""
    ranked = sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{cause} {count}" for cause, count in ranked) or "none"


def verdict_word(report: DrillReport) -> str:
    """PASS when every objective was met, else FAIL."""
    return "PASS" if report.objectives_met else "FAIL"


def headline(report: DrillReport, arrow: str = "->") -> str:
    """"Drill <scenario>: <from> -> <to>"."""
    return f"Drill {report.scenario}: {report.from_site} {arrow} {report.to_site}"


def failback(done: Failback | None) -> str:
    """How the fail back went, in a few words."""
    if done is None:
        return "-"
    suffix = f" ({done.detail})" if done.detail else ""
    if done.done:
        return f"done in {fmt(done.seconds, 's')}{suffix}"
    return f"not done{suffix}"


def run_line(run: RunSummary | None) -> str:
    """The engine's run: "switchover r-abc: ok"."""
    if run is None:
        return "no engine run"
    return f"{run.kind or 'run'} {run.id or '-'}: {run.outcome or '-'}"


def cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
