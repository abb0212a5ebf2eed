"""The compatibility mode (issue 16, items 1 and 2): ``datacomp`` reproduces what DataComp's pinned
evaluator computes, ``corrected`` what it means to compute. Each expected value below follows by hand
from the rule stated in harness/compat.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import build_parser
from harness.compat import resolve_compat
from harness.evaluation import evaluate
from harness.evaluation import metrics as M
from harness.evaluation.loaders import open_wds, read_lines

from .fabricate import LookupEncoder, strip, write_wds

# ---------------------------------------------------------------- item 1: FMoW worst region


def _fmow_case():
    """Regions 0 (4 samples, 3 right), 1 (3 samples, 2 right), 5 "Other" (2 samples, both wrong)."""
    regions = [0, 0, 0, 0, 1, 1, 1, 5, 5]
    right = [1, 1, 1, 0, 1, 1, 0, 0, 0]
    y = np.zeros(len(regions), np.int64)
    pred = np.where(np.array(right) == 1, 0, 1)
    md = np.array([[r, i % 2, 0] for i, r in enumerate(regions)], np.int64)
    return pred, y, md


def test_fmow_worst_region_datacomp_counts_other():
    # DataComp's grouper has no name map: "Other" in "region:5" is False, so region 5 (0/2) is the worst
    m = M.fmow_metrics(*_fmow_case(), compat="datacomp")
    assert m["acc_worst_region"] == 0.0
    assert m["acc_region:5"] == 0.0 and m["count_region:5"] == 2.0


def test_fmow_worst_region_corrected_skips_other():
    # region 5 skipped: min(3/4, 2/3) = 2/3; regions 2-4 are empty and skipped in both modes
    m = M.fmow_metrics(*_fmow_case(), compat="corrected")
    assert m["acc_worst_region"] == pytest.approx(2 / 3)
    assert m["count_region:2"] == 0.0 and m["acc_region:5"] == 0.0
    # everything but acc_worst_region is the same in both modes
    d = M.fmow_metrics(*_fmow_case(), compat="datacomp")
    assert {k: v for k, v in m.items() if k != "acc_worst_region"} == {
        k: v for k, v in d.items() if k != "acc_worst_region"}


def test_fmow_without_other_samples_is_the_same_in_both_modes():
    pred, y, md = _fmow_case()
    keep = md[:, 0] != 5
    a = M.fmow_metrics(pred[keep], y[keep], md[keep], compat="datacomp")
    b = M.fmow_metrics(pred[keep], y[keep], md[keep], compat="corrected")
    assert a == b and a["acc_worst_region"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- item 2: blank class-name lines


def test_read_lines_blank_lines(tmp_path):
    p = tmp_path / "classnames.txt"
    p.write_text("very nearby\nnearby\nnear\n\ndistant\n  very distant  \n")
    assert read_lines(p) == ["very nearby", "nearby", "near", "", "distant", "very distant"]
    assert read_lines(p, keep_blank=False) == ["very nearby", "nearby", "near", "distant", "very distant"]


CLEVR_DIST = ["very nearby #0", "nearby #1", "near #2", "", "distant #4", "very distant #5"]
SHARED = 47  # every prompt carries "#47" (the template), so the blank class's prompt is "#47" alone


def _clevr_distance(root):
    """Six labels 0..5, one sample each. Sample j != 3 is the pure direction #j; sample 3 is
    250 * e_47 + 50 * e_4. Prompts: class c -> e_c + e_47 (normalised), blank class -> e_47."""
    samples = []
    for j in range(6):
        img = strip({SHARED: 250, 4: 50}) if j == 3 else strip({j: 250})
        samples.append({"image": img, "cls": j})
    write_wds(root / "wds_vtab-clevr_closest_object_distance_test", samples, CLEVR_DIST,
              [f"{{c}} shapes #{SHARED}."])


def test_open_wds_drops_blank_class_in_datacomp_mode(tmp_path):
    _clevr_distance(tmp_path)
    root = tmp_path / "wds_vtab-clevr_closest_object_distance_test"
    assert open_wds(root, compat="corrected").classnames == [c.strip() for c in CLEVR_DIST]
    assert open_wds(root, compat="datacomp").classnames == [c for c in CLEVR_DIST if c]


@pytest.mark.parametrize("compat, acc1, acc5, mpcr", [
    # corrected: six aligned prompts; sample 3 scores 250 on the blank prompt vs (250+50)/sqrt2 = 212 on
    # "#4", so every sample is right
    ("corrected", 1.0, 1.0, 1.0),
    # datacomp: five prompts, "#4" at index 3 and "#5" at index 4. Samples 0-2 right; sample 3's best
    # prompt is "#4" (212 vs 177) = index 3 = its label, right by accident; sample 4 -> index 3 (wrong),
    # sample 5 -> index 4 (wrong): acc1 = 4/6. Top-5 of 5 prompts holds indices 0..4: only label 5
    # misses, acc5 = 5/6. Per-class recall: labels 0-3 found, 4 and 5 never: 4/6.
    ("datacomp", 4 / 6, 5 / 6, 4 / 6),
])
def test_clevr_distance_end_to_end(tmp_path, compat, acc1, acc5, mpcr):
    _clevr_distance(tmp_path)
    out = tmp_path / f"run-{compat}"
    key = "vtab/clevr_closest_object_distance"
    summary = evaluate(LookupEncoder(), "datacomp", tmp_path, out, tasks=[key], partial=True, compat=compat)
    line = json.loads((out / "eval_results.jsonl").read_text())
    assert line["compat"] == compat and summary["compat"] == compat
    m = line["metrics"]
    assert m["acc1"] == pytest.approx(acc1) and m["acc5"] == pytest.approx(acc5)
    assert m["mean_per_class_recall"] == pytest.approx(mpcr) and m["main_metric"] == pytest.approx(mpcr)
    assert json.loads((out / "eval_summary.json").read_text())["compat"] == compat


# ---------------------------------------------------------------- the setting itself


def test_resolve_compat():
    assert resolve_compat(None) == "datacomp"
    assert resolve_compat("corrected") == "corrected"
    with pytest.raises(ValueError, match="unknown compat mode 'strict'.*datacomp, corrected"):
        resolve_compat("strict")


def test_cli_flag():
    p = build_parser()
    base = ["evaluate", "--model", "m", "--data", "d", "--out", "o"]
    assert p.parse_args(base).compat is None
    assert p.parse_args([*base, "--compat", "corrected"]).compat == "corrected"
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--compat", "strict"])


def test_cli_passes_the_mode_to_evaluate(monkeypatch, tmp_path):
    import harness.evaluation
    from harness.cli import main

    seen = {}

    def fake_evaluate(*args, **kwargs):
        seen.update(kwargs)
        return {"aggregates": {}}

    monkeypatch.setattr(harness.evaluation, "evaluate", fake_evaluate)
    base = ["evaluate", "--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*base, "--compat", "corrected"]) == 0 and seen["compat"] == "corrected"
    assert main(base) == 0 and seen["compat"] is None  # evaluate resolves None to datacomp


def test_switching_mode_reruns_and_never_mixes_lines(tmp_path):
    """Results of the other mode in out_dir are dropped and their tasks rerun (one line per key)."""
    _clevr_distance(tmp_path)
    out = tmp_path / "run"
    key = "vtab/clevr_closest_object_distance"
    enc = LookupEncoder()
    evaluate(enc, "datacomp", tmp_path, out, tasks=[key], partial=True, compat="datacomp")
    s = evaluate(enc, "datacomp", tmp_path, out, tasks=[key], partial=True, compat="corrected")
    lines = [json.loads(x) for x in (out / "eval_results.jsonl").read_text().splitlines()]
    assert [(x["key"], x["compat"]) for x in lines] == [(key, "corrected")]
    assert s["tasks"][key]["main_metric"] == pytest.approx(1.0)
    # same mode again: nothing reruns (the encoder sees no new text)
    n = len(enc.texts_seen)
    evaluate(enc, "datacomp", tmp_path, out, tasks=[key], partial=True, compat="corrected")
    assert len(enc.texts_seen) == n
