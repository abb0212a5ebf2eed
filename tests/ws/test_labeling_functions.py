"""Labeling functions: exact votes on hand-made metadata and score tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.baselines.ws.labeling_functions import (
    LFConfig,
    apply_lfs,
    available_lfs,
    band_votes,
    compute_votes,
    lf_inputs,
    quantile_votes,
    score_thresholds,
)

META = pd.DataFrame({
    "uid": [f"{i:032x}" for i in range(6)],
    "text": ["a red bicycle leaning on a brick wall", "le chat noir dort sur le canapé rouge", "dog",
             "a photo", "two brown horses running in a green field", None],
    "original_width": [640, 800, 300, 1000, 150, np.nan],
    "original_height": [480, 600, 300, 200, 400, 500],
    "clip_b32_similarity_score": [0.35, 0.30, 0.10, 0.20, 0.33, 0.25],
    "clip_l14_similarity_score": [0.30, 0.31, 0.12, 0.18, 0.29, 0.22],
})


def test_rule_votes_exact() -> None:
    votes, names = compute_votes(META, names=["english", "caption_length", "image_size", "aspect_ratio"])
    assert names == ["english", "caption_length", "image_size", "aspect_ratio"]
    # French caption votes bad, None abstains (one- and two-word captions are anyone's guess)
    np.testing.assert_array_equal(votes[[0, 1, 4, 5], 0], [0, -1, 0, 0])
    np.testing.assert_array_equal(votes[:, 1], [0, 0, -1, -1, 0, 0])  # "dog" (1 word), "a photo" (2 words)
    np.testing.assert_array_equal(votes[:, 2], [0, 0, 0, 0, -1, 0])   # 150 px short side; NaN abstains
    np.testing.assert_array_equal(votes[:, 3], [0, 0, 0, -1, 0, 0])   # 1000 x 200 is 5:1


def test_quantile_bands() -> None:
    s = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, np.nan])
    # 0.3 / 0.7 quantiles of 0..9 are 2.7 and 6.3: below 2.7 bad, at/above 6.3 good, NaN abstains
    np.testing.assert_array_equal(quantile_votes(s, 0.3, 0.7), [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(band_votes(s, (5.0, 5.0)), [-1] * 5 + [1] * 5 + [0])
    with pytest.raises(ValueError, match="low_quantile"):
        LFConfig(low_quantile=0.8, high_quantile=0.2)


def test_score_tables_by_uid_and_by_array() -> None:
    # a table covering only some uids, in another order: the rest get NaN and abstain
    dfn = pd.DataFrame({"uid": META["uid"][[4, 0, 2]].tolist(), "cos": [0.9, 0.8, 0.1]})
    inputs = lf_inputs(META, {"dfn": dfn})
    np.testing.assert_array_equal(inputs["dfn"].to_numpy(), [0.8, np.nan, 0.1, np.nan, 0.9, np.nan])
    assert "dfn" in available_lfs(inputs) and "hype" not in available_lfs(inputs)
    arr = np.array([0.8, np.nan, 0.1, np.nan, 0.9, np.nan])
    np.testing.assert_array_equal(lf_inputs(META, {"dfn": arr})["dfn"].to_numpy(), arr)
    votes, names = apply_lfs(inputs, ["dfn"], LFConfig(low_quantile=0.4, high_quantile=0.6))
    np.testing.assert_array_equal(votes[:, 0], [0, 0, -1, 0, 1, 0])


def test_batches_use_pool_thresholds() -> None:
    """Votes on a batch with the pool's cut points equal the votes on the whole pool."""
    inputs = lf_inputs(META)
    names = ["clip_b32", "clip_l14", "english"]
    whole, _ = apply_lfs(inputs, names)
    cuts = score_thresholds(inputs, names)
    assert set(cuts) == {"clip_b32", "clip_l14"}
    parts = [apply_lfs(inputs.iloc[i:i + 2].reset_index(drop=True), names, thresholds=cuts, check=False)[0]
             for i in range(0, 6, 2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_errors_name_the_culprit() -> None:
    with pytest.raises(ValueError, match="unknown labeling function"):
        compute_votes(META, names=["nope"])
    with pytest.raises(ValueError, match=r"\['dfn'\] have no input"):
        compute_votes(META, names=["dfn"])
    with pytest.raises(ValueError, match="no labeling function reads a 'other'"):
        lf_inputs(META, {"other": np.zeros(6)})
    with pytest.raises(ValueError, match="'dfn' repeats uids"):
        lf_inputs(META, {"dfn": pd.DataFrame({"uid": ["a", "a"], "cos": [1.0, 2.0]})})
    with pytest.raises(ValueError, match="several terms"):
        lf_inputs(META, {"hype": pd.DataFrame({"uid": ["a"], "x": [1.0], "y": [2.0]})})
