"""The hype / hype_img plugins: normalisation, weights, and a full pass of the scoring engine over a
small DataComp-layout pool written here (no tiny world needed)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from harness.baselines.hype import geometry as G
from harness.baselines.hype.model import MeruCLIP, hype_state_dict, load_meru
from harness.baselines.hype.plugin import HypeImageScorer, HypeScorer, normalise, parse_weights
from harness.plugins import Needs, PluginError, Predicate, ScoringContext, get_filter
from harness.pool import Pool

# --- combine -----------------------------------------------------------------------------------


def test_normalisations():
    x = np.array([3.0, 1.0, np.nan, 2.0, 2.0])
    z = normalise(x, "zscore")
    v = np.array([3.0, 1.0, 2.0, 2.0])
    assert np.allclose(z[[0, 1, 3, 4]], (v - v.mean()) / v.std())
    assert np.isnan(z[2])
    r = normalise(x, "rank")
    assert np.allclose(r[[0, 1, 3, 4]], [1.0, 0.0, 0.5, 0.5])  # ties share the average rank
    assert np.array_equal(normalise(x, "none"), x, equal_nan=True)
    assert np.array_equal(normalise(np.full(4, 7.0), "zscore"), np.zeros(4))  # a constant term adds nothing
    with pytest.raises(PluginError, match="norm must be one of"):
        normalise(x, "minmax")


def test_weights_parsing():
    terms = HypeScorer.terms
    assert parse_weights(None, terms) == dict.fromkeys(terms, 1.0)
    assert parse_weights("cos=0, eps_i=2", terms) == {"eps_i": 2.0, "eps_t": 1.0, "neg_dl": 1.0, "cos": 0.0}
    with pytest.raises(PluginError, match="unknown term 'clip'"):
        parse_weights({"clip": 1}, terms)
    with pytest.raises(PluginError, match="not a number"):
        parse_weights("cos=abc", terms)
    with pytest.raises(PluginError, match="unknown option"):
        HypeScorer(normalization="rank")
    assert HypeScorer(normalisation="rank").norm == "rank"  # the spelling harness run --help shows


def test_combine_is_a_weighted_sum_of_pool_zscores():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({t: rng.normal(loc=i, scale=i + 1, size=50) for i, t in enumerate(HypeScorer.terms)})
    s = HypeScorer(weights={"cos": 0.5, "neg_dl": 0.0})
    z = (frame - frame.mean()) / frame.std(ddof=0)
    expected = z["eps_i"] + z["eps_t"] + 0.5 * z["cos"]
    assert np.allclose(s.combine(frame), expected)
    raw = HypeScorer(norm="none").combine(frame)
    assert np.allclose(raw, frame.sum(axis=1))
    # the composite is scale-free per term under z-scores: rescaling one term changes nothing
    scaled = frame.assign(eps_i=frame["eps_i"] * 1000 + 5)
    assert np.allclose(HypeScorer().combine(scaled), HypeScorer().combine(frame))


def test_registered_names_and_needs():
    assert get_filter("hype") is HypeScorer
    assert get_filter("hype_img") is HypeImageScorer
    hype = get_filter("hype")
    assert hype.needs.columns == ("clip_l14_similarity_score",)
    assert hype.needs.images and hype.needs.captions and hype.needs.models == ("meru",)
    assert get_filter("hype_img").terms == ("eps_i",)
    assert get_filter("hype_in").terms[-1] == "c_in"


def test_percent_atoms_parse():
    expressions = pytest.importorskip("harness.expressions")
    for expr in ("hype10", "hype_20", "hype30+dfn", "hype_img10"):
        expressions.parse(expr)


# --- the engine over a small pool ------------------------------------------------------------


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_pool(root, n: int = 12) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(5)
    (root / "metadata").mkdir(parents=True)
    (root / "shards").mkdir()
    uids = [f"{int(rng.integers(2**63)):016x}{int(rng.integers(2**63)):016x}" for _ in range(n)]
    caps = [f"{['a', 'two', 'some'][i % 3]} {['red', 'blue'][i % 2]} circles {i}" for i in range(n)]
    cos = rng.uniform(0.1, 0.4, size=n)
    pq.write_table(pa.table({"uid": uids, "text": caps, "clip_l14_similarity_score": cos}),
                   root / "metadata" / "00000000.parquet")
    with tarfile.open(root / "shards" / "00000000.tar", "w") as tar:
        for i in reversed(range(n)):  # shard order differs from metadata order
            key = f"{i:09d}"
            for ext, data in (("jpg", _jpeg(rng)), ("txt", caps[i].encode()),
                              ("json", json.dumps({"uid": uids[i], "caption": caps[i]}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (root / "shards" / "00000000_stats.json").write_text(json.dumps({"successes": n}))
    return uids, caps, cos


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("hype_pool")
    pool_dir = root / "pool"
    uids, caps, cos = _write_pool(pool_dir)
    model_dir = root / "models" / "meru"
    model_dir.mkdir(parents=True)
    torch.manual_seed(3)
    model = MeruCLIP.from_config("hype-tiny")
    torch.save(hype_state_dict(model), model_dir / "model.pt")
    (model_dir / "model.json").write_text(json.dumps({"model_name": "hype-tiny", "kind": "meru"}))
    torch.save({"img": torch.randn(9, 64) * 0.3, "txt": torch.randn(11, 64) * 0.2}, model_dir / "reference_set.pt")
    return pool_dir, root / "models", uids, caps, cos


def test_engine_scores_match_a_direct_computation(small_pool, tmp_path):
    scoring = pytest.importorskip("harness.scoring")
    pool_dir, models_dir, uids, caps, cos = small_pool
    pool = Pool(pool_dir)
    ctx = ScoringContext(pool=pool, models_dir=models_dir, batch_size=5, options={"hype.chunk": 4})
    table = scoring.score(pool, "hype", ctx, tmp_path / "cache", progress=False)
    assert list(table["uid"]) == uids  # metadata order, whatever the shard order
    assert set(HypeScorer.terms) <= set(table.columns)
    assert np.allclose(table["cos"], cos)  # looked up by uid from the metadata

    meru = load_meru(models_dir / "meru")
    ref = torch.load(models_dir / "meru" / "reference_set.pt")
    c = meru.model.curv.detach()
    with tarfile.open(pool_dir / "shards" / "00000000.tar") as tar:
        imgs = {json.loads(tar.extractfile(f"{i:09d}.json").read())["uid"]:
                Image.open(io.BytesIO(tar.extractfile(f"{i:09d}.jpg").read())).convert("RGB")
                for i in range(len(uids))}
    img = G.exp_map0(torch.from_numpy(meru.encode_images([imgs[u] for u in uids])), c)
    txt = G.exp_map0(torch.from_numpy(meru.encode_texts(caps)), c)
    ri, rt = G.exp_map0(ref["img"], c), G.exp_map0(ref["txt"], c)
    assert np.allclose(table["eps_i"], G.entailment_energy(rt, img, c).mean(0).numpy(), atol=1e-5)
    assert np.allclose(table["eps_t"], G.entailment_energy(txt, ri, c).mean(1).numpy(), atol=1e-5)
    assert np.allclose(table["neg_dl"], -G.pairwise_dist(img, txt, c).diagonal().numpy(), atol=1e-3)

    # hype_img: the same eps_i on its own
    t_img = scoring.score(pool, "hype_img", ctx, tmp_path / "cache", progress=False)
    assert np.allclose(t_img["eps_i"], table["eps_i"], atol=1e-6)


class _OddRows(Predicate):
    """A stand-in for image_based over the small pool: keeps the rows whose caption number is odd."""

    name = "image_based"
    needs = Needs(columns=("text",))
    keeps: ClassVar[int] = 0

    def keep(self, batch, ctx):
        type(self).keeps += 1
        return np.array([int(t.split()[-1]) % 2 == 1 for t in batch.column("text")])


def test_hype_in_reads_image_based_through_the_score_cache(small_pool, tmp_path, monkeypatch):
    """c_in is the image_based table the engine computed (once, cached), looked up by uid; the
    image_based key is part of hype_in's key."""
    from harness import plugins
    from harness.scoring import compute_terms, score_record

    monkeypatch.setitem(plugins._REGISTRY, "image_based", _OddRows)
    _OddRows.keeps = 0
    pool_dir, models_dir, uids, caps, _ = small_pool
    pool = Pool(pool_dir)
    ctx = ScoringContext(pool=pool, models_dir=models_dir, batch_size=5, options={"hype_in.chunk": 4})
    t = compute_terms(pool, "hype_in", ctx, tmp_path, progress=False)
    odd = np.array([int(c.split()[-1]) % 2 == 1 for c in caps], dtype=np.float64)
    np.testing.assert_array_equal(t.terms["c_in"], odd)  # metadata order, whatever the shard order
    dep_key = score_record(_OddRows(), ctx)["key"]
    assert t.record["depends_on"] == {"image_based": dep_key}
    assert (tmp_path / f"image_based-{dep_key}.parquet").is_file()
    assert _OddRows.keeps == 1  # one metadata file, one pass: keep() is not re-run by hype_in


def test_checkpoint_file_needs_a_reference_set(small_pool, tmp_path):
    pool_dir, models_dir, *_ = small_pool
    ctx = ScoringContext(pool=Pool(pool_dir), models_dir=None,
                         options={"meru": str(models_dir / "meru" / "model.pt")})
    with pytest.raises(PluginError, match="hype.reference"):
        HypeScorer(model_name="hype-tiny").setup(ctx)
    s = HypeScorer(model_name="hype-tiny", reference=str(models_dir / "meru" / "reference_set.pt"))
    s.setup(ctx)  # the official-checkpoint path: a file plus a reference-set file
    assert s._ref_img.shape == (9, 64)
