"""The tiny world's pool is in DataComp's layout (DataComp's download_upstream.py output)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

EXPECTED_SCHEMA = {
    "uid": pa.string(),
    "url": pa.string(),
    "text": pa.string(),
    "original_width": pa.int64(),
    "original_height": pa.int64(),
    "clip_b32_similarity_score": pa.float32(),
    "clip_l14_similarity_score": pa.float32(),
    "face_bboxes": pa.list_(pa.list_(pa.float64())),
    "sha256": pa.string(),
}
UID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def metadata(tiny_world):
    meta_dir = tiny_world / "pool" / "metadata"
    stems = sorted(p.stem for p in meta_dir.glob("*.parquet"))
    tables = {s: pq.read_table(meta_dir / f"{s}.parquet") for s in stems}
    npzs = {s: dict(np.load(meta_dir / f"{s}.npz")) for s in stems}
    return tables, npzs


@pytest.fixture(scope="module")
def shard_samples(tiny_world):
    """{uid: (shard, key, jpg bytes, txt, json)} read from every shard."""
    out = {}
    for tar_path in sorted((tiny_world / "pool" / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = sorted({name.split(".")[0] for name in members})
        assert sorted(members) == sorted(f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")), tar_path
        stats = json.loads((tar_path.parent / f"{tar_path.stem}_stats.json").read_text())
        assert stats["successes"] == stats["count"] == len(keys)
        for k in keys:
            assert re.fullmatch(r"\d{9}", k) and k.startswith(tar_path.stem[-5:]), k
            rec = json.loads(members[f"{k}.json"])
            assert rec["key"] == k
            out[rec["uid"]] = (tar_path.stem, k, members[f"{k}.jpg"], members[f"{k}.txt"].decode(), rec)
    return out


def test_metadata_columns_and_dtypes(metadata):
    tables, _ = metadata
    assert len(tables) >= 2, "several metadata files, so multi-file readers are exercised"
    for stem, t in tables.items():
        assert re.fullmatch(r"[0-9a-f]{32}", stem)
        assert t.schema.names == list(EXPECTED_SCHEMA)
        for name, typ in EXPECTED_SCHEMA.items():
            assert t.schema.field(name).type == typ, (stem, name, t.schema.field(name).type)


def test_uids_unique_and_hex(metadata, tiny_world):
    tables, _ = metadata
    uids = [u for t in tables.values() for u in t.column("uid").to_pylist()]
    world = json.loads((tiny_world / "world.json").read_text())
    assert len(uids) == len(set(uids)) == world["pool"]["samples"]
    assert all(UID.match(u) for u in uids)


def test_npz_keys_shapes_norms_and_alignment(metadata):
    tables, npzs = metadata
    for stem, t in tables.items():
        arrs = npzs[stem]
        assert set(arrs) == {"b32_img", "b32_txt", "l14_img", "l14_txt"}
        for key, a in arrs.items():
            assert a.dtype == np.float16 and a.ndim == 2 and a.shape[0] == t.num_rows, (stem, key, a.shape)
            norms = np.linalg.norm(a.astype(np.float32), axis=1)
            np.testing.assert_allclose(norms, 1.0, atol=5e-3)
        assert arrs["b32_img"].shape[1] != arrs["l14_img"].shape[1], "two model sizes"
        # rows aligned with the parquet: the stored score is the cosine of the row's features
        for tag in ("b32", "l14"):
            cos = np.sum(arrs[f"{tag}_img"].astype(np.float32) * arrs[f"{tag}_txt"].astype(np.float32), axis=1)
            score = t.column(f"clip_{tag}_similarity_score").to_numpy()
            np.testing.assert_allclose(cos, score, atol=5e-3)


def test_shards_match_metadata(metadata, shard_samples, tiny_world):
    tables, npzs = metadata
    meta_rows = {}
    for stem, t in tables.items():
        for i, row in enumerate(t.to_pylist()):
            meta_rows[row["uid"]] = (stem, i, row)
    assert set(shard_samples) == set(meta_rows)
    for uid, (_, _, jpg, txt, rec) in shard_samples.items():
        _, _, row = meta_rows[uid]
        assert rec["uid"] == uid and rec["caption"] == txt == row["text"]
        assert rec["sha256"] == row["sha256"] == hashlib.sha256(jpg).hexdigest()
        assert (rec["original_width"], rec["original_height"]) == (row["original_width"], row["original_height"])
        assert rec["url"] == row["url"]
    # a few images re-encoded by ref_b32 reproduce their npz rows (features belong to the right uid)
    from harness.models import load_clip

    clip = load_clip(tiny_world / "models" / "ref_b32")
    uids = sorted(shard_samples)[:8]
    feats = clip.encode_images([Image.open(io.BytesIO(shard_samples[u][2])) for u in uids])
    for u, f in zip(uids, feats, strict=True):
        stem, i, _ = meta_rows[u]
        np.testing.assert_allclose(npzs[stem]["b32_img"][i].astype(np.float32), f, atol=2e-3)


def test_declared_sizes_follow_basic_filtering(tiny_world, metadata):
    tables, _ = metadata
    meta = pa.concat_tables(list(tables.values())).to_pandas()
    oracle = pq.read_table(tiny_world / "oracle.parquet").to_pandas()
    df = meta.merge(oracle, on="uid")
    assert len(df) == len(meta)
    short = df[["original_width", "original_height"]].min(axis=1)
    aspect = df[["original_width", "original_height"]].max(axis=1) / short
    passes = (short >= 200) & (aspect <= 3)
    bad = df["noise"] == "bad_image"
    assert passes[~bad].all() and not passes[bad].any()


def test_oracle_text_boxes(tiny_world, shard_samples):
    oracle = pq.read_table(tiny_world / "oracle.parquet").to_pandas()
    text = oracle[oracle["noise"] == "text_in_image"]
    assert len(text) > 0 and (oracle.loc[oracle["noise"] != "text_in_image", "text_x0"] == -1).all()
    for row in text.itertuples():
        img = Image.open(io.BytesIO(shard_samples[row.uid][2]))
        assert 0 <= row.text_x0 < row.text_x1 <= img.width and 0 <= row.text_y0 < row.text_y1 <= img.height
    dups = oracle[oracle["noise"] == "near_duplicate"]
    assert dups["dup_of"].isin(set(oracle["uid"])).all()
