"""The expression language: parsing, errors, and the algebra (hypothesis property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.expressions import (
    Atom,
    BinOp,
    ExpressionError,
    UidsAtom,
    evaluate,
    parse,
    percent_threshold,
    scorer_names,
)

KNOWN = {
    "a": {"predicate": False, "default_percent": None},
    "b": {"predicate": False, "default_percent": None},
    "c": {"predicate": False, "default_percent": None},
    "hype": {"predicate": False, "default_percent": None},
    "dfn": {"predicate": False, "default_percent": 15.0},
    "clip_l14": {"predicate": False, "default_percent": None},
    "basic": {"predicate": True, "default_percent": None},
}


def test_atoms_and_structure():
    assert parse("hype10", KNOWN) == Atom("hype", 10.0, text="hype10", pos=0)
    assert parse("clip_l14_30", KNOWN).percent == 30.0
    assert parse("clip_l14_2.5", KNOWN).percent == 2.5
    assert parse("dfn", KNOWN).percent == 15.0
    assert parse("basic", KNOWN).is_predicate
    t = parse("clip_l14 >= -0.25", KNOWN)
    assert (t.cmp, t.value, t.percent) == (">=", -0.25, None)
    node = parse("hype10+dfn", KNOWN)
    assert isinstance(node, BinOp) and node.op == "+"
    # left associative, one precedence level: a + b & c == (a + b) & c
    node = parse("a10 + b10 & c10", KNOWN)
    assert node.op == "&" and node.left.op == "+"
    node = parse("a10 + (b10 & c10)", KNOWN)
    assert node.op == "+" and node.right.op == "&"
    u = parse("uids:/tmp/my-subset.npy - basic", KNOWN)
    assert isinstance(u.left, UidsAtom) and u.left.path == "/tmp/my-subset.npy" and u.op == "-"
    assert parse('uids:"/tmp/a b.npy"', KNOWN).path == "/tmp/a b.npy"
    assert scorer_names(parse("(a10 & basic) + a20 - dfn", KNOWN)) == ["a", "basic", "dfn"]


@pytest.mark.parametrize(
    "expr,pos,fragment",
    [
        ("hyp10", 0, "did you mean hype"),
        ("clip_l41_30", 0, "did you mean clip_l14"),
        ("a10 +", 5, "end of the expression"),
        ("(a10 + b10", 10, "expected ')'"),
        ("a10 b10", 4, "expected an operator"),
        ("a10)", 3, "unmatched ')'"),
        ("a0", 1, "outside (0, 100]"),
        ("a101", 1, "outside (0, 100]"),
        ("a", 1, "no default percent"),
        ("basic30", 5, "predicate"),
        ("basic>=1", 5, "predicate"),
        ("a10 >= 0.3", 4, "percent or a threshold"),
        ("a >= x", 5, "expected a number"),
        ("", 0, "empty"),
        ("a10 $ b10", 4, "unexpected character"),
        ("30a", 0, "must start with a filter name"),
        ("uids:", 5, "needs a path"),
    ],
)
def test_errors_name_the_position(expr, pos, fragment):
    with pytest.raises(ExpressionError) as err:
        parse(expr, KNOWN)
    assert err.value.pos == pos
    assert fragment in str(err.value)
    caret_line = str(err.value).splitlines()[-1]
    assert caret_line.index("^") == pos + 2  # two spaces of indent before the expression


# --- algebra over synthetic scores -----------------------------------------------------------

N = 60
scores_st = st.lists(st.integers(0, 6), min_size=N, max_size=N).map(lambda v: np.array(v, dtype=np.float64) / 10)
percent_st = st.integers(1, 100)


def _run(expr: str, table: dict[str, np.ndarray]) -> np.ndarray:
    mask, _ = evaluate(parse(expr, KNOWN), N, lambda name: table[name])
    return mask


def _top(s: np.ndarray, p: float) -> np.ndarray:
    """DataComp's rule written out: threshold = -np.sort(-s)[int(n * p / 100)] (clamped), keep >=."""
    idx = min(int(len(s) * (p / 100)), len(s) - 1)
    return s >= -np.sort(-s)[idx]


