"""DataComp's predicate baselines (basic, laion2b, image_based) on the fake pool, rules written out."""

from __future__ import annotations

import numpy as np
import pandas as pd
from filters_fakepool import datacomp_uids

from harness import langid
from harness.plugins import ScoringContext
from harness.pool import Pool
from harness.selection import select


def _meta(root) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((root / "metadata").glob("*.parquet"))])


def _subset(root, expr, out, **ctx_kw):
    pool = Pool(root)
    select(pool, expr, out, ScoringContext(pool=pool, **ctx_kw), None, progress=False)
    return np.load(out / "subset.npy")


def _want(df, mask):
    arr = datacomp_uids(df.uid[np.asarray(mask)])
    arr.sort()
    return arr


def test_langid_detects_english():
    got = langid.detect_english(["a photo of a dog on the beach", "un chien brun qui court sur la plage"])
    assert got.tolist() == [True, False]
    langs, probs = langid.detect(["ein rotes Auto steht vor dem Haus"])
    assert langs == ["de"] and 0 < probs[0] <= 1
    assert langid.detector_name().startswith("fasttext lid.176")


def test_basic_follows_datacomp_rules(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    en = langid.detect_english(list(df.text))
    words = df.text.apply(lambda x: len(x.split()))
    chars = df.text.apply(len)
    lo = np.minimum(df.original_width, df.original_height)
    hi = np.maximum(df.original_width, df.original_height)
    mask = en & (words > 2) & (chars > 5) & (lo >= 200) & (hi / lo <= 3.0)
    assert 0 < mask.sum() < len(df)
    np.testing.assert_array_equal(_subset(root, "basic", tmp_path), _want(df, mask))


def test_laion2b(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    mask = langid.detect_english(list(df.text), kind=langid.GCLD3) & (df.clip_b32_similarity_score >= 0.28)
    np.testing.assert_array_equal(_subset(root, "laion2b", tmp_path), _want(df, mask))


def test_image_based_with_given_centroids(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    feats = np.concatenate(
        [np.load(f)["l14_img"].astype(np.float32) for f in sorted((root / "metadata").glob("*.npz"))]
    )
    rng = np.random.default_rng(3)
    centroids = rng.normal(size=(12, feats.shape[1])).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    reference = rng.normal(size=(3, feats.shape[1])).astype(np.float32)
    np.save(tmp_path / "centroids.npy", centroids)
    np.save(tmp_path / "ref.npy", reference)
    targets = np.unique(np.argmax(reference @ centroids.T, axis=1))
    labels = np.argmax(feats @ centroids.T, axis=1)
    texts = list(df.text)
    caption = (
        langid.detect_english(texts)
        & (np.array([len(t.split()) for t in texts]) > 1)
        & (np.array([len(t) for t in texts]) > 5)
    )
    mask = caption & np.isin(labels, targets)
    assert 0 < mask.sum() < len(df)
    opts = {"image_based": {"centroids": str(tmp_path / "centroids.npy"), "reference": str(tmp_path / "ref.npy")}}
    got = _subset(root, "image_based", tmp_path / "a", options=opts)
    np.testing.assert_array_equal(got, _want(df, mask))
    # and its intersection with the L/14 30% CLIP score (DataComp-1B's filter)
    s = df.clip_l14_similarity_score.values
    top = s >= -np.sort(-s)[int(len(s) * 0.3)]
    got = _subset(root, "image_based & clip_l14_30", tmp_path / "b", options=opts)
    np.testing.assert_array_equal(got, _want(df, mask & top))


def test_image_based_fits_kmeans_on_the_pool(tmp_path):
    from filters_fakepool import make_fake_pool

    make_fake_pool(tmp_path / "world" / "pool", n_files=2, rows=30, n_shards=1)
    ref_dir = tmp_path / "world" / "imagenet_like"
    ref_dir.mkdir()
    feats = np.load(tmp_path / "world" / "pool" / "metadata" / "00000000.npz")["l14_img"][:5]
    np.save(ref_dir / "l14_img.npy", feats)  # reference images = 5 pool images
    pool = Pool(tmp_path / "world")
    ctx = ScoringContext(pool=pool, models_dir=tmp_path / "world" / "models", options={"image_based": {"k": 8}})
    info = select(pool, "image_based", tmp_path / "o", ctx, None, progress=False)
    assert 0 < info["kept"] < 60
    select(pool, "image_based", tmp_path / "o2", ctx, None, progress=False)  # deterministic k-means
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "subset.npy"), np.load(tmp_path / "o2" / "subset.npy"))
