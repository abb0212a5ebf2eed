"""The filter lifecycle the engine drives (setup once per worker before any data) and declared
dependencies on other filters' score tables (computed or read through the cache, keyed into the
dependent table's key)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from harness import plugins
from harness.engines import EngineSettings, make_engine
from harness.engines.local import LocalEngine
from harness.plugins import Needs, PluginError, Predicate, Scorer, ScoringContext, instantiate
from harness.pool import Pool
from harness.scoring import compute_terms, score_record


class CountingPredicate(Predicate):
    name = "lc_wide"
    needs = Needs(columns=("original_width",))
    calls: ClassVar[list[str]] = []

    def setup(self, ctx):
        self.calls.append("setup")
        self.cut = 300  # state prepared once, read by every batch

    def keep(self, batch, ctx):
        self.calls.append("keep")
        return batch.column("original_width") > self.cut


class Base(Scorer):
    name = "lc_base"
    needs = Needs(columns=("original_width",))

    def __init__(self, shift: float = 0.0):
        super().__init__(shift=float(shift))
        self.shift = float(shift)

    def score_metadata(self, batch, ctx):
        return {"score": batch.column("original_width").astype(np.float64) + self.shift}


class Dependent(Scorer):
    name = "lc_dependent"
    needs = Needs(columns=("uid",))
    uses = ("lc_base",)
    depends_on = ("lc_base",)
    seen: ClassVar[list[str]] = []

    def setup(self, ctx):
        self.base = self.scores_of("lc_base")  # handed over before setup
        self.seen.append(self.base.key)

    def score_metadata(self, batch, ctx):
        rows = slice(batch.offset, batch.offset + len(batch))
        return {"score": 2.0 * self.base.combined[rows]}


class Loop(Scorer):
    name = "lc_loop"
    needs = Needs(columns=("uid",))
    depends_on = ("lc_loop_back",)

    def score_metadata(self, batch, ctx):
        return {"score": np.zeros(len(batch))}


class LoopBack(Loop):
    name = "lc_loop_back"
    depends_on = ("lc_loop",)


@pytest.fixture
def registered(monkeypatch):
    for cls in (CountingPredicate, Base, Dependent, Loop, LoopBack):
        monkeypatch.setitem(plugins._REGISTRY, cls.name, cls)
    CountingPredicate.calls.clear()
    Dependent.seen.clear()


def test_engine_is_chosen_from_one_settings_object():
    assert isinstance(make_engine(EngineSettings()), LocalEngine)
    assert ScoringContext.__dataclass_fields__["engine"].type in ("EngineSettings", EngineSettings)
    with pytest.raises(ValueError, match="unknown scoring engine 'spark'"):
        EngineSettings("spark")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        EngineSettings("ray", workers=0)


def test_setup_runs_once_before_the_first_batch(registered, fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    pool = Pool(root)
    assert len(pool.metadata_files) == 3
    ctx = ScoringContext(pool=pool)
    t = compute_terms(pool, "lc_wide", ctx, tmp_path)
    assert CountingPredicate.calls == ["setup", "keep", "keep", "keep"]
    np.testing.assert_array_equal(t.terms["keep"], (df["original_width"].to_numpy() > 300).astype(float))


def test_dependency_table_is_handed_over_and_keys_the_dependent(registered, fake_pool_dir, tmp_path):
    root, df = fake_pool_dir
    pool = Pool(root)
    width = df["original_width"].to_numpy(np.float64)
    ctx = ScoringContext(pool=pool)
    first = compute_terms(pool, "lc_dependent", ctx, tmp_path)
    np.testing.assert_array_equal(first.terms["score"], 2.0 * width)
    base_key = score_record(instantiate("lc_base", ctx), ctx)["key"]
    assert first.record["depends_on"] == {"lc_base": base_key}
    assert (tmp_path / f"lc_base-{base_key}.parquet").is_file()  # the dependency went through the cache
    assert Dependent.seen == [base_key]

    again = compute_terms(pool, "lc_dependent", ctx, tmp_path)
    assert again.record["cached"] and again.record["key"] == first.record["key"]
    assert Dependent.seen == [base_key]  # read back: no setup, nothing recomputed

    # a changed dependency (another option) gives the dependent another key, and it rescores
    shifted = ScoringContext(pool=pool, options={"lc_base": {"shift": 1}})
    third = compute_terms(pool, "lc_dependent", shifted, tmp_path)
    assert third.record["key"] != first.record["key"]
    assert score_record(instantiate("lc_dependent", shifted), shifted)["key"] == third.record["key"]
    assert not third.record["cached"]
    np.testing.assert_array_equal(third.terms["score"], 2.0 * (width + 1.0))


def test_dependency_cycle_is_refused(registered, fake_pool_dir):
    root, _ = fake_pool_dir
    pool = Pool(root)
    ctx = ScoringContext(pool=pool)
    with pytest.raises(PluginError, match="dependency cycle lc_loop -> lc_loop_back -> lc_loop"):
        compute_terms(pool, "lc_loop", ctx, None)


def test_scores_of_an_undeclared_filter_is_an_error():
    with pytest.raises(PluginError, match="declare it in depends_on"):
        Base().scores_of("lc_other")


class LoadsToFingerprint(Scorer):
    """Like dfn: its fingerprint is its loaded model's, so asking for it loads the model."""

    name = "lc_model"
    needs = Needs(captions=True, models=("lc_model",))
    loads: ClassVar[int] = 0

    def setup(self, ctx):
        if getattr(self, "model", None) is None:
            type(self).loads += 1
            self.model = "weights-v1"

    def fingerprint(self, ctx):
        if getattr(self, "model", None) is None:
            raise RuntimeError("setup() first")  # the engine then calls setup()
        return self.model

    def score_samples(self, samples, ctx):
        return {"score": np.array([float(len(s.caption)) for s in samples])}


def test_select_reuses_the_filters_its_key_loaded(monkeypatch, fake_pool_dir, tmp_path):
    """The select stage's key loads a model to fingerprint it; select then scores with that same
    instance instead of loading the model again (review finding, issue 17)."""
    from harness.selection import select, selection_inputs

    monkeypatch.setitem(plugins._REGISTRY, LoadsToFingerprint.name, LoadsToFingerprint)
    monkeypatch.setattr(LoadsToFingerprint, "loads", 0)
    root, df = fake_pool_dir
    pool = Pool(root)
    assert pool.shards
    ctx = ScoringContext(pool=pool, options={"models": {"lc_model": "unused"}})
    made: dict = {}
    key = selection_inputs(pool, "lc_model_50", ctx, 0, instances=made)["filters"]["lc_model"]
    assert LoadsToFingerprint.loads == 1 and set(made) == {"lc_model"}
    info = select(pool, "lc_model_50", tmp_path / "sel", ctx, tmp_path / "scores", 0, progress=False, filters=made)
    assert LoadsToFingerprint.loads == 1  # not loaded a second time
    assert info["scores"]["lc_model"]["model_fingerprint"] == "weights-v1"
    assert info["scores"]["lc_model"]["cache"].endswith(f"lc_model-{key}.parquet")  # the key the stage used
