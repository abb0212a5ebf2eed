"""DataComp's LAION-2B reproduction: English caption by gcld3 and CLIP B/32 score >= 0.28.

As mlfoundations/datacomp ``baselines/apply_filter.py`` computes it (``apply_filter``, lines 695-704;
``load_uids_with_clip_score_helper``, lines 298-334): gcld3's ``NNetLanguageIdentifier(min_num_bytes=0,
max_num_bytes=1000)`` says ``"en"`` for the caption with newlines replaced (lines 51-52, 315-324), and
``clip_b32_similarity_score >= 0.28`` (line 331). DataComp compares the float32 column with 0.28 cast
to float32 (numpy's rule for a Python float against a float32 array); that is the default
(``compat="datacomp"``), ``compat="corrected"`` compares in float64 (see harness.expressions).
"""

from __future__ import annotations

import numpy as np

from harness import langid
from harness.compat import DEFAULT_COMPAT, check_compat
from harness.expressions import threshold_as_compared
from harness.plugins import MetadataBatch, Needs, Predicate, ScoringContext, register

THRESHOLD = 0.28


@register
class Laion2b(Predicate):
    name = "laion2b"
    label = "LAION-2B"
    description = "LAION-2B style: English caption (gcld3) and clip_b32_similarity_score >= 0.28"
    needs = Needs(columns=("text", "clip_b32_similarity_score"))

    def __init__(self, compat: str = DEFAULT_COMPAT, **options):
        # compat comes from the run (ScoringContext.compat) unless the user sets laion2b.compat
        super().__init__(compat=check_compat(compat), **options)
        self.compat = compat

    def settings(self):
        return {**self.options, "detector": langid.detector_name(kind=langid.GCLD3), "threshold": THRESHOLD}

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        score = np.asarray(batch.column("clip_b32_similarity_score"))
        threshold = threshold_as_compared(THRESHOLD, score.dtype, self.compat)
        texts = batch.texts()
        return (score.astype(np.float64) >= threshold) & langid.detect_english(texts, kind=langid.GCLD3)
