"""The whole flow on the tiny world: every filter family through score, select, reshard, train,
evaluate and summary, plus the promises of `harness run` (cached reruns, determinism, the printed row).

Training uses the test-only length (RunConfig.train_num_samples) so each run takes seconds; the recipe
itself is exercised by tests/training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main as cli_main
from harness.run import RunConfig, run, run_dir

TRAIN_SAMPLES = 256
AGGREGATES = ("ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")  # shared so score tables are computed once per module


def _run(world: Path, runs: Path, expr: str, seed: int = 0) -> dict:
    return run(RunConfig(filter=expr, world=world, runs=runs, seed=seed, train_num_samples=TRAIN_SAMPLES))


@pytest.mark.parametrize("expr", ["hype10+dfn", "tmars", "ws", "image_based & clip_l14_30"])
def test_filter_runs_end_to_end(tiny_world: Path, runs: Path, expr: str) -> None:
    summary = _run(tiny_world, runs, expr)
    out = run_dir(RunConfig(filter=expr, world=tiny_world, runs=runs))
    subset = np.load(out / "subset.npy")
    assert subset.dtype == np.dtype("u8,u8")
    assert summary["samples"] == len(subset) > 0
    assert summary["uniform"] is True  # set algebra never repeats a uid
    assert set(AGGREGATES) <= set(summary["aggregates"])
    assert all(0.0 <= summary["aggregates"][k] <= 1.0 for k in AGGREGATES)
    lines = [json.loads(x) for x in (out / "eval_results.jsonl").read_text().splitlines()]
    assert {line["key"] for line in lines} == set(summary["tasks"])
    assert all("main_metric" in line["metrics"] for line in lines)
    # the evaluation's compatibility mode is recorded in every line and in summary.json (issue 16)
    assert summary["compat"] == "datacomp" and {line["compat"] for line in lines} == {"datacomp"}
    # which world made the number, by content; paths that mean the same from any directory (issue 20)
    from harness.world import world_fingerprint

    assert summary["provenance"]["world_fingerprint"] == world_fingerprint(tiny_world)
    assert summary["provenance"]["world"] == str(tiny_world.resolve()) and Path(summary["pool"]).is_absolute()
    # the shards hold exactly the subset: what was trained on is what was selected
    meta = json.loads((out / "shards" / "meta.json").read_text())
    assert meta["output_count"] == len(subset)


def test_hype10_plus_dfn_is_the_union_of_its_terms(tiny_world: Path, runs: Path) -> None:
    union = _run(tiny_world, runs, "hype10+dfn")
    hype = _run(tiny_world, runs, "hype10")
    dfn = _run(tiny_world, runs, "dfn")
    counts = union["provenance"]["selection"]
    assert hype["samples"] <= union["samples"] <= hype["samples"] + dfn["samples"]
    assert json.dumps(counts)  # provenance is JSON (per-term percents, thresholds, counts)


def test_rerun_recomputes_nothing_and_same_seed_is_identical(tiny_world: Path, runs: Path) -> None:
    first = _run(tiny_world, runs, "clip_l14_30")
    again = _run(tiny_world, runs, "clip_l14_30")
    assert set(again["provenance"]["stage_seconds"].values()) == {0.0}  # every stage skipped
    assert again["aggregates"] == first["aggregates"]
    # another runs directory trains from scratch with the same seed: identical numbers
    fresh = _run(tiny_world, runs / "second", "clip_l14_30")
    assert fresh["aggregates"] == first["aggregates"]
    assert fresh["tasks"] == first["tasks"]


def test_cli_run_prints_the_seed_table_row(tiny_world: Path, runs: Path, capsys: pytest.CaptureFixture) -> None:
    _run(tiny_world, runs, "clip_l14_30")  # cached: the CLI call below only prints
    code = cli_main(["run", "--filter", "clip_l14_30", "--world", str(tiny_world), "--runs", str(runs),
                     "--test-train-samples", str(TRAIN_SAMPLES)])
    out = capsys.readouterr().out
    assert code == 0
    header = out.splitlines()[0]
    for column in ("Method", "DataComp Scale", "Sample Size", "Uniform", "ImageNet", "VTAB", "Retrieval", "Average"):
        assert column in header


def test_bad_expression_is_refused_before_any_work(tiny_world: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    code = cli_main(["run", "--filter", "hype10 + dfm", "--world", str(tiny_world), "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "dfm" in err and "dfn" in err  # names the bad term and the nearest known name
    assert not any(tmp_path.iterdir())  # nothing was written
