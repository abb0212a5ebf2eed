"""Report additions: runs evaluated elsewhere (DataComp's eval_results.jsonl only), the per-task table
with chance levels, the provenance block, no hidden points in the size plot, captions that match."""

from __future__ import annotations

import datetime as dt
import json
import math
import pickle
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from report_fixtures import tasks_for, write_run

from harness.cli import main as harness_main
from harness.evaluation import load_suite
from harness.report import ReportError, build_report, table_rows
from harness.report.plots import SPREAD, aggregate_bars_caption, average_vs_size_caption, spread
from harness.report.provenance import provenance
from harness.report.runs import load_run
from harness.report.tasks import task_table


def datacomp_eval_dir(root: Path, *, subset: int | None = 500, info_scale: str | None = "small",
                      drop: tuple[str, ...] = ()) -> Path:
    """What DataComp's evaluate.py leaves in its output directory: eval_results.jsonl (+ info.pkl),
    and the subset .npy the user kept beside it."""
    root.mkdir(parents=True)
    lines = []
    for i, t in enumerate(load_suite("datacomp").tasks):
        if t.key in drop:
            continue
        main = None if t.main_metric is None else round(0.2 + 0.005 * i, 4)
        lines.append(json.dumps({"key": t.key, "dataset": t.name, "metrics": {"main_metric": main}}))
    (root / "eval_results.jsonl").write_text("\n".join(lines) + "\n")
    if info_scale:  # as DataComp's train.py writes it: pathlib paths inside
        info = {"scale": info_scale, "checkpoint": PurePosixPath("/ckpt/epoch_5.pt"),
                "scale_config": {"model": "ViT-B-32"}, "data_dir": PurePosixPath("/data")}
        (root / "info.pkl").write_bytes(pickle.dumps(info))
    if subset:
        uids = [(i * 7919 % 1000, i) for i in range(subset - 10)] + [(0, 0)] * 10  # ten repeats
        np.save(root / "subset.npy", np.array(uids, dtype="u8,u8"))
    return root


def _row(rows, method):
    return next(r for r in rows if r.method == method)


def test_datacomp_only_eval_directory_enters_the_report(golden_runs, tmp_path):
    ext = datacomp_eval_dir(tmp_path / "datacomp-out")
    written = build_report(golden_runs, tmp_path / "out", external=[f"{ext}=DataComp CLIP score (L/14 30%)"])
    rows = table_rows(golden_runs, external=[f"{ext}=DataComp CLIP score (L/14 30%)"])
    row = _row(rows, "DataComp CLIP score (L/14 30%)")
    mains = [0.2 + 0.005 * i for i, t in enumerate(load_suite("datacomp").tasks) if t.scored]
    assert row.scale == "small" and row.samples.mean == 500 and row.uniform is False and not row.partial
    assert row.values["Average"].mean == pytest.approx(math.fsum(mains) / 38, abs=1e-12)
    assert row.values["ImageNet"].mean == pytest.approx(0.2)
    md = written["markdown"].read_text()
    assert "| DataComp CLIP score (L/14 30%) | Small | 500 | No |" in md
    report = written["report_md"].read_text()
    assert f"DataComp CLIP score (L/14 30%) ({ext})" in report  # provenance names where it came from
    assert "DataComp CLIP score (L/14 30%)" in written["html"].read_text()


def test_external_without_subset_or_info_takes_the_scale_from_the_label(tmp_path):
    ext = datacomp_eval_dir(tmp_path / "elsewhere", subset=None, info_scale=None, drop=("mnist",))
    rows = table_rows([], external=[f"{ext}=Their run@medium"])
    (row,) = rows
    assert row.method == "Their run" and row.scale == "medium" and row.samples is None and row.uniform is None
    assert row.partial and row.missing_tasks == ["mnist"]
    (unknown,) = table_rows([], external=[f"{ext}=Their run"])
    assert unknown.scale == "unknown"


@pytest.mark.parametrize("spec, message", [
    ("nolabel", "expects DIR=LABEL"),
    ("{d}=", "expects DIR=LABEL"),
    ("{d}=x@", "empty label or scale"),
    ("{missing}=x", "no eval_results.jsonl"),
])
def test_bad_external_is_named(tmp_path, spec, message):
    d = datacomp_eval_dir(tmp_path / "d")
    with pytest.raises(ReportError, match=message):
        table_rows([], external=[spec.format(d=d, missing=tmp_path / "missing")])


def test_hostile_info_pkl_is_refused(tmp_path):
    d = datacomp_eval_dir(tmp_path / "d", info_scale=None)
    (d / "info.pkl").write_bytes(pickle.dumps({"scale": "small", "x": dt.timedelta(1)}))
    with pytest.raises(ReportError, match="datetime.timedelta"):
        table_rows([], external=[f"{d}=x"])


def test_cli_report_with_only_an_external_run(tmp_path, capsys):
    d = datacomp_eval_dir(tmp_path / "d")
    assert harness_main(["report", "--external", f"{d}=Elsewhere", "--out", str(tmp_path / "out")]) == 0
    assert "| Elsewhere | Small | 500 | No |" in capsys.readouterr().out
    assert (tmp_path / "out" / "tasks.csv").is_file()


