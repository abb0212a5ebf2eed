"""summary.json as one typed, versioned schema (harness.summary): round trip, summaries written before
the schema had a version, errors naming the file and the field, one definition of the aggregates,
and a real run writing it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.summary import AGGREGATE_KEYS, SCHEMA_VERSION, Summary, SummaryError, TaskResult
from harness.versions import CHECKOUT, git_commit

FULL = Summary(
    filter="hype10+dfn", scale="tiny", seed=2, pool="/pools/tiny-seed0", samples=420, unique_samples=400,
    uniform=False, aggregates={"ImageNet": 0.25, "ImageNet dist. shifts": 0.125, "VTAB": None, "Retrieval": 0.5,
                               "Average": 0.3125},
    partial=True, missing_tasks=["vtab/dtd"],
    tasks={"imagenet1k": TaskResult("ImageNet 1k", 0.25, True), "fairface": TaskResult("FairFace", None, False)},
    suite="tiny", compat="datacomp", provenance={"run_dir": "/runs/x", "stage_seconds": {"select": 1.5}},
    harness_version="0.1.0", git_commit="0" * 40,
)

# A summary as `harness run` wrote it before schema_version existed (and, older still, before compat).
LEGACY = {
    "filter": "clip_l14_30", "scale": "tiny", "seed": 0, "pool": "/pools/tiny-seed0", "samples": 600,
    "unique_samples": 600, "uniform": True,
    "aggregates": {"ImageNet": 0.2, "ImageNet dist. shifts": 0.1, "VTAB": 0.3, "Retrieval": 0.4, "Average": 0.25},
    "partial": False, "missing_tasks": [],
    "tasks": {"imagenet1k": {"name": "ImageNet 1k", "main_metric": 0.2, "scored": True}},
    "suite": "tiny", "provenance": {"world": "/worlds/w", "run_dir": "/runs/y"},
}


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(FULL.to_json(), indent=1))
    back = Summary.read(path)
    assert back == FULL
    assert back.to_json() == FULL.to_json()
    obj = FULL.to_json()
    assert obj["schema_version"] == SCHEMA_VERSION == 1
    assert list(obj["aggregates"]) == list(AGGREGATE_KEYS)
    assert obj["tasks"]["fairface"] == {"name": "FairFace", "main_metric": None, "scored": False}


def test_a_summary_written_before_the_schema_loads():
    s = Summary.from_json(LEGACY, "old/summary.json")
    assert (s.schema_version, s.harness_version, s.git_commit, s.compat) == (0, None, None, None)
    assert (s.filter, s.scale, s.seed, s.samples, s.uniform) == ("clip_l14_30", "tiny", 0, 600, True)
    assert s.aggregates["Average"] == 0.25 and s.tasks["imagenet1k"] == TaskResult("ImageNet 1k", 0.2, True)
    # the fabricated runs of the report tests: no "scored", an aggregate left out, extra keys tolerated
    older = {**LEGACY, "aggregates": {"Average": float("nan")}, "tasks": {"x": {"main_metric": 0.5}},
             "note": "added by hand"}
    s = Summary.from_json(older)
    assert s.aggregates == dict.fromkeys(AGGREGATE_KEYS)  # absent and NaN both read as "no value"
    assert s.tasks == {"x": TaskResult("x", 0.5, None)}
    assert "scored" not in s.to_json()["tasks"]["x"]


@pytest.mark.parametrize(("change", "field", "what"), [
    ({"seed": "zero"}, "'seed'", "expected an integer or null, got 'zero'"),
    ({"samples": True}, "'samples'", "expected an integer or null, got True"),
    ({"uniform": "yes"}, "'uniform'", "expected true, false or null, got 'yes'"),
    ({"aggregates": {"VTAB": "high"}}, "'aggregates.VTAB'", "expected a number or null, got 'high'"),
    ({"aggregates": {"IN shift": 0.1}}, "'aggregates'", "unknown aggregate(s) 'IN shift'; known: ImageNet, "),
    ({"aggregates": [0.1]}, "'aggregates'", "expected an object"),
    ({"tasks": {"cars": {"main_metric": "0.5"}}}, "'tasks.cars.main_metric'", "expected a number or null"),
    ({"tasks": {"cars": 0.5}}, "'tasks.cars'", "expected an object, got 0.5"),
    ({"missing_tasks": "vtab/dtd"}, "'missing_tasks'", "expected a list of task keys"),
    ({"provenance": []}, "'provenance'", "expected an object or null"),
    ({"filter": 3}, "'filter'", "expected a string, got 3"),
    ({"git_commit": 12}, "'git_commit'", "expected a string or null, got 12"),
    ({"schema_version": 2}, "'schema_version'", "2 is newer than this harness reads (1)"),
    ({"schema_version": "1"}, "'schema_version'", "expected a non-negative integer"),
])
def test_a_bad_field_names_the_file_and_the_field(tmp_path, change, field, what):
    path = tmp_path / "run" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**FULL.to_json(), **change}))
    with pytest.raises(SummaryError) as err:
        Summary.read(path)
    assert str(err.value).startswith(f"{path}: field {field}: {what}")


def test_missing_fields_unknown_fields_and_unreadable_files(tmp_path):
    path = tmp_path / "summary.json"
    with pytest.raises(SummaryError, match=r"summary.json: missing \(evaluate the run first\)"):
        Summary.read(path)
    path.write_text("{not json")
    with pytest.raises(SummaryError, match=r"summary.json: not valid JSON"):
        Summary.read(path)
    for name in ("filter", "scale", "aggregates"):
        obj = FULL.to_json()
        del obj[name]
        with pytest.raises(SummaryError, match=rf"^x/summary.json: missing field '{name}'$"):
            Summary.from_json(obj, "x/summary.json")
    with pytest.raises(SummaryError, match=r"^s: unknown field\(s\) 'note' in a schema_version 1 summary$"):
        Summary.from_json({**FULL.to_json(), "note": 1}, "s")
    with pytest.raises(SummaryError, match="expected a JSON object, got list"):
        Summary.from_json([], "s")


def test_the_aggregates_are_defined_once():
    from harness.evaluation.aggregate import aggregate
    from harness.evaluation.suites import GROUPS, parse_suite
    from harness.report.table import METRIC_COLUMNS

    assert AGGREGATE_KEYS == ("ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average")
    assert GROUPS == ("ImageNet", "IN dist. shifts", "VTAB", "Retrieval")
    assert METRIC_COLUMNS == ("ImageNet", "ImageNet Dist. Shift", "VTAB", "Retrieval", "Average")
    suite = parse_suite({"suite": "s", "tasks": [
        {"key": "in", "name": "IN", "source": {"format": "wds", "path": "a"}, "task": "zeroshot_classification",
         "main_metric": "acc1", "group": "ImageNet"},
        {"key": "inr", "name": "IN-R", "source": {"format": "wds", "path": "b"}, "task": "zeroshot_classification",
         "main_metric": "acc1", "group": "IN dist. shifts"},
        {"key": "c10", "name": "C10", "source": {"format": "wds", "path": "c"}, "task": "zeroshot_classification",
         "main_metric": "acc1"},
    ]}, where="s")
    line = {"metrics": {"main_metric": 0.5}}
    out = aggregate({"in": {**line, "key": "in"}, "inr": {"key": "inr", "metrics": {"main_metric": 0.25}},
                     "c10": {"key": "c10", "metrics": {"main_metric": 0.75}}}, suite)
    assert out["aggregates"] == {"ImageNet": 0.5, "ImageNet dist. shifts": 0.25, "VTAB": None, "Retrieval": None,
                                 "Average": 0.5}
    assert list(out["aggregates"]) == list(AGGREGATE_KEYS)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_the_checkouts_head_and_never_a_parent_repo(tmp_path):
    if (CHECKOUT / ".git").exists():
        head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0:
            assert git_commit() == head.stdout.strip()
    outer = tmp_path / "project"
    (outer / "venv" / "site-packages").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    subprocess.run(["git", "-C", str(outer), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    # an installed harness inside someone else's repository records no commit, not theirs
    assert git_commit(outer / "venv" / "site-packages") is None
    assert git_commit(outer) is not None and len(git_commit(outer) or "") == 40


def test_a_run_writes_a_schema_summary(tiny_world: Path, tmp_path: Path):
    from harness.run import RunConfig, run, run_dir

    cfg = RunConfig(filter="clip_l14_30", world=tiny_world, runs=tmp_path / "runs", train_num_samples=256)
    returned = run(cfg)
    path = run_dir(cfg) / "summary.json"
    assert json.loads(path.read_text()) == returned
    s = Summary.read(path)
    assert s.to_json() == returned
    assert (s.schema_version, s.git_commit) == (SCHEMA_VERSION, git_commit())
    assert (s.filter, s.scale, s.seed, s.samples) == ("clip_l14_30", "tiny", 0, returned["samples"])
    assert set(s.aggregates) == set(AGGREGATE_KEYS) and s.aggregates["Average"] is not None
    assert all(t.scored is not None for t in s.tasks.values())
