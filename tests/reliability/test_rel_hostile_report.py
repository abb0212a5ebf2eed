"""Issue 19, items 5 and 6 (and the matplotlib case of item 4): names that carry markup, formulas or
mathtext reach the report as text, and `harness compare` still writes its report when another process
holds one of its runs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))  # report_fixtures: fabricated run dirs
from report_fixtures import tasks_for, write_run  # noqa: E402

from harness.report import build_report  # noqa: E402
from harness.report.table import csv_safe  # noqa: E402

SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil.example","click")'
MATHTEXT = r"uids:/data/$\frac{$.npy"  # an unbalanced mathtext formula: matplotlib would raise on it

@pytest.fixture(autouse=True)
def _cli_log_handlers():
    """harness.cli.main adds a stderr handler per call; drop them so a later test's captured stderr
    does not receive a closed stream's logging errors."""
    import logging as _logging

    yield
    _logging.getLogger("harness").handlers.clear()



@pytest.fixture
def hostile_runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [
        write_run(root, SCRIPT, "tiny", 0, 100, tasks_for(0.2, 0.0)),
        write_run(root, FORMULA, "tiny", 0, 120, tasks_for(0.21, 0.0)),
        write_run(root, "@SUM(A1:A9)", "tiny", 0, 130, tasks_for(0.22, 0.0)),
        write_run(root, MATHTEXT.replace("/", "_"), "tiny", 0, 140, tasks_for(0.23, 0.0)),
        write_run(root, "no_filter", "tiny", 0, 150, tasks_for(-0.5, 0.0)),  # negative numbers stay numbers
    ]


def test_report_with_hostile_names_is_written_and_inert(hostile_runs, tmp_path):
    written = build_report(hostile_runs, tmp_path / "report", scale="tiny", include_published=False)
    md = Path(written["markdown"]).read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    report_md = Path(written["report_md"]).read_text()
    assert "<script>" not in report_md
    assert "<script>alert" not in Path(written["html"]).read_text()
    # the mathtext name did not abort the figures or the page
    assert Path(written["html"]).stat().st_size > 0 and "plot_aggregates" in written
    rows = list(csv.reader(io.StringIO(Path(written["csv"]).read_text())))
    header, body = rows[0], rows[1:]
    methods = [r[header.index("Method")] for r in body]
    filters = [r[header.index("Filter")] for r in body]
    assert "'" + FORMULA in methods and "'" + FORMULA in filters and "'@SUM(A1:A9)" in methods
    assert not any(c.startswith(("=", "+", "@")) for r in body for c in r)
    avg = [r[header.index("Average")] for r in body if r[header.index("Filter")] == "no_filter"]
    assert float(avg[0]) < 0 and avg[0].startswith("-")  # a negative number is left as a number


def test_csv_safe_neutralises_text_only():
    assert csv_safe("=1+2") == "'=1+2"
    assert csv_safe("+cmd") == "'+cmd" and csv_safe("-cmd|' /C calc'!A0") == "'-cmd|' /C calc'!A0"
    assert csv_safe("@SUM(A1)") == "'@SUM(A1)" and csv_safe("\t=1") == "'\t=1"
    assert csv_safe("-0.25") == "-0.25" and csv_safe("+1e3") == "+1e3" and csv_safe(-3) == -3
    assert csv_safe("HYPE 10%") == "HYPE 10%" and csv_safe("") == ""


def test_plot_labels_are_plain_text():
    """A label with unbalanced $...$ would make matplotlib's mathtext raise while saving the figure."""
    from harness.report import plots
    from harness.report.table import Row, Stat

    row = Row(method=r"$\frac{$ x", scale="tiny", filter="f", samples=Stat(100.0, 0.0, 1),
              values={c: Stat(0.3, 0.0, 1) for c in plots.METRIC_COLUMNS}, uniform=True)
    png = plots.aggregate_bars([row])
    assert png is not None and png.startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------------------
# item 6: harness compare and locked runs


class _Holder:
    """Another process holding a run directory's lock until released."""

    def __init__(self, run: Path):
        run.mkdir(parents=True, exist_ok=True)
        code = ("import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
                "print('locked', flush=True); sys.stdin.read()")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(run / ".lock")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _fake_run(template: Path):
    """harness.run.run's locking, with the stages replaced by copying a finished run's files."""
    from harness.run import run_dir
    from harness.stages import run_lock

    def run(cfg):
        out = run_dir(cfg)
        with run_lock(out):
            for name in ("summary.json", "eval_results.jsonl", "subset.json"):
                shutil.copy(template / name, out / name)
            summary = json.loads((out / "summary.json").read_text())
            (out / "summary.json").write_text(json.dumps({**summary, "filter": cfg.filter, "seed": cfg.seed}))
        return summary

    return run


def _compare_args(pool: Path, runs: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--filters", "no_filter clip_l14_30 basic", "--pool", str(pool), "--runs", str(runs),
            "--eval-data", str(pool), "--out", str(out), *extra]


def test_compare_skips_a_locked_run_reports_it_and_writes_the_report(gen_pool, tmp_path, monkeypatch, capsys):
    import harness.run
    from harness.cli import main

    template = write_run(tmp_path / "t", "no_filter", "tiny", 0, 100, tasks_for(0.2, 0.0))
    monkeypatch.setattr(harness.run, "run", _fake_run(template))
    locked = tmp_path / "runs" / "pool" / "tiny" / "clip_l14_30" / "seed0"
    holder = _Holder(locked)
    try:
        code = main(_compare_args(gen_pool.root, tmp_path / "runs", tmp_path / "report"))
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert code == 3
    assert f"1 run(s) left out of the report, locked by another process: {locked}" in err
    table = (tmp_path / "report" / "table.md").read_text()
    assert "No filtering" in table and "Basic" in table and "CLIP L/14" not in table
    assert not (locked / "summary.json").exists()


def test_compare_waits_for_a_locked_run_when_asked(gen_pool, tmp_path, monkeypatch, capsys):
    import harness.run
    from harness.cli import main

    template = write_run(tmp_path / "t", "no_filter", "tiny", 0, 100, tasks_for(0.2, 0.0))
    monkeypatch.setattr(harness.run, "run", _fake_run(template))
    locked = tmp_path / "runs" / "pool" / "tiny" / "clip_l14_30" / "seed0"
    holder = _Holder(locked)
    timer = threading.Timer(1.0, holder.release)  # the other process finishes while compare waits
    timer.start()
    try:
        code = main(_compare_args(gen_pool.root, tmp_path / "runs", tmp_path / "report", "--lock-wait", "120"))
    finally:
        timer.join()
    assert code == 0
    assert "CLIP L/14" in (tmp_path / "report" / "table.md").read_text()
    assert json.loads((locked / "summary.json").read_text())["filter"] == "clip_l14_30"
