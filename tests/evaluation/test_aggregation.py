"""Aggregation on a fabricated 38-task results file, and DataComp's reading of our file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.evaluation import MissingTasksError, aggregate_file

# DataComp's aggregate_scores.py group membership, by display name (facts from its source).
DATACOMP_GROUPS = {
    "ImageNet dist. shifts": {"ImageNet Sketch", "ImageNet v2", "ImageNet-A", "ImageNet-O", "ImageNet-R", "ObjectNet"},
    "VTAB": {"Caltech-101", "CIFAR-100", "CLEVR Counts", "CLEVR Distance", "Describable Textures", "EuroSAT",
             "KITTI Vehicle Distance", "Oxford Flowers-102", "Oxford-IIIT Pet", "PatchCamelyon", "RESISC45",
             "SVHN", "SUN397"},
    "Retrieval": {"Flickr", "MSCOCO", "WinoGAViL"},
}


def _write_results(path: Path, suite, skip=()):
    """Task i gets main metric (i + 1) / 100, so every aggregate is a known fraction."""
    scores = {}
    with open(path, "w") as f:
        for i, t in enumerate(suite.tasks):
            if t.key in skip:
                continue
            main = (i + 1) / 100 if t.scored else None
            scores[t.name] = main
            f.write(json.dumps({"key": t.key, "dataset": t.name, "metrics": {"acc1": 0.5, "main_metric": main}}) + "\n")
    return scores


def test_aggregates_hand_computed(tmp_path, datacomp_suite):
    path = tmp_path / "eval_results.jsonl"
    _write_results(path, datacomp_suite)
    s = aggregate_file(path, datacomp_suite)
    a = s["aggregates"]
    # suite order: 1 imagenet1k, 2-7 shifts, 8-20 VTAB, 21-23 retrieval, 24-38 others, 39-40 unscored
    assert a["ImageNet"] == pytest.approx(0.01)
    assert a["ImageNet dist. shifts"] == pytest.approx(sum(range(2, 8)) / 6 / 100)
    assert a["VTAB"] == pytest.approx(sum(range(8, 21)) / 13 / 100)
    assert a["Retrieval"] == pytest.approx(sum(range(21, 24)) / 3 / 100)
    assert a["Average"] == pytest.approx(sum(range(1, 39)) / 38 / 100)
    assert s["partial"] is False and s["missing_tasks"] == [] and s["suite"] == "datacomp"
    assert len(s["tasks"]) == 40


def test_datacomp_reads_our_file(tmp_path, datacomp_suite):
    """DataComp's aggregation: pandas lines, metrics expanded, NaN main metrics dropped, 38 rows,
    lookups by display name. Our names must be DataComp's names."""
    path = tmp_path / "eval_results.jsonl"
    scores = _write_results(path, datacomp_suite)
    df = pd.read_json(path, lines=True)
    df = pd.concat([df.drop(["metrics"], axis=1), df["metrics"].apply(pd.Series)], axis=1)
    df = df.dropna(subset=["main_metric"])
    assert len(df) == 38
    results = dict(zip(df.dataset, df.main_metric, strict=True))
    assert "ImageNet 1k" in results
    for group, names in DATACOMP_GROUPS.items():
        assert names <= set(results), group
    ours = aggregate_file(path, datacomp_suite)["aggregates"]
    assert ours["VTAB"] == pytest.approx(sum(results[n] for n in DATACOMP_GROUPS["VTAB"]) / 13)
    assert ours["Average"] == pytest.approx(sum(v for v in scores.values() if v is not None) / 38)


_DATACOMP = Path("/work/.mirror/mlfoundations+datacomp/repo")


@pytest.mark.skipif(not (_DATACOMP / "HEAD").exists() and not (_DATACOMP / ".git").exists(),
                    reason="no local DataComp checkout to run its aggregate_scores.py")
def test_datacomp_script_on_our_file(tmp_path, datacomp_suite):
    path = tmp_path / "eval_results.jsonl"
    _write_results(path, datacomp_suite)
    script = tmp_path / "aggregate_scores.py"
    script.write_bytes(subprocess.run(["git", "-C", str(_DATACOMP), "show", "HEAD:aggregate_scores.py"],
                                      check=True, capture_output=True).stdout)
    out = subprocess.run([sys.executable, str(script), "--input", str(path)], check=True, capture_output=True,
                         text=True).stdout
    theirs = {line.split(": ")[0]: float(line.split(": ")[1]) for line in out.strip().splitlines()}
    ours = aggregate_file(path, datacomp_suite)["aggregates"]
    assert theirs["ImageNet"] == pytest.approx(ours["ImageNet"], abs=5e-4)
    assert theirs["ImageNet dist. shifts"] == pytest.approx(ours["ImageNet dist. shifts"], abs=5e-4)
    assert theirs["VTAB"] == pytest.approx(ours["VTAB"], abs=5e-4)
    assert theirs["Retrieval"] == pytest.approx(ours["Retrieval"], abs=5e-4)
    assert theirs["Average"] == pytest.approx(ours["Average"], abs=5e-4)


def test_missing_tasks_named_and_partial(tmp_path, datacomp_suite):
    path = tmp_path / "eval_results.jsonl"
    _write_results(path, datacomp_suite, skip={"vtab/svhn", "misc/winogavil", "fairness/utkface"})
    with pytest.raises(MissingTasksError) as err:
        aggregate_file(path, datacomp_suite)
    assert "SVHN (vtab/svhn)" in str(err.value) and "WinoGAViL (misc/winogavil)" in str(err.value)
    assert "UTKFace" not in str(err.value)  # unscored tasks are never required
    s = aggregate_file(path, datacomp_suite, partial=True)
    assert s["partial"] is True and s["missing_tasks"] == ["vtab/svhn", "misc/winogavil"]
    vtab = [i + 1 for i, t in enumerate(datacomp_suite.tasks) if t.group == "VTAB" and t.key != "vtab/svhn"]
    assert s["aggregates"]["VTAB"] == pytest.approx(sum(vtab) / 12 / 100)


def test_null_main_metric_counts_as_missing(tmp_path, datacomp_suite):
    path = tmp_path / "eval_results.jsonl"
    _write_results(path, datacomp_suite)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["metrics"]["main_metric"] = None
    path.write_text("\n".join([*lines, json.dumps(rec)]) + "\n")  # the last line of a key wins
    with pytest.raises(MissingTasksError, match="ImageNet 1k"):
        aggregate_file(path, datacomp_suite)
