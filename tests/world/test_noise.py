"""The noise is real: declared proportions hold, and the reference CLIPs tell clean from mismatched."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.world import caption_levels, heldout_pairs, sample_scene, translated_caption
from harness.world import vocab as V
from harness.world.samples import DEFAULT_MIX, allocate, plan_samples


def test_oracle_proportions_match_declared_mix(tiny_world):
    world = json.loads((tiny_world / "world.json").read_text())
    oracle = pq.read_table(tiny_world / "oracle.parquet").to_pandas()
    n = len(oracle)
    assert n == world["pool"]["samples"]
    mix = world["knobs"]["noise_mix"]
    counts = oracle["noise"].value_counts().to_dict()
    assert counts == {k: v for k, v in allocate(n, mix).items() if v}
    for k, frac in mix.items():
        assert abs(counts.get(k, 0) / n - frac) <= 1 / n + 1e-9, k
    # clean captions come at all three levels of detail
    levels = oracle.loc[oracle["noise"] == "clean", "detail"].value_counts(normalize=True)
    for level, frac in world["knobs"]["detail_mix"].items():
        assert abs(levels[level] - frac) < 0.06, (level, levels.to_dict())


def test_allocate_is_exact_largest_remainder():
    assert allocate(7, {"clean": 0.5, "mismatched": 0.5}) in ({"clean": 4, "mismatched": 3}, {"clean": 3, "mismatched": 4})
    assert sum(allocate(12_800, DEFAULT_MIX).values()) == 12_800
    assert allocate(12_800, DEFAULT_MIX)["clean"] == 5760
    with pytest.raises(ValueError, match="unknown noise"):
        allocate(10, {"typo": 1.0})


def test_caption_levels_get_more_specific():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = sample_scene(rng)
        generic, medium, detailed = caption_levels(scene, rng)
        assert scene.colour not in generic and scene.shape not in generic
        assert scene.colour in medium and scene.shape in medium
        assert scene.colour in detailed and scene.shape in detailed and scene.size in detailed
        assert scene.background in detailed
        assert V.POSITION_PHRASES[scene.position].split(" ", 1)[1] in detailed


def test_noisy_captions_are_what_they_claim():
    plans = plan_samples(3, 77, 400, DEFAULT_MIX)
    for p in plans:
        if p.noise == "mismatched":
            assert p.caption_scene is not None
            assert (p.caption_scene.shape, p.caption_scene.colour) != (p.scene.shape, p.scene.colour)
        if p.noise == "underspecified":
            assert p.scene.colour not in p.caption and p.scene.shape not in p.caption
        if p.noise == "near_duplicate":
            orig = plans[p.dup_of]
            assert orig.noise == "clean" and orig.scene == p.scene


def test_non_english_captions_are_identified_as_such():
    from harness import langid  # fastText lid.176, what basic / image_based / text_based use

    rng = np.random.default_rng(1)
    caps, langs = [], []
    for lang in V.LANGUAGES:
        for _ in range(20):
            caps.append(translated_caption(sample_scene(rng), lang, "detailed"))
            langs.append(lang)
    got, _ = langid.detect(caps)
    hits = sum(g == want for g, want in zip(got, langs, strict=True))
    print(f"\nlangid agrees on {hits}/{len(caps)} detailed translations")
    assert hits / len(caps) >= 0.8


@pytest.mark.parametrize("model", ["ref_b32", "ref_l14", "dfn"])
def test_reference_clip_separates_clean_from_mismatched(tiny_world, model):
    from sklearn.metrics import roc_auc_score

    from harness.models import load_clip

    if not (tiny_world / "models" / model / "model.json").is_file():
        pytest.skip(f"{model} not built")
    clip = load_clip(tiny_world / "models" / model)
    specific = {"medium": 0.5, "detailed": 0.5}
    clean = heldout_pairs(123, 300, "clean", detail=specific)
    mixed = heldout_pairs(123, 300, "clean")  # default detail mix, generic captions included
    mism = heldout_pairs(123, 300, "mismatched")

    def scores(p):
        return np.sum(clip.encode_images(p.images) * clip.encode_texts(p.captions), axis=1)

    s_clean, s_mixed, s_mism = scores(clean), scores(mixed), scores(mism)
    y = np.r_[np.ones(300), np.zeros(300)]
    auc = roc_auc_score(y, np.r_[s_clean, s_mism])
    auc_mixed = roc_auc_score(y, np.r_[s_mixed, s_mism])
    print(f"\n{model}: AUC clean(specific) vs mismatched {auc:.3f}; with generic clean captions {auc_mixed:.3f}")
    assert auc > 0.85
