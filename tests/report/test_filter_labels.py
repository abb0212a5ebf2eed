"""A filter carries its own table label; the report names an expression from the labels of its filters."""

from __future__ import annotations

import numpy as np
import pytest

from harness import plugins
from harness.plugins import (
    MetadataBatch,
    PluginError,
    Predicate,
    ScoringContext,
    declared_label,
    filter_label,
    get_filter,
)
from harness.report import method_label

# The paper's names of the built-in filters (the README table and the published rows use them).
PAPER_LABELS = {
    "no_filter": "No filtering", "basic": "Basic", "text_based": "Text-based", "image_based": "Image-based",
    "clip_b32": "CLIP B/32", "clip_l14": "CLIP L/14", "laion2b": "LAION-2B", "tmars": "T-MARS", "dfn": "DFN",
    "hype": "HYPE", "ws": "WS", "random": "Random",
}


def test_builtin_filters_carry_the_paper_labels():
    assert {name: get_filter(name).label for name in PAPER_LABELS} == PAPER_LABELS
    assert {name: filter_label(name) for name in PAPER_LABELS} == PAPER_LABELS


def test_a_subclass_with_its_own_name_does_not_inherit_the_label():
    # hype_img and hype_in subclass the HYPE scorer: their rows keep their own names, as before
    assert get_filter("hype_img").label == "HYPE"  # the class attribute is inherited ...
    assert filter_label("hype_img") == "hype_img" and filter_label("hype_in") == "hype_in"  # ... the label is not
    assert method_label("hype_img10 + hype_in") == "hype_img 10% + hype_in"

    hype = get_filter("hype")
    same_name = type("Tuned", (hype,), {})
    assert declared_label(same_name) == "HYPE"  # same filter, same label
    relabelled = type("Mine", (hype,), {"name": "mine", "label": "Mine (HYPE)"})
    assert declared_label(relabelled) == "Mine (HYPE)"


class _Labelled(Predicate):
    name = "labelled_probe"
    label = "Probe ★"

    def keep(self, batch: MetadataBatch, ctx: ScoringContext):
        return np.ones(len(batch), dtype=bool)


def test_a_plugin_label_names_its_rows():
    plugins.register(_Labelled)
    try:
        assert method_label("labelled_probe & clip_l14_30") == "Probe ★ ∩ CLIP L/14 30%"
        assert method_label("labelled_probe_20") == "Probe ★ 20%"
    finally:
        plugins.unregister(_Labelled.name)
    # a filter the report does not know (a plugin file it was not given) shows as written
    assert method_label("labelled_probe_20") == "labelled_probe 20%"


def test_a_label_must_be_text():
    bad = type("Bad", (_Labelled,), {"name": "bad_label_probe", "label": 3})
    with pytest.raises(PluginError, match=r"label must be a string, got 3"):
        plugins.register(bad)
