"""The self-contained HTML report: tables and figures (PNG as base64 data URIs) in one file, no scripts."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from harness.report.table import COLUMNS, Row, footnotes, render_cells

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; }
th { border-bottom: 2px solid #444; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.published td { color: #555; font-style: italic; }
tr.scale-start td { border-top: 2px solid #444; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.notes { font-size: 0.85em; color: #444; }
code { background: #f4f4f4; padding: 0 0.2em; }
.beside { display: flex; gap: 1.5em; align-items: flex-start; }
.beside > figure { flex: 1 1 0; min-width: 0; margin-top: 0; }
.beside > div { flex: 0 1 auto; max-width: 62%; overflow-x: auto; }
.beside table { font-size: 0.8em; margin-top: 0; }
@media (max-width: 900px) { .beside { flex-direction: column; } .beside > div { max-width: 100%; } }
dl#provenance { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.9em; }
dl#provenance dt { font-weight: 600; }
dl#provenance dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
"""


def results_table(rows: Sequence[Row]) -> str:
    """The comparison table as HTML (bold <b>, underline <u>, published rows in italics)."""
    def cell(text: str, mark: int | None) -> str:
        text = html.escape(text)
        return f"<b>{text}</b>" if mark == 1 else f"<u>{text}</u>" if mark == 2 else text

    out = ['<table id="results">', "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
           + "</tr></thead>", "<tbody>"]
    previous = None
    for row, cells in zip(rows, render_cells(rows, cell), strict=True):
        classes = ["published"] if row.published else []
        if previous is not None and row.scale != previous:
            classes.append("scale-start")
        previous = row.scale
        attr = f' class="{" ".join(classes)}"' if classes else ""
        tds = "".join(f'<td class="num">{c}</td>' if j >= 4 else f"<td>{c}</td>" for j, c in enumerate(cells))
        out.append(f"<tr{attr}>{tds}</tr>")
    out.append("</tbody></table>")
    notes = footnotes(rows)
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(out)


def plain_table(header: Sequence[str], body: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in line) + "</tr>" for line in body)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>'


def provenance_list(lines: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in lines)
    return f'<dl id="provenance">{items}</dl>'


def render_html(
    title: str,
    rows: Sequence[Row],
    figures: Sequence[tuple[str, str, bytes]],           # (id, caption, png bytes)
    sections: Sequence[tuple[str, str]] = (),           # (heading, trusted HTML) after the table
    beside: dict[str, str] | None = None,               # figure id -> trusted HTML shown next to it
    closing: Sequence[tuple[str, str]] = (),            # (heading, trusted HTML) after the figures
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Comparison</h2>",
        results_table(rows),
    ]
    for heading, body in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", body]
    if figures:
        parts.append("<h2>Figures</h2>")
    for fig_id, caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        figure = (f'<figure id="fig-{fig_id}"><img data-plot="{fig_id}" alt="{html.escape(caption)}" '
                  f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        side = (beside or {}).get(fig_id)
        parts.append(f'<div class="beside">{figure}<div>{side}</div></div>' if side else figure)
    for heading, body in closing:
        parts += [f"<h2>{html.escape(heading)}</h2>", body]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
