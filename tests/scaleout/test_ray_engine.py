"""The Ray engine gives the local engine's score tables: metadata scorers and predicates exactly,
model scorers exactly on exact arithmetic (and within 1e-6 for real models, test_ray_world.py), on a
pool with damaged samples, a truncated and an empty shard, after a worker is killed, and on resume."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.plugins import EngineSettings, ScoringContext, instantiate
from harness.pool import Pool
from harness.scoring import compute_many, read_score_table, score, score_record, term_names

METADATA_FILTERS = ["clip_b32", "clip_l14", "basic", "image_based", "random", "no_filter"]


def _ctx(root) -> ScoringContext:
    pool = Pool(root / "pool")
    return ScoringContext(pool=pool, batch_size=16, options={"image_based": {"k": 8}}, seed=3)


def _same_record(a: dict, b: dict) -> None:
    assert a == b  # scorer, settings, fingerprints, key, rows, missing, sample_stats: all equal


def test_metadata_filters_identical(ray_local, scaleout_world, tmp_path):
    root, df = scaleout_world
    ctx = _ctx(root)
    got = {}
    for engine in ("local", "ray"):
        filters = [instantiate(n, ctx) for n in METADATA_FILTERS]
        got[engine] = compute_many(ctx.pool, filters, ctx, tmp_path / engine, progress=False,
                                   engine=EngineSettings(engine, workers=2))
    for a, b in zip(got["local"], got["ray"], strict=True):
        assert a.filter.name == b.filter.name and list(a.terms) == list(b.terms) == list(term_names(a.filter))
        for t in a.terms:
            assert len(a.terms[t]) == len(df)
            np.testing.assert_array_equal(a.terms[t], b.terms[t], err_msg=f"{a.filter.name}.{t}")
        _same_record(a.record, b.record)
        if a.path is not None:  # the cached parquet files hold the same table and record
            pd.testing.assert_frame_equal(read_score_table(a.path), read_score_table(b.path))
            assert read_score_table(a.path).attrs == read_score_table(b.path).attrs
    # the filters really filtered: a test on all-kept or all-equal scores could not fail
    by = {t.filter.name: t for t in got["ray"]}
    assert 0 < by["basic"].terms["keep"].sum() < len(df)
    assert 0 < by["image_based"].terms["keep"].sum() < len(df)
    np.testing.assert_array_equal(by["clip_b32"].terms["score"], df.clip_b32_similarity_score.to_numpy(np.float64))


def test_model_scorer_identical_on_a_damaged_pool(ray_local, scaleout_world, tmp_path):
    root, df = scaleout_world
    ctx = _ctx(root)
    local = score(ctx.pool, "scaleout_pixels", ctx, tmp_path / "local", progress=False)
    ray = score(ctx.pool, "scaleout_pixels", ctx, tmp_path / "ray", progress=False, engine=EngineSettings("ray", workers=2))
    pd.testing.assert_frame_equal(local, ray)
    _same_record(local.attrs["record"], ray.attrs["record"])
    rec = ray.attrs["record"]
    stats = rec["sample_stats"]
    # what the pool holds: 2 samples without an image, a corrupt .json, 2 bad captions, a truncated shard
    assert (stats["undecodable_images"], stats["corrupt_samples"], stats["bad_captions"], stats["corrupt_shards"]) \
        == (2, 1, 2, 1)
    assert rec["missing"] == int(ray["pixel"].isna().sum()) > 2  # + the rows lost to the truncation
    scored = ray.dropna()
    assert len(scored) > 0.8 * len(df) and scored["pixel"].between(0, 1).all()
    assert scored["chars"].to_numpy().tolist() == [  # the captions as the shards hold them
        float(len(t)) if u not in _odd_captions(df) else _odd_captions(df)[u]
        for u, t in zip(df.set_index("uid").loc[scored.uid].index, df.set_index("uid").loc[scored.uid].text,
                        strict=True)
    ]


def _odd_captions(df) -> dict[str, float]:
    """Sample 13 has no caption (empty), sample 17's is 'caf\\xe9 ' + text (U+FFFD for the bad byte)."""
    return {df.uid[13]: 0.0, df.uid[17]: float(len("caf\ufffd " + df.text[17]))}


