"""DataComp's LAION-2B reproduction: English caption and CLIP B/32 score >= 0.28.

DataComp detects English with gcld3 here; the harness uses harness.langid (fastText lid.176 when
supplied, else py3langid), recorded in the score table's settings.
"""

from __future__ import annotations

import numpy as np

from harness import langid
from harness.plugins import MetadataBatch, Needs, Predicate, ScoringContext, register

THRESHOLD = 0.28


@register
class Laion2b(Predicate):
    name = "laion2b"
    description = "LAION-2B style: English caption and clip_b32_similarity_score >= 0.28"
    needs = Needs(columns=("text", "clip_b32_similarity_score"))

    def __init__(self, lid_model: str | None = None, **options):
        super().__init__(**({"lid_model": lid_model} if lid_model else {}), **options)
        self.lid_model = lid_model

    def settings(self):
        return {**self.options, "detector": langid.detector_name(self.lid_model), "threshold": THRESHOLD}

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        score = batch.column("clip_b32_similarity_score").astype(np.float64)
        texts = ["" if t is None else str(t) for t in batch.table.column("text").to_pylist()]
        return (score >= THRESHOLD) & langid.detect_english(texts, self.lid_model)
