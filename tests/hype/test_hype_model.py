"""The MERU-style model: training step, clamps, and strict loading of HYPE / MERU checkpoints."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from harness.baselines.hype import geometry as G
from harness.baselines.hype.model import (
    HYPE_LAYERNORM_EPS,
    MERU_LAYERNORM_EPS,
    CheckpointError,
    CheckpointWarning,
    MeruCLIP,
    hype_state_dict,
    load_meru,
    load_meru_state,
    load_reference_set,
    set_layernorm_eps,
)

TINY = "hype-tiny"


@pytest.fixture(scope="module")
def tiny_model() -> MeruCLIP:
    torch.manual_seed(0)
    return MeruCLIP.from_config(TINY)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, size=(40, 56, 3), dtype=np.uint8)) for _ in range(n)]


def test_initial_parameters_follow_meru(tiny_model):
    assert tiny_model.curv.item() == pytest.approx(1.0)
    assert tiny_model.alpha_img.exp().item() == pytest.approx(64**-0.5)
    assert tiny_model.alpha_txt.exp().item() == pytest.approx(64**-0.5)
    assert tiny_model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_clamps():
    m = MeruCLIP.from_config(TINY, curv_init=2.0)
    with torch.no_grad():
        m.curvature.fill_(math.log(1000.0))
        m.alpha_img.fill_(0.7)
        m.alpha_txt.fill_(-3.0)
        m.clip.logit_scale.fill_(9.0)
    m.clamp_parameters_()
    assert m.curv.item() == pytest.approx(20.0, rel=1e-5)  # 10 x init
    assert m.alpha_img.item() == 0.0 and m.alpha_txt.item() == pytest.approx(-3.0)
    assert m.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-5)
    with torch.no_grad():
        m.curvature.fill_(math.log(1e-4))
    m.clamp_parameters_()
    assert m.curv.item() == pytest.approx(0.2, rel=1e-5)  # init / 10


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(1)
    m = MeruCLIP.from_config(TINY)
    tok = open_clip.get_tokenizer(TINY)
    x = torch.randn(16, 3, 64, 64)
    t = tok([f"a {c} {s}" for c in ("red", "blue", "green", "pink") for s in ("circle", "star", "cross", "heart")])
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        out = m(x, t)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.8 * losses[0], losses
    # the objective is MERU's: contrastive on -d_L plus 0.2 x entailment
    assert out["loss"].item() == pytest.approx(out["contrastive"].item() + 0.2 * out["entailment"].item(), rel=1e-4)


def test_hype_layout_round_trip_through_a_file(tmp_path, tiny_model):
    ckpt = tmp_path / "ckpt.pt"
    torch.save(hype_state_dict(tiny_model), ckpt)
    loaded = load_meru(ckpt, model_name=TINY)
    assert loaded.info["layout"] == "hype"
    imgs, caps = _images(3), ["a red circle", "two small blue stars in the top left", "a shape"]
    # a checkpoint file in the HYPE layout is the official HYPE model: float32-epsilon LayerNorms
    reference = copy.deepcopy(tiny_model).eval()
    set_layernorm_eps(reference, HYPE_LAYERNORM_EPS)
    with torch.no_grad():
        ref_img = reference.image_tangent(torch.stack([loaded.preprocess(i) for i in imgs]))
        ref_txt = reference.text_tangent(loaded.tokenizer(caps))
    assert np.allclose(loaded.encode_images(imgs, batch_size=2), ref_img.numpy(), atol=1e-6)
    assert np.allclose(loaded.encode_texts(caps), ref_txt.numpy(), atol=1e-6)
    assert loaded.curv == pytest.approx(1.0)
    # what open_clip_train writes ({"state_dict": ...}) and DDP prefixes are accepted too
    wrapped = {"state_dict": {"module." + k: v for k, v in hype_state_dict(tiny_model).items()}, "epoch": 3}
    assert load_meru_state(MeruCLIP.from_config(TINY), wrapped) == "hype"


def test_missing_unexpected_and_misshapen_keys_are_errors(tiny_model):
    sd = hype_state_dict(tiny_model)
    no_curv = {k: v for k, v in sd.items() if k != "curvature"}
    with pytest.raises(CheckpointError, match=r"missing keys: curvature"):
        load_meru_state(MeruCLIP.from_config(TINY), no_curv, source="ckpt.pt")
    # a plain open_clip checkpoint (no hyperbolic scalars) is refused, naming all three
    plain = {k: v for k, v in sd.items() if k not in ("curvature", "alpha_img", "alpha_txt")}
    with pytest.raises(CheckpointError, match=r"alpha_img, alpha_txt, curvature"):
        load_meru_state(MeruCLIP.from_config(TINY), plain)
    # issue 16 item 11: an unexpected key is reported (HYPE's loader ignores it silently), not fatal
    with pytest.warns(CheckpointWarning, match=r"unexpected keys: visual\.extra_head"):
        load_meru_state(MeruCLIP.from_config(TINY), {**sd, "visual.extra_head": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"wrong shapes: text_projection"):
        load_meru_state(MeruCLIP.from_config(TINY), {**sd, "text_projection": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_meru_state(MeruCLIP.from_config(TINY), [1, 2])


def test_world_model_dir_must_be_meru(tmp_path, tiny_model):
    torch.save(hype_state_dict(tiny_model), tmp_path / "model.pt")
    (tmp_path / "model.json").write_text(json.dumps({"model_name": TINY, "kind": "clip"}))
    with pytest.raises(ValueError, match="'meru' model"):
        load_meru(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"model_name": TINY, "kind": "meru"}))
    assert load_meru(tmp_path).name == TINY
    with pytest.raises(FileNotFoundError, match="not found"):
        load_meru(tmp_path / "nope.pt")


def _to_meru_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What facebookresearch/meru's MERU module stores, written out key by key for the test."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("visual.trunk."):
            out["visual." + k[len("visual.trunk."):]] = v
        elif k == "visual.head.proj.weight":
            out["visual_proj.weight"] = v
        elif k == "token_embedding.weight":
            out["textual.token_embed.weight"] = v
        elif k == "positional_embedding":
            out["textual.posit_embed"] = v
        elif k.startswith("transformer."):
            out["textual." + k[len("transformer."):]] = v
        elif k.startswith("ln_final."):
            out["textual." + k] = v
        elif k == "text_projection":
            out["textual_proj.weight"] = v.T.contiguous()
        else:
            out[{"curvature": "curv", "alpha_img": "visual_alpha", "alpha_txt": "textual_alpha",
                 "logit_scale": "logit_scale"}[k]] = v
    n = sd["positional_embedding"].shape[0]
    out["textual.attn_mask"] = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    out["pixel_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    out["pixel_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return out


def test_meru_checkpoint_loads_into_a_timm_tower(tmp_path):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    name = "hype-test-meru-timm"
    (cfg_dir / f"{name}.json").write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                       "timm_pool": "token", "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(cfg_dir)
    torch.manual_seed(2)
    source = MeruCLIP.from_config(name)
    with torch.no_grad():
        source.curvature.fill_(math.log(0.7))
        source.alpha_img.fill_(-1.5)
    meru_sd = _to_meru_layout(hype_state_dict(source))
    ckpt = tmp_path / "meru_vit_tiny.pth"
    torch.save({"model": meru_sd, "iteration": 120000}, ckpt)
    loaded = load_meru(ckpt, model_name=name)
    assert loaded.info["layout"] == "meru"
    # MERU's towers use nn.LayerNorm's 1e-5, its timm ViT too (timm's own default is 1e-6)
    assert {m.eps for m in source.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6, 1e-5}
    assert loaded.info["layernorm_eps"] == MERU_LAYERNORM_EPS == 1e-5
    assert loaded.curv == pytest.approx(0.7, rel=1e-6)
    for k, v in hype_state_dict(source).items():
        assert torch.equal(hype_state_dict(loaded.model)[k], v), k
    # MERU normalises pixels with ImageNet statistics (its pixel_mean/pixel_std buffers)
    norm = [t for t in loaded.preprocess.transforms if type(t).__name__ == "Normalize"][0]
    assert tuple(norm.mean) == pytest.approx((0.485, 0.456, 0.406))
    # a MERU checkpoint missing its text projection is refused by name
    del meru_sd["textual_proj.weight"]
    torch.save({"model": meru_sd}, ckpt)
    with pytest.raises(CheckpointError, match=r"meru layout.*missing keys: text_projection"):
        load_meru(ckpt, model_name=name)


def test_reference_set_file_checks(tmp_path):
    good = tmp_path / "ref.pt"
    torch.save({"img": torch.randn(5, 8), "txt": torch.randn(7, 8)}, good)
    img, txt = load_reference_set(good, width=8)
    assert img.shape == (5, 8) and txt.shape == (7, 8) and img.dtype == torch.float32
    with pytest.raises(CheckpointError, match="width 8, the model embeds in 16"):
        load_reference_set(good, width=16)
    torch.save({"img": torch.randn(5, 8)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="needs keys 'img' and 'txt'"):
        load_reference_set(tmp_path / "bad.pt")
    torch.save({"img": torch.full((2, 8), float("nan")), "txt": torch.randn(2, 8)}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_reference_set(tmp_path / "nan.pt")


def test_model_embeddings_feed_the_geometry(tiny_model):
    tok = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        txt = tiny_model.encode_text(tok(["a red circle", "a shape"]))
        img = tiny_model.encode_image(torch.randn(3, 3, 64, 64))
    e = G.entailment_energy(txt, img, tiny_model.curv)
    assert e.shape == (2, 3) and torch.isfinite(e).all()
