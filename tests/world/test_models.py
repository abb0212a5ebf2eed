"""harness.models: config registration and load_clip for world dirs and open_clip_train checkpoints."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from harness.models import load_clip, register_configs
from harness.world import heldout_pairs


def test_configs_are_registered_idempotently():
    import open_clip

    register_configs()
    register_configs()
    names = open_clip.list_models()
    for name in ("tiny-clip", "ref-b32-tiny", "ref-l14-tiny"):
        assert names.count(name) == 1
    cfg = open_clip.get_model_config("tiny-clip")
    assert cfg["vision_cfg"]["image_size"] == 64 and cfg["text_cfg"]["context_length"] == 32
    model = open_clip.create_model("tiny-clip")
    tok = open_clip.get_tokenizer("tiny-clip")
    img_f, txt_f, _ = model(torch.zeros(2, 3, 64, 64), tok(["a red circle", "two blue stars"]))[:3]
    assert img_f.shape == txt_f.shape == (2, 64)


def test_load_world_model_dir(tiny_world):
    d = tiny_world / "models" / "ref_b32"
    clip = load_clip(d)
    assert clip.fingerprint == hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()
    pairs = heldout_pairs(9, 5, "clean")
    img = clip.encode_images(pairs.images, batch_size=2)
    txt = clip.encode_texts(pairs.captions, batch_size=2)
    assert img.dtype == txt.dtype == np.float32 and img.shape == txt.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert clip.encode_texts([]).shape[0] == 0


def test_load_open_clip_train_checkpoint(tiny_world, tmp_path):
    """open_clip_train layout: <run>/params.txt names the model; checkpoints hold a 'module.'-prefixed state_dict."""
    ref = load_clip(tiny_world / "models" / "ref_b32")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    state = torch.load(tiny_world / "models" / "ref_b32" / "model.pt", weights_only=True)
    ckpt = run / "checkpoints" / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    (run / "params.txt").write_text("batch_size: 64\nmodel: ref-b32-tiny\nlr: 0.001\n")
    pairs = heldout_pairs(9, 4, "clean")
    expected = ref.encode_images(pairs.images)
    for spec in (ckpt, f"ref-b32-tiny:{ckpt}"):
        clip = load_clip(spec)
        np.testing.assert_allclose(clip.encode_images(pairs.images), expected, atol=1e-5)
        assert clip.fingerprint == hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_bad_specs_are_named(tmp_path):
    with pytest.raises(ValueError, match="no-such-model"):
        load_clip("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_clip(tmp_path / "empty")
    lone = tmp_path / "lone.pt"
    lone.write_bytes(b"x")
    with pytest.raises(ValueError, match="params.txt"):
        load_clip(lone)
