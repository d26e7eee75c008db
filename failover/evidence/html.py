"""The evidence document as one self-contained HTML file: the chart is inside it.

A person files one file: the chart is embedded as a ``data:`` URI, the style
is inline, and nothing is fetched from anywhere. It prints on A4 as it reads
on screen.
"""

from __future__ import annotations

import base64
import re
from html import escape

from failover.evidence.document import VERDICT_WORDS, Document, Section

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1f23;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #1b1f23; padding-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.PASS { color: #116329; font-weight: bold; }
td.FAIL, td.ABORTED, td.ERROR { color: #a40e26; font-weight: bold; }
img { max-width: 100%; border: 1px solid #d0d7de; }
td.figure { white-space: nowrap; }
code, td.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""
VERDICTS = set(VERDICT_WORDS.values())
FIGURE = re.compile(r"-?[0-9.]+( s| writes)?|[0-9]+ of [0-9]+")


def render_html(document: Document, images: dict[str, bytes]) -> str:
    """The document as HTML; ``images`` maps an image's file name to its PNG bytes."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{escape(document.title)}</title>", f"<style>{STYLE}</style>", "</head>",
           "<body>", f"<h1>{escape(document.title)}</h1>"]
    out += [f"<p>{escape(p)}</p>" for p in document.lead]
    for section in document.sections:
        out += _section(section, images)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _section(section: Section, images: dict[str, bytes]) -> list[str]:
    out = [f"<h2>{escape(section.title)}</h2>"]
    out += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    if section.image:
        data = base64.b64encode(images[section.image]).decode("ascii")
        out.append(f'<img alt="{escape(section.title)}" src="data:image/png;base64,{data}">')
    if section.table is not None:
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in section.table.header)
                   + "</tr>")
        for row in section.table.rows:
            out.append("<tr>" + "".join(_cell(c) for c in row) + "</tr>")
        out.append("</table>")
    if section.items:
        out += ["<ul>", *(f"<li>{escape(i)}</li>" for i in section.items), "</ul>"]
    out += [f"<p>{escape(n)}</p>" for n in section.notes]
    return out


def _cell(text: str) -> str:
    """A cell; a verdict gets its colour, a checksum a fixed-width font, a figure one line."""
    if text in VERDICTS:
        return f'<td class="{text}">{text}</td>'
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return f'<td class="mono">{text}</td>'
    if FIGURE.fullmatch(text):
        return f'<td class="figure">{text}</td>'
    return f"<td>{escape(text)}</td>"