def test_per_task_table_has_each_tasks_chance_level(golden_runs, tmp_path):
    header, body, notes = task_table(table_rows(golden_runs))
    assert header[:2] == ["Task", "Chance"] and "No filtering (n=3)" not in header and "No filtering" in header[2]
    by_task = {line[0]: line for line in body}
    # DataComp's chance levels (tasks/datacomp.yaml, from its tasklist.yml random_score)
    assert by_task["ImageNet 1k"][1] == "0.001" and by_task["CIFAR-10"][1] == "0.1"
    assert by_task["Describable Textures"][1] == "0.02128"
    # no_filter over seeds 0.20, 0.21, 0.22 on ImageNet 1k: mean ± population std
    col = header.index("No filtering [tiny]")
    assert by_task["ImageNet 1k"][col] == "0.210 ± 0.008"
    written = build_report(golden_runs, tmp_path / "out")
    csv_lines = written["tasks_csv"].read_text().splitlines()
    assert csv_lines[0].startswith("Task,Chance,") and len(csv_lines) == 1 + len(body)


def test_tiny_suite_chance_and_below_chance_mark(tmp_path):
    run = write_run(tmp_path / "runs", "random30", "tiny", 0, 100, {"imagenet1k": 0.3}, world=None)
    summary = json.loads((run / "summary.json").read_text())
    summary["tasks"] = {"tinynet": {"name": "TinyNet", "main_metric": 0.01},
                        "tinynet_v2": {"name": "TinyNet v2", "main_metric": 0.5}}
    (run / "summary.json").write_text(json.dumps(summary))
    header, body, notes = task_table(table_rows([run]))
    assert body == [["TinyNet", "0.0125", "0.010*"], ["TinyNet v2", "0.0125", "0.500"]]
    assert notes[-1] == "* at or below chance."


def test_identical_runs_do_not_hide_each_other():
    drawn = spread([(1000.0, 0.3), (1000.0, 0.3), (1000.0, 0.3), (2000.0, 0.3), (1000.0, 0.31)])
    xs = [x for x, _ in drawn]
    assert [k for _, k in drawn] == [3, 3, 3, 1, 1]
    assert len(set(xs[:3])) == 3 and xs[1] == 1000.0  # centred on the true size
    assert math.log10(xs[2] / xs[0]) == pytest.approx(2 * SPREAD)
    assert xs[3:] == [2000.0, 1000.0]


def test_size_plot_caption_matches_what_is_drawn(golden_runs, tmp_path):
    tiny = [r for r in table_rows(golden_runs, scale="tiny")]
    caption = average_vs_size_caption(tiny)
    assert "published" not in caption.lower()  # none drawn at tiny scale
    assert "×n" not in caption and "Error bars" in caption  # seeds vary, nothing coincides
    assert "ublished" not in aggregate_bars_caption(tiny)
    # two filters with the same size and Average: spread and labelled, and the caption says so
    root = tmp_path / "same"
    same = [write_run(root, f, "tiny", 0, 400, tasks_for(0.3, 0.0)) for f in ("no_filter", "random100")]
    assert "×n" in average_vs_size_caption(table_rows(same))
    medium = table_rows([], include_published=True)
    assert "Hollow squares are published results." in average_vs_size_caption(medium)
    assert "Hatched bars are published results." in aggregate_bars_caption(medium)
    written = build_report(golden_runs, tmp_path / "out", scale="tiny")
    assert "published" not in written["report_md"].read_text().split("## Figures")[1].split("## Per-task")[0]


def test_provenance_block(golden_runs, tmp_path):
    run = golden_runs[3]
    summary = json.loads((run / "summary.json").read_text())
    summary["provenance"].update(world_fingerprint="abc123", train_num_samples=512)
    summary["compat"] = "corrected"  # the run-wide mode (harness.compat), as run.py records it
    (run / "summary.json").write_text(json.dumps(summary))
    lines = dict(provenance([load_run(p) for p in golden_runs], now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)))
    assert lines["Generated"] == "2026-01-02 03:04:05 UTC"
    assert "commit " in lines["Harness"] and "torch " in lines["Libraries"] and "open_clip_torch " in lines["Libraries"]
    assert lines["World fingerprint"].startswith("abc123 (") and "recorded none" in lines["World fingerprint"]
    assert lines["Compatibility mode"] == "corrected"
    assert "tiny: tiny-clip, 12,800 samples seen, global batch 128" in lines["Recipe"]
    assert "small: ViT-B-32, 12,800,000 samples seen, global batch 4096" in lines["Recipe"]
    assert lines["Test-only runs"].startswith("1 run(s)")
    written = build_report(golden_runs, tmp_path / "out")
    md = written["report_md"].read_text()
    assert "## Provenance" in md and "- **World fingerprint**: abc123" in md
    assert '<dl id="provenance">' in written["html"].read_text()
