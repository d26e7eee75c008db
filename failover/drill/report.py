"""A drill's report, rendered: a terminal summary, Markdown, a timeline image, and aggregates.

Everything here is a pure function of the report dict the drill runner builds
(see ``render_summary`` for the fields read); nothing touches the lab. Times in
a report are seconds since the fault (t=0), so ``rto_seconds``,
``detection_seconds`` and ``dns_switch_seconds`` are also *when* those things
happened on the timeline. Any figure may be None (not measured, not
applicable); it renders as "-" and never raises.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Report = Mapping[str, Any]

WIDTH = 100  # columns of the terminal summary
SHOWN_WARNINGS = 3
SHOWN_LOST_IDS = 3  # in the summary; the Markdown shows more, report.json has them all
MD_LOST_IDS = 20
LABELLED_STEP = 0.5  # seconds: steps at least this long get their own row in the image

# The figures an aggregate of repeated runs reports: (key, label, unit).
# Larger is worse for all of them except acked_writes.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("rto_seconds", "RTO", "s"),
    ("write_unavailable_seconds", "write unavailability", "s"),
    ("longest_write_outage_seconds", "longest write outage", "s"),
    ("detection_seconds", "detection", "s"),
    ("dns_switch_seconds", "DNS switch", "s"),
    ("lost_writes", "lost writes", ""),
    ("lost_media", "lost media", ""),
    ("acked_writes", "acked writes", ""),
)
SMALLER_IS_WORSE = frozenset({"acked_writes"})


# -- formatting --------------------------------------------------------------------------------


def _fmt(value: object, unit: str = "", digits: int = 1) -> str:
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


def _at(value: object, digits: int = 1) -> str:
    """A time on the drill's timeline, signed: "+7.0 s", "-3.0 s"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:+.{digits}f} s"
    return "-"


def _unit(objective: str) -> str:
    """The unit an objective is measured in, from its name (``rto_seconds`` -> s)."""
    if objective.endswith("_seconds"):
        return "s"
    if objective.endswith("_writes"):
        return "writes"
    return ""


