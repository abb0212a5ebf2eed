"""Item 3: a subset .npy with the wrong dtype or unsorted; an unknown filter name; a malformed expression;
a percent outside (0, 100].

Behaviour under test: a bad subset is a ValueError naming the file, refused before the resharder touches its
output directory; a bad expression is an ExpressionError with the position (and a caret line, and the
nearest known names for an unknown one), refused before any score is computed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness import expressions
from harness.expressions import ExpressionError, load_subset, parse
from harness.plugins import Needs, PluginError, Scorer, ScoringContext, get_filter, register
from harness.pool import UID_DTYPE, Pool, uids_to_array
from harness.reshard import reshard
from harness.selection import select


def _bad_subsets(tmp_path, uids: list[str]) -> dict[str, tuple]:
    good = np.sort(uids_to_array(uids[:5]))
    raw = good.tobytes()
    cases = {
        "int64": (lambda p: np.save(p, np.arange(5, dtype=np.int64)), "dtype int64"),
        "u4_pairs": (lambda p: np.save(p, np.zeros(5, np.dtype("u4,u4"))), "dtype"),
        "two_d": (lambda p: np.save(p, np.stack([good, good])), "1-d"),
        "unsorted": (lambda p: np.save(p, good[::-1]), "not sorted"),
        "pickled": (lambda p: np.save(p, np.array([{"uid": uids[0]}], dtype=object), allow_pickle=True),
                    "unreadable|dtype"),
        "truncated": (lambda p: p.write_bytes(_npy_bytes(good)[:90]), "unreadable"),
        "short_data": (lambda p: p.write_bytes(_npy_bytes(good)[:-8]), "unreadable"),
        "raw_odd_size": (lambda p: p.write_bytes(raw[:-3]), "neither a .npy"),
        "empty_file": (lambda p: p.write_bytes(b""), "neither a .npy"),
    }
    return cases


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


CASES = ["int64", "u4_pairs", "two_d", "unsorted", "pickled", "truncated", "short_data", "raw_odd_size", "empty_file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_subset_file_is_refused_naming_it(case, gen_pool, tmp_path):
    write, match = _bad_subsets(tmp_path, gen_pool.uids)[case]
    path = tmp_path / f"{case}.npy"
    write(path)
    with pytest.raises(ValueError, match=match) as err:
        load_subset(path)
    assert str(path) in str(err.value)

    out = tmp_path / "shards"
    out.mkdir()
    (out / "00000000.tar").write_bytes(b"a previous, finished output")
    with pytest.raises(ValueError, match=match):
        reshard(Pool(gen_pool.root), path, out, workers=1)
    assert (out / "00000000.tar").read_bytes() == b"a previous, finished output"  # untouched


def test_bad_subset_in_an_expression_is_refused_before_a_subset_is_written(gen_pool, tmp_path):
    path = tmp_path / "unsorted.npy"
    np.save(path, np.sort(uids_to_array(gen_pool.uids[:4]))[::-1])
    ctx = ScoringContext(pool=Pool(gen_pool.root))
    with pytest.raises(ValueError, match="not sorted") as err:
        select(Pool(gen_pool.root), f"uids:{path}", tmp_path / "run", ctx, tmp_path / "scores", progress=False)
    assert str(path) in str(err.value)
    assert not (tmp_path / "run" / "subset.npy").exists()


def test_a_valid_subset_with_repeats_and_raw_buffer_form_loads(gen_pool, tmp_path):
    """The refusals above are not over-eager: DataComp's two accepted forms load unchanged."""
    arr = np.sort(uids_to_array(gen_pool.uids[:3] + gen_pool.uids[:1]))
    np.save(tmp_path / "a.npy", arr)
    (tmp_path / "b.bin").write_bytes(arr.tobytes())
    assert load_subset(tmp_path / "a.npy").tolist() == arr.tolist()
    assert load_subset(tmp_path / "b.bin").dtype == UID_DTYPE


