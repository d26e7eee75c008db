"""A drill's report on disk: report.json, report.md and timeline.png in one directory."""

from __future__ import annotations

import json
from pathlib import Path

from failover.drill.report.markdown import render_markdown
from failover.drill.report.png import render_timeline_png
from failover.drill.results import DrillReport


def write_reports(report: DrillReport, directory: Path) -> dict[str, Path]:
    """Write report.json, report.md and timeline.png into ``directory``; returns their paths.

    The JSON goes first, so that a drill's figures survive even if drawing fails.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md",
             "png": directory / "timeline.png"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(render_markdown(report, paths["png"].name))
    render_timeline_png(report, paths["png"])
    return paths
