"""Metrics, suite parsing, loaders and download planning, piece by piece."""

from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pytest
import yaml

from harness.evaluation import SuiteError, load_suite
from harness.evaluation import metrics as M
from harness.evaluation.download import download_eval, plan, verify_task
from harness.evaluation.loaders import DataError, ReadStats, iter_wds_samples, open_wds

from .fabricate import TEMPLATES, classnames, ranking_image, write_wds


def test_winogavil_prompt_and_jaccard():
    assert M.winogavil_prompt("Apple") == "An apple"
    assert M.winogavil_prompt("tree") == "A tree"
    assert M.winogavil_prompt("Umbrella") == "An umbrella"
    # 5 candidates, truth {0, 3}; the top-2 by similarity are {3, 4}: Jaccard 1/3
    assert M.winogavil_instance(np.array([0.1, 0.2, 0.0, 0.9, 0.8]), np.array([1, 0, 0, 1, 0])) == pytest.approx(1 / 3)
    m = M.winogavil_metrics([1.0, 0.5, 0.25, 0.0], [5, 6, 10, 12])
    assert m["jaccard_score_10-12"] == pytest.approx(0.125) and m["jaccard_score_5-6"] == pytest.approx(0.75)
    assert M.winogavil_metrics([1.0], [5])["jaccard_score_10-12"] is None


def test_classification_metrics_by_hand():
    topk = np.array([[0, 1, 2, 3, 4], [2, 1, 0, 3, 4], [5, 4, 3, 2, 1], [1, 0, 2, 3, 4]])
    target = np.array([0, 1, 0, 1])
    m = M.classification_metrics(topk, target, n_classes=6)
    assert m["acc1"] == 0.5 and m["acc5"] == 0.75
    assert m["mean_per_class_recall"] == pytest.approx(0.5)  # class 0: 1/2, class 1: 1/2
    assert M.classification_metrics(topk[:, :2], target, n_classes=2)["acc5"] is None


def test_class_weights_mean_then_renormalise():
    f = np.zeros((1, 2, 3), np.float32)
    f[0, 0] = [1, 0, 0]
    f[0, 1] = [0, 1, 0]
    assert M.class_weights(f)[:, 0] == pytest.approx([2 ** -0.5, 2 ** -0.5, 0])


def test_retrieval_any_positive_counts():
    img = np.eye(3, dtype=np.float32)
    txt = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]], np.float32)  # text 1 belongs to image 1 but looks like 2
    m = M.retrieval_metrics(img, txt, [0, 1, 2], recall_k=(1, 5))
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 3)
    # image 1's best text is text 0 (tie at 0 is broken towards the lowest index); image 2 finds text 1 or 2
    assert m["text_retrieval_recall@5"] == 1.0


def test_fmow_worst_region_skips_other_and_empty():
    # regions 0, 1, 5 ("Other"); region 2-4 empty; Other has the lowest accuracy but is skipped in
    # the corrected mode (DataComp's own evaluator counts it: see test_compat.py)
    md = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [5, 0, 0], [5, 1, 0]])
    pred = np.array([0, 0, 0, 1, 1, 1])
    y = np.zeros(6, int)
    m = M.fmow_metrics(pred, y, md, compat="corrected")
    assert m["acc_worst_region"] == 0.5
    assert M.fmow_metrics(pred, y, md, compat="datacomp")["acc_worst_region"] == 0.0
    assert m["acc_region:5"] == 0.0 and m["count_region:2"] == 0.0
    assert m["acc_worst_year"] == pytest.approx(1 / 3)  # year 1: one of three right
    assert m["acc_avg"] == 0.5


def test_group_names_follow_wilds():
    md = np.array([[0, 1, 2, 1], [3, 0, 1, 0]])
    out = M.group_eval("acc_gender_x", np.array([1, 0]), md, ["gender", "race"], M.FAIRFACE_FIELDS)
    assert out["acc_gender_x_race:2_gender:1"] == 1.0 and out["acc_gender_x_race:1_gender:0"] == 0.0
    assert out["count_race:0_gender:0"] == 0.0 and out["acc_gender_x_wg"] == 0.0