def test_worker_killed_mid_job(ray_local, scaleout_world, tmp_path):
    root, df = scaleout_world
    ctx = _ctx(root)
    marker = tmp_path / "died"
    victim = df.uid[100]  # in the third shard
    ctx.options["scaleout_crash"] = {"uid": victim, "marker": str(marker)}
    ray = score(ctx.pool, "scaleout_crash", ctx, tmp_path / "ray", progress=False, engine=EngineSettings("ray", workers=2))
    assert marker.exists(), "the worker never met the victim: nothing was killed"
    pid = int(marker.read_text())
    assert pid != os.getpid()  # a Ray worker died, not the test
    # the marker is there now: the local engine scores the same filter without dying
    local = score(ctx.pool, "scaleout_crash", ctx, tmp_path / "local", progress=False)
    pd.testing.assert_frame_equal(local, ray)
    assert not np.isnan(ray.set_index("uid").loc[victim, "pixel"])


def test_ray_resumes_from_finished_shards(ray_local, scaleout_world, tmp_path):
    """A shard whose work table exists (an interrupted run) is not scored again."""
    root, _ = scaleout_world
    ctx = _ctx(root)
    reference = score(ctx.pool, "scaleout_pixels", ctx, None, progress=False)
    filt = instantiate("scaleout_pixels", ctx)
    key = score_record(filt, ctx)["key"]
    work = tmp_path / f"scaleout_pixels-{key}.work"
    work.mkdir()
    done = ctx.pool.shards[2]  # pretend shard 2 was finished, with marked values
    rows = reference.set_index("uid")
    from harness.pool import iter_shard_samples

    uids = [s.uid for s in iter_shard_samples(done, decode_images=False)]
    pq.write_table(pa.table({"uid": uids, "pixel": np.full(len(uids), 7.0), "chars": rows.loc[uids, "chars"]}),
                   work / f"{done.stem}.parquet")
    got = score(ctx.pool, "scaleout_pixels", ctx, tmp_path, progress=False, engine=EngineSettings("ray", workers=2))
    g = got.set_index("uid")
    assert (g.loc[uids, "pixel"] == 7.0).all()  # kept from the work table, not rescored
    others = g.index.difference(uids)
    pd.testing.assert_series_equal(g.loc[others, "pixel"], rows.loc[others, "pixel"])
    assert not work.exists()  # cleaned up once the table is written


def test_unknown_engine_is_refused(scaleout_world):
    root, _ = scaleout_world
    ctx = _ctx(root)
    with pytest.raises(ValueError, match="unknown scoring engine 'spark'"):
        score(ctx.pool, "clip_b32", ctx, None, progress=False, engine=EngineSettings("spark"))


class _FakeRay:
    def __init__(self, cpus: int, gpus: int):
        self.res = {"CPU": float(cpus), "GPU": float(gpus)} if gpus else {"CPU": float(cpus)}

    def cluster_resources(self) -> dict:
        return self.res


def test_gpu_actors_share_the_gpus_evenly():
    from harness.engines.ray import gpu_share

    assert gpu_share(_FakeRay(64, 8), EngineSettings("ray")) == (32, 0.25)  # 4 decoding actors per GPU
    assert gpu_share(_FakeRay(12, 8), EngineSettings("ray")) == (12, 0.5)  # CPU-bound: 12 actors, 2 per GPU at most
    assert gpu_share(_FakeRay(64, 8), EngineSettings("ray", workers=8)) == (8, 1.0)
    assert gpu_share(_FakeRay(64, 2), EngineSettings("ray", workers=3)) == (3, 0.5)  # 3 actors fit on 2 GPUs
    with pytest.raises(RuntimeError, match="no GPUs"):
        gpu_share(_FakeRay(8, 0), EngineSettings("ray"))


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_image_based_fits_its_kmeans_once(ray_local, scaleout_world, tmp_path, engine):
    """setup() runs once per engine worker: on Ray the k-means is fitted once (on the driver), not
    once per metadata file (the pool has 4), and the result is image_based's."""
    root, df = scaleout_world
    log = tmp_path / "fits.log"
    ctx = _ctx(root)
    ctx = ScoringContext(pool=ctx.pool, batch_size=16, seed=3,
                         options={"image_based": {"k": 8},
                                  "scaleout_counted_image_based": {"k": 8, "fit_log": str(log)}})
    assert len(ctx.pool.metadata_files) == 4
    got = compute_many(ctx.pool, [instantiate("scaleout_counted_image_based", ctx)], ctx, None, progress=False,
                       engine=EngineSettings(engine, workers=2))[0]
    assert len(log.read_text().splitlines()) == 1
    plain = compute_many(ctx.pool, [instantiate("image_based", ctx)], ctx, None, progress=False)[0]
    np.testing.assert_array_equal(got.terms["keep"], plain.terms["keep"])
    assert 0 < got.terms["keep"].sum() < len(df)
