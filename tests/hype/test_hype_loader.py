"""HYPE / MERU checkpoint loading (issue 16 item 11): the official model's LayerNorm eps, and missing
or unexpected keys reported by name instead of loaded with strict=False silently."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.baselines.hype.model import (
    HYPE_LAYERNORM_EPS,
    CheckpointError,
    CheckpointWarning,
    MeruCLIP,
    hype_state_dict,
    load_meru,
)

# hype-tiny's vision tower is a ModifiedResNet (no LayerNorm); the text tower has 2 blocks x 2 + ln_final
TINY = "hype-tiny"
TINY_LAYERNORMS = 5


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A randomly initialised hyperbolic CLIP saved in the HYPE layout, as the official ckpt.pt is."""
    torch.manual_seed(11)
    model = MeruCLIP.from_config(TINY)
    with torch.no_grad():  # LayerNorm weights away from (1, 0), so eps is not the only thing they do
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    sd = hype_state_dict(model)
    path = tmp_path_factory.mktemp("hype") / "ckpt.pt"
    torch.save(sd, path)
    return path, sd


def _norms(model: nn.Module) -> list[nn.LayerNorm]:
    return [m for m in model.modules() if isinstance(m, nn.LayerNorm)]


def test_official_layout_uses_float32_machine_epsilon(saved) -> None:
    path, sd = saved
    assert HYPE_LAYERNORM_EPS == torch.finfo(torch.float32).eps == 2.0**-23
    loaded = load_meru(path, model_name=TINY)
    norms = _norms(loaded.model)
    assert len(norms) == TINY_LAYERNORMS and all(m.eps == HYPE_LAYERNORM_EPS for m in norms)
    assert loaded.info["layout"] == "hype" and loaded.info["layernorm_eps"] == HYPE_LAYERNORM_EPS
    # the forward pass uses it: HYPE's LayerNorm is F.layer_norm with finfo(dtype).eps
    x = torch.randn(3, 7, norms[0].normalized_shape[0]) * 1e-3  # small activations: eps matters
    ref = F.layer_norm(x, norms[0].normalized_shape, norms[0].weight, norms[0].bias, torch.finfo(x.dtype).eps)
    assert torch.equal(norms[0](x), ref)
    assert not torch.allclose(F.layer_norm(x, norms[0].normalized_shape, norms[0].weight, norms[0].bias, 1e-5),
                              ref, rtol=1e-3, atol=0)
    # and the text features differ from the same weights under open_clip's 1e-5
    default = load_meru(path, model_name=TINY, layernorm_eps=1e-5)
    assert all(m.eps == 1e-5 for m in _norms(default.model))
    texts = ["a red circle", "two blue stars on grass"]
    assert not torch.equal(torch.from_numpy(loaded.encode_texts(texts)), torch.from_numpy(default.encode_texts(texts)))


def test_world_models_keep_the_eps_they_were_trained_with(saved, tmp_path) -> None:
    path, sd = saved
    # a world model directory: trained with the config's eps (open_clip's 1e-5) unless model.json says
    world = tmp_path / "meru"
    world.mkdir()
    torch.save(sd, world / "model.pt")
    (world / "model.json").write_text(json.dumps({"model_name": TINY, "kind": "meru"}))
    assert load_meru(world).info["layernorm_eps"] == 1e-5
    (world / "model.json").write_text(json.dumps({"model_name": TINY, "kind": "meru", "layernorm_eps": 1e-6}))
    assert all(m.eps == 1e-6 for m in _norms(load_meru(world).model))
    # MERU checkpoints (1e-5): tests/hype/test_hype_model.py, test_meru_checkpoint_loads_into_a_timm_tower


def test_extra_key_loads_with_a_warning_naming_it(saved, tmp_path) -> None:
    path, sd = saved
    extra = tmp_path / "extra.pt"
    torch.save({**sd, "visual.image_mean_buffer": torch.zeros(3)}, extra)
    with pytest.warns(CheckpointWarning, match=r"unexpected keys: visual\.image_mean_buffer"):
        loaded = load_meru(extra, model_name=TINY)
    assert loaded.info["unexpected_keys"] == ["visual.image_mean_buffer"] and loaded.info["missing_keys"] == []
    clean = load_meru(path, model_name=TINY)
    for k, v in hype_state_dict(clean.model).items():  # every real weight still loaded
        assert torch.equal(hype_state_dict(loaded.model)[k], v), k
    # a checkpoint that fits exactly loads without any warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        load_meru(path, model_name=TINY)


@pytest.mark.parametrize("key", ["ln_final.weight", "text_projection", "alpha_img", "curvature",
                                 "transformer.resblocks.1.attn.in_proj_weight"])
def test_missing_used_weight_fails_naming_it(saved, tmp_path, key) -> None:
    _, sd = saved
    broken = tmp_path / "broken.pt"
    torch.save({k: v for k, v in sd.items() if k != key}, broken)
    with pytest.raises(CheckpointError, match=rf"missing keys: {key.replace('.', '[.]')}") as err:
        load_meru(broken, model_name=TINY)
    assert str(broken) in str(err.value)


def test_missing_unused_logit_scale_is_only_reported(saved, tmp_path) -> None:
    path, sd = saved
    no_scale = tmp_path / "no_scale.pt"
    torch.save({k: v for k, v in sd.items() if k != "logit_scale"}, no_scale)
    with pytest.warns(CheckpointWarning, match=r"missing keys logit_scale \(not used for scoring\)"):
        loaded = load_meru(no_scale, model_name=TINY)
    assert loaded.info["missing_keys"] == ["logit_scale"]
    texts = ["a red circle"]
    assert torch.equal(torch.from_numpy(loaded.encode_texts(texts)),
                       torch.from_numpy(load_meru(path, model_name=TINY).encode_texts(texts)))
