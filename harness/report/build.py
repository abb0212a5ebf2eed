"""`harness report`: every output of the report from a list of run directories."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from harness.report import plots
from harness.report.external import load_external, parse_external
from harness.report.html import plain_table, provenance_list, render_html
from harness.report.oracle import oracle_rows, oracle_table
from harness.report.provenance import provenance
from harness.report.published import load_published
from harness.report.runs import ReportError, RunResult, discover_runs, load_run
from harness.report.table import (
    Row,
    arrange,
    csv_safe,
    no_tags,
    rows_from_runs,
    to_csv,
    to_latex,
    to_markdown,
)
from harness.report.tasks import task_table
from harness.stages import atomic_write_bytes, atomic_write_text

TITLE = "DataComp harness report"
FIGURES = (  # (id, caption); the first two captions are written from what the figure draws
    ("average_vs_size", plots.average_vs_size_caption),
    ("aggregates", plots.aggregate_bars_caption),
    ("task_heatmap", "Main metric of every task for every run (mean over seeds; grey = not evaluated); "
                     "the table beside it gives the values and each task's chance level."),
    ("oracle", "Tiny world only: precision and clean recall against the oracle noise labels, and the fraction of "
               "each noise type each filter removed."),
)


def _markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def cell(c: object) -> str:  # headers hold method names too (the per-task table)
        return no_tags(str(c)).replace("|", "\\|")

    return "\n".join(["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(map(cell, line)) + " |" for line in body)]) + "\n"


def _csv(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_safe(c) for c in row] for row in body)  # no formula runs from a name
    return buf.getvalue()


def _runs_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Which run directories fed which row, with the expression the selection recorded."""
    header = ["Method", "Scale", "Seed", "Samples", "Expression", "Run directory"]
    body = []
    for row in rows:
        for run in row.runs:
            body.append([row.method, row.scale, "" if run.seed is None else str(run.seed),
                         "" if run.samples is None else str(run.samples), _expression(run), str(run.path)])
    return header, body


def _expression(run: RunResult) -> str:
    path = run.path / "subset.json"
    if path.is_file():
        try:
            return str(json.loads(path.read_text(encoding="utf-8")).get("expression") or run.filter)
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ReportError(f"{path}: not a JSON object ({exc})") from exc
    return run.filter


def table_rows(
    run_dirs: Sequence[Path],
    scale: str | None = None,
    include_published: bool = False,
    published_csv: Path | None = None,
    external: Sequence[str] = (),
) -> list[Row]:
    """The table's rows for these run directories (a directory above runs is searched for them),
    plus runs evaluated elsewhere given as "DIR=LABEL[@SCALE]" (see harness.report.external)."""
    runs = [load_run(p) for p in discover_runs(list(run_dirs))] if run_dirs else []
    runs += [load_external(*parse_external(e)) for e in external]
    published = load_published(published_csv) if include_published else []
    rows = rows_from_runs(runs)
    for row in rows:  # an outside run is named by its label as written, not parsed as a filter expression
        if row.runs and row.runs[0].label:
            row.method = row.runs[0].label
    return arrange(rows, published, scale)


def build_report(
    run_dirs: list[Path],
    out_dir: Path,
    scale: str | None = None,
    include_published: bool = True,
    published_csv: Path | None = None,
    external: Sequence[str] = (),
) -> dict[str, Path]:
    """Write the table (table.md/.csv/.tex), figures (plots/*.png), the oracle table on the tiny
    world (oracle.csv), report.md and the self-contained report.html into `out_dir`.
    Returns the written files by name: markdown, csv, latex (the table), html, report_md,
    oracle_csv (tiny world only), tasks_csv (when runs have per-task results), plot_<figure id>
    (figures that had data). `external`: runs evaluated elsewhere, "DIR=LABEL[@SCALE]"."""
    return write_report(table_rows(run_dirs, scale, include_published, published_csv, external), out_dir, scale)


def write_report(rows: Sequence[Row], out_dir: Path, scale: str | None = None) -> dict[str, Path]:
    """build_report's writing half, for callers that already hold the rows (the CLI prints them too)."""
    if not rows:
        raise ReportError(f"nothing to report: no runs{f' at scale {scale!r}' if scale else ''} and no published rows")
    user_rows = [r for r in rows if not r.published]
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}

    def write(name: str, rel: str, data: str | bytes) -> None:
        path = out_dir / rel
        (atomic_write_bytes if isinstance(data, bytes) else atomic_write_text)(path, data)
        written[name] = path

    table_md = to_markdown(rows)
    write("markdown", "table.md", table_md)
    write("csv", "table.csv", to_csv(rows))
    write("latex", "table.tex", to_latex(rows))

    orows, noise_types = oracle_rows(user_rows)
    o_header, o_body = oracle_table(orows, noise_types)
    if orows:
        write("oracle_csv", "oracle.csv", _csv(o_header, o_body))

    drawn = {
        "average_vs_size": plots.average_vs_size(rows),
        "aggregates": plots.aggregate_bars(rows),
        "task_heatmap": plots.task_heatmap(user_rows),
        "oracle": plots.oracle_figure(orows, noise_types),
    }
    figures = [(fid, cap if isinstance(cap, str) else cap(rows), drawn[fid]) for fid, cap in FIGURES
               if drawn[fid] is not None]
    for fid, _, png in figures:
        write(f"plot_{fid}", f"plots/{fid}.png", png)

    t_header, t_body, t_notes = task_table(user_rows)
    if t_body:
        write("tasks_csv", "tasks.csv", _csv(t_header, t_body))
    prov = provenance([run for r in user_rows for run in r.runs])

    r_header, r_body = _runs_table(user_rows)
    md = [f"# {TITLE}", "", "## Comparison", "", table_md]
    sections = []
    if orows:
        md += ["## Filters against the oracle noise labels (tiny world)", "", _markdown_table(o_header, o_body)]
        sections.append(("Filters against the oracle noise labels (tiny world)",
                         plain_table(o_header, o_body, "oracle")))
    if figures:
        md += ["## Figures", ""] + [f"![{cap}](plots/{fid}.png)\n\n{cap}\n" for fid, cap, _ in figures]
    beside = {}
    if t_body:
        md += ["## Per-task results", "", _markdown_table(t_header, t_body), *(f"- {n}" for n in t_notes), ""]
        notes = '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in t_notes) + "</ul>"
        table = plain_table(t_header, t_body, "tasks") + notes
        if "task_heatmap" in drawn and drawn["task_heatmap"] is not None:
            beside["task_heatmap"] = table
        else:
            sections.append(("Per-task results", table))
    if r_body:
        md += ["## Runs", "", _markdown_table(r_header, r_body)]
        sections.append(("Runs", plain_table(r_header, r_body, "runs")))
    md += ["## Provenance", "", *(f"- **{k}**: {v}" for k, v in prov), ""]
    write("report_md", "report.md", "\n".join(md))
    write("html", "report.html", render_html(TITLE, rows, figures, sections, beside=beside,
                                             closing=[("Provenance", provenance_list(prov))]))
    return written
