"""The evidence document as Markdown, its chart a linked image beside it."""

from __future__ import annotations

from failover.drill.report.fmt import table
from failover.evidence.document import Document


def render_markdown(document: Document) -> str:
    """The document as Markdown (GitHub's dialect: pipe tables)."""
    out = [f"# {document.title}", ""]
    for paragraph in document.lead:
        out += [paragraph, ""]
    for section in document.sections:
        out += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            out += [paragraph, ""]
        if section.image:
            out += [f"![{section.title}]({section.image})", ""]
        if section.table is not None:
            out += [*table(section.table.header, section.table.rows), ""]
        if section.items:
            out += [*(f"- {item}" for item in section.items), ""]
        for note in section.notes:
            out += [note, ""]
    return "\n".join(out).rstrip() + "\n"
