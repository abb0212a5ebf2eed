"""An example filter plugin file: load it with ``--plugins examples/my_filters.py``.

    harness filters --plugins examples/my_filters.py
    harness select --plugins examples/my_filters.py --filter "clip_long_caption_30 & min_side" --out runs/mine

Three filters, one of each kind:
- ``clip_long_caption``: a metadata scorer with two terms and its own ``combine``;
- ``min_side``: a predicate with an option (``--set min_side.pixels=256``);
- ``brightness``: a scorer that reads the images from the shards (run batched by the engine,
  resumable shard by shard).
"""

from __future__ import annotations

import numpy as np

from harness.plugins import MetadataBatch, Needs, Predicate, Sample, Scorer, ScoringContext, register


@register
class LongCaptionClip(Scorer):
    name = "clip_long_caption"
    description = "L/14 CLIP score minus a penalty for captions shorter than min_words words"
    needs = Needs(columns=("text", "clip_l14_similarity_score"))
    terms = ("clip", "words")  # both land in the score table

    def __init__(self, penalty: float = 0.05, min_words: int = 4):
        super().__init__(penalty=float(penalty), min_words=int(min_words))  # settings = cache key
        self.penalty, self.min_words = float(penalty), int(min_words)

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        texts = batch.table.column("text").to_pylist()
        return {
            "clip": batch.column("clip_l14_similarity_score"),
            "words": np.array([len((t or "").split()) for t in texts], dtype=np.float64),
        }

    def combine(self, terms):
        # one score per row, higher = keep; terms is the whole pool's table
        return terms["clip"].to_numpy() - self.penalty * (terms["words"].to_numpy() < self.min_words)


@register
class MinSide(Predicate):
    name = "min_side"
    description = "keep images whose shorter side is at least `pixels` (default 200)"
    needs = Needs(columns=("original_width", "original_height"))

    def __init__(self, pixels: int = 200):
        super().__init__(pixels=int(pixels))
        self.pixels = int(pixels)

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        w = batch.column("original_width")
        h = batch.column("original_height")
        return np.minimum(w, h) >= self.pixels


@register
class Brightness(Scorer):
    name = "brightness"
    description = "mean pixel value of the image (reads the shards)"
    needs = Needs(images=True)
    terms = ("brightness",)

    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        return {"brightness": np.array([np.asarray(s.image, dtype=np.float64).mean() / 255 for s in samples])}
