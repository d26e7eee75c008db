"""The evidence on disk: Markdown, a self-contained HTML file, and the chart beside them."""

from __future__ import annotations

from pathlib import Path

from failover.evidence.chart import render_chart
from failover.evidence.document import build, day
from failover.evidence.gather import Evidence
from failover.evidence.html import render_html
from failover.evidence.markdown import render_markdown


def write_evidence(evidence: Evidence, directory: Path) -> dict[str, Path]:
    """Write exit-plan-evidence-<date>.md, .html and .png into ``directory``; their paths.

    The date is the report's: a second report on the same day replaces the first.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    stem = f"exit-plan-evidence-{day(evidence.generated)}"
    paths = {kind: directory / f"{stem}.{kind}" for kind in ("md", "html", "png")}
    render_chart(evidence.drills, evidence.rto_seconds, evidence.rpo_writes, paths["png"])
    document = build(evidence, paths["png"].name)
    paths["md"].write_text(render_markdown(document))
    paths["html"].write_text(render_html(document, {paths["png"].name:
                                                    paths["png"].read_bytes()}))
    return paths
