"""Issue 16 item 9: the evaluator reads DataComp's own evaluation directory (the wds_* folders of
download_evalsets.py and its Hugging Face datasets cache <data>/hf_cache), and `download-eval`
writes a directory in that layout. Offline throughout: the caches are prepared by `datasets` itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.evaluation import evaluate
from harness.evaluation.download import download_eval, plan, verify_task
from harness.evaluation.loaders import DataError, hf_cache_entry, open_hf, to_image
from harness.evaluation.runners import task_data_path

from .fabricate import LookupEncoder, fabricate_hf_retrieval, fabricate_suite, fabricate_winogavil

HF_KEYS = ("retrieval/flickr_1k_test_image_text_retrieval", "retrieval/mscoco_2014_5k_test_image_text_retrieval",
           "misc/winogavil")


@pytest.fixture(scope="module")
def datacomp_dir(tmp_path_factory, datacomp_suite):
    """All 40 entries in DataComp's layout: wds_<key>_test/ folders and hf_cache/ (no hf/ folder)."""
    root = tmp_path_factory.mktemp("datacomp_layout")
    expect = fabricate_suite(root, datacomp_suite, hf_layout="datacomp")
    return root, expect


def test_layout_is_datacomps(datacomp_dir, datacomp_suite):
    root, _ = datacomp_dir
    assert not (root / "hf").exists()
    names = {p.name for p in (root / "hf_cache").iterdir()}
    assert {"nlphuji___flickr_1k_test_image_text_retrieval", "nlphuji___mscoco_2014_5k_test_image_text_retrieval",
            "nlphuji___winogavil"} <= names
    for t in datacomp_suite:
        where = task_data_path(t, root)
        if t.key in HF_KEYS:
            assert where == hf_cache_entry(root / "hf_cache", t.source.hub) and where.parent == root / "hf_cache"
        else:  # download_evalsets.py's folder name: wds_<task with / -> ->_test
            assert where == root / f"wds_{t.key.split('/', 1)[1] if t.key.startswith('fairness/') else t.key.replace('/', '-')}_test"
            assert where.is_dir()


def test_whole_suite_on_datacomps_directory(tmp_path, datacomp_dir, datacomp_suite):
    root, expect = datacomp_dir
    summary = evaluate(LookupEncoder(), "datacomp", root, tmp_path / "run")
    assert summary["partial"] is False and summary["missing_tasks"] == []
    for key, e in expect.items():
        got = summary["tasks"][key]["main_metric"]
        assert (got is None) if e.main is None else got == pytest.approx(e.main, abs=1e-6), key
    lines = {json.loads(x)["key"]: json.loads(x) for x in (tmp_path / "run" / "eval_results.jsonl").open()}
    assert len(lines) == 40
    assert lines["misc/winogavil"]["metrics"]["avg_jaccard_score"] == pytest.approx(
        expect["misc/winogavil"].extra["avg_jaccard_score"])