def test_iwildcam_f1_over_present_labels():
    m = M.iwildcam_metrics(np.array([0, 0, 2, 5]), np.array([0, 1, 2, 2]))
    # labels {0,1,2}: F1 0 -> 2/3, 1 -> 0, 2 -> 2/3 (5 is not a true label, so not averaged)
    assert m["F1-macro_all"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)


def test_json_safe():
    assert M.json_safe({"a": float("nan"), "b": np.float32(0.5), "c": None}) == {"a": None, "b": 0.5, "c": None}


def test_suite_schema_errors(tmp_path):
    bad = {"suite": "x", "tasks": [{"key": "a", "name": "A", "source": {"format": "zip", "path": "a"},
                                    "task": "zeroshot_classification", "main_metric": "acc1"}]}
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(SuiteError, match="source.format"):
        load_suite(p)
    bad["tasks"][0]["source"]["format"] = "wds"
    bad["tasks"][0]["group"] = "Vtab"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(SuiteError, match="unknown group 'Vtab'"):
        load_suite(p)
    with pytest.raises(FileNotFoundError, match="datacomp"):
        load_suite("no-such-suite")


def test_corrupt_sample_skipped_and_counted(tmp_path):
    write_wds(tmp_path / "t", [{"image": ranking_image([0, 1]), "cls": i % 2} for i in range(4)],
              classnames(2), TEMPLATES, per_shard=4)
    shard = tmp_path / "t" / "test" / "0.tar"
    with tarfile.open(shard, "a") as tar:
        for name, data in (("s0000009.webp", b"not an image"), ("s0000009.cls", b"1"), ("s0000010.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stats = ReadStats()
    samples = list(iter_wds_samples(open_wds(tmp_path / "t").shards, ("cls",), stats))
    assert [s["__key__"] for s in samples] == [f"s{i:07d}" for i in range(4)]
    assert stats.skipped == 2 and "s0000009" in stats.reasons[0] and "no image" in stats.reasons[1]
    (tmp_path / "t" / "test" / "0.tar").unlink()
    with pytest.raises(DataError, match="shards missing"):
        open_wds(tmp_path / "t")


def test_download_plan_resume_and_verify(tmp_path, datacomp_suite):
    p = plan(datacomp_suite, tmp_path)
    assert len(p) == 40
    by = {x.key: x for x in p}
    assert by["wilds/fmow"].repo_id == "djghosh/wds_wilds-fmow_test"
    assert by["wilds/fmow"].local_dir == tmp_path / "wds_wilds-fmow_test"
    assert by["retrieval/flickr_1k_test_image_text_retrieval"].revision == "refs/convert/parquet"

    src = tmp_path / "hub"
    write_wds(src / "djghosh/wds_cars_test", [{"image": ranking_image([0, 1]), "cls": 0}] * 3, classnames(2),
              TEMPLATES, per_shard=2)
    (src / "djghosh/wds_mnist_test" / "test").mkdir(parents=True)
    (src / "djghosh/wds_mnist_test" / "test" / "nshards.txt").write_text("2\n")  # promises shards it lacks
    calls = []

    def fake_fetch(repo_id, revision, local_dir):
        calls.append(repo_id)
        shutil.copytree(src / repo_id, local_dir, dirs_exist_ok=True)

    out = tmp_path / "data"
    with pytest.raises(RuntimeError, match="mnist"):
        download_eval("datacomp", out, tasks=["cars", "mnist"], fetch=fake_fetch, retries=1)
    assert sorted(calls) == ["djghosh/wds_cars_test"] + ["djghosh/wds_mnist_test"] * 2  # 1 retry
    assert (out / "wds_cars_test" / ".complete.json").exists()
    assert not verify_task(datacomp_suite.task("cars"), out / "wds_cars_test")
    # rerun: cars is verified from its marker and not fetched again
    calls.clear()
    report = download_eval("datacomp", out, tasks=["cars"], fetch=fake_fetch)
    assert calls == [] and report["cars"]["status"] == "cached"
    # a shard lost after download makes the task fetch again
    (out / "wds_cars_test" / "test" / "1.tar").unlink()
    assert download_eval("datacomp", out, tasks=["cars"], fetch=fake_fetch)["cars"]["status"] == "ok"
    assert calls == ["djghosh/wds_cars_test"]