def _clip(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _more(items: Sequence[object], shown: int) -> str:
    """The first ``shown`` items joined, with "and N more" for the rest."""
    text = ", ".join(str(i) for i in items[:shown])
    rest = len(items) - shown
    return f"{text} and {rest} more" if rest > 0 else text


def _errors(report: Report) -> str:
    """Errors by cause, most frequent first: "read-only 5, timeout 3"."""
    causes: Mapping[str, Any] = report.get("errors_by_cause") or {}
    ranked = sorted(causes.items(), key=lambda kv: (-(kv[1] or 0), kv[0]))
    return ", ".join(f"{cause} {count}" for cause, count in ranked) or "none"


def _passed(report: Report) -> bool:
    """Whether every objective was met: every verdict, and the runner's own flag agree."""
    verdicts = report.get("verdicts") or []
    flag = report.get("objectives_met")
    if flag is False or not all(v.get("met") for v in verdicts):
        return False
    return bool(verdicts) or flag is True  # nothing judged and no flag is not a pass


def _verdict_word(report: Report) -> str:
    return "PASS" if _passed(report) else "FAIL"


def _failback(report: Report) -> str:
    failback = report.get("failback")
    if not failback:
        return "-"
    detail = failback.get("detail")
    suffix = f" ({detail})" if detail else ""
    if failback.get("done"):
        return f"done in {_fmt(failback.get('seconds'), 's')}{suffix}"
    return f"not done{suffix}"


def _run_line(report: Report) -> str:
    run = report.get("run")
    if not run:
        return "no engine run"
    return f"{run.get('kind') or 'run'} {run.get('id') or '-'}: {run.get('outcome') or '-'}"


def _warnings(report: Report) -> list[str]:
    run = report.get("run") or {}
    return [str(w) for w in run.get("warnings") or []]


# -- terminal summary --------------------------------------------------------------------------


def render_summary(report: Report, paths: Mapping[str, Path] | None = None) -> str:
    """The drill on one terminal screen: verdict, figures, run, failback, where the files are.

    At most ~25 lines of at most 100 columns; a path is never cut short, so a
    very long one may run past the width.
    """
    failed = [v for v in report.get("verdicts") or [] if not v.get("met")]
    head = f"Drill {report.get('scenario') or '?'}: " \
        f"{report.get('from_site') or '?'} -> {report.get('to_site') or '?'}"
    if report.get("fault_at"):
        head += f"   fault at {report['fault_at']}"
    if _passed(report):
        verdict = "PASS: every objective met"
    else:
        names = ", ".join(str(v.get("objective")) for v in failed) or "objectives not met"
        verdict = f"FAIL: {names}"
    lines = [head, verdict]
    for v in report.get("verdicts") or []:
        unit = _unit(str(v.get("objective")))
        lines.append(
            f"  {'met   ' if v.get('met') else 'MISSED'}  {v.get('objective')!s:<14} "
            f"{_fmt(v.get('measured'), unit):>10}  (limit {_fmt(v.get('limit'), unit)})"
        )
    lines += [
        "",
        f"RTO {_fmt(report.get('rto_seconds'), 's')}"
        f"   writes unavailable {_fmt(report.get('write_unavailable_seconds'), 's')}"
        f" (longest {_fmt(report.get('longest_write_outage_seconds'), 's')})",
        f"detection {_fmt(report.get('detection_seconds'), 's')}"
        f"   DNS switch {_fmt(report.get('dns_switch_seconds'), 's')}",
        f"writes: {_fmt(report.get('acked_writes'))} acked, {_fmt(report.get('lost_writes'))} lost"
        f"   media: {_fmt(report.get('acked_media'))} acked, {_fmt(report.get('lost_media'))} lost",
    ]
    lost_ids = report.get("lost_write_ids") or []
    if lost_ids:
        lines.append(f"  lost: {_more(lost_ids, SHOWN_LOST_IDS)}")
    lines.append(f"requests {_fmt(report.get('requests'))}, errors: {_errors(report)}")
    lines.append(f"engine: {_run_line(report)}")
    warnings = _warnings(report)
    for w in warnings[:SHOWN_WARNINGS]:
        lines.append(f"  warning: {w}")
    if len(warnings) > SHOWN_WARNINGS:
        rest = len(warnings) - SHOWN_WARNINGS
        lines.append(f"  and {rest} more warning{'s' if rest > 1 else ''}")
    lines.append(f"failback: {_failback(report)}")
    lines = [_clip(line) for line in lines]
    if paths:  # not clipped: a path cut short cannot be opened
        lines.append("")
        lines += [f"{name:>9}: {path}" for name, path in paths.items()]
    return "\n".join(lines)


# -- Markdown ----------------------------------------------------------------------------------


def _cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _link(text: str, target: str) -> str:
    return f"[{text}](<{target}>)" if " " in target else f"[{text}]({target})"


def render_markdown(report: Report, png_name: str | None) -> str:
    """The drill as a Markdown report for on-call and SRE readers (``png_name``: the image)."""
    run = report.get("run") or {}
    out = [
        f"# Drill {report.get('scenario') or '?'}: {report.get('from_site') or '?'} → "
        f"{report.get('to_site') or '?'} — {_verdict_word(report)}",
        "",
        f"Started {report.get('started') or '-'}, fault injected at "
        f"{report.get('fault_at') or '-'}. Deployment `{report.get('deployment') or '-'}`. "
        f"Engine: {_run_line(report)}. All times are seconds since the fault.",
        "",
        "## Verdict",
        "",
    ]
    out += _table(
        ("Objective", "Limit", "Measured", "Met"),
        ((v.get("objective"), _fmt(v.get("limit"), _unit(str(v.get("objective"))), 2),
          _fmt(v.get("measured"), _unit(str(v.get("objective"))), 2),
          "yes" if v.get("met") else "**no**")
         for v in report.get("verdicts") or []),
    )
    out += ["", "## Figures", ""]
    requests = report.get("requests")
    out += _table(("Figure", "Value"), (
        ("RTO (first acknowledged write at the new primary)", _fmt(report.get("rto_seconds"),
                                                                   "s", 2)),
        ("Write unavailability (total)", _fmt(report.get("write_unavailable_seconds"), "s", 2)),
        ("Longest write outage", _fmt(report.get("longest_write_outage_seconds"), "s", 2)),
        ("Detection", _fmt(report.get("detection_seconds"), "s", 2)),
        ("DNS switch", _fmt(report.get("dns_switch_seconds"), "s", 2)),
        ("Acknowledged writes", _fmt(report.get("acked_writes"))),
        ("Lost writes", _fmt(report.get("lost_writes"))),
        ("Acknowledged media", _fmt(report.get("acked_media"))),
        ("Lost media", _fmt(report.get("lost_media"))),
        ("Requests", _fmt(requests)),
        ("Errors by cause", _errors(report)),
        ("Failback", _failback(report)),
    ))
    lost_ids = report.get("lost_write_ids") or []
    if lost_ids:
        out += ["", "Lost write ids: " + _more([f"`{i}`" for i in lost_ids], MD_LOST_IDS)
                + (" (all of them are in report.json)" if len(lost_ids) > MD_LOST_IDS else "")]
    out += ["", "## Steps", ""]
    steps = report.get("steps") or []
    if steps:
        out += _table(("#", "Action", "Started", "Seconds", "Outcome"), (
            (s.get("index"), f"`{s.get('action')}`", _at(s.get("started"), 2),
             _fmt(s.get("seconds"), "", 2), s.get("outcome") or "-") for s in steps))
        out += [""] + [f"Step {s.get('index')} `{s.get('action')}` ended with: {s['error']}"
                       for s in steps if s.get("error")]
    else:
        out.append("The engine ran no steps.")
    warnings = _warnings(report)
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    notes = report.get("notes") or []
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if png_name:
        out += ["", "## Timeline", "", f"![Traffic, errors and engine steps around the fault]"
                f"({png_name})", ""]
    else:
        out += ["", "## Timeline", ""]
    events = sorted(report.get("timeline") or [], key=lambda e: (e.get("at") is None, e.get("at")))
    out += [f"- `{_at(e.get('at'))}` {e.get('source') or '-'}: {e.get('event')}" for e in events] \
        or ["No events."]
    workload = report.get("workload") or {}
    out += ["", "## Workload", ""]
    out += _table(("Setting", "Value"), (
        ("Rate (requests/s)", _fmt(workload.get("rate"))),
        ("Users", _fmt(workload.get("users"))),
        ("Write share", _share(workload.get("write_share"))),
        ("Media share", _share(workload.get("media_share"))),
    ))
    if run.get("id"):
        out += ["", f"Engine run id `{run['id']}`: `failover status` shows its journal."]
    return "\n".join(out) + "\n"


def _share(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.0%}"
    return "-"


# -- timeline image ----------------------------------------------------------------------------


def _counts(values: object, length: int) -> list[float]:
    """A per-bin series padded to ``length``, None counted as 0."""
    seq = list(values) if isinstance(values, list | tuple) else []
    return [float(v or 0) for v in seq] + [0.0] * (length - len(seq))


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _stack(ax: Axes, lefts: list[float], width: float, layers: list[tuple[str, list[float]]],
           colors: Sequence[str]) -> None:
    bottom = [0.0] * len(lefts)
    for (label, heights), color in zip(layers, colors, strict=False):
        ax.bar(lefts, heights, width=width, bottom=bottom, align="edge", label=label,
               color=color, linewidth=0)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]


