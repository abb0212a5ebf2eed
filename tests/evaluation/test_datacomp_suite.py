"""The whole 40-task suite, end to end, offline, on miniature upstream-format copies."""

from __future__ import annotations

import json

import pytest

from harness.evaluation import MissingTasksError, evaluate, read_results

from .fabricate import LookupEncoder


def test_suite_yaml_matches_reference(datacomp_suite):
    s = datacomp_suite
    assert len(s) == 40 and len(s.scored) == 38
    assert {g: len(m) for g, m in s.group_members().items()} == {
        "ImageNet": 1, "IN dist. shifts": 6, "VTAB": 13, "Retrieval": 3}
    assert not s.task("fairness/fairface").scored and not s.task("fairness/utkface").scored
    assert s.task("sun397").group == "VTAB"
    assert s.task("wilds/fmow").source.hub == "djghosh/wds_wilds-fmow_test"
    assert s.task("fairness/geode").source.path == "wds_geode_test"
    assert s.task("vtab/cifar100").source.hub == "djghosh/wds_vtab-cifar100_test"
    assert s.task("misc/winogavil").source.hub == "nlphuji/winogavil"
    assert s.task("retrieval/mscoco_2014_5k_test_image_text_retrieval").main_metric == "mean_recall@1"


@pytest.mark.parametrize("workers, compat", [(0, "datacomp"), (2, "datacomp"), (0, "corrected")])
def test_whole_suite_end_to_end(tmp_path, fabricated_datacomp, datacomp_suite, workers, compat):
    """Also through one decode pool for the whole suite (workers=2): the same lines, in suite order.
    In both compat modes (they differ on FMoW, whose worst region is "Other" here)."""
    data_root, expect = fabricated_datacomp
    out = tmp_path / "run"
    summary = evaluate(LookupEncoder(), "datacomp", data_root, out, num_workers=workers, compat=compat)
    assert summary["compat"] == compat
    lines = [json.loads(x) for x in (out / "eval_results.jsonl").read_text().splitlines()]
    assert [x["key"] for x in lines] == [t.key for t in datacomp_suite]
    assert [x["dataset"] for x in lines] == [t.name for t in datacomp_suite]
    assert {x["compat"] for x in lines} == {compat}
    by_key = {x["key"]: x["metrics"] for x in lines}
    for key, e in expect.items():
        m = by_key[key]
        if e.main is None:
            assert m["main_metric"] is None
        else:
            assert m["main_metric"] == pytest.approx(e.main_in(compat), abs=1e-6), key
        for name, value in e.extra.items():
            assert m[name] == pytest.approx(value, abs=1e-6), (key, name)
    # acc5 is None under 5 classes, as DataComp writes it
    assert by_key["vtab/pcam"]["acc5"] is None
    assert summary["partial"] is False and summary["missing_tasks"] == []
    mains = {k: e.main_in(compat) for k, e in expect.items()}
    assert (mains["wilds/fmow"] == 0.0) == (compat == "datacomp")
    shifts = ["imagenet_sketch", "imagenetv2", "imagenet-a", "imagenet-o", "imagenet-r", "objectnet"]
    assert summary["aggregates"]["ImageNet"] == pytest.approx(mains["imagenet1k"])
    assert summary["aggregates"]["ImageNet dist. shifts"] == pytest.approx(sum(mains[k] for k in shifts) / 6)
    scored = [v for v in mains.values() if v is not None]
    assert len(scored) == 38
    assert summary["aggregates"]["Average"] == pytest.approx(sum(scored) / 38)
    assert json.loads((out / "eval_summary.json").read_text())["aggregates"] == summary["aggregates"]


def test_rerun_skips_finished_tasks(tmp_path, fabricated_datacomp):
    data_root, _ = fabricated_datacomp
    out = tmp_path / "run"
    tiny = ["imagenet1k", "vtab/pcam", "misc/winogavil"]
    enc = LookupEncoder()
    s1 = evaluate(enc, "datacomp", data_root, out, tasks=tiny, partial=True)
    assert s1["partial"] and "cars" in s1["missing_tasks"]
    n_texts = len(enc.texts_seen)
    assert n_texts > 0
    # second run: nothing left to do for those tasks, so the model is never called
    s2 = evaluate(enc, "datacomp", data_root, out, tasks=tiny, partial=True)
    assert len(enc.texts_seen) == n_texts
    assert len(read_results(out / "eval_results.jsonl")) == 3
    assert s2["tasks"] == s1["tasks"]
    # an interrupted append (truncated last line) is dropped and that task reruns
    path = out / "eval_results.jsonl"
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:2]) + "\n" + text[2][:25])
    evaluate(enc, "datacomp", data_root, out, tasks=tiny, partial=True)
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == tiny


def test_missing_task_refuses_average(tmp_path, fabricated_datacomp):
    data_root, _ = fabricated_datacomp
    out = tmp_path / "run"
    with pytest.raises(MissingTasksError) as err:
        evaluate(LookupEncoder(), "datacomp", data_root, out, tasks=["imagenet1k"])
    msg = str(err.value)
    assert "Stanford Cars (cars)" in msg and "WinoGAViL (misc/winogavil)" in msg
    assert "ImageNet 1k" not in msg
    assert len(err.value.missing) == 37
