"""Selection against DataComp's own rules, recomputed here with pandas/numpy as DataComp's
baselines/apply_filter.py does (threshold index, >=, ties, dtype, sorted order)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from filters_fakepool import datacomp_uids

from harness.expressions import ExpressionError
from harness.plugins import ScoringContext
from harness.pool import Pool
from harness.selection import select


def _datacomp_subset(uids) -> np.ndarray:
    arr = datacomp_uids(uids)
    arr.sort()
    return arr


def _metadata(root) -> pd.DataFrame:
    # DataComp lists the metadata directory and concatenates every parquet
    files = sorted((root / "metadata").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files])


def _select(pool_dir, expr, out, seed=0, cache=None):
    pool = Pool(pool_dir)
    info = select(pool, expr, out, ScoringContext(pool=pool), cache, seed=seed, progress=False)
    return np.load(out / "subset.npy"), info  # as DataComp's resharder loads it


def test_no_filter_is_every_uid(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    got, info = _select(root, "no_filter", tmp_path)
    want = _datacomp_subset(_metadata(root)["uid"].values)
    assert got.dtype == np.dtype("u8,u8")
    np.testing.assert_array_equal(got, want)
    assert info["kept"] == info["pool_size"] == 120


@pytest.mark.parametrize("fraction,percent", [(0.3, "30"), (0.29, "29"), (0.1, "10"), (0.5, "50")])
def test_clip_l14_percent_matches_datacomp(fake_pool_dir, tmp_path, fraction, percent):
    root, _ = fake_pool_dir
    df = _metadata(root)
    key = "clip_l14_similarity_score"
    n = int(len(df) * fraction)  # DataComp get_threshold
    threshold = -np.sort(-df[key].values)[n]
    want = _datacomp_subset(df[df[key] >= threshold]["uid"].values)
    got, info = _select(root, f"clip_l14_{percent}", tmp_path)
    np.testing.assert_array_equal(got, want)
    term = info["terms"][0]
    assert term["threshold"] == pytest.approx(float(threshold))
    assert term["kept"] == len(want)


def test_ties_at_the_threshold_are_kept(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _metadata(root)
    s = df["clip_l14_similarity_score"].values
    t = -np.sort(-s)[int(len(s) * 0.3)]
    assert (s == t).sum() > 1, "the fixture must put ties at the 30% threshold"
    got, _ = _select(root, "clip_l14_30", tmp_path)
    assert len(got) == int((s >= t).sum()) > int(len(s) * 0.3) + 1


def test_clip_b32_threshold_matches_datacomp(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _metadata(root)
    key = "clip_b32_similarity_score"
    want = _datacomp_subset(df[df[key] >= 0.28]["uid"].values)
    got, info = _select(root, "clip_b32>=0.28", tmp_path)
    np.testing.assert_array_equal(got, want)
    assert info["terms"][0]["cmp"] == ">=" and info["terms"][0]["value"] == 0.28


def test_hundred_percent_keeps_all(fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    got, _ = _select(root, "clip_b32_100", tmp_path)
    assert len(got) == len(df)


def test_random_is_seeded_and_sized(fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    a, info = _select(root, "random30", tmp_path / "a", seed=0)
    b, _ = _select(root, "random30", tmp_path / "b", seed=0)
    c, _ = _select(root, "random30", tmp_path / "c", seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(a) == len(c) == int(len(df) * 0.3) + 1  # DataComp's >= rule keeps index n too
    assert info["seed"] == 0


def test_subset_json_provenance(fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    _, info = _select(root, "(clip_l14_30 & basic) + clip_b32>=0.4", tmp_path)
    stored = json.loads((tmp_path / "subset.json").read_text())
    assert stored == json.loads(json.dumps(info))
    assert stored["expression"] == "(clip_l14_30 & basic) + clip_b32>=0.4"
    assert [t["text"] for t in stored["terms"]] == ["clip_l14_30", "basic", "clip_b32>=0.4"]
    assert stored["terms"][0]["percent"] == 30.0 and "threshold" in stored["terms"][0]
    assert stored["pool_size"] == len(df) and stored["kept"] == len(np.load(tmp_path / "subset.npy"))
    assert stored["detector"].startswith("fasttext lid.176")


def test_subset_from_datacomp_tools_reads_here(fake_pool_dir, tmp_path):
    """A DataComp-written subset (np.save of a sorted u8,u8 array, with a repeat) as a uids: term."""
    root, df = fake_pool_dir
    picked = list(df.uid[:10]) + [df.uid[3], df.uid[3]]
    arr = datacomp_uids(picked)
    arr.sort()
    np.save(tmp_path / "dc.npy", arr)
    got, info = _select(root, f"uids:{tmp_path / 'dc.npy'}", tmp_path / "o")
    np.testing.assert_array_equal(got, arr)  # multiplicity kept
    assert info["kept"] == 12 and info["unique"] == 10
    # minus a predicate removes a row entirely, repeats included: nothing is left, which select refuses
    # (issue 19: an empty selection is an error naming the expression and the per-term counts)
    with pytest.raises(ValueError, match=r"keeps no sample.*dc\.npy: 12, uids:.*dc\.npy: 12"):
        _select(root, f"uids:{tmp_path / 'dc.npy'} - uids:{tmp_path / 'dc.npy'}", tmp_path / "o2")
    # a raw u8,u8 buffer is refused as a uids: term (only reshard --subset takes one, as DataComp's does)
    arr.tofile(tmp_path / "raw.bin")
    with pytest.raises(ValueError, match=r"raw\.bin: not a \.npy file"):
        _select(root, f"uids:{tmp_path / 'raw.bin'}", tmp_path / "o3")


def test_bad_subset_files_are_clear_errors(fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    np.save(tmp_path / "wrong.npy", np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"wrong\.npy: dtype int64.*u8,u8"):
        _select(root, f"uids:{tmp_path / 'wrong.npy'}", tmp_path / "o")
    arr = datacomp_uids(df.uid[:5])
    arr.sort()
    np.save(tmp_path / "unsorted.npy", arr[::-1])
    with pytest.raises(ValueError, match=r"unsorted\.npy: uids are not sorted"):
        _select(root, f"uids:{tmp_path / 'unsorted.npy'}", tmp_path / "o")


def test_bad_expression_refused_before_work(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    with pytest.raises(ExpressionError, match="clip_l14"):
        _select(root, "clip_l41_30 & basic", tmp_path / "never")
    assert not (tmp_path / "never").exists()
