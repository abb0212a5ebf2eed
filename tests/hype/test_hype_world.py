"""HYPE on the tiny world: the trained MERU model's specificity behaves as the method needs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.baselines.hype import geometry as G
from harness.baselines.hype.model import load_meru, load_reference_set
from harness.world.captions import caption_levels
from harness.world.data import heldout_pairs
from harness.world.scenes import sample_scene


@pytest.fixture(scope="module")
def meru(tiny_world):
    model_dir = tiny_world / "models" / "meru"
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["kind"] == "meru" and meta["model_name"]
    loaded = load_meru(model_dir)
    img, txt = load_reference_set(model_dir / "reference_set.pt", width=loaded.model.embed_dim)
    curv = loaded.model.curv.detach()
    return loaded, G.exp_map0(img, curv), G.exp_map0(txt, curv), curv


def _eps_t(meru, captions: list[str]) -> np.ndarray:
    loaded, ref_img, _, curv = meru
    txt = G.exp_map0(torch.from_numpy(loaded.encode_texts(captions)), curv)
    return G.text_specificity(txt, ref_img, curv).numpy()


def test_reference_set_is_written_in_hype_format(tiny_world, meru):
    ref = torch.load(tiny_world / "models" / "meru" / "reference_set.pt")
    assert set(ref) == {"img", "txt"}
    assert ref["img"].dtype == torch.float32 and ref["img"].shape[1] == meru[0].model.embed_dim
    assert ref["img"].shape[0] > 0 and ref["txt"].shape[0] > 0


def test_text_specificity_rises_with_caption_detail(meru):
    rng = np.random.default_rng(2024)  # fresh scenes, not the training data
    triples = [caption_levels(sample_scene(rng), rng) for _ in range(200)]
    eps = _eps_t(meru, [c for t in triples for c in t]).reshape(-1, 3)
    ordered = (eps[:, 0] < eps[:, 1]) & (eps[:, 1] < eps[:, 2])
    print(f"\nHYPE tiny world: generic < medium < detailed eps_t in {ordered.mean():.1%} of 200 triples; "
          f"mean eps_t by level {np.round(eps.mean(0), 3).tolist()}")
    assert ordered.mean() > 0.9


def test_underspecified_captions_are_less_specific(meru):
    clean = heldout_pairs(101, 300, "clean").captions
    under = heldout_pairs(101, 300, "underspecified").captions
    e_clean, e_under = _eps_t(meru, clean), _eps_t(meru, under)
    auc = roc_auc_score(np.r_[np.ones(len(e_clean)), np.zeros(len(e_under))], np.r_[e_clean, e_under])
    print(f"\nHYPE tiny world: eps_t AUC clean vs underspecified captions = {auc:.3f}")
    assert auc > 0.65
