"""Item 4: a filter plugin that raises, or returns NaN, inf or the wrong length (test-local plugin classes).

Behaviour under test: a PluginError naming the filter, the term (for bad values) and where it happened (the
metadata file, or the shard and sample uids); no score table and no subset is written; shard results
finished before the failure are kept as resume points.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.plugins import Needs, PluginError, Predicate, Scorer, ScoringContext
from harness.pool import Pool
from harness.scoring import compute_terms
from harness.selection import select

BEHAVIOURS = {
    "raises": (r"raised RuntimeError: plugin bug on purpose", None),
    "nan": (r"term 'b': nan at row 3", lambda n: _put(n, np.nan)),
    "inf": (r"term 'b': inf at row 3", lambda n: _put(n, np.inf)),
    "neg_inf": (r"term 'b': -inf at row 3", lambda n: _put(n, -np.inf)),
    "short": (r"term 'b': \d+ values for \d+ rows", lambda n: np.zeros(n - 1)),
    "long": (r"term 'b': \d+ values for \d+ rows", lambda n: np.zeros(n + 2)),
    "two_d": (r"term 'b': \d+ values for \d+ rows", lambda n: np.zeros((n, 2))),
    "strings": (r"term 'b': not numeric", lambda n: np.array(["x"] * n)),
    "missing_term": (r"did not return term\(s\) \['b'\]", "drop"),
    "not_a_dict": (r"returned list, expected a dict", "list"),
}


def _put(n: int, value: float) -> np.ndarray:
    out = np.arange(n, dtype=float)
    out[3] = value
    return out


def _make(kind: str, behaviour: str) -> type:
    _, bad = BEHAVIOURS[behaviour]

    def produce(n: int):
        if behaviour == "raises":
            raise RuntimeError("plugin bug on purpose")
        if bad == "drop":
            return {"a": np.zeros(n)}
        if bad == "list":
            return [np.zeros(n), np.zeros(n)]
        return {"a": np.zeros(n), "b": bad(n)}

    if kind == "metadata":
        body = {"needs": Needs(columns=("text",)), "score_metadata": lambda self, batch, ctx: produce(len(batch))}
    else:
        body = {"needs": Needs(captions=True), "score_samples": lambda self, samples, ctx: produce(len(samples))}
    return type(f"Bad_{kind}_{behaviour}", (Scorer,), {
        "name": f"rel_bad_{kind}_{behaviour}", "terms": ("a", "b"), "default_percent": 50.0,
        "combine": lambda self, t: t["a"].to_numpy() + t["b"].to_numpy(), **body,
    })


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("kind", ["metadata", "samples"])
def test_misbehaving_scorer_is_a_plugin_error_naming_it(kind, behaviour, gen_pool, tmp_path, registered):
    cls = registered(_make(kind, behaviour))
    pool = Pool(gen_pool.root)
    ctx = ScoringContext(pool=pool, batch_size=4)
    match = BEHAVIOURS[behaviour][0]
    with pytest.raises(PluginError, match=match) as err:
        select(pool, f"{cls.name}_50", tmp_path / "run", ctx, tmp_path / "scores", progress=False)
    msg = str(err.value)
    assert f"filter {cls.name!r}" in msg
    assert ("00000000.parquet" in msg) if kind == "metadata" else ("shard 00000000.tar" in msg)
    assert not (tmp_path / "run" / "subset.npy").exists()
    assert not list((tmp_path / "scores").glob("*.parquet"))


def test_failure_in_a_later_shard_keeps_earlier_shards_as_resume_points(gen_pool, tmp_path, registered):
    calls: list[str] = []

    class Flaky(Scorer):
        name = "rel_flaky"
        needs = Needs(captions=True)
        default_percent = 50.0
        broken = True

        def score_samples(self, samples, ctx):
            calls.append(samples[0].shard)
            if Flaky.broken and samples[0].shard == "00000001.tar":
                raise OSError("disk went away")
            return {"score": np.array([len(s.caption) for s in samples], float)}

    registered(Flaky)
    pool = Pool(gen_pool.root)
    ctx = ScoringContext(pool=pool, batch_size=100)
    with pytest.raises(PluginError, match="rel_flaky.*OSError: disk went away.*00000001.tar"):
        compute_terms(pool, "rel_flaky", ctx, tmp_path / "scores", progress=False)
    work = list((tmp_path / "scores").glob("rel_flaky-*.work"))
    assert [p.name for p in work[0].iterdir()] == ["00000000.parquet"]
    Flaky.broken = False
    calls.clear()
    t = compute_terms(pool, "rel_flaky", ctx, tmp_path / "scores", progress=False)
    assert calls == ["00000001.tar"]  # the finished shard was not scored again
    assert t.terms["score"].tolist() == [float(len(c)) for c in gen_pool.captions]


def test_setup_and_combine_failures_name_the_filter(gen_pool, tmp_path, registered):
    class BadSetup(Scorer):
        name = "rel_bad_setup"
        needs = Needs(captions=True)
        default_percent = 50.0

        def setup(self, ctx):
            raise FileNotFoundError("model.pt")

        def score_samples(self, samples, ctx):
            return {"score": np.zeros(len(samples))}

    class BadCombine(Scorer):
        name = "rel_bad_combine"
        terms = ("a", "b")
        needs = Needs(columns=("text",))
        default_percent = 50.0
        result = "raise"

        def score_metadata(self, batch, ctx):
            return {"a": np.ones(len(batch)), "b": np.ones(len(batch))}

        def combine(self, t):
            if BadCombine.result == "raise":
                raise KeyError("c")
            if BadCombine.result == "nan":
                return np.full(len(t), np.nan)
            return np.ones(len(t) + 1)

    registered(BadSetup)
    registered(BadCombine)
    pool = Pool(gen_pool.root)
    ctx = ScoringContext(pool=pool)
    with pytest.raises(PluginError, match=r"'rel_bad_setup': setup\(\) raised FileNotFoundError: model.pt"):
        compute_terms(pool, "rel_bad_setup", ctx, tmp_path / "scores", progress=False)
    for result, match in (("raise", r"combine\(\) raised KeyError"), ("nan", r"combine\(\) gave nan at row 0"),
                          ("long", r"combine\(\) gave 21 values for 20 rows")):
        BadCombine.result = result
        with pytest.raises(PluginError, match=match):
            select(pool, "rel_bad_combine_50", tmp_path / "run", ctx, tmp_path / "scores", progress=False)
        assert not (tmp_path / "run" / "subset.npy").exists()


@pytest.mark.parametrize("result, match", [
    ("ints", "must return booleans, got int64"),
    ("short", "keep\\(\\) gave 9 values for 10 rows"),
    ("raise", "keep\\(\\) raised ZeroDivisionError"),
])
def test_misbehaving_predicate_names_it(result, match, gen_pool, tmp_path, registered):
    class BadKeep(Predicate):
        name = f"rel_bad_keep_{result}"
        needs = Needs(columns=("text",))

        def keep(self, batch, ctx):
            n = len(batch)
            if result == "raise":
                return 1 / 0
            return np.ones(n, np.int64) if result == "ints" else np.ones(n - 1, bool)

    registered(BadKeep)
    pool = Pool(gen_pool.root)
    with pytest.raises(PluginError, match=match) as err:
        select(pool, BadKeep.name, tmp_path / "run", ScoringContext(pool=pool), tmp_path / "scores", progress=False)
    assert BadKeep.name in str(err.value) and "00000000.parquet" in str(err.value)