# ------------------------------------------------------------------------------------------------
# expressions


def test_unknown_filter_names_position_and_nearest_names():
    with pytest.raises(ExpressionError) as err:
        parse("dfn + clip_l15_30")
    e = err.value
    assert e.pos == 6
    assert "unknown filter 'clip_l15_30'" in str(e) and "clip_l14" in str(e)
    assert str(e).splitlines()[-1] == " " * 8 + "^"  # the caret sits under the bad term
    with pytest.raises(PluginError, match="unknown filter 'clip_l15'.*did you mean clip_l14"):
        get_filter("clip_l15")


def test_unknown_filter_is_refused_before_any_scoring(gen_pool, tmp_path):
    ctx = ScoringContext(pool=Pool(gen_pool.root))
    with pytest.raises(ExpressionError, match="unknown filter 'no_such_filter'"):
        select(Pool(gen_pool.root), "clip_l14_30 & no_such_filter", tmp_path / "run", ctx, tmp_path / "scores")
    assert not (tmp_path / "scores").exists() and not (tmp_path / "run").exists()


MALFORMED = {
    "": (0, "empty"),
    "   ": (0, "empty"),
    "(": (1, "expected a filter term"),
    "(clip_l14_30": (12, "expected ')'"),
    "clip_l14_30)": (11, "unmatched ')'"),
    "clip_l14_30 +": (13, "end of the expression"),
    "+ clip_l14_30": (0, "expected a filter term"),
    "clip_l14_30 dfn": (12, "expected an operator"),
    "clip_l14_30 && dfn": (13, "expected a filter term"),
    "clip_b32>=": (10, "expected a number"),
    "clip_b32 >= abc": (12, "expected a number"),
    "clip_b32>=1e999": (10, "finite"),
    "clip_l14_30>=0.2": (11, "not both"),
    "basic_30": (5, "predicate"),
    "basic>0.5": (5, "predicate"),
    "30clip_l14": (0, "must start with a filter name"),
    "clip_l14_30 ; rm -rf /": (12, "unexpected character"),
    "uids:": (5, "needs a path"),
    'uids:"unterminated': (5, "unterminated"),
    "random": (6, "no default percent"),
}


@pytest.mark.parametrize("expr", list(MALFORMED))
def test_malformed_expression_reports_position(expr):
    pos, match = MALFORMED[expr]
    with pytest.raises(ExpressionError, match=re.escape(match)) as err:
        parse(expr)
    assert err.value.pos == pos
    assert f"(at position {pos})" in str(err.value)


@pytest.mark.parametrize("expr", ["clip_l14_0", "clip_l14_0.0", "clip_l14_100.5", "clip_l14_101", "clip_l14_1000",
                                  "dfn0", "(dfn + hype_200)"])
def test_percent_outside_0_100_is_refused(expr):
    with pytest.raises(ExpressionError, match=r"outside \(0, 100\]"):
        parse(expr)


def test_percent_bounds_are_inclusive_of_100_and_tiny_positive():
    assert parse("clip_l14_100").percent == 100.0
    assert parse("clip_l14_0.001").percent == pytest.approx(0.001)
    scores = np.array([0.3, 0.1, 0.2])
    assert expressions.percent_threshold(scores, 100) == 0.1
    for bad in (0, -5, 100.0001, float("nan")):
        with pytest.raises(ValueError, match=r"outside \(0, 100\]"):
            expressions.percent_threshold(scores, bad)


@pytest.mark.parametrize("percent", [0, -1, 100.5, float("nan"), "30"])
def test_plugin_default_percent_outside_0_100_is_refused_at_registration(percent):
    cls = type("BadDefault", (Scorer,), {
        "name": "rel_bad_default", "needs": Needs(), "default_percent": percent,
        "score_metadata": lambda self, batch, ctx: {"score": np.zeros(len(batch))},
    })
    with pytest.raises(PluginError, match="default_percent"):
        register(cls)
