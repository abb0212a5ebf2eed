"""Comparison tables (Markdown, CSV, LaTeX, terminal), figures and the HTML report.

`build_report(run_dirs, out_dir)` writes everything; `table_rows(run_dirs)` + `format_table(rows)`
print the table in the terminal (`harness run`, `make compare`).
"""

from harness.report.build import build_report, table_rows, write_report
from harness.report.published import load_published
from harness.report.runs import ReportError, RunResult, discover_runs, load_run
from harness.report.table import (
    COLUMNS,
    Row,
    Stat,
    format_samples,
    format_table,
    method_label,
    summary_row,
    to_csv,
    to_latex,
    to_markdown,
)

__all__ = [
    "COLUMNS", "ReportError", "Row", "RunResult", "Stat", "build_report", "discover_runs", "format_samples",
    "format_table", "load_published", "load_run", "method_label", "summary_row", "table_rows", "to_csv", "to_latex",
    "to_markdown", "write_report",
]
