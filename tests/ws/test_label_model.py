"""The label model recovers known labeling-function accuracies and class balance."""

from __future__ import annotations

import numpy as np
import pytest

from harness.baselines.ws.label_model import LabelModel, check_votes, majority_vote

ACC = np.array([0.6, 0.7, 0.75, 0.8, 0.9, 0.95])
COV = np.array([0.3, 0.9, 0.5, 0.6, 0.4, 0.8])
TOL = 0.03  # stated tolerance on each recovered accuracy (20k items)


def synthetic(n: int, acc: np.ndarray, cov: np.ndarray, balance: float, seed: int):
    """Votes drawn from the model itself: class-independent coverage, one accuracy per function."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < balance, 1, -1)
    votes = np.zeros((n, len(acc)), dtype=np.int8)
    for j, (a, c) in enumerate(zip(acc, cov, strict=True)):
        fires = rng.random(n) < c
        right = rng.random(n) < a
        votes[:, j] = np.where(fires, np.where(right, y, -y), 0)
    return votes, y


@pytest.mark.parametrize("model", ["dawid_skene", "one_coin"])
@pytest.mark.parametrize(("balance", "seed"), [(0.5, 0), (0.7, 1), (0.3, 2)])
def test_recovers_accuracies_and_balance(model: str, balance: float, seed: int) -> None:
    votes, y = synthetic(20_000, ACC, COV, balance, seed)
    lm = LabelModel(model=model).fit(votes)
    assert lm.converged_
    np.testing.assert_allclose(lm.accuracies_, ACC, atol=TOL)
    assert abs(lm.class_balance_ - (y == 1).mean()) < TOL
    np.testing.assert_allclose(lm.coverage_, (votes != 0).mean(axis=0))
    # the posterior beats the majority vote, which weighs a 0.6 function like a 0.95 one
    p = lm.predict_proba(votes)
    mv = majority_vote(votes)
    acc_lm = ((p > 0.5) == (y == 1)).mean()
    acc_mv = ((mv > 0.5) == (y == 1))[mv != 0.5].mean() * (mv != 0.5).mean() + 0.5 * (mv == 0.5).mean()
    assert acc_lm > acc_mv


def test_posterior_is_the_closed_form() -> None:
    votes, _ = synthetic(5_000, ACC, COV, 0.6, 3)
    prior = lambda lm: np.log(lm.class_balance_ / (1 - lm.class_balance_))  # noqa: E731
    lm = LabelModel(model="one_coin").fit(votes)
    logit = np.log(lm.accuracies_ / (1 - lm.accuracies_))
    expect = 1 / (1 + np.exp(-(prior(lm) + votes @ logit)))
    np.testing.assert_allclose(lm.predict_proba(votes), expect, rtol=1e-12)
    # dawid_skene: Bayes' rule over the per-class answer tables, item by item
    ds = LabelModel().fit(votes)
    answer = np.where(votes == 1, 0, np.where(votes == -1, 1, 2))
    cols = np.arange(votes.shape[1])
    lg = np.log(ds.cond_good_[cols, answer]).sum(1) + np.log(ds.class_balance_)
    lb = np.log(ds.cond_bad_[cols, answer]).sum(1) + np.log(1 - ds.class_balance_)
    np.testing.assert_allclose(ds.predict_proba(votes), 1 / (1 + np.exp(lb - lg)), rtol=1e-9)
    np.testing.assert_allclose(ds.cond_good_.sum(1), 1.0)


def test_em_likelihood_increases_and_fit_is_deterministic() -> None:
    votes, _ = synthetic(5_000, ACC, COV, 0.4, 4)
    a, b = LabelModel().fit(votes), LabelModel().fit(votes[::-1])  # row order must not matter
    np.testing.assert_allclose(a.accuracies_, b.accuracies_, rtol=1e-12)
    trace = np.array(a.log_likelihood_trace_)
    # EM on the posterior with a weak prior: the data log-likelihood may dip by a hair, never more
    assert (np.diff(trace) > -1e-3).all() and trace[-1] > trace[0]


def test_fixed_class_balance_and_all_abstain_rows() -> None:
    votes, _ = synthetic(4_000, ACC, COV, 0.5, 5)
    votes[:100] = 0
    lm = LabelModel(model="one_coin", class_balance=0.8).fit(votes)
    assert lm.class_balance_ == 0.8
    np.testing.assert_allclose(lm.predict_proba(votes[:100]), 0.8)  # no evidence: the prior
    assert LabelModel(class_balance=0.8).fit(votes).class_balance_ == 0.8


def test_unipolar_functions() -> None:
    """Functions that only ever vote bad (language, size rules) are handled and weighted."""
    rng = np.random.default_rng(6)
    n = 20_000
    y = np.where(rng.random(n) < 0.6, 1, -1)
    votes = np.zeros((n, 4), dtype=np.int8)
    for j, (a, c) in enumerate([(0.85, 0.8), (0.8, 0.9), (0.75, 0.7)]):
        fires, right = rng.random(n) < c, rng.random(n) < a
        votes[:, j] = np.where(fires, np.where(right, y, -y), 0)
    votes[:, 3] = np.where((y == -1) & (rng.random(n) < 0.5), -1, 0)  # a precise "bad" detector
    lm = LabelModel().fit(votes)
    np.testing.assert_allclose(lm.accuracies_, [0.85, 0.8, 0.75, 1.0], atol=TOL)
    assert abs(lm.class_balance_ - (y == 1).mean()) < TOL
    # P(fires | bad) = 0.5 and the detector never fires on good items
    assert abs(lm.cond_bad_[3, 1] - 0.5) < TOL and lm.cond_good_[3, 1] < 1e-3
    assert lm.predict_proba(votes)[votes[:, 3] == -1].max() < 0.05
    # the one-coin model assumes abstains carry no information, so it gets the balance wrong here:
    # the reason dawid_skene is the default
    assert abs(LabelModel(model="one_coin").fit(votes).class_balance_ - (y == 1).mean()) > 0.05


def _hidden_defect(n: int, seen_as_good: float, seed: int):
    """Four two-sided functions see one defect; 40% of bad items carry a second defect that they
    miss (they call those items good with probability `seen_as_good`). A one-sided detector votes
    bad on 90% of those items and on 4% of good items (accuracy ~0.9)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.5, 1, -1)
    hidden = (y == -1) & (rng.random(n) < 0.4)
    votes = np.zeros((n, 5), dtype=np.int8)
    for j, (a, c) in enumerate([(0.85, 0.8), (0.8, 0.9), (0.75, 0.7), (0.8, 0.6)]):
        fires, right = rng.random(n) < c, rng.random(n) < a
        v = np.where(hidden, np.where(rng.random(n) < seen_as_good, 1, -1), np.where(right, y, -y))
        votes[:, j] = np.where(fires, v, 0)
    fires = np.where(hidden, rng.random(n) < 0.9, (y == 1) & (rng.random(n) < 0.04))
    votes[:, 4] = np.where(fires, -1, 0)
    return votes, y