def render_timeline_png(report: Report, path: Path) -> None:
    """Traffic, errors by cause and the engine's steps on one time axis, as a PNG at ``path``."""
    fig = Figure(figsize=(12, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to the figure: no pyplot, no global backend
    grid = fig.add_gridspec(3, 1, height_ratios=(3, 2, 1.6))
    traffic = fig.add_subplot(grid[0])
    errors = fig.add_subplot(grid[1], sharex=traffic)
    engine = fig.add_subplot(grid[2], sharex=traffic)

    series = report.get("series") or {}
    width = _number(series.get("bin_seconds")) or 1.0
    start = _number(series.get("start")) or 0.0
    causes: Mapping[str, Any] = series.get("errors") or {}
    arrays = [series.get("ok_writes"), series.get("ok_reads"), *causes.values()]
    bins = max((len(a) for a in arrays if isinstance(a, list | tuple)), default=0)
    lefts = [start + i * width for i in range(bins)]
    per_second = 1.0 / width
    _stack(traffic, lefts, width, [
        ("ok writes/s", [c * per_second for c in _counts(series.get("ok_writes"), bins)]),
        ("ok reads/s", [c * per_second for c in _counts(series.get("ok_reads"), bins)]),
    ], ("tab:blue", "tab:cyan"))
    traffic.set_ylabel("ok requests/s")
    palette = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
               "tab:gray")
    _stack(errors, lefts, width,
           [(cause, [c * per_second for c in _counts(causes[cause], bins)])
            for cause in sorted(causes)],
           [palette[i % len(palette)] for i in range(len(causes))])
    errors.set_ylabel("errors/s")
    if causes:
        errors.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small")
    else:
        errors.text(0.5, 0.5, "no errors", transform=errors.transAxes, ha="center",
                    va="center", color="gray")

    ends = _draw_steps(engine, report.get("steps") or [], start + bins * width)
    markers = [
        (0.0, "fault", "black", "-"),
        (_number(report.get("detection_seconds")), "detected", "tab:orange", "--"),
        (_number(report.get("dns_switch_seconds")), "DNS switched", "tab:purple", "--"),
        (_number(report.get("rto_seconds")),
         f"first write at {report.get('to_site') or 'new site'}", "tab:green", "--"),
    ]
    for at, label, color, style in markers:
        if at is None:
            continue
        for ax in (traffic, errors, engine):
            ax.axvline(at, color=color, linestyle=style, linewidth=1.2,
                       label=f"{label} ({_at(at)})" if ax is traffic else None)
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
        f"Drill {report.get('scenario') or '?'}: {report.get('from_site') or '?'} → "
        f"{report.get('to_site') or '?'} — {_verdict_word(report)}   "
        f"(RTO {_fmt(report.get('rto_seconds'), 's')}, lost writes "
        f"{_fmt(report.get('lost_writes'))})",
        fontsize="large", fontweight="bold",
    )
    fig.savefig(path, format="png")