@settings(max_examples=60, deadline=None)
@given(a=scores_st, b=scores_st, c=scores_st, p=percent_st, q=percent_st, r=percent_st)
def test_set_laws(a, b, c, p, q, r):
    t = {"a": a, "b": b, "c": c}
    A, B, C = f"a{p}", f"b{q}", f"c{r}"
    ma, mb, mc = _top(a, p), _top(b, q), _top(c, r)
    np.testing.assert_array_equal(_run(A, t), ma)
    np.testing.assert_array_equal(_run(f"{A} + {B}", t), ma | mb)
    np.testing.assert_array_equal(_run(f"{A} & {B}", t), ma & mb)
    np.testing.assert_array_equal(_run(f"{A} - {B}", t), ma & ~mb)
    np.testing.assert_array_equal(_run(f"{A} + {B} & {C}", t), (ma | mb) & mc)  # left-assoc
    np.testing.assert_array_equal(_run(f"{A} + ({B} & {C})", t), ma | (mb & mc))
    # commutativity, associativity, distributivity, De Morgan for differences
    np.testing.assert_array_equal(_run(f"{A} + {B}", t), _run(f"{B} + {A}", t))
    np.testing.assert_array_equal(_run(f"{A} & {B}", t), _run(f"{B} & {A}", t))
    np.testing.assert_array_equal(_run(f"({A} + {B}) + {C}", t), _run(f"{A} + ({B} + {C})", t))
    np.testing.assert_array_equal(_run(f"({A} + {B}) & {C}", t), _run(f"({A} & {C}) + ({B} & {C})", t))
    np.testing.assert_array_equal(_run(f"{A} - ({B} + {C})", t), _run(f"{A} - {B} - {C}", t))
    np.testing.assert_array_equal(_run(f"{A} - ({B} & {C})", t), _run(f"({A} - {B}) + ({A} - {C})", t))
    # idempotence and absorption
    np.testing.assert_array_equal(_run(f"{A} + {A}", t), ma)
    np.testing.assert_array_equal(_run(f"{A} & ({A} + {B})", t), ma)
    assert not _run(f"{A} - {A}", t).any()
    # nesting: redundant parentheses change nothing
    np.testing.assert_array_equal(_run(f"((({A})) & (({B})))", t), ma & mb)


@settings(max_examples=80, deadline=None)
@given(a=scores_st, p=percent_st)
def test_ties_at_threshold_all_kept(a, p):
    m = _run(f"a{p}", {"a": a})
    k = int(N * (p / 100))
    # at least DataComp's n+1 rows (or all), never a row below the kept minimum, every tie kept
    assert m.sum() >= min(k + 1, N)
    kept_min = a[m].min()
    assert not ((a == kept_min) & ~m).any()
    assert (a[~m] < kept_min).all()
    assert percent_threshold(a, p) == kept_min


@settings(max_examples=40, deadline=None)
@given(a=scores_st)
def test_hundred_percent_keeps_everything_and_zero_is_refused(a):
    assert _run("a100", {"a": a}).all()
    with pytest.raises(ExpressionError, match="outside"):
        parse("a0", KNOWN)
    with pytest.raises(ExpressionError, match="outside"):
        parse("a_0", KNOWN)


@settings(max_examples=40, deadline=None)
@given(a=scores_st, v=st.integers(0, 6))
def test_thresholds_compare_the_combined_score(a, v):
    t = {"a": a}
    x = v / 10
    np.testing.assert_array_equal(_run(f"a>={x}", t), a >= x)
    np.testing.assert_array_equal(_run(f"a>{x}", t), a > x)
    np.testing.assert_array_equal(_run(f"a<={x}", t), a <= x)
    np.testing.assert_array_equal(_run(f"a<{x}", t), a < x)


def test_nan_scores_never_pass():
    a = np.array([np.nan, 0.5, 0.4, np.nan, 0.1, 0.9] * 10)
    m = _run("a100", {"a": a})
    assert m.sum() == 40 and not m[np.isnan(a)].any()
    m = _run("a90", {"a": a})  # the index lands among the NaNs: every scored row is kept
    assert m.sum() == 40
    m = _run("a10", {"a": a})  # int(60 * 0.1) = 6th largest = 0.9 (ties kept)
    assert m.sum() == 10
