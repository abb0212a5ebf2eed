"""DataComp's ``no_filter`` baseline: every sample of the pool."""

from __future__ import annotations

import numpy as np

from harness.plugins import MetadataBatch, Needs, Predicate, ScoringContext, register


@register
class NoFilter(Predicate):
    name = "no_filter"
    label = "No filtering"
    description = "keep every sample (DataComp's no-filtering baseline)"
    needs = Needs()
    cache = False  # nothing to compute

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        return np.ones(len(batch), dtype=bool)
