"""T-MARS on the tiny world: detection recall on rendered text, and what masking does to scores.

Recall criterion: a text_in_image sample's text counts as found when the union of the detected
boxes (as masked: bounding boxes, clipped) covers at least half of the oracle's pixel box of the
rendered text. The oracle box spans every line of the block, gaps included, so a centre-in-box test
would miss two-line blocks whose centre falls between the lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.baselines.tmars.masking import mask_image, regions_to_rects
from harness.plugins import ScoringContext, instantiate
from harness.pool import Pool

N_PER_GROUP = 120  # text_in_image and clean samples each; keeps the test within its time budget


@pytest.fixture(scope="module")
def world(tiny_world):
    return Path(tiny_world)  # the shared test world (tests/conftest.py)


@pytest.fixture(scope="module")
def groups(world: Path):
    oracle = pd.read_parquet(world / "oracle.parquet")
    text = oracle[oracle["noise"] == "text_in_image"].head(N_PER_GROUP)
    clean = oracle[oracle["noise"] == "clean"].head(N_PER_GROUP)
    wanted = set(text["uid"]) | set(clean["uid"])
    pool = Pool(world)
    # decode only the shards that hold the chosen samples (the oracle names them)
    names = set(pd.concat([text, clean])["shard"].astype(str))
    shards = [p for p in pool.shards if p.stem in names] if "shard" in oracle else None
    samples = {s.uid: s for s in pool.iter_samples(shards=shards) if s.uid in wanted}
    assert len(text) >= 30 and len(clean) >= 30, "the world has too few text_in_image/clean samples"
    return text, clean, samples


@pytest.fixture(scope="module")
def scores(world: Path, groups):
    text, clean, samples = groups
    ctx = ScoringContext(pool=Pool(world), models_dir=world / "models", batch_size=64)
    scorer = instantiate("tmars", ctx)
    scorer.setup(ctx)
    out = {}
    for name, frame in (("text", text), ("clean", clean)):
        batch = [samples[u] for u in frame["uid"]]
        out[name] = pd.DataFrame(scorer.score_samples(batch, ctx))
    return scorer, out


def test_detection_recall_on_rendered_text(groups, scores):
    text, _, samples = groups
    scorer, _ = scores
    images = [samples[u].image for u in text["uid"]]
    regions = scorer._detector.detect(images)
    covered = []
    for im, reg, row in zip(images, regions, text.itertuples(), strict=True):
        w, h = im.size
        union = np.zeros((h, w), bool)
        for c0, r0, c1, r1 in regions_to_rects(reg, w, h):
            union[r0:r1, c0:c1] = True
        x0, y0, x1, y1 = int(row.text_x0), int(row.text_y0), int(row.text_x1), int(row.text_y1)
        assert x1 > x0 and y1 > y0, f"oracle has no text box for {row.uid}"
        covered.append(union[y0:y1, x0:x1].mean())
    recall = float(np.mean(np.asarray(covered) >= 0.5))
    print(f"\ntext detection recall (>= 50% of the text box covered): {recall:.3f} on {len(covered)} samples")
    assert recall >= 0.90


def _summary(name: str, frame: pd.DataFrame) -> str:
    drop = frame["original_score"] - frame["masked_score"]
    q = lambda s: " / ".join(f"{v:.3f}" for v in np.quantile(s, [0.1, 0.5, 0.9]))  # noqa: E731
    return (
        f"{name:6s} n={len(frame)}  original {q(frame['original_score'])}  masked {q(frame['masked_score'])}  "
        f"drop {q(drop)}  boxes>0 {np.mean(frame['n_boxes'] > 0):.2f}  area {frame['masked_area_fraction'].mean():.3f}"
    )


def test_text_samples_lose_their_score_clean_keep_theirs(groups, scores):
    text_rows, _, samples = groups
    scorer, out = scores
    text, clean = out["text"], out["clean"]
    print("\n(10th / 50th / 90th percentiles)\n" + _summary("text", text) + "\n" + _summary("clean", clean))
    text_drop = (text["original_score"] - text["masked_score"]).to_numpy()
    clean_drop = (clean["original_score"] - clean["masked_score"]).to_numpy()
    # clean samples keep their score: most have no box at all, and the rest barely move
    assert np.median(np.abs(clean_drop)) < 0.01
    assert np.mean(np.abs(clean_drop) < 0.02) >= 0.9
    # what the text is worth to the scoring CLIP: the drop when the oracle's text box is masked
    clip = scorer._clip
    images = [samples[u].image for u in text_rows["uid"]]
    oracle_masked = [
        mask_image(im, np.array([[r.text_x0, r.text_y0, r.text_x1, r.text_y1]], np.float64)).image
        for im, r in zip(images, text_rows.itertuples(), strict=True)
    ]
    txt = clip.encode_texts([samples[u].caption for u in text_rows["uid"]])
    oracle_drop = text["original_score"].to_numpy() - np.einsum(
        "ij,ij->i", clip.encode_images(oracle_masked), txt
    )
    print(f"oracle-box masking drop on text samples: {np.quantile(oracle_drop, [0.1, 0.5, 0.9]).round(3)}")
    # the world's scoring CLIP reads the rendered words: masking the true text box costs score
    assert np.median(oracle_drop) >= 0.03
    # text-in-image samples lose most of what their text gave them ...
    assert np.median(text_drop) >= 0.8 * np.median(oracle_drop)
    # ... which is what ranked them above clean pairs: before masking most outscore the median clean
    # sample (as text-heavy images do under OpenAI's CLIP); after masking few do
    above_before = float(np.mean(text["original_score"] > np.median(clean["original_score"])))
    above_after = float(np.mean(text["masked_score"] > np.median(clean["masked_score"])))
    print(f"text samples above the clean median: {above_before:.2f} before masking, {above_after:.2f} after")
    assert above_before >= 0.5
    assert above_after <= 0.5 * above_before
    # ... and the drop separates them from clean samples (AUC of the drop, text vs clean)
    greater = text_drop[:, None] > clean_drop[None, :]
    ties = text_drop[:, None] == clean_drop[None, :]
    auc = float(np.mean(greater) + 0.5 * np.mean(ties))
    print(f"AUC(drop: text vs clean) = {auc:.3f}")
    assert auc >= 0.85
