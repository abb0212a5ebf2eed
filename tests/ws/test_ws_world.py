"""`ws` on the tiny world: oracle-clean samples rank above noisy ones (AUC beside each single LF's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.baselines.ws.auc_report import format_auc_table, noise_aucs
from harness.plugins import ScoringContext


@pytest.fixture(scope="module")
def world(tiny_world):
    return Path(tiny_world)  # the shared test world (tests/conftest.py)


def test_ws_ranks_clean_above_noise(world, tmp_path_factory) -> None:
    from harness.pool import Pool
    from harness.scoring import compute_terms

    pool = Pool(world / "pool")
    cache = tmp_path_factory.mktemp("scores")
    ctx = ScoringContext(pool=pool, models_dir=world / "models", options={"ws": {"cache_dir": str(cache)}})
    t = compute_terms(pool, "ws", ctx, cache)
    uid = pool.read_columns(["uid"]).column("uid").to_pylist()
    scores = {"ws": pd.Series(t.combined(), index=uid)}
    for col, v in t.terms.items():
        if col.startswith("lf_") and (v != 0).any():
            scores[col[3:]] = pd.Series(v, index=uid)
    oracle = pd.read_parquet(world / "oracle.parquet")
    aucs = noise_aucs(oracle, scores)
    print("\n" + format_auc_table(aucs, int((oracle["noise"] == "clean").sum())))
    # the size rules only vote bad on samples that otherwise look clean: the label model must not
    # learn them backwards (it did: AUC 0.215 against bad_image before the better-than-random bound)
    assert aucs.loc["bad_image", "ws"] > 0.55
    single = [c for c in aucs.columns if c not in ("ws", "n")]
    best = aucs.loc["any noise", single].max()
    # Known gap (issue 8): the five alignment LFs form one grouped source with 3**5 joint answers,
    # poorly estimated from 2,000 items, so ws trails its best single LF here: by under 0.04 on the
    # world v3 test world, by 0.042 (0.708 vs 0.750) on v4's, whose reference models were retrained.
    assert aucs.loc["any noise", "ws"] >= best - 0.05, f"ws {aucs.loc['any noise', 'ws']:.3f} vs best LF {best:.3f}"
    assert np.isfinite(t.combined()).all()
