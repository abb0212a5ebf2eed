"""A generative label model for weak supervision: labeling-function votes -> P(good).

Two models, both fitted by EM from a deterministic start, over the distinct vote patterns:

`one_coin` (Dawid-Skene with one accuracy per function):
    y_i ~ Bernoulli(pi)                    pi = P(good), the class balance
    whether function j votes on item i does not depend on y_i (abstains carry no information), and
    when it votes, P(vote_ij = y_i) = a_j; votes are independent given y_i.
    Posterior log-odds of good = logit(pi) + sum_j v_ij * logit(a_j)   (v in {-1, 0, +1}).

`dawid_skene` (the default; Dawid & Skene 1979 with abstain as a third answer):
    each function j has its own distribution over {+1, -1, abstain} for good items and for bad items
    (4 free numbers per function). This is what our functions need: the language, length and size
    rules only ever vote bad, so *whether* they vote depends on the class, which the one-coin model
    assumes away (it then mis-estimates the class balance). The learned accuracy reported for a
    function is P(its vote is right | it votes) under the fitted model.

EM starts from the majority vote (ties -> 0.5); `dawid_skene` first runs `one_coin` and starts from
its posterior. Both are deterministic and fix the label-swap symmetry on the side where most functions
beat chance. Dirichlet pseudo-counts (`prior_strength`, default 1 vote) keep every probability away
from 0 and 1, so a function that never fires gets its prior and no logit is infinite.

Votes are compressed to their distinct patterns (one base-3 integer per row, np.unique) before EM, so
a 12.8M-row pool with a dozen functions costs one unique pass plus EM over a few thousand patterns.

Why not Snorkel: `pip install snorkel` (0.10.0) resolves with our pins but pulls tensorboard, grpcio,
absl-py, werkzeug and munkres for a model that is a page of numpy; this one is small, deterministic
and tested against known accuracies (tests/ws/test_label_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelModel", "check_votes", "majority_vote"]

_ACC_CLIP = 1e-3  # accuracies live in [_ACC_CLIP, 1 - _ACC_CLIP] so logits stay finite


def check_votes(votes: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Validate a vote matrix (items x functions, values -1/0/+1) and return it as int8."""
    arr = np.asarray(votes)
    if arr.ndim != 2:
        raise ValueError(f"vote matrix must be 2-D (items x labeling functions), got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        row, col = np.argwhere(np.isnan(arr))[0]
        who = names[col] if names and col < len(names) else f"column {col}"
        raise ValueError(f"vote matrix has NaN at row {row}, labeling function {who}; use 0 to abstain")
    bad = (arr != -1) & (arr != 0) & (arr != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        who = names[col] if names and col < len(names) else f"column {col}"
        raise ValueError(
            f"vote matrix value {arr[row, col]!r} at row {row}, labeling function {who}: "
            "votes must be +1 (good), -1 (bad) or 0 (abstain)"
        )
    if names is not None and len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} names for {arr.shape[1]} labeling functions")
    return arr.astype(np.int8, copy=False)


def majority_vote(votes: np.ndarray) -> np.ndarray:
    """P(good) by unweighted majority: 1, 0, or 0.5 on ties and all-abstain rows."""
    s = check_votes(votes).sum(axis=1, dtype=np.int64)
    return np.where(s > 0, 1.0, np.where(s < 0, 0.0, 0.5))


def _compress(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct vote patterns, their counts, and each row's pattern index."""
    n, m = votes.shape
    if m <= 39:  # 3**39 < 2**63: each row is one base-3 integer, and 1-D unique is fast
        powers = 3 ** np.arange(m, dtype=np.int64)
        codes = (votes.astype(np.int64) + 1) @ powers
        uniq, first, inverse, counts = np.unique(codes, return_index=True, return_inverse=True, return_counts=True)
        patterns = votes[first]
    else:
        patterns, inverse, counts = np.unique(votes, axis=0, return_inverse=True, return_counts=True)
    return patterns.astype(np.int8), counts.astype(np.float64), inverse.reshape(-1)


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


_MODELS = ("dawid_skene", "one_coin")


def _group_codes(U: np.ndarray, members: list[int]) -> np.ndarray:
    """Each pattern's joint answer within a group, as a base-3 integer (digit 0/1/2 = +1/-1/abstain)."""
    digits = np.where(U[:, members] == 1, 0, np.where(U[:, members] == -1, 1, 2)).astype(np.int64)
    return digits @ (3 ** np.arange(len(members), dtype=np.int64))


def _member_marginals(table: np.ndarray, size: int) -> np.ndarray:
    """P(answer of each member) from a joint table over 3**size codes: shape (size, 3)."""
    codes = np.arange(3**size)
    out = np.zeros((size, 3))
    for k in range(size):
        digit = (codes // 3**k) % 3
        out[k] = np.bincount(digit, weights=table, minlength=3)
    return out


@dataclass
class LabelModel:
    """Label model fitted by EM (see the module docstring).

    model: "dawid_skene" (class-conditional vote and abstain rates) or "one_coin" (one accuracy each).
    groups: dawid_skene only: lists of column indices of functions that depend on each other (e.g.
        several image-text alignment scores). A group is modelled as ONE source whose answer is the
        joint vote of its members (3**k answers), so agreeing correlated functions are not counted
        as independent evidence; groups are independent given the class. Ungrouped columns are
        groups of one. One-coin initialisation then uses each group's majority as its single vote.
    class_balance: fix P(good) instead of learning it (None = learn it).
    prior_strength, prior_accuracy: pseudo-votes pulling each function towards prior_accuracy (and,
        for dawid_skene, towards its observed abstain rate); negligible at pool sizes.
    min_accuracy: the "better than random" assumption, in [0.5, 1): one_coin keeps every accuracy
        >= min_accuracy; dawid_skene keeps, for every single (ungrouped) function and each answer v
        it gives, P(v | class v names) >= k * P(v | other class) with k = min_accuracy/(1-min_accuracy)
        (k = 1 at 0.5: a vote is at least as likely under the class it names). The M-step is the
        constrained maximum (see _ordered_rates), so EM still never lowers the likelihood.
    """

    model: str = "dawid_skene"
    groups: list[list[int]] | None = None
    class_balance: float | None = None
    max_iter: int = 500
    tol: float = 1e-7
    prior_strength: float = 1.0
    prior_accuracy: float = 0.7
    min_accuracy: float = 0.6

    # fitted state
    accuracies_: np.ndarray | None = None      # P(vote right | votes), per function
    class_balance_: float | None = None
    coverage_: np.ndarray | None = None        # fraction of items each function votes on
    # dawid_skene: per function P(vote = +1, -1, 0 | good) and (| bad), shape (functions, 3)
    cond_good_: np.ndarray | None = None
    cond_bad_: np.ndarray | None = None
    group_tables_: list[tuple[list[int], np.ndarray, np.ndarray]] | None = None  # (members, good, bad)
    n_iter_: int = 0
    converged_: bool = False
    log_likelihood_: float = float("nan")
    log_likelihood_trace_: list[float] | None = None

    def _resolve_groups(self, m: int) -> list[list[int]]:
        groups = [list(map(int, g)) for g in (self.groups or []) if len(g)]
        seen = [c for g in groups for c in g]
        bad = [c for c in seen if not 0 <= c < m]
        if bad:
            raise ValueError(f"label model groups name column(s) {bad}, but there are {m} functions")
        if len(set(seen)) != len(seen):
            raise ValueError(f"label model groups overlap: {self.groups}")
        if self.model == "one_coin" and any(len(g) > 1 for g in groups):
            raise ValueError("groups of dependent functions need model='dawid_skene'")
        if any(len(g) > 12 for g in groups):
            raise ValueError("a group of more than 12 functions has too many joint answers (3**k)")
        return groups + [[c] for c in range(m) if c not in set(seen)]

    def fit(self, votes: np.ndarray) -> LabelModel:
        if self.model not in _MODELS:
            raise ValueError(f"unknown label model {self.model!r}; choose one of {', '.join(_MODELS)}")
        L = check_votes(votes)
        n, m = L.shape
        if n == 0 or m == 0:
            raise ValueError(f"cannot fit a label model on an empty vote matrix of shape {L.shape}")
        if not 0.5 <= self.min_accuracy < 1.0:
            raise ValueError(f"min_accuracy must be in [0.5, 1), got {self.min_accuracy}")
        if self.class_balance is not None and not 0.0 < self.class_balance < 1.0:
            raise ValueError(f"class_balance must be in (0, 1), got {self.class_balance}")
        groups = self._resolve_groups(m)
        U, w, _ = _compress(L)
        self.coverage_ = (w @ (U != 0)) / n
        # one-coin on one vote per group (its majority), so dependent functions start as one voice
        G = np.stack([np.sign(U[:, g].sum(axis=1, dtype=np.int64)) for g in groups], axis=1).astype(np.int8)
        q, pi, acc_g = self._fit_one_coin(G, w)
        self.cond_good_ = self.cond_bad_ = self.group_tables_ = None
        if self.model == "one_coin":
            acc = np.empty(m)
            acc[[g[0] for g in groups]] = acc_g
        else:
            pi, tables = self._fit_dawid_skene(U, w, q, groups)
            self.group_tables_ = tables
            good, bad = np.zeros((m, 3)), np.zeros((m, 3))
            for members, tg, tb in tables:
                good[members] = _member_marginals(tg, len(members))
                bad[members] = _member_marginals(tb, len(members))
            self.cond_good_, self.cond_bad_ = good, bad
            right = pi * good[:, 0] + (1 - pi) * bad[:, 1]
            fires = pi * (1 - good[:, 2]) + (1 - pi) * (1 - bad[:, 2])
            acc = right / fires
        self.accuracies_ = acc
        self.class_balance_ = pi
        self.log_likelihood_ = self.log_likelihood_trace_[-1]
        return self

    def _new_pi(self, w: np.ndarray, q: np.ndarray) -> float:
        if self.class_balance is not None:
            return float(self.class_balance)
        return float(np.clip(w @ q / w.sum(), _ACC_CLIP, 1 - _ACC_CLIP))

    def _fit_one_coin(self, U: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        pos = (U == 1).astype(np.float64)
        neg = (U == -1).astype(np.float64)
        voted = w @ (pos + neg)
        coverage = voted / w.sum()
        a0, s = self.prior_accuracy, self.prior_strength
        q = majority_vote(U)
        acc, pi = np.full(U.shape[1], a0), self._new_pi(w, q)
        trace: list[float] = []
        self.converged_ = False
        for it in range(1, self.max_iter + 1):
            new_pi = self._new_pi(w, q)
            agree = (w * q) @ pos + (w * (1 - q)) @ neg
            # better than random: the binomial MLE under acc >= min_accuracy is the clipped one
            new_acc = np.clip((agree + s * a0) / (voted + s), max(_ACC_CLIP, self.min_accuracy), 1 - _ACC_CLIP)
            q = _sigmoid(_logit(new_pi) + U.astype(np.float64) @ _logit(new_acc))
            good, bad = _one_coin_conditionals(new_acc, coverage)
            trace.append(_loglik(U, w, new_pi, good, bad))
            delta = max(abs(new_pi - pi), float(np.max(np.abs(new_acc - acc))))
            pi, acc = new_pi, new_acc
            self.n_iter_ = it
            if delta < self.tol:
                self.converged_ = True
                break
        self.log_likelihood_trace_ = trace
        return q, pi, acc

    def _group_priors(self, members: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Prior answer tables of a group: its members independent, each voting with prior_accuracy
        at its observed coverage."""
        a0 = self.prior_accuracy
        good, bad = np.ones(1), np.ones(1)
        for c in members:  # digit k of the code is member k: build the product in that order
            cov = float(np.clip(self.coverage_[c], _ACC_CLIP, 1 - _ACC_CLIP))
            good = np.outer(np.array([cov * a0, cov * (1 - a0), 1 - cov]), good).reshape(-1)
            bad = np.outer(np.array([cov * (1 - a0), cov * a0, 1 - cov]), bad).reshape(-1)
        return good, bad

    def _fit_dawid_skene(self, U: np.ndarray, w: np.ndarray, q: np.ndarray,
                         groups: list[list[int]]) -> tuple[float, list[tuple[list[int], np.ndarray, np.ndarray]]]:
        s = self.prior_strength
        codes = [_group_codes(U, g) for g in groups]
        priors = [self._group_priors(g) for g in groups]
        pi = self._new_pi(w, q)
        tables: list[tuple[list[int], np.ndarray, np.ndarray]] = []
        trace = self.log_likelihood_trace_ or []
        self.converged_ = False
        floor = _ACC_CLIP * 1e-3
        kappa = self.min_accuracy / (1 - self.min_accuracy)
        for it in range(1, self.max_iter + 1):
            new_pi = self._new_pi(w, q)
            rg, rb = w * q, w * (1 - q)
            new_tables = []
            log_odds = np.full(len(w), _logit(new_pi))
            lg, lb = np.full(len(w), np.log(new_pi)), np.full(len(w), np.log1p(-new_pi))
            for g, code, (pg, pb) in zip(groups, codes, priors, strict=True):
                k = 3 ** len(g)
                tg = (np.bincount(code, weights=rg, minlength=k) + s * pg) / (rg.sum() + s)
                tb = (np.bincount(code, weights=rb, minlength=k) + s * pb) / (rb.sum() + s)
                if len(g) == 1:  # better than random: each answer likelier under the class it names
                    tg, tb = _better_than_random(tg, tb, rg.sum() + s, rb.sum() + s, kappa)
                tg, tb = np.maximum(tg, floor), np.maximum(tb, floor)
                new_tables.append((g, tg, tb))
                log_odds += np.log(tg[code]) - np.log(tb[code])
                lg += np.log(tg[code])
                lb += np.log(tb[code])
            q = _sigmoid(log_odds)
            trace.append(float(w @ np.logaddexp(lg, lb)))
            delta = abs(new_pi - pi)
            if tables:
                delta = max(delta, *(float(np.max(np.abs(a[1] - b[1]))) for a, b in zip(new_tables, tables, strict=True)),
                            *(float(np.max(np.abs(a[2] - b[2]))) for a, b in zip(new_tables, tables, strict=True)))
            pi, tables = new_pi, new_tables
            self.n_iter_ += 1
            if it > 1 and delta < self.tol:
                self.converged_ = True
                break
        self.log_likelihood_trace_ = trace
        return pi, tables

    def _check_fitted(self) -> None:
        if self.accuracies_ is None:
            raise RuntimeError("LabelModel is not fitted; call fit(votes) first")

    def log_odds(self, votes: np.ndarray) -> np.ndarray:
        """Posterior log-odds of good per row (float64)."""
        self._check_fitted()
        L = check_votes(votes)
        if L.shape[1] != len(self.accuracies_):
            raise ValueError(f"vote matrix has {L.shape[1]} functions, model was fitted on {len(self.accuracies_)}")
        U, _, inv = _compress(L)
        per_pattern = np.full(len(U), _logit(self.class_balance_))
        if self.group_tables_ is None:
            per_pattern += U.astype(np.float64) @ _logit(self.accuracies_)
        else:
            for members, tg, tb in self.group_tables_:
                code = _group_codes(U, members)
                per_pattern += np.log(tg[code]) - np.log(tb[code])
        return per_pattern[inv]

    def predict_proba(self, votes: np.ndarray) -> np.ndarray:
        """P(good) per row."""
        return _sigmoid(self.log_odds(votes))

    def fit_predict(self, votes: np.ndarray) -> np.ndarray:
        return self.fit(votes).predict_proba(votes)


def _ordered_rates(c_a: float, n_a: float, c_b: float, n_b: float, kappa: float) -> tuple[float, float]:
    """Maximise c_a log a + (n_a-c_a) log(1-a) + c_b log b + (n_b-c_b) log(1-b) subject to a >= kappa*b.

    Two binomial rates (a: the answer's rate under the class it names, b: under the other class). If
    the free estimates break the order, the optimum lies on a = kappa*b; there the derivative in b is
    decreasing, so bisection finds it (for kappa = 1 this is the pooled rate).
    """
    a, b = c_a / n_a, c_b / n_b
    if a >= kappa * b:
        return a, b
    lo, hi = 0.0, min(1.0, 1.0 / kappa)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        grad = (c_a + c_b) / mid - kappa * (n_a - c_a) / (1 - kappa * mid) - (n_b - c_b) / (1 - mid)
        lo, hi = (mid, hi) if grad > 0 else (lo, mid)
    b = 0.5 * (lo + hi)
    return kappa * b, b


def _set_rate(table: np.ndarray, idx: int, rate: float) -> np.ndarray:
    """Set one answer's probability, rescaling the others so the table still sums to 1 (their MLE
    given 'not this answer' is unchanged by the constraint)."""
    out = table.copy()
    rest = 1.0 - table[idx]
    out[idx] = rate
    others = np.arange(len(table)) != idx
    out[others] = table[others] * ((1.0 - rate) / rest) if rest > 0 else (1.0 - rate) / others.sum()
    return out


def _better_than_random(tg: np.ndarray, tb: np.ndarray, n_good: float, n_bad: float,
                        kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Project one function's (+1, -1, abstain) tables onto P(+1|good) >= kappa P(+1|bad) and
    P(-1|bad) >= kappa P(-1|good), by the constrained binomial MLE of each answer in turn."""
    a, b = _ordered_rates(tg[0] * n_good, n_good, tb[0] * n_bad, n_bad, kappa)
    tg, tb = _set_rate(tg, 0, a), _set_rate(tb, 0, b)
    a, b = _ordered_rates(tb[1] * n_bad, n_bad, tg[1] * n_good, n_good, kappa)
    return _set_rate(tg, 1, b), _set_rate(tb, 1, a)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _one_coin_conditionals(acc: np.ndarray, coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-coin model as P(+1, -1, 0 | good) and (| bad) tables."""
    c = coverage
    good = np.stack([c * acc, c * (1 - acc), 1 - c], axis=1)
    bad = np.stack([c * (1 - acc), c * acc, 1 - c], axis=1)
    return good, bad


def _loglik(U: np.ndarray, w: np.ndarray, pi: float, good: np.ndarray, bad: np.ndarray) -> float:
    """Observed-data log-likelihood of the vote patterns under P(answer | class) tables."""
    idx = np.where(U == 1, 0, np.where(U == -1, 1, 2))  # (k, m) answer index
    cols = np.arange(U.shape[1])
    with np.errstate(divide="ignore"):
        lg = np.log(good[cols, idx]).sum(axis=1)
        lb = np.log(bad[cols, idx]).sum(axis=1)
    joint = np.logaddexp(np.log(pi) + lg, np.log1p(-pi) + lb)
    return float(w @ joint)
