"""DataComp's text-based filtering: an English caption that names an ImageNet-21k class.

As mlfoundations/datacomp ``baselines/apply_filter.py`` computes it (``load_uids_with_text_entity_helper``,
lines 263-295, and ``does_contain_text_entity``, lines 237-260): keep a sample when fastText lid.176
says its caption is English (lines 279-281, 292) and some word of ``caption.split()`` has a first
WordNet synset (``wordnet.synsets(word)[0]``) whose offset is an ImageNet-21k class id (lines 247-258).
WordNet 3.0, the ImageNet-21k list and the NLTK 3.8.1 lookup are in ``harness.wordnet``.

Options: ``lid_model=PATH`` (fastText's lid.176.bin; default ``$HARNESS_LID176``, else lid.176.ftz) and
``synsets=PATH`` (another copy of DataComp's ``imagenet21k_wordnet_ids.txt``; default timm's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import langid
from harness.plugins import MetadataBatch, Needs, PluginError, Predicate, ScoringContext, register


def names_imagenet21k_class(text: str, classes: frozenset[int], wn: Any) -> bool:
    """Some whitespace word's first synset is one of ``classes`` (offsets only, as DataComp compares)."""
    from harness.wordnet import first_synset_offset

    return any(first_synset_offset(word, wn) in classes for word in text.split())


@register
class TextBased(Predicate):
    name = "text_based"
    label = "Text-based"
    description = "DataComp text-based: English caption (fastText) with a word whose first WordNet synset is an ImageNet-21k class"
    needs = Needs(columns=("text",))

    def __init__(self, lid_model: str | None = None, synsets: str | None = None, **options: Any):
        opts = {"lid_model": lid_model, "synsets": synsets}
        super().__init__(**{k: v for k, v in opts.items() if v is not None}, **options)
        self.lid_model = lid_model
        self.synsets = synsets

    def settings(self) -> dict[str, Any]:
        from harness import wordnet

        try:
            described = wordnet.describe(self.synsets)
        except (wordnet.WordNetMissing, OSError) as exc:
            raise PluginError(f"text_based: {exc}") from exc
        return {**self.options, "detector": langid.detector_name(self.lid_model), **described}

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        from harness import wordnet

        try:
            wn = wordnet.reader()
            classes = wordnet.imagenet21k_offsets(self.synsets)
        except wordnet.WordNetMissing as exc:
            raise PluginError(f"text_based: {exc}") from exc
        texts = batch.texts()
        english = langid.detect_english(texts, self.lid_model)
        named = np.fromiter((names_imagenet21k_class(t, classes, wn) for t in texts), dtype=bool, count=len(texts))
        return english & named