def _rows_via_load_dataset(cache_dir: Path, repo_id: str) -> list[dict]:
    """DataComp's call, `load_dataset(repo_id, split="test", cache_dir=...)`, in a fresh offline process."""
    code = (
        "import sys, json, datasets, numpy as np\n"
        "ds = datasets.load_dataset(sys.argv[1], split='test', cache_dir=sys.argv[2])\n"
        "def px(im): return np.asarray(im.convert('RGB'))[0, :, 0].tolist()\n"
        "out = []\n"
        "for r in ds:\n"
        "    out.append({k: (px(v) if k == 'image' else [px(i) for i in v] if k == 'candidate_images' else v)"
        " for k, v in r.items()})\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code, repo_id, str(cache_dir)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _px(cell, root) -> list[int]:
    return np.asarray(to_image(cell, root))[0, :, 0].tolist()


@pytest.mark.parametrize("key", HF_KEYS)
def test_our_reader_agrees_with_load_dataset(datacomp_dir, datacomp_suite, key):
    """The cache is one `datasets` reads offline, and our reader sees exactly its rows."""
    root, _ = datacomp_dir
    task = datacomp_suite.task(key)
    theirs = _rows_via_load_dataset(root / "hf_cache", task.source.hub)
    entry = task_data_path(task, root)
    ours = []
    for r in open_hf(entry):
        ours.append({k: (_px(v, entry) if k == "image" else [_px(i, entry) for i in v]
                         if k == "candidate_images" else v) for k, v in r.items()})
    assert ours == theirs and len(ours) > 0


def test_flickr_images_as_extracted_files_survive_a_move(tmp_path):
    """A loading script stores absolute paths under <cache>/downloads/extracted; a moved cache still reads."""
    src = tmp_path / "a" / "hf_cache"
    expected = fabricate_hf_retrieval(src, 7, n_images=6, layout="hf_cache_files")
    entry = hf_cache_entry(src, "nlphuji/flickr_1k_test_image_text_retrieval")
    first = next(iter(open_hf(entry)))
    assert first["image"]["bytes"] is None and "/downloads/extracted/" in first["image"]["path"]
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    data = tmp_path / "b"
    key = "retrieval/flickr_1k_test_image_text_retrieval"
    s = evaluate(LookupEncoder(), "datacomp", data, tmp_path / "run", tasks=[key], partial=True)
    assert s["tasks"][key]["main_metric"] == pytest.approx(expected)


def test_harness_layout_still_read_and_preferred(tmp_path, datacomp_suite):
    """With both copies present the harness's own folder is read; either alone is enough."""
    key = "misc/winogavil"
    task = datacomp_suite.task(key)
    main, _ = fabricate_winogavil(tmp_path / "hf_cache", 3, layout="hf_cache")
    assert task_data_path(task, tmp_path) == tmp_path / "hf_cache" / "nlphuji___winogavil"
    fabricate_winogavil(task.data_dir(tmp_path), 3)
    assert task_data_path(task, tmp_path) == tmp_path / "hf" / "winogavil"
    s = evaluate(LookupEncoder(), "datacomp", tmp_path, tmp_path / "run", tasks=[key], partial=True)
    assert s["tasks"][key]["main_metric"] == pytest.approx(main)


def test_missing_hf_task_names_both_places(tmp_path):
    with pytest.raises(DataError, match=r"hf/winogavil not found \(nor nlphuji/winogavil in the datasets cache"):
        evaluate(LookupEncoder(), "datacomp", tmp_path, tmp_path / "run", tasks=["misc/winogavil"])


def test_cache_entry_without_split_is_an_error(tmp_path):
    fabricate_winogavil(tmp_path / "hf_cache", 3, layout="hf_cache")
    entry = tmp_path / "hf_cache" / "nlphuji___winogavil"
    with pytest.raises(DataError, match="without a prepared 'validation' split"):
        open_hf(entry, split="validation")


# ---------------------------------------------------------------- download-eval writes DataComp's layout


def test_download_eval_writes_hf_cache_from_the_parquet_export(tmp_path, datacomp_suite):
    """When load_dataset cannot run the hub's loading script, the parquet export is prepared into the
    same cache entry; the staged parquet copy is removed and the entry verifies and is reused."""
    key = "retrieval/mscoco_2014_5k_test_image_text_retrieval"
    hub = tmp_path / "hub"
    expected = fabricate_hf_retrieval(hub / "mscoco", 11, n_images=8, layout="parquet")
    loads, fetches = [], []

    def refusing_load(repo_id, cache_dir):
        loads.append(repo_id)
        raise RuntimeError("Dataset scripts are no longer supported")

    def fake_fetch(repo_id, revision, local_dir):
        fetches.append((repo_id, revision))
        shutil.copytree(hub / "mscoco", local_dir, dirs_exist_ok=True)

    data = tmp_path / "data"
    report = download_eval("datacomp", data, tasks=[key], fetch=fake_fetch, load=refusing_load)
    assert report[key]["status"] == "ok"
    assert loads == ["nlphuji/mscoco_2014_5k_test_image_text_retrieval"]
    assert fetches == [("nlphuji/mscoco_2014_5k_test_image_text_retrieval", "refs/convert/parquet")]
    entry = data / "hf_cache" / "nlphuji___mscoco_2014_5k_test_image_text_retrieval"
    assert (entry / ".complete.json").exists() and not (data / "hf_cache" / "harness_parquet").exists()
    assert sorted(p.name for p in entry.glob("default/0.0.0/*/*.arrow")) == [
        "mscoco_2014_5k_test_image_text_retrieval-test.arrow"]
    assert len(_rows_via_load_dataset(data / "hf_cache", "nlphuji/mscoco_2014_5k_test_image_text_retrieval")) == 8
    s = evaluate(LookupEncoder(), "datacomp", data, tmp_path / "run", tasks=[key], partial=True)
    assert s["tasks"][key]["main_metric"] == pytest.approx(expected)
    # rerun: verified from its marker, nothing fetched
    assert download_eval("datacomp", data, tasks=[key], fetch=fake_fetch, load=refusing_load)[key]["status"] == "cached"
    assert len(fetches) == 1


def test_download_eval_uses_datacomps_call_when_it_works(tmp_path, datacomp_suite):
    key = "misc/winogavil"

    def working_load(repo_id, cache_dir):  # stands in for load_dataset on a hub repo datasets can read
        fabricate_winogavil(Path(cache_dir), 5, layout="hf_cache")

    def no_fetch(*args):
        raise AssertionError("the parquet export is not needed")

    data = tmp_path / "data"
    report = download_eval("datacomp", data, tasks=[key], fetch=no_fetch, load=working_load)
    assert report[key]["status"] == "ok"
    marker = json.loads((data / "hf_cache" / "nlphuji___winogavil" / ".complete.json").read_text())
    assert marker["via"] == "load_dataset"
    assert not verify_task(datacomp_suite.task(key), data / "hf_cache" / "nlphuji___winogavil")


def test_plan_uses_datacomps_folders(tmp_path, datacomp_suite):
    by = {p.key: p for p in plan(datacomp_suite, tmp_path)}
    assert by["misc/winogavil"].cache_dir == tmp_path / "hf_cache"
    assert by["misc/winogavil"].entry == tmp_path / "hf_cache" / "nlphuji___winogavil"
    assert by["fairness/geode"].entry == tmp_path / "wds_geode_test"
    assert by["vtab/clevr_closest_object_distance"].entry == tmp_path / "wds_vtab-clevr_closest_object_distance_test"


# ---------------------------------------------------------------- a cache written by DataComp's datasets 2.8.0

DATASETS_280 = Path(__file__).parent / "data" / "datasets-2.8.0"


def test_reads_a_cache_written_by_datasets_2_8_0(tmp_path):
    """tests/evaluation/data/datasets-2.8.0 holds a cache written by datasets 2.8.0 (DataComp's pin): a
    non-default config (TEST/1.1.0) for WinoGAViL, images as absolute paths into a cache that has since
    moved. Both tasks are read from it and score what the rows imply."""
    expected = json.loads((DATASETS_280 / "expected.json").read_text())
    keys = ["retrieval/flickr_1k_test_image_text_retrieval", "misc/winogavil"]
    s = evaluate(LookupEncoder(), "datacomp", DATASETS_280, tmp_path / "run", tasks=keys, partial=True)
    for key in keys:
        assert s["tasks"][key]["main_metric"] == pytest.approx(expected[key]), key
    line = {json.loads(x)["key"]: json.loads(x) for x in (tmp_path / "run" / "eval_results.jsonl").open()}
    assert line["misc/winogavil"]["metrics"]["avg_jaccard_score"] == pytest.approx(expected["winogavil_avg"])
    cell = next(iter(open_hf(DATASETS_280 / "hf_cache" / "nlphuji___winogavil")))["candidate_images"][0]
    assert cell["bytes"] is None and "/downloads/extracted/" in cell["path"]
