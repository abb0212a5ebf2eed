"""Oracle precision/recall on a fabricated world, the figures, and the files build_report writes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from report_fixtures import hype_selection, tasks_for, uid_of, write_run

from harness.report import ReportError, build_report, table_rows
from harness.report.oracle import OracleLabels, oracle_rows, subset_uids


def test_oracle_scores_known_selection(tiny_world, tmp_path):
    labels = OracleLabels(tiny_world)
    assert labels.unlabelled == 1  # pool uid 39 has no label; the oracle-only uid is ignored
    assert labels.noise_types == ["underspecified", "mismatched", "bad_image"]
    run = write_run(tmp_path / "runs", "hype10", "tiny", 0, 16, tasks_for(0.2, 0.0), world=tiny_world,
                    subset=hype_selection())
    s = labels.score(subset_uids(run / "subset.npy"))
    # 15 distinct uids: 12 clean of the pool's 20, 2 of 10 mismatched, 1 of 4 bad images, 0 of 5 underspecified
    assert s["selected"] == 15
    assert s["precision"] == pytest.approx(12 / 15)
    assert s["recall"] == pytest.approx(12 / 20)
    assert s["removed:mismatched"] == pytest.approx(0.8)
    assert s["removed:underspecified"] == pytest.approx(1.0)
    assert s["removed:bad_image"] == pytest.approx(0.75)


def test_oracle_rows_pool_seeds_and_skip_real_pools(golden_runs):
    orows, types = oracle_rows(table_rows(golden_runs))
    names = [r.method for r in orows]
    assert "HYPE 10%" in names and len(orows) == 5  # the small run has no world: left out
    nf = next(r for r in orows if r.method == "No filtering")
    assert nf.n == 3 and nf.metrics["recall"].mean == pytest.approx(1.0)
    assert nf.metrics["precision"].mean == pytest.approx(20 / 39)  # the unlabelled uid is not counted
    assert types == ["underspecified", "mismatched", "bad_image"]


def test_subset_with_wrong_dtype_is_refused(tmp_path):
    np.save(tmp_path / "subset.npy", np.arange(4, dtype=np.int64))
    with pytest.raises(ReportError, match=r"subset.npy: expected dtype"):
        subset_uids(tmp_path / "subset.npy")


def test_subset_uid_round_trip(tmp_path):
    uids = [uid_of(i) for i in (5, 3, 3, 900)]
    pairs = sorted((int(u[:16], 16), int(u[16:], 16)) for u in uids)
    np.save(tmp_path / "s.npy", np.array(pairs, dtype="u8,u8"))
    assert sorted(subset_uids(tmp_path / "s.npy")) == sorted(set(uids))


def test_build_report_writes_every_output(golden_runs, tmp_path):
    written = build_report(golden_runs, tmp_path / "out")
    plots = {k for k in written if k.startswith("plot_")}
    assert plots == {"plot_average_vs_size", "plot_aggregates", "plot_task_heatmap", "plot_oracle"}
    for key in plots:
        img = imread(written[key])
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.01  # a drawn figure, not blank
    md = written["report_md"].read_text(encoding="utf-8")
    for key in plots:
        assert f"]({written[key].relative_to(tmp_path / 'out')})" in md
    html = written["html"].read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 4 and "<script" not in html
    assert "Precision" in written["oracle_csv"].read_text(encoding="utf-8")
    assert not list((tmp_path / "out").rglob("*.tmp"))  # atomic writes leave no temporaries


def test_real_pool_report_has_no_oracle(tmp_path):
    run = write_run(tmp_path / "runs", "dfn", "medium", 0, 17_100_000, tasks_for(0.3, 0.0), pool="commonpool")
    written = build_report([run], tmp_path / "out")
    assert "oracle_csv" not in written and "plot_oracle" not in written
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| DFN | Medium | 17.1M | Yes |" in md and "DFN (published [1])" in md


def test_scale_without_rows_is_an_error(golden_runs, tmp_path):
    with pytest.raises(ReportError, match="nothing to report"):
        build_report(golden_runs, tmp_path / "out", scale="large")
