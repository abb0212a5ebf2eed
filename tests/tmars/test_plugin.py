"""The tmars scorer plugin: registry, options, and the terms it computes (with a small fake CLIP).

harness/models.py (load_clip) is written in parallel; until it lands these tests inject a fake
``harness.models`` module. The end-to-end check with the world's real reference CLIP is in
test_world.py.
"""

import sys
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.baselines.tmars.masking import mask_image
from harness.benchmarks.text_images import WORDS, render
from harness.plugins import PluginError, ScoringContext, get_filter, instantiate
from harness.pool import Sample


class FakeClip:
    """Deterministic stand-in for LoadedClip: image -> normalised 8x8 grey thumbnail; text -> hash."""

    name = "fake"
    fingerprint = "fake-weights"

    def __init__(self) -> None:
        self.image_calls: list[int] = []

    def encode_images(self, images, batch_size=256):
        self.image_calls.append(len(images))
        feats = np.stack(
            [np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), np.float32).ravel() for im in images]
        )
        feats -= feats.mean(1, keepdims=True)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)

    def encode_texts(self, texts, batch_size=256):
        feats = np.stack(
            [np.random.default_rng(sum(map(ord, t))).normal(size=64).astype(np.float32) for t in texts]
        )
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)


@pytest.fixture
def fake_models(monkeypatch, tmp_path):
    clip = FakeClip()
    loaded: list[str] = []

    def load_clip(spec, device="cpu"):
        loaded.append(str(spec))
        return clip

    try:
        import harness.models as real
    except ImportError:
        real = types.ModuleType("harness.models")
        monkeypatch.setitem(sys.modules, "harness.models", real)
    monkeypatch.setattr(real, "load_clip", load_clip, raising=False)
    (tmp_path / "models" / "ref_b32").mkdir(parents=True)
    return clip, loaded, tmp_path / "models"


def _samples(n_text: int = 6, n_clean: int = 6) -> list[Sample]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n_text + n_clean):
        text = WORDS[i % len(WORDS)] if i < n_text else None
        im, _ = render(rng, text, font_px=18)
        out.append(
            Sample(
                uid=f"{i:032x}",
                key=f"{i:09d}",
                image=im,
                caption=f"a photo of {WORDS[i % len(WORDS)]} {i}",
                meta={},
                shard="00000000.tar",
            )
        )
    return out


def test_registered_with_terms_and_needs():
    cls = get_filter("tmars")
    assert cls.terms == ("masked_score", "original_score", "n_boxes", "masked_area_fraction")
    assert cls.needs.images and cls.needs.captions and cls.needs.models == ("ref_b32",)
    assert cls.uses_samples()
    assert cls.default_percent == 20.0


def test_terms_match_masking_and_scoring(fake_models):
    clip, loaded, models_dir = fake_models
    ctx = ScoringContext(pool=None, models_dir=models_dir, batch_size=4)  # type: ignore[arg-type]
    scorer = instantiate("tmars", ctx)
    scorer.setup(ctx)
    assert loaded == [str(models_dir / "ref_b32")]
    samples = _samples()
    out = scorer.score_samples(samples, ctx)
    assert set(out) == set(scorer.terms)
    n_boxes = out["n_boxes"]
    assert (n_boxes[:6] >= 1).sum() >= 5  # rendered words are found
    assert (n_boxes[6:] == 0).sum() >= 5  # shapes alone mostly are not
    # recompute every term independently from the detector's boxes and the fake model
    regions = scorer._detector.detect([s.image for s in samples])
    txt = clip.encode_texts([s.caption for s in samples])
    for i, s in enumerate(samples):
        m = mask_image(s.image, regions[i])
        assert n_boxes[i] == m.n_boxes
        assert out["masked_area_fraction"][i] == pytest.approx(m.area_fraction)
        orig = float(clip.encode_images([s.image])[0] @ txt[i])
        masked = float(clip.encode_images([m.image])[0] @ txt[i])
        assert out["original_score"][i] == pytest.approx(orig, abs=1e-6)
        assert out["masked_score"][i] == pytest.approx(masked, abs=1e-6)
        if m.n_boxes == 0:
            assert out["masked_score"][i] == out["original_score"][i]
    frame = pd.DataFrame(out)
    assert np.array_equal(scorer.combine(frame), out["masked_score"])


def test_only_changed_images_are_re_encoded(fake_models):
    clip, _, models_dir = fake_models
    ctx = ScoringContext(pool=None, models_dir=models_dir, batch_size=64)  # type: ignore[arg-type]
    scorer = instantiate("tmars", ctx)
    samples = _samples(n_text=0, n_clean=1) + _samples(n_text=3, n_clean=0)
    clip.image_calls.clear()
    out = scorer.score_samples(samples, ctx)
    assert clip.image_calls[0] == 4  # originals
    assert sum(clip.image_calls[1:]) == int((out["n_boxes"] > 0).sum())


def test_options_model_override_and_fingerprint(fake_models):
    clip, loaded, models_dir = fake_models
    ctx = ScoringContext(
        pool=None,  # type: ignore[arg-type]
        models_dir=models_dir,
        options={"tmars.model": "ViT-B-32:openai", "tmars.detector_options": {"upscale_to": 0}},
    )
    scorer = instantiate("tmars", ctx)
    assert scorer.settings() == {
        "detector": "rapidocr",
        "detector_options": {"upscale_to": 0},
        "model": "ViT-B-32:openai",
        "version": 1,
    }
    with pytest.raises(RuntimeError):
        scorer.fingerprint(ctx)  # before setup: the engine calls setup() and asks again
    scorer.setup(ctx)
    assert loaded == ["ViT-B-32:openai"]
    fp = scorer.fingerprint(ctx)
    assert fp.startswith("fake-weights+rapidocr:ppocr-det:") and ":up0:" in fp
    # a real pool without a models dir: the user must name the model
    bare = instantiate("tmars", ScoringContext(pool=None))  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="--model ref_b32="):
        bare.setup(ScoringContext(pool=None))  # type: ignore[arg-type]


def test_bad_options_and_inputs(fake_models):
    _, _, models_dir = fake_models
    ctx = ScoringContext(pool=None, models_dir=models_dir)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="unknown text detector 'fast'"):
        instantiate("tmars", ctx, detector="fast").setup(ctx)
    with pytest.raises(PluginError, match="detector_options is not JSON"):
        instantiate("tmars", ctx, detector_options="upscale_to=0")
    with pytest.raises(PluginError, match="detector_options must be a dict"):
        instantiate("tmars", ctx, detector_options="[1]")
    # what `--set 'tmars.detector_options={"upscale_to": "0"}'` delivers: JSON text, string values
    cli = ScoringContext(
        pool=None, models_dir=models_dir, options={"tmars": {"detector_options": '{"upscale_to": "0"}'}}
    )  # type: ignore[arg-type]
    scorer = instantiate("tmars", cli)
    scorer.setup(cli)
    assert scorer._detector.upscale_to == 0
    scorer = instantiate("tmars", ctx)
    broken = Sample(uid="ab" * 16, key="0", image=None, caption="x", meta={}, shard="00000001.tar")
    with pytest.raises(PluginError, match="abab.*00000001.tar"):
        scorer.score_samples([broken], ctx)
