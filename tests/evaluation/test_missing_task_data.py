"""`evaluate` with task data missing (issue 20 item 6): every missing task is named, before the model
is loaded; `--partial` skips them, but a partial run with nothing evaluated is an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evaluation import RESULTS_FILE, SUMMARY_FILE, evaluate, read_results
from harness.evaluation.evaluator import NothingEvaluatedError, TaskDataError

from .fabricate import LookupEncoder

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_MODEL = "no-such-model-spec"  # loading it would fail: the errors below come before any load


def _partial_copy(src: Path, dst: Path, suite, drop: set[str] = frozenset(), empty: set[str] = frozenset()) -> Path:
    """A data root linking the fabricated tasks, without `drop` and with `empty` as empty folders."""
    dst.mkdir()
    for t in suite.tasks:
        if t.key in drop:
            continue
        target = t.data_dir(dst)
        if t.key in empty:
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(t.data_dir(src), target_is_directory=True)
    return dst


def test_no_data_names_every_task_before_loading_the_model(tmp_path, datacomp_suite) -> None:
    with pytest.raises(TaskDataError) as err:
        evaluate(NO_MODEL, "datacomp", tmp_path / "nothing", tmp_path / "out")
    assert sorted(err.value.failures) == sorted(t.key for t in datacomp_suite.tasks)
    msg = str(err.value)
    assert "40 task(s) cannot run" in msg and "--partial" in msg
    for t in datacomp_suite.tasks:
        assert f"task {t.key} ({t.name})" in msg
    assert not (tmp_path / "out" / SUMMARY_FILE).exists()


def test_partial_with_nothing_evaluated_is_an_error(tmp_path) -> None:
    with pytest.raises(NothingEvaluatedError, match=r"no task was evaluated.*\(\+35 more\)"):
        evaluate(NO_MODEL, "datacomp", tmp_path / "nothing", tmp_path / "out", partial=True)
    assert not (tmp_path / "out" / SUMMARY_FILE).exists()


def test_two_missing_folders_are_both_named(tmp_path, fabricated_datacomp, datacomp_suite) -> None:
    src, _ = fabricated_datacomp
    root = _partial_copy(src, tmp_path / "data", datacomp_suite, drop={"cars", "vtab/svhn"})
    with pytest.raises(TaskDataError) as err:
        evaluate(NO_MODEL, "datacomp", root, tmp_path / "out")
    assert sorted(err.value.failures) == ["cars", "vtab/svhn"]
    assert "Stanford Cars" in str(err.value) and "SVHN" in str(err.value)
    # with --partial the other 38 run and the row is marked partial, naming the two
    enc = LookupEncoder()
    summary = evaluate(enc, "datacomp", root, tmp_path / "out", partial=True)
    assert summary["partial"] is True and sorted(summary["missing_tasks"]) == ["cars", "vtab/svhn"]
    assert set(summary["errors"]) == {"cars", "vtab/svhn"}
    assert summary["aggregates"]["Average"] is not None


def test_unreadable_tasks_do_not_stop_the_others(tmp_path, fabricated_datacomp, datacomp_suite) -> None:
    src, _ = fabricated_datacomp
    root = _partial_copy(src, tmp_path / "data", datacomp_suite, empty={"cars", "fairness/geode"})
    out = tmp_path / "out"
    with pytest.raises(TaskDataError) as err:
        evaluate(LookupEncoder(), "datacomp", root, out)
    assert sorted(err.value.failures) == ["cars", "fairness/geode"]
    assert "task cars (Stanford Cars)" in str(err.value) and "nshards.txt not found" in str(err.value)
    # every other task ran and its line is kept for the next run
    assert set(read_results(out / RESULTS_FILE)) == {t.key for t in datacomp_suite.tasks} - {"cars", "fairness/geode"}
    assert not (out / SUMMARY_FILE).exists()


def test_cli_partial_without_data_exits_with_an_error(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "evaluate", "--suite", "datacomp", "--partial", "--model", NO_MODEL,
         "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert res.returncode == 1, res.stderr  # the data at fault, not the command line (harness.errors)
    assert "no task was evaluated" in res.stderr and "task imagenet1k (ImageNet 1k)" in res.stderr
    assert not (tmp_path / "out" / SUMMARY_FILE).exists()
