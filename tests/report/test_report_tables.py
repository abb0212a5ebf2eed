"""Tables from fixed fabricated results: golden Markdown/CSV/LaTeX, and the rules behind them."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from harness.report import (
    ReportError,
    Stat,
    build_report,
    format_samples,
    format_table,
    load_published,
    method_label,
    table_rows,
    to_markdown,
)
from harness.report.table import arrange, ranks

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HARNESS_UPDATE_GOLDEN") == "1"  # rewrite the golden files after a deliberate change


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


def test_golden_tables(golden_runs, tmp_path):
    written = build_report(golden_runs, tmp_path / "out")
    _check_golden("table.md", written["markdown"].read_text(encoding="utf-8"))
    _check_golden("table.csv", written["csv"].read_text(encoding="utf-8"))
    _check_golden("table.tex", written["latex"].read_text(encoding="utf-8"))
    assert written["html"].parent == written["report_md"].parent  # the HTML sits next to the Markdown


def test_seed_pooling_is_mean_and_population_std(golden_runs):
    rows = table_rows(golden_runs)
    hype = next(r for r in rows if r.filter == "hype10" and r.scale == "tiny")
    # ImageNet per seed: 0.26, 0.24, 0.28 -> mean 0.26, population std sqrt(0.0008/3)
    assert hype.n == 3
    assert hype.values["ImageNet"].mean == pytest.approx(0.26)
    assert hype.values["ImageNet"].std == pytest.approx((0.0008 / 3) ** 0.5)
    assert [r.seed for r in hype.runs] == [0, 1, 2]
    line = next(x for x in to_markdown(rows).splitlines() if x.startswith("| HYPE 10% (n=3)"))
    assert "0.260 ± 0.016" in line


def test_partial_rows_are_marked_and_not_ranked(golden_runs):
    rows = table_rows(golden_runs)
    tmars = next(r for r in rows if r.filter == "tmars")
    assert tmars.partial and tmars.missing_tasks == ["retrieval/flickr_1k_test_image_text_retrieval"]
    assert tmars.values["Average"] is None
    # T-MARS has the highest ImageNet of the tiny rows, yet only complete rows compete
    i = rows.index(tmars)
    assert (i, "ImageNet") not in ranks(rows)
    best = [rows[j].filter for (j, col), m in ranks(rows).items() if col == "ImageNet" and m == 1 and rows[j].scale == "tiny"]
    assert best == ["hype10+dfn"]
    assert "T-MARS†" in to_markdown(rows)


def test_published_medium_marks_match_the_paper():
    """The seed's table bolds HYPE 10% + DFN everywhere and underlines DFN (IN, shift), HYPE 10% + CIDS
    (VTAB, Average) and HYPE 20% (Retrieval); the DataComp rows are all below those."""
    rows = [r for r in load_published() if r.scale == "medium"]
    marks = ranks(rows)
    got = {(rows[i].method, col): m for (i, col), m in marks.items()}
    expected = {("HYPE 10% + DFN", c): 1 for c in ("ImageNet", "ImageNet Dist. Shift", "VTAB", "Retrieval", "Average")}
    expected |= {("DFN", "ImageNet"): 2, ("DFN", "ImageNet Dist. Shift"): 2, ("HYPE 10% + CIDS", "VTAB"): 2,
                 ("HYPE 10% + CIDS", "Average"): 2, ("HYPE 20%", "Retrieval"): 2}
    assert got == expected


def test_published_csv_holds_every_reference_row():
    rows = load_published()
    assert len(rows) == 18
    assert {(r.method, r.scale) for r in rows} >= {("HYPE 10% + DFN", "medium"), ("WS", "small"),
                                                  ("No filtering", "small"), ("Image-based ∩ CLIP L/14 30%", "medium")}
    top = next(r for r in rows if r.method == "HYPE 10% + DFN")
    assert (top.samples.mean, top.uniform) == (21_500_000, False)
    assert [top.values[c].mean for c in top.values] == [0.382, 0.303, 0.393, 0.306, 0.379]
    small_nf = next(r for r in rows if r.method == "No filtering" and r.scale == "small")
    assert small_nf.values["VTAB"] is None and small_nf.values["Average"].mean == 0.132
    assert all(r.source for r in rows)


def test_published_rows_only_beside_runs_of_their_scale(golden_runs):
    rows = table_rows(golden_runs, scale="tiny", include_published=True)
    assert {r.scale for r in rows} == {"tiny"} and not any(r.published for r in rows)
    small = table_rows(golden_runs, scale="small", include_published=True)
    assert [r.published for r in small] == [True] * 6 + [False]
    assert "(published [1])" in format_table(small) and "(published [2])" in format_table(small)


def test_published_table_alone_when_no_runs():
    rows = arrange([], load_published())
    assert len(rows) == 18 and [r.scale for r in rows][:6] == ["small"] * 6


@pytest.mark.parametrize(("expr", "label"), [
    ("hype10+dfn", "HYPE 10% + DFN"),
    ("clip_l14_30", "CLIP L/14 30%"),
    ("clip_l14", "CLIP L/14"),
    ("no_filter", "No filtering"),
    ("tmars", "T-MARS"),
    ("random30", "Random 30%"),
    ("(image_based & clip_l14_30) - basic", "(Image-based ∩ CLIP L/14 30%) - Basic"),
    ("clip_b32>=0.28", "CLIP B/32 ≥ 0.28"),
    ("uids:/data/my_subset.npy", "uids:my_subset"),
    ("myplugin_12.5", "myplugin 12.5%"),
])
def test_method_label(expr, label):
    assert method_label(expr) == label


@pytest.mark.parametrize(("expr", "label"), [
    # read by the expression tokenizer itself: a threshold's number ends where the parser's does
    ("clip_l14>0.3+clip_b32<=0.2", "CLIP L/14 > 0.3 + CLIP B/32 ≤ 0.2"),
    ("clip_b32>=.3", "CLIP B/32 ≥ .3"),
    ('uids:"my runs/keep.npy" & basic', "uids:keep ∩ Basic"),
    ("clip_b32 >=", "clip_b32 >="),  # unreadable: shown as written
])
def test_method_label_reads_expressions_as_the_parser_does(expr, label):
    assert method_label(expr) == label


@pytest.mark.parametrize(("n", "text"), [
    (1_234_567, "1.2M"), (38_000_000, "38.0M"), (128_000_000, "128M"), (12_800_000, "12.8M"),
    (1_280_000_000, "1.28B"), (12_800_000_000, "12.8B"), (12_800, "12.8K"), (128_000, "128K"),
    (9_999, "9999"), (200, "200"), (None, "–"),
])
def test_format_samples(n, text):
    assert format_samples(n) == text


def test_stat_population_std():
    s = Stat.of([0.1, None, 0.3])
    assert (s.mean, s.n) == (pytest.approx(0.2), 2) and s.std == pytest.approx(0.1)
    assert Stat.of([None]) is None


def test_ranks_ties_share_marks_and_lone_row_is_not_best(golden_runs, tmp_path):
    from harness.report.table import Row
    def row(name, v):
        return Row(method=name, scale="tiny", samples=None, uniform=True, values={"ImageNet": Stat(v)})
    rows = [row("a", 0.3004), row("b", 0.2996), row("c", 0.1), row("d", 0.05)]  # a and b both print 0.300
    assert {(i, c): m for (i, c), m in ranks(rows).items()} == {(0, "ImageNet"): 1, (1, "ImageNet"): 1, (2, "ImageNet"): 2}
    assert ranks(rows[:1]) == {}
    one = table_rows([golden_runs[3]])
    assert len(one) == 1 and "**" not in to_markdown(one) and "Bold" not in to_markdown(one)


def test_csv_round_trip(golden_runs, tmp_path):
    written = build_report(golden_runs, tmp_path / "out", include_published=False)
    recs = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8"))))
    assert list(recs[0])[:9] == ["Method", "DataComp Scale", "Sample Size", "Uniform", "ImageNet",
                                 "ImageNet Dist. Shift", "VTAB", "Retrieval", "Average"]
    dfn = next(r for r in recs if r["Filter"] == "hype10+dfn")
    assert (dfn["Method"], dfn["Seeds"], dfn["Uniform"], float(dfn["Average"])) == ("HYPE 10% + DFN", "2", "No", 0.32)
    assert float(dfn["Average Std"]) == pytest.approx(0.005)


def test_evaluation_mode_is_marked(tmp_path):
    """summary.json's compat: corrected rows get §, seeds of both modes ¶, and a footnote says which
    mode made the unmarked numbers; CSV carries the mode in its Compat column."""
    from report_fixtures import tasks_for, write_run

    root = tmp_path / "runs"
    dirs = [write_run(root, "no_filter", "tiny", 0, 2000, tasks_for(0.20, 0.0), compat="datacomp"),
            write_run(root, "hype10", "tiny", 0, 200, tasks_for(0.26, 0.0), compat="corrected"),
            write_run(root, "hype10+dfn", "tiny", 0, 420, tasks_for(0.28, 0.0), compat="datacomp"),
            write_run(root, "hype10+dfn", "tiny", 1, 420, tasks_for(0.28, 0.01), compat="corrected"),
            write_run(root, "clip_l14_30", "tiny", 0, 600, tasks_for(0.25, 0.0))]
    written = build_report(dirs, tmp_path / "out", include_published=False)
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| No filtering | Tiny |" in md and "| HYPE 10%§ | Tiny |" in md
    assert "| HYPE 10% + DFN¶ (n=2) | Tiny |" in md and "| CLIP L/14 30% | Tiny |" in md
    assert "- Unmarked rows: evaluated as DataComp's pinned evaluator computes (--compat datacomp)" in md
    assert "- § evaluated with --compat corrected" in md and "- ¶ seeds evaluated in different --compat modes." in md
    assert "- Evaluation mode not recorded (runs made before --compat existed): CLIP L/14 30% (tiny)." in md
    recs = {r["Filter"]: r["Compat"] for r in csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8")))}
    assert recs == {"no_filter": "datacomp", "hype10": "corrected", "hype10+dfn": "mixed", "clip_l14_30": ""}
    tex = written["latex"].read_text(encoding="utf-8")
    assert r"HYPE 10\%\S{}" in tex and r"\S{} evaluated with --compat corrected" in tex
    assert "HYPE 10%§" in format_table(table_rows(dirs))


def test_format_table_one_run(golden_runs):
    text = format_table(table_rows([golden_runs[3]]))
    header, rule, line = text.splitlines()[:3]
    assert header.split("  ")[0] == "Method" and set(rule) <= {"-", " "}
    assert line.startswith("CLIP L/14 30%") and line.rstrip().endswith("0.280") and " 600 " in line


def test_discovers_runs_below_a_directory(golden_runs):
    root = golden_runs[0].parents[3]
    assert len(table_rows([root])) == 6


def test_summary_without_tasks_reads_eval_results(tmp_path):
    from report_fixtures import tasks_for, write_run
    run = write_run(tmp_path, "dfn", "tiny", 0, 100, tasks_for(0.2, 0.0), tasks_in_summary=False)
    [row] = table_rows([run])
    assert row.runs[0].tasks["vtab/dtd"] == ("Describable Textures", pytest.approx(0.24))


@pytest.mark.parametrize(("content", "message"), [
    (None, "summary.json: missing"),
    ("{not json", "not valid JSON"),
    (json.dumps({"scale": "tiny", "aggregates": {}}), "missing field 'filter'"),
    (json.dumps({"filter": "x", "scale": "tiny", "aggregates": {"Average": "high"}}), "expected a number"),
])
def test_bad_summary_names_the_file(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_results.jsonl").write_text("")
    if content is not None:
        (run / "summary.json").write_text(content)
    from harness.report import load_run
    with pytest.raises(ReportError, match=message) as err:
        load_run(run)
    assert str(run / "summary.json") in str(err.value)


def test_no_runs_found(tmp_path):
    with pytest.raises(ReportError, match="no summary.json"):
        table_rows([tmp_path])
    with pytest.raises(ReportError, match="no such run directory"):
        table_rows([tmp_path / "absent"])


def test_bad_published_csv(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("method,scale,samples,uniform,imagenet,in_shift,vtab,retrieval,average,source\nX,small,1,maybe,,,,,,s\n")
    with pytest.raises(ReportError, match=r"p.csv:2: uniform"):
        load_published(bad)


def test_summary_row_matches_the_run_directory(golden_runs):
    from harness.report import summary_row
    run = golden_runs[3]
    summary = json.loads((run / "summary.json").read_text())
    summary["provenance"]["run_dir"] = str(run)
    row = summary_row(summary)
    assert format_table([row]) == format_table(table_rows([run]))
    with pytest.raises(ReportError, match="missing field 'scale'"):
        summary_row({"filter": "dfn", "aggregates": {}})
