"""The real model scorers (dfn, tmars, hype) give the same table on Ray as locally, within 1e-6 (batches
are cut differently, so float reductions may differ in the last bits), on a slice of the tiny world:
every metadata file, and the shards cut to their first samples so that CPU time stays small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.benchmarks.scoring_engines import write_pool_slice
from harness.plugins import EngineSettings, ScoringContext
from harness.pool import Pool
from harness.scoring import score

MODEL_SCORERS = ["dfn", "tmars", "hype"]
SLICE = 48  # samples scored by each engine


@pytest.fixture(scope="module")
def world(tiny_world):
    return Path(tiny_world)  # the shared test world (tests/conftest.py)


@pytest.fixture(scope="module")
def world_slice(world, tmp_path_factory) -> Path:
    """The world's metadata and models, with shards cut to their first SLICE samples."""
    return write_pool_slice(world, tmp_path_factory.mktemp("world_slice") / "world", SLICE)


@pytest.mark.parametrize("name", MODEL_SCORERS)
def test_model_scorer_matches_local(ray_local, world_slice, tmp_path, name):
    pool = Pool(world_slice / "pool")
    ctx = ScoringContext(pool=pool, models_dir=world_slice / "models", batch_size=16)
    local = score(pool, name, ctx, tmp_path / "local", progress=False)
    ray = score(pool, name, ctx, tmp_path / "ray", progress=False, engine=EngineSettings("ray", workers=2))
    pd.testing.assert_series_equal(local["uid"], ray["uid"])
    assert local.attrs["record"] == ray.attrs["record"]  # key, rows, missing, what the reader met
    terms = ray.attrs["record"]["terms"]
    scored = local[terms[0]].notna()
    for t in terms:
        a, b = local[t].to_numpy(), ray[t].to_numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}.{t}: NaN rows differ")
        np.testing.assert_allclose(b[~np.isnan(b)], a[~np.isnan(a)], rtol=0, atol=1e-6, err_msg=f"{name}.{t}")
    assert 0 < int(scored.sum()) <= SLICE
