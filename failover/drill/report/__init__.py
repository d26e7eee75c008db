"""A drill's report, rendered: a terminal summary, Markdown, a timeline image, and aggregates.

The report itself is a ``results.DrillReport``; everything here is a pure
function of it (or of an ``Aggregate`` of several) and touches nothing but
the files it is asked to write. One module a form: ``text`` (the terminal
summary), ``markdown``, ``png`` (the timeline image), ``files`` (all three
on disk), ``aggregate`` (repeated runs), with ``fmt`` the wording they share.
"""

from __future__ import annotations

from failover.drill.report.aggregate import (
    Aggregate,
    aggregate,
    render_aggregate,
    render_aggregate_markdown,
)
from failover.drill.report.files import write_reports
from failover.drill.report.markdown import render_markdown
from failover.drill.report.png import render_timeline_png
from failover.drill.report.text import render_summary

__all__ = [
    "Aggregate",
    "aggregate",
    "render_aggregate",
    "render_aggregate_markdown",
    "render_markdown",
    "render_summary",
    "render_timeline_png",
    "write_reports",
]
