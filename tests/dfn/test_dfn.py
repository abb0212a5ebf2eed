"""The `dfn` scorer: cosine under the filtering network, and its separation of the tiny world's noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.baselines.ws.auc_report import format_auc_table, noise_aucs
from harness.plugins import PluginError, Sample, ScoringContext, get_filter


class FakeClip:
    """Embeds an image by its mean colour and a caption by its colour word: the cosine is known."""

    fingerprint = "fake"
    colours = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    def encode_images(self, images, batch_size=256):
        x = np.array([np.asarray(im, np.float64).reshape(-1, 3).mean(0) for im in images])
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_texts(self, texts, batch_size=256):
        return np.array([self.colours[t.split()[-1]] for t in texts])


def _sample(i: int, colour: tuple[int, int, int], caption: str) -> Sample:
    return Sample(uid=f"{i:032x}", key=f"{i:09d}", image=Image.new("RGB", (8, 8), colour), caption=caption,
                  meta={}, shard="00000000.tar")


def test_dfn_is_the_batched_cosine(monkeypatch, tmp_path) -> None:
    import harness.models

    monkeypatch.setattr(harness.models, "load_clip", lambda spec, device="cpu": FakeClip())
    cls = get_filter("dfn")
    assert cls.default_percent == 15.0 and cls.needs.images and cls.needs.models == ("dfn",)
    (tmp_path / "dfn").mkdir()
    ctx = ScoringContext(pool=None, models_dir=tmp_path)  # type: ignore[arg-type]
    dfn = cls()
    dfn.setup(ctx)
    out = dfn.score_samples([_sample(0, (255, 0, 0), "a red"), _sample(1, (0, 0, 255), "a red"),
                             _sample(2, (255, 255, 0), "a green")], ctx)
    np.testing.assert_allclose(out["cos"], [1.0, 0.0, np.sqrt(0.5)])
    assert dfn.fingerprint(ctx) == "fake"
    with pytest.raises(PluginError, match="has no decoded image"):
        dfn.score_samples([Sample("f" * 32, "k", None, "a red", {}, "s.tar")], ctx)


def test_dfn_model_resolution(tmp_path) -> None:
    ctx = ScoringContext(pool=None, options={"models": {"dfn": "hf-hub:apple/DFN-public"}})  # type: ignore[arg-type]
    assert get_filter("dfn")()._model_spec(ctx) == "hf-hub:apple/DFN-public"
    assert get_filter("dfn")(model="ViT-B-32:openai")._model_spec(ctx) == "ViT-B-32:openai"
    with pytest.raises(PluginError, match="--model dfn="):
        get_filter("dfn")()._model_spec(ScoringContext(pool=None))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tiny_world):
    return Path(tiny_world)  # the shared test world (tests/conftest.py)


def test_dfn_separates_clean_from_noise_on_the_tiny_world(world, tmp_path_factory) -> None:
    from harness.pool import Pool
    from harness.scoring import score

    pool = Pool(world / "pool")
    ctx = ScoringContext(pool=pool, models_dir=world / "models")
    table = score(pool, "dfn", ctx, tmp_path_factory.mktemp("scores"))
    oracle = pd.read_parquet(world / "oracle.parquet")
    meta = pool.read_columns(["uid", "clip_b32_similarity_score", "clip_l14_similarity_score"]).to_pandas()
    uid = meta["uid"].astype(str).to_numpy()
    scores = {"dfn": pd.Series(table["cos"].to_numpy(), index=table["uid"].astype(str)),
              "clip_b32": pd.Series(meta["clip_b32_similarity_score"].to_numpy(np.float64), index=uid),
              "clip_l14": pd.Series(meta["clip_l14_similarity_score"].to_numpy(np.float64), index=uid)}
    aucs = noise_aucs(oracle, scores)
    print("\n" + format_auc_table(aucs, int((oracle["noise"] == "clean").sum())))
    for noise in ("mismatched", "underspecified"):
        if noise in aucs.index:
            assert aucs.loc[noise, "dfn"] > 0.65, f"DFN barely separates clean from {noise}"