def _draw_steps(ax: Axes, steps: Sequence[Mapping[str, Any]], right: float) -> list[float]:
    """The engine's steps as bars: a labelled row for each long one, one row for the rest.

    A step that never ended is drawn hatched up to ``right`` (the end of the
    traffic series). Returns the times the bars end, to fit the x axis to them.
    """
    colors = {"ok": "tab:green", "failed": "tab:red"}
    bars: list[tuple[Mapping[str, Any], float, float, bool]] = []  # step, start, end, unfinished
    for step in steps:
        began = _number(step.get("started"))
        if began is None:
            continue
        ended = _number(step.get("ended"))
        took = _number(step.get("seconds"))
        if ended is None and took is not None:
            ended = began + took
        bars.append((step, began, max(right, began) if ended is None else ended, ended is None))
    rows: list[str] = []
    placed: list[tuple[int, bool]] = []  # (row, labelled) for each bar
    for step, began, ended, unfinished in bars:
        if unfinished or ended - began >= LABELLED_STEP:
            rows.append(f"{step.get('index', '?')} {step.get('action') or '?'}")
            placed.append((len(rows) - 1, True))
        else:
            placed.append((-1, False))  # the shared row, numbered once all are known
    if any(not labelled for _, labelled in placed):
        rows.append("other steps")
    for (step, began, ended, unfinished), (row, labelled) in zip(bars, placed, strict=True):
        y = row if labelled else len(rows) - 1
        ax.barh(y, max(ended - began, 0.05), left=began, height=0.6,
                color=colors.get(str(step.get("outcome")), "tab:gray"),
                hatch="//" if unfinished else None, edgecolor="white", linewidth=0.5)
        if labelled:
            label = "never ended" if unfinished else _fmt(ended - began, "s")
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


# -- files -------------------------------------------------------------------------------------


