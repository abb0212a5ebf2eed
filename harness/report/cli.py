"""Arguments and handler of `harness report`, for harness/cli.py to mount as a subcommand:

    p = sub.add_parser("report", help=...); add_arguments(p); p.set_defaults(func=main)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.build import table_rows, write_report
from harness.report.runs import ReportError
from harness.report.table import format_table

HELP = "comparison tables (md/csv/tex), figures and an HTML report from run directories"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=Path,
                        help="run directories, or directories searched below for them (e.g. runs/)")
    parser.add_argument("--external", action="append", default=[], metavar="DIR=LABEL[@SCALE]",
                        help="a run evaluated elsewhere (DataComp's eval_results.jsonl, optionally the subset "
                             ".npy and info.pkl in DIR), shown as LABEL (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="where the report is written")
    parser.add_argument("--scale", default=None, help="only this scale (default: every scale found)")
    parser.add_argument("--no-published", action="store_true", help="leave out the published rows")
    parser.add_argument("--published-csv", type=Path, default=None,
                        help="published results to compare with (default: baselines/published.csv)")


def main(args: argparse.Namespace) -> int:
    try:
        rows = table_rows(args.runs, scale=args.scale, include_published=not args.no_published,
                          published_csv=args.published_csv, external=args.external)
        written = write_report(rows, args.out, args.scale)
    except ReportError as exc:
        print(f"harness report: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows), end="")
    print(f"\nreport: {written['html']}\ntables: {written['markdown']}, {written['csv']}, {written['latex']}")
    return 0


if __name__ == "__main__":  # python -m harness.report.cli RUN... --out DIR
    _parser = argparse.ArgumentParser(prog="harness report", description=HELP)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
