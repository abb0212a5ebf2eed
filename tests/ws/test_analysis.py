"""lf_table on a hand-made vote matrix: every value worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.baselines.ws.analysis import format_lf_table, lf_table
from harness.baselines.ws.auc_report import auc, format_auc_table, noise_aucs
from harness.baselines.ws.label_model import LabelModel

#             a   b   c
VOTES = np.array([
    [1, 1, 0],    # a,b overlap, agree
    [1, -1, 0],   # a,b conflict
    [0, -1, -1],  # b,c overlap, agree
    [-1, 0, 0],   # a alone
    [0, 0, 0],    # nobody
    [1, 0, -1],   # a,c conflict
])


def test_lf_table_exact() -> None:
    gold = np.array([1, 1, -1, -1, 1, 1])
    lm = LabelModel().fit(VOTES)
    t = lf_table(VOTES, ["a", "b", "c"], lm, gold=gold).set_index("lf")
    assert t["votes_good"].tolist() == [3, 1, 0]
    assert t["votes_bad"].tolist() == [1, 2, 2]
    np.testing.assert_allclose(t["coverage"], [4 / 6, 3 / 6, 2 / 6])
    # a overlaps on rows 0,1,5; b on 0,1,2; c on 2,5
    np.testing.assert_allclose(t["overlaps"], [3 / 6, 3 / 6, 2 / 6])
    # a conflicts on rows 1,5; b on row 1; c on row 5
    np.testing.assert_allclose(t["conflicts"], [2 / 6, 1 / 6, 1 / 6])
    # a right on rows 0,1,3,5 -> 4/4; b right on 0,2 of 0,1,2 -> 2/3; c right on 2 of 2,5 -> 1/2
    np.testing.assert_allclose(t["empirical_accuracy"], [1.0, 2 / 3, 1 / 2])
    np.testing.assert_allclose(t["learned_accuracy"], lm.accuracies_)
    text = format_lf_table(t.reset_index(), lm)
    assert text.splitlines()[0].startswith("| lf ")
    assert "| a " in text and "0.667" in text and "learned P(good)" in text


def test_lf_table_checks_shapes() -> None:
    with pytest.raises(ValueError, match="3 names for 2"):
        lf_table(np.zeros((2, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="gold labels"):
        lf_table(VOTES, ["a", "b", "c"], gold=np.ones(3))


def test_auc_exact() -> None:
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    # pairs (2>1), (2<3), (nan lowest: 2 > nan), (4>1), (4>3), (4>nan) -> 5/6
    assert auc(np.array([2.0, 4.0]), np.array([1.0, 3.0, np.nan])) == pytest.approx(5 / 6)


def test_noise_aucs_table() -> None:
    oracle = pd.DataFrame({"uid": list("abcdef"),
                           "noise": ["clean", "clean", "mismatched", "mismatched", "non_english", "clean"]})
    score = pd.Series([0.9, 0.8, 0.1, 0.85, 0.95, 0.7], index=list("abcdef"))
    t = noise_aucs(oracle, {"s": score, "arr": score.to_numpy()})
    # clean {.9,.8,.7} vs mismatched {.1,.85}: 3 + 1 wins of 6 -> 4/6; vs non_english {.95}: 0/3
    assert t.loc["mismatched", "s"] == pytest.approx(4 / 6)
    assert t.loc["non_english", "s"] == 0.0
    assert t.loc["any noise", "s"] == pytest.approx(4 / 9)
    assert t.loc["any noise", "n"] == 3
    assert (t["s"] == t["arr"]).all()
    md = format_auc_table(t, 3)
    assert md.splitlines()[2].startswith("| mismatched | 2 | 0.667 |")
