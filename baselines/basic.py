"""DataComp's basic filtering: English caption, more than 2 words and more than 5 characters,
shorter image side >= 200 px, aspect ratio (long / short side) <= 3.

As mlfoundations/datacomp ``baselines/apply_filter.py`` computes it (``load_uids_with_basic_filter_helper``,
lines 200-234): language is fastText lid.176's top-1 label of the caption with newlines replaced
(lines 214-217, 227; harness.langid: lid.176.ftz by default, lid.176.bin when supplied), words are
``str.split()`` (line 219), characters ``len`` (line 220), aspect = long / short side (lines 229-232).
"""

from __future__ import annotations

import numpy as np

from harness import langid
from harness.plugins import MetadataBatch, Needs, Predicate, ScoringContext, register


def caption_stats(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return words, chars


def image_ok(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    short, long = np.minimum(w, h), np.maximum(w, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = long / short
    return (short >= 200) & (aspect <= 3.0)


@register
class Basic(Predicate):
    name = "basic"
    label = "Basic"
    description = "DataComp basic filtering: English, >2 words, >5 chars, short side >=200 px, aspect <=3"
    needs = Needs(columns=("text", "original_width", "original_height"))

    def __init__(self, lid_model: str | None = None, **options):
        super().__init__(**({"lid_model": lid_model} if lid_model else {}), **options)
        self.lid_model = lid_model

    def settings(self):
        return {**self.options, "detector": langid.detector_name(self.lid_model)}

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        texts = batch.texts()
        words, chars = caption_stats(texts)
        english = langid.detect_english(texts, self.lid_model)
        size = image_ok(batch.column("original_width"), batch.column("original_height"))
        return english & (words > 2) & (chars > 5) & size
