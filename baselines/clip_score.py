"""DataComp's CLIP-score baselines over the pool's metadata columns.

``clip_l14_30`` keeps the top 30% by ``clip_l14_similarity_score`` (threshold = the score at
position floor(n * 0.30) of the pool sorted descending, ``>=`` so ties are kept: DataComp's rule);
``clip_b32>=0.28`` keeps B/32 scores of at least 0.28.
"""

from __future__ import annotations

import numpy as np

from harness.plugins import MetadataBatch, Needs, Scorer, ScoringContext, register


class _ClipScore(Scorer):
    column: str
    terms = ("score",)
    cache = False  # the score is a metadata column; reading it again is the cheapest path

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        col = batch.table.column(self.column)
        if col.null_count:
            raise ValueError(f"{batch.path}: {self.column} has {col.null_count} null value(s)")
        return {"score": col.to_numpy()}


@register
class ClipB32(_ClipScore):
    name = "clip_b32"
    label = "CLIP B/32"
    column = "clip_b32_similarity_score"
    description = "CLIP ViT-B/32 image-text score from the metadata (clip_b32_30, clip_b32>=0.28)"
    needs = Needs(columns=(column,))


@register
class ClipL14(_ClipScore):
    name = "clip_l14"
    label = "CLIP L/14"
    column = "clip_l14_similarity_score"
    description = "CLIP ViT-L/14 image-text score from the metadata (clip_l14_30 = DataComp's best CLIP baseline)"
    needs = Needs(columns=(column,))
