"""The plugin registry (user files, entry points, the example file) and the scoring engine
(caching, shard-by-shard resume, NaN rules, clear errors)."""

from __future__ import annotations

import importlib.metadata
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filters_fakepool import datacomp_uids, make_fake_pool

from harness import plugins
from harness.plugins import (
    Needs,
    PluginError,
    Scorer,
    ScoringContext,
    describe_filters,
    load_plugins,
    register,
)
from harness.pool import Pool
from harness.scoring import RECORD_KEY, read_score_table, score
from harness.selection import select

REPO = Path(__file__).resolve().parents[2]


def _meta(root) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((root / "metadata").glob("*.parquet"))])


def test_builtins_are_described():
    rows = {r["name"]: r for r in describe_filters()}
    for name in ("no_filter", "random", "basic", "clip_b32", "clip_l14", "laion2b", "image_based"):
        assert name in rows and rows[name]["description"]
    assert rows["basic"]["kind"] == "predicate"
    assert rows["clip_l14"]["kind"] == "metadata scorer"
    assert "clip_l14_similarity_score" in rows["clip_l14"]["needs"]
    assert plugins.failed_plugins() == {}


def _width_plugin(path: Path, name: str, description: str, sign: str = "") -> Path:
    """Write a one-scorer plugin file (score = sign * original_width) outside the repository."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(f'''
        from harness.plugins import Needs, Scorer, register

        @register
        class WidthScorer(Scorer):
            name = "{name}"
            description = "{description}"
            needs = Needs(columns=("original_width",))
            def score_metadata(self, batch, ctx):
                return {{"score": {sign}batch.column("original_width").astype(float)}}
    '''))
    return path


def test_user_plugin_file_outside_the_repo(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    f = _width_plugin(tmp_path / "elsewhere" / "user_filters.py", "user_narrow", "narrow images first", sign="-")
    load_plugins([str(f)])
    load_plugins([str(f)])  # idempotent
    pool = Pool(root)
    info = select(pool, "user_narrow_25", tmp_path / "o", ScoringContext(pool=pool), None, progress=False)
    df = _meta(root)
    s = -df["original_width"].values.astype(float)
    want = datacomp_uids(df.uid[s >= -np.sort(-s)[int(len(s) * 0.25)]])
    want.sort()
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "subset.npy"), want)
    assert info["terms"][0]["kept"] == len(want)


def test_plugin_errors_are_clear(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_module_xyz\n")
    with pytest.raises(PluginError, match=r"broken\.py failed to import.*no_such_module_xyz"):
        load_plugins([str(bad)])
    with pytest.raises(PluginError, match="does not exist"):
        load_plugins([str(tmp_path / "missing.py")])
    with pytest.raises(PluginError, match="taken by"):

        @register
        class Clash(Scorer):
            name = "clip_l14"
            needs = Needs(columns=("x",))

            def score_metadata(self, batch, ctx):
                return {}

    with pytest.raises(PluginError, match="exactly one of score_metadata and score_samples"):

        @register
        class Neither(Scorer):
            name = "neither_kind"

    with pytest.raises(PluginError, match="unknown filter 'clip_l41'; did you mean clip_l14"):
        plugins.get_filter("clip_l41")


def test_entry_point_plugins(monkeypatch):
    class EpScorer(Scorer):
        name = "from_entry_point"
        needs = Needs()

        def score_metadata(self, batch, ctx):
            return {"score": np.zeros(len(batch))}

    class FakeEP:
        name, value = "ep", "pkg.mod:EpScorer"

        def load(self):
            return EpScorer

    def fake_entry_points(group=None):
        return [FakeEP()] if group == plugins.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    load_plugins()
    assert plugins.get_filter("from_entry_point") is EpScorer
    plugins.unregister("from_entry_point")


def test_example_plugin_file(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    load_plugins([str(REPO / "examples" / "my_filters.py")])
    pool = Pool(root)
    ctx = ScoringContext(pool=pool, options={"min_side": {"pixels": 256}})
    select(pool, "clip_long_caption_30 & min_side", tmp_path, ctx, tmp_path / "scores", progress=False)
    df = _meta(root)
    words = df.text.str.split().str.len().values
    s = df.clip_l14_similarity_score.values.astype(np.float64) - 0.05 * (words < 4)
    top = s >= -np.sort(-s)[int(len(s) * 0.3)]
    side = np.minimum(df.original_width.values, df.original_height.values) >= 256
    want = datacomp_uids(df.uid[top & side])
    want.sort()
    np.testing.assert_array_equal(np.load(tmp_path / "subset.npy"), want)
    # both terms are kept in the cached score table, with the record in its schema metadata
    (table,) = (tmp_path / "scores").glob("clip_long_caption-*.parquet")
    rec = json.loads(pq.read_schema(table).metadata[RECORD_KEY])
    assert rec["scorer"] == "clip_long_caption" and rec["settings"] == {"penalty": 0.05, "min_words": 4}
    assert {"model_fingerprint", "pool_fingerprint"} <= set(rec)
    frame = read_score_table(table)
    assert list(frame.columns) == ["uid", "clip", "words"] and list(frame.uid) == list(df.uid)


class CountingScorer(Scorer):
    """A model-style scorer over the shards that counts its calls and can fail on demand."""

    name = "counting_images"
    needs = Needs(images=True)
    terms = ("mean", "caption_len")
    calls: list[str] = []
    fail_on_shard: str | None = None
    emit_nan = False

    def fingerprint(self, ctx):
        return "fake-model-v1"

    def score_samples(self, samples, ctx):
        shard = samples[0].shard
        CountingScorer.calls.append(shard)
        if shard == CountingScorer.fail_on_shard:
            raise RuntimeError("interrupted")
        mean = np.array([np.asarray(s.image, dtype=np.float64).mean() for s in samples])
        if CountingScorer.emit_nan:
            mean[0] = np.nan
        return {"mean": mean, "caption_len": np.array([len(s.caption) for s in samples], dtype=float)}

    def combine(self, terms):
        return terms["mean"].to_numpy()


@pytest.fixture
def counting():
    register(CountingScorer)
    CountingScorer.calls, CountingScorer.fail_on_shard, CountingScorer.emit_nan = [], None, False
    yield CountingScorer
    plugins.unregister(CountingScorer.name)


def test_model_scorer_resumes_shard_by_shard_and_caches(tmp_path, counting):
    df = make_fake_pool(tmp_path / "pool", n_files=2, rows=15, n_shards=3, bad_image_rows=(4,))
    pool = Pool(tmp_path / "pool")
    ctx = ScoringContext(pool=pool, batch_size=4)
    cache = tmp_path / "scores"
    counting.fail_on_shard = "00000001.tar"
    with pytest.raises(PluginError, match=r"score_samples\(\) raised RuntimeError: interrupted"):
        score(pool, "counting_images", ctx, cache, progress=False)
    (work,) = cache.glob("counting_images-*.work")
    assert sorted(p.name for p in work.iterdir()) == ["00000000.parquet"]  # shard 0 finished, kept
    counting.fail_on_shard, counting.calls = None, []
    table = score(pool, "counting_images", ctx, cache, progress=False)
    assert "00000000.tar" not in counting.calls and set(counting.calls) == {"00000001.tar", "00000002.tar"}
    assert not work.exists()
    assert list(table.uid) == list(df.uid)  # metadata order
    assert np.isnan(table["mean"][4]) and np.isnan(table["caption_len"][4])  # undecodable image
    assert table.attrs["record"]["missing"] == 1
    assert table["caption_len"].drop(index=4).tolist() == [float(len(t)) for i, t in enumerate(df.text) if i != 4]
    counting.calls = []
    again = score(pool, "counting_images", ctx, cache, progress=False)
    assert counting.calls == [] and again.attrs["record"]["cached"] is True
    pd.testing.assert_frame_equal(again[["mean"]], table[["mean"]])
    # the sample without an image is never selected, even at 100%
    info = select(pool, "counting_images_100", tmp_path / "sel", ctx, cache, progress=False)
    assert info["kept"] == len(df) - 1


def test_scorer_nan_or_wrong_length_names_plugin_and_term(tmp_path, counting):
    make_fake_pool(tmp_path / "pool", n_files=1, rows=6, n_shards=1)
    pool = Pool(tmp_path / "pool")
    counting.emit_nan = True
    with pytest.raises(PluginError, match=r"filter 'counting_images', term 'mean': nan at row 0 \(shard 00000000.tar"):
        score(pool, "counting_images", ScoringContext(pool=pool), None, progress=False)

    class Short(Scorer):
        name = "short_scorer"
        needs = Needs()

        def score_metadata(self, batch, ctx):
            return {"score": np.zeros(len(batch) - 1)}

    class Inf(Scorer):
        name = "inf_scorer"
        needs = Needs()

        def score_metadata(self, batch, ctx):
            return {"score": np.full(len(batch), np.inf)}

    register(Short)
    register(Inf)
    try:
        with pytest.raises(PluginError, match=r"'short_scorer', term 'score': 5 values for 6 rows \(00000000.parquet\)"):
            score(pool, "short_scorer", ScoringContext(pool=pool), None)
        with pytest.raises(PluginError, match=r"'inf_scorer', term 'score': inf at row 0"):
            score(pool, "inf_scorer", ScoringContext(pool=pool), None)
    finally:
        plugins.unregister("short_scorer")
        plugins.unregister("inf_scorer")


def test_cache_key_follows_settings_and_pool(tmp_path):
    make_fake_pool(tmp_path / "pool", n_files=1, rows=6, n_shards=1)
    pool = Pool(tmp_path / "pool")
    cache = tmp_path / "scores"
    score(pool, "basic", ScoringContext(pool=pool), cache, progress=False)
    first = sorted(cache.glob("basic-*.parquet"))
    assert len(first) == 1
    assert score(pool, "basic", ScoringContext(pool=pool), cache).attrs["record"]["cached"] is True
    # keys follow content: the same bytes rewritten with another mtime keep the key ...
    f = tmp_path / "pool" / "metadata" / "00000000.parquet"
    f.write_bytes(f.read_bytes())
    import os

    os.utime(f, ns=(1, 1))
    assert score(pool, "basic", ScoringContext(pool=pool), cache).attrs["record"]["cached"] is True
    # ... and other bytes change it

    table = pq.read_table(f)
    col = table.schema.get_field_index("text")
    pq.write_table(table.set_column(col, "text", pa.array(["another caption"] * table.num_rows)), f)
    assert score(pool, "basic", ScoringContext(pool=pool), cache).attrs["record"]["cached"] is False
    assert len(list(cache.glob("basic-*.parquet"))) == 2


def test_cache_key_follows_the_plugin_file(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    f = _width_plugin(tmp_path / "edited_filters.py", "user_wide_edit", "wide images first")
    load_plugins([str(f)])
    pool = Pool(root)
    cache = tmp_path / "scores"
    first = score(pool, "user_wide_edit", ScoringContext(pool=pool), cache, progress=False)
    assert first.attrs["record"]["cached"] is False
    assert score(pool, "user_wide_edit", ScoringContext(pool=pool), cache).attrs["record"]["cached"] is True
    # the user edits the plugin: its old table must not be served for the new code
    f.write_text(f.read_text().replace("wide images first", "wide images first (edited)"))
    again = score(pool, "user_wide_edit", ScoringContext(pool=pool), cache, progress=False)
    assert again.attrs["record"]["cached"] is False
    assert again.attrs["record"]["code_fingerprint"] != first.attrs["record"]["code_fingerprint"]
    plugins.unregister("user_wide_edit")


def test_loading_the_plugins_does_not_import_torch():
    # every harness command loads the plugins; torch costs ~0.5 GB and seconds, and only model scorers need it
    import subprocess
    import sys

    code = "import sys; from harness.plugins import load_plugins; load_plugins(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
