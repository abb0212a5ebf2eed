"""Pool reader: uid conversion, metadata alignment, validation, shard streaming."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filters_fakepool import datacomp_uids, make_fake_pool

from harness.pool import (
    Pool,
    PoolError,
    array_to_uids,
    find_uids,
    sort_uids,
    uid_order,
    uid_ranges,
    uids_to_array,
)


def test_uid_conversion_matches_datacomp(fake_pool_dir):
    _, df = fake_pool_dir
    ours = uids_to_array(list(df.uid))
    ref = datacomp_uids(df.uid)
    assert ours.dtype == np.dtype("u8,u8")
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(uids_to_array(pa.array(list(df.uid))), ref)
    assert array_to_uids(ref) == list(df.uid)
    # extremes, uppercase input
    ext = ["0" * 32, "f" * 32, "8000000000000000" + "0" * 15 + "1"]
    np.testing.assert_array_equal(uids_to_array(ext), datacomp_uids(ext))
    np.testing.assert_array_equal(uids_to_array(["ABCDEF" + "0" * 26]), datacomp_uids(["abcdef" + "0" * 26]))


def test_sort_uids_equals_numpy_structured_sort():
    rng = np.random.default_rng(1)
    arr = np.empty(500, np.dtype("u8,u8"))
    arr["f0"] = rng.integers(0, 5, 500).astype(np.uint64)  # many shared high words
    arr["f1"] = rng.integers(0, 2**63, 500).astype(np.uint64)
    ref = arr.copy()
    ref.sort()
    np.testing.assert_array_equal(sort_uids(arr), ref)


@pytest.mark.parametrize("high_words", [3, 2**63])  # many shared high words; (almost) none
def test_uid_lookup_agrees_with_a_plain_search(high_words):
    rng = np.random.default_rng(2)
    pool = np.empty(300, np.dtype("u8,u8"))
    pool["f0"] = rng.integers(0, high_words, 300).astype(np.uint64)
    pool["f1"] = rng.integers(0, 4, 300).astype(np.uint64)  # repeats of whole uids too
    order = uid_order(pool)
    ref = np.argsort(pool, order=("f0", "f1"), kind="stable")
    np.testing.assert_array_equal(order, ref)  # stable: equal uids keep their order
    ordered = pool[order]
    query = np.concatenate([pool[:50], np.array([(2**64 - 1, 7), (0, 2**64 - 1)], dtype=pool.dtype)])
    start, end = uid_ranges(ordered, query)
    found = find_uids(ordered, query)
    for q, a, b, f in zip(query, start, end, found, strict=True):
        rows = [i for i, u in enumerate(ordered) if u["f0"] == q["f0"] and u["f1"] == q["f1"]]
        assert b - a == len(rows)
        assert list(range(a, b)) == rows if rows else f == -1
        assert f == (rows[0] if rows else -1)
    assert found[-2:].tolist() == [-1, -1]


@pytest.mark.parametrize("bad", ["abc", "g" * 32, "0" * 33])
def test_bad_uid_is_named(bad):
    with pytest.raises(PoolError, match="is not 32 hexadecimal"):
        uids_to_array(["0" * 32, bad], where="meta.parquet")
    with pytest.raises(PoolError, match="meta.parquet"):
        uids_to_array(pa.array(["0" * 32, bad]), where="meta.parquet")


def test_read_columns_and_iter_metadata(fake_pool_dir):
    root, df = fake_pool_dir
    pool = Pool(root)
    assert len(pool) == len(df)
    t = pool.read_columns(["uid", "clip_l14_similarity_score"])
    assert t.column("uid").to_pylist() == list(df.uid)
    batches = list(pool.iter_metadata(["text"], ["l14_img"]))
    assert [b.offset for b in batches] == [0, 40, 80]
    for b in batches:
        assert b.table.column_names == ["uid", "text"]
        assert b.features["l14_img"].shape == (len(b), 16)
    with pytest.raises(PoolError, match="missing column"):
        list(pool.iter_metadata(["no_such_column"]))


def test_npz_misaligned_is_an_error_naming_the_file(tmp_path):
    make_fake_pool(tmp_path, n_files=2, rows=5, n_shards=1)
    npz = tmp_path / "metadata" / "00000001.npz"
    with np.load(npz) as z:
        arrs = {k: z[k] for k in z.files}
    arrs["l14_img"] = arrs["l14_img"][:4]
    np.savez(npz, **arrs)
    with pytest.raises(PoolError, match=r"00000001\.npz.*4 rows.*5"):
        list(Pool(tmp_path).iter_metadata([], ["l14_img"]))


def test_duplicate_uid_names_uid_and_files(tmp_path):
    df = make_fake_pool(tmp_path, n_files=2, rows=5, n_shards=1)
    p = tmp_path / "metadata" / "00000001.parquet"
    t = pq.read_table(p).to_pandas()
    t.loc[2, "uid"] = df.uid[0]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), p)
    with pytest.raises(PoolError, match=rf"duplicate uid {df.uid[0]}.*00000000.parquet.*00000001.parquet"):
        Pool(tmp_path).validate()


def _append_member(shard, name: str, data: bytes) -> None:
    with tarfile.open(shard, "a") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def test_iter_samples_skips_and_counts_corruption(tmp_path):
    make_fake_pool(tmp_path, n_files=1, rows=10, n_shards=2, bad_image_rows=(3,))
    _append_member(tmp_path / "shards" / "00000000.tar", "orphan.txt", b"caption without json")
    truncated = tmp_path / "shards" / "00000001.tar"
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 3])  # breaks in the middle of a member
    pool = Pool(tmp_path)
    samples = list(pool.iter_samples())
    st = pool.sample_stats
    assert st.corrupt_shards == 1 and "00000001.tar: corrupt shard" in " ".join(st.errors)
    assert st.corrupt_samples == 1 and any("orphan: corrupt sample (missing .json)" in e for e in st.errors)
    assert st.undecodable_images == 1
    assert [s.image is None for s in samples].count(True) == 1
    assert 5 <= len(samples) < 10  # all of shard 0, part of shard 1
    assert all(len(s.uid) == 32 and s.caption for s in samples)
    assert [s.image.size for s in samples if s.image is not None][0] == (8, 8)


def test_fingerprint_follows_content_not_names_or_times(tmp_path):
    """Keys follow bytes: a touched file keeps its fingerprint, a `cp -p`-style rewrite (same size and
    mtime, other bytes) changes it, and the shards have a fingerprint of their own."""
    make_fake_pool(tmp_path, n_files=1, rows=4, n_shards=1)
    pool = Pool(tmp_path)
    fp, shards_fp = pool.fingerprint(), pool.shards_fingerprint()
    assert fp == Pool(tmp_path).fingerprint()
    shard = tmp_path / "shards" / "00000000.tar"
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert (pool.fingerprint(), pool.shards_fingerprint()) == (fp, shards_fp)

    parquet = next((tmp_path / "metadata").glob("*.parquet"))
    st = parquet.stat()
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    parquet.write_bytes(bytes(data))
    os.utime(parquet, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime, as cp -p leaves it
    assert parquet.stat().st_size == st.st_size and parquet.stat().st_mtime_ns == st.st_mtime_ns
    assert pool.fingerprint() != fp
    assert pool.shards_fingerprint() == shards_fp

    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert pool.shards_fingerprint() != shards_fp


def test_world_dir_is_accepted(tmp_path):
    make_fake_pool(tmp_path / "pool", n_files=1, rows=3, n_shards=1)
    (tmp_path / "world.json").write_text(json.dumps({}))
    pool = Pool(tmp_path)
    assert pool.root == tmp_path / "pool" and pool.name == tmp_path.name


def test_uids_are_in_metadata_order(fake_pool_dir):
    root, df = fake_pool_dir
    pool = Pool(root)
    np.testing.assert_array_equal(pool.uids(), datacomp_uids(df.uid))


def test_selection_refuses_a_pool_with_duplicate_uids(tmp_path):
    from harness.plugins import ScoringContext
    from harness.selection import select

    df = make_fake_pool(tmp_path / "pool", n_files=2, rows=5, n_shards=1)
    p = tmp_path / "pool" / "metadata" / "00000001.parquet"
    t = pq.read_table(p).to_pandas()
    t.loc[0, "uid"] = df.uid[4]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), p)
    pool = Pool(tmp_path / "pool")
    with pytest.raises(PoolError, match=f"duplicate uid {df.uid[4]}"):
        select(pool, "no_filter", tmp_path / "out", ScoringContext(pool=pool), tmp_path / "scores", progress=False)
    assert not (tmp_path / "out" / "subset.npy").exists()