@pytest.mark.parametrize("seen_as_good", [0.55, 0.6])
def test_one_sided_function_is_not_flipped(seen_as_good: float) -> None:
    """The label-flip case: a bad-only detector fires on items the others call good. Without the
    better-than-random constraint EM explains its votes with the good class (accuracy 0.33 / 0.16,
    and flagged items' P(good) rises); with it the detector counts as evidence of bad."""
    votes, y = _hidden_defect(20_000, seen_as_good, seed=7)
    flagged = votes[:, 4] == -1
    assert (y[flagged] == -1).mean() > 0.88  # the detector really is ~0.9 accurate
    lm = LabelModel().fit(votes)
    assert lm.accuracies_[4] > 0.5
    assert lm.cond_bad_[4, 1] >= 1.5 * lm.cond_good_[4, 1] - 1e-9  # min_accuracy 0.6: ratio >= 1.5
    without = LabelModel().fit(votes[:, :4]).predict_proba(votes[:, :4])
    assert lm.predict_proba(votes)[flagged].mean() < without[flagged].mean() - 0.05
    # the plain "better than random" bound (0.5) at least stops the flip: the detector is inert
    lm5 = LabelModel(min_accuracy=0.5).fit(votes)
    assert lm5.cond_bad_[4, 1] >= lm5.cond_good_[4, 1] - 1e-9
    assert lm5.predict_proba(votes)[flagged].mean() <= without[flagged].mean() + 1e-6


def test_better_than_random_holds_for_every_function() -> None:
    """After fitting, every ungrouped function's votes are likelier under the class they name; the
    one-coin accuracies are >= min_accuracy; a bad min_accuracy is refused."""
    votes, _ = _hidden_defect(5_000, 0.8, seed=3)
    lm = LabelModel(min_accuracy=0.7).fit(votes)
    k = 0.7 / 0.3
    assert (lm.cond_good_[:, 0] >= k * lm.cond_bad_[:, 0] - 1e-9).all()
    assert (lm.cond_bad_[:, 1] >= k * lm.cond_good_[:, 1] - 1e-9).all()
    assert (LabelModel(model="one_coin", min_accuracy=0.7).fit(votes).accuracies_ >= 0.7 - 1e-12).all()
    with pytest.raises(ValueError, match="min_accuracy"):
        LabelModel(min_accuracy=0.4).fit(votes)


def test_bad_votes_are_refused_with_position() -> None:
    with pytest.raises(ValueError, match=r"row 1, labeling function b"):
        check_votes(np.array([[0, 1], [1, 2]]), ["a", "b"])
    with pytest.raises(ValueError, match="2-D"):
        check_votes(np.array([1, 0, -1]))
    with pytest.raises(ValueError, match="NaN at row 0"):
        check_votes(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="unknown label model"):
        LabelModel(model="snorkel").fit(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="not fitted"):
        LabelModel().predict_proba(np.zeros((2, 2)))
    lm = LabelModel().fit(np.array([[1, -1], [1, 1]]))
    with pytest.raises(ValueError, match="fitted on 2"):
        lm.predict_proba(np.zeros((2, 3)))