def write_reports(report: Report, directory: Path) -> dict[str, Path]:
    """Write report.json, report.md and timeline.png into ``directory``; returns their paths.

    The JSON goes first, so that a drill's figures survive even if drawing fails.
    Values JSON cannot hold (a Path, a datetime) are written as strings.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md",
             "png": directory / "timeline.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["markdown"].write_text(render_markdown(report, paths["png"].name))
    render_timeline_png(report, paths["png"])
    return paths


# -- repeated runs -----------------------------------------------------------------------------


def _summarise(key: str, values: list[Any]) -> dict[str, Any]:
    """Median and worst of one figure over runs (see ``aggregate`` for None)."""
    numbers = [x for x in values if _number(x) is not None]  # ints stay ints
    if key == "rto_seconds":
        # None is "never recovered": infinitely bad. The median is then taken over
        # every run, so it is a number only while more than half the runs recovered.
        ranked = sorted(numbers) + [math.inf] * (len(values) - len(numbers))
        median = statistics.median(ranked) if ranked else math.inf
        worst = ranked[-1] if ranked else math.inf
        return {"median": median if math.isfinite(median) else None,
                "worst": worst if math.isfinite(worst) else None, "values": values}
    if not numbers:
        return {"median": None, "worst": None, "values": values}
    worst = min(numbers) if key in SMALLER_IS_WORSE else max(numbers)
    return {"median": statistics.median(numbers), "worst": worst, "values": values}


def aggregate(reports: Sequence[Report]) -> dict[str, Any]:
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
    met = [_passed(r) for r in reports]
    scenarios = sorted({str(r.get("scenario")) for r in reports})
    return {
        "scenario": ", ".join(scenarios),
        "repeat": len(reports),
        "figures": {key: _summarise(key, [r.get(key) for r in reports])
                    for key, _, _ in FIGURES},
        "objectives_met": all(met),
        "runs_failed": met.count(False),
        "met_by_run": met,
    }


def _figure(value: object, unit: str, digits: int) -> str:
    """An aggregated figure: counts as whole numbers unless a median fell between two."""
    if not unit and isinstance(value, float) and value.is_integer():
        return _fmt(int(value))
    return _fmt(value, unit, digits)


def _pass_count(agg: Mapping[str, Any]) -> str:
    repeat = int(agg.get("repeat") or 0)
    return f"{repeat - int(agg.get('runs_failed') or 0)}/{repeat} runs met the objectives"


def _never_recovered(agg: Mapping[str, Any]) -> str | None:
    values = (agg.get("figures") or {}).get("rto_seconds", {}).get("values") or []
    never = sum(1 for v in values if v is None)
    return f"{never} of {len(values)} runs never recovered writes (RTO None)" if never else None


def render_aggregate(agg: Mapping[str, Any]) -> str:
    """Repeated runs as a terminal table: each figure's median and worst, and the pass count."""
    verdict = "PASS" if agg.get("objectives_met") else "FAIL"
    lines = [f"Drill {agg.get('scenario')} x{agg.get('repeat')}: {verdict}, {_pass_count(agg)}",
             "", f"{'figure':<24}{'median':>12}{'worst':>12}"]
    figures = agg.get("figures") or {}
    for key, label, unit in FIGURES:
        figure = figures.get(key) or {}
        lines.append(f"{label:<24}{_figure(figure.get('median'), unit, 1):>12}"
                     f"{_figure(figure.get('worst'), unit, 1):>12}")
    never = _never_recovered(agg)
    if never:
        lines += ["", never]
    return "\n".join(lines)


def render_aggregate_markdown(agg: Mapping[str, Any], run_dirs: list[str]) -> str:
    """Repeated runs as Markdown: the figures table and a link to each run's report.md.

    ``run_dirs`` are in run order, relative to where this Markdown is written.
    """
    verdict = "PASS" if agg.get("objectives_met") else "FAIL"
    out = [f"# Drill {agg.get('scenario')}, {agg.get('repeat')} runs — {verdict}", "",
           f"{_pass_count(agg)}.", ""]
    figures = agg.get("figures") or {}
    out += _table(("Figure", "Median", "Worst", "Each run"), (
        (label, _figure((figures.get(key) or {}).get("median"), unit, 2),
         _figure((figures.get(key) or {}).get("worst"), unit, 2),
         ", ".join(_figure(v, unit, 2) for v in (figures.get(key) or {}).get("values") or []))
        for key, label, unit in FIGURES))
    never = _never_recovered(agg)
    if never:
        out += ["", never + "."]
    met: list[Any] = list(agg.get("met_by_run") or [])
    out += ["", "## Runs", ""]
    for n, run_dir in enumerate(run_dirs):
        word = ("PASS" if met[n] else "FAIL") if n < len(met) else "?"
        out.append(f"{n + 1}. {_link(run_dir, run_dir.rstrip('/') + '/report.md')} — {word}")
    return "\n".join(out) + "\n"
