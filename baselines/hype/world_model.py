"""Train the tiny world's MERU-style hyperbolic CLIP and draw its HYPE reference set.

``build_world_meru(world_dir, seed, profile)`` writes::

    <world>/models/meru/model.pt           HYPE-layout state dict (open_clip keys + curvature, alphas)
    <world>/models/meru/reference_set.pt   {"img": [N, D], "txt": [M, D]} tangent vectors
    <world>/models/meru/model.json         {"model_name", "kind": "meru", ...}; written last

Training data is the world's clean data (``harness.world.training_pairs(seed, n, kind="clean")``);
every image is paired with captions at all three detail levels when the world exposes the scene
(generic captions fit every scene, so the contrastive loss can only place them near the origin:
that is what makes text specificity grow with detail). The reference set comes from clean data
drawn under another seed (held out from training).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.baselines.hype.model import MeruCLIP, hype_state_dict
from harness.stages import atomic_path

MODEL_NAME = "hype-tiny"
REFERENCE_SEED_OFFSET = 7_919  # the reference set's clean data comes from seed + this: held out


@dataclass(frozen=True)
class Profile:
    n_train: int  # distinct training images
    steps: int
    batch: int
    lr: float
    n_ref: int  # reference images and texts


PROFILES: dict[str, Profile] = {
    # < 60 s on 2 cores: enough for the specificity ordering of caption levels to emerge.
    "test": Profile(n_train=1500, steps=180, batch=64, lr=2e-3, n_ref=256),
    # ~140-150 s in a one-thread worker (world v5; v4's 5000 x 260 x 128 took 458 s): per sample the
    # world's slowest step, as pinned numerics turn oneDNN off and its ResNet convolutions run on
    # ATen's slow_conv2d.
    "default": Profile(n_train=2000, steps=150, batch=64, lr=2e-3, n_ref=1024),
}


@dataclass
class _Pair:
    image: Any
    captions: tuple[str, ...]  # one caption, or (generic, medium, detailed) of the same scene


def _as_pairs(data: Any, seed: int, all_levels: bool) -> list[_Pair]:
    """harness.world's Pairs (images, captions, scenes) -> training pairs.

    With ``all_levels`` each image gets its (generic, medium, detailed) captions, drawn from its scene
    with the world's caption functions; otherwise it keeps the caption it came with.
    """
    from harness.world.captions import caption_levels

    images, captions = list(data.images), list(data.captions)
    scenes = list(getattr(data, "scenes", None) or [None] * len(images))
    if not (len(images) == len(captions) == len(scenes)):
        raise ValueError(f"world pairs are misaligned: {len(images)} images, {len(captions)} captions, "
                         f"{len(scenes)} scenes")
    rng = np.random.default_rng([seed, 31])
    pairs = []
    for image, caption, scene in zip(images, captions, scenes, strict=True):
        if all_levels and scene is not None:
            pairs.append(_Pair(image, tuple(caption_levels(scene, rng))))
        else:
            pairs.append(_Pair(image, (caption,)))
    return pairs


def _clean_pairs(seed: int, n: int, size: int) -> list[_Pair]:
    """Training data: the world's clean pairs, each image with captions at all three detail levels
    (kind="clean" captions are medium or detailed only; generic ones are what teaches the model
    where the origin is)."""
    from harness.world import training_pairs

    return _as_pairs(training_pairs(seed, n, kind="clean", size=size), seed, all_levels=True)


def _reference_pairs(seed: int, n: int, size: int) -> list[_Pair]:
    """Held-out clean data with the world's natural mix of caption levels (another seed and stream)."""
    from harness.world.data import heldout_pairs

    return _as_pairs(heldout_pairs(seed + REFERENCE_SEED_OFFSET, n, "clean", size=size), seed, all_levels=False)


def _image_size(model_name: str) -> int:
    import open_clip

    from harness.models import register_configs

    register_configs()
    size = open_clip.get_model_config(model_name)["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[0])


def _param_groups(model: MeruCLIP, weight_decay: float) -> list[dict]:
    # open_clip's rule: no decay on gains, biases and learnable scalars.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "ln" in name or "bn" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _atomic_save(obj: Any, path: Path) -> None:
    # through a file object: torch.save names the zip's records after a path's file name, and the
    # temporary name holds the process id, so the bytes (and the world's fingerprint) would vary
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def train_meru(
    pairs: list[_Pair], profile: Profile, seed: int, model_name: str = MODEL_NAME, log: Any = None,
    progress: Any = None,
) -> tuple[MeruCLIP, Any, Any, dict[str, Any]]:
    """Train a MeruCLIP on pairs; returns (model, preprocess, tokenizer, training record).

    log(message) gets a line at every tenth of the steps; progress(done, total, note) every step."""
    import open_clip

    from harness.baselines.hype.model import preprocess_and_tokenizer

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    model = MeruCLIP.from_config(model_name)
    preprocess, tokenizer = preprocess_and_tokenizer(model_name, model.clip)
    del open_clip
    images = torch.stack([preprocess(p.image.convert("RGB")) for p in pairs]).to(torch.float16)
    captions = sorted({c for p in pairs for c in p.captions})
    cap_index = {c: i for i, c in enumerate(captions)}
    tokens = tokenizer(captions)
    options = [np.array([cap_index[c] for c in p.captions]) for p in pairs]
    opt = torch.optim.AdamW(_param_groups(model, 0.2), lr=profile.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, profile.steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return profile.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, profile.steps - warmup)
        return profile.lr * 0.5 * (1 + math.cos(math.pi * t))

    model.train()
    history = []
    t_start = time.time()
    n = len(pairs)
    for step in range(profile.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        idx = rng.choice(n, size=min(profile.batch, n), replace=False)
        cap = np.array([options[i][rng.integers(len(options[i]))] for i in idx])
        out = model(images[idx].float(), tokens[cap])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        history.append(float(out["loss"].detach()))
        if progress is not None:
            progress(step + 1, profile.steps, f"loss {history[-1]:.3f}")
        if log is not None and ((step + 1) % max(1, profile.steps // 10) == 0 or step + 1 == profile.steps):
            spent = time.time() - t_start
            log(f"step {step + 1}/{profile.steps} loss {history[-1]:.3f} contrastive {float(out['contrastive']):.3f} "
                f"entailment {float(out['entailment']):.3f} curv {float(out['curv']):.3f} "
                f"({spent:.0f}s, about {spent / (step + 1) * (profile.steps - step - 1):.0f}s left)")
    model.clamp_parameters_()
    model.eval()
    record = {"steps": profile.steps, "batch": profile.batch, "lr": profile.lr, "train_images": n,
              "train_captions": len(captions), "loss_first": history[0], "loss_last": float(np.mean(history[-10:]))}
    return model, preprocess, tokenizer, record


@torch.no_grad()
def reference_set(model: MeruCLIP, preprocess: Any, tokenizer: Any, pairs: list[_Pair], seed: int) -> dict[str, torch.Tensor]:
    """HYPE's reference set: tangent vectors of held-out clean images and of their captions."""
    rng = np.random.default_rng([seed, 23])
    img = torch.stack([preprocess(p.image.convert("RGB")) for p in pairs])
    # one caption per image, drawn from the levels available (the clean data's own mix otherwise)
    txt = [p.captions[rng.integers(len(p.captions))] for p in pairs]
    img_t = torch.cat([model.image_tangent(img[i:i + 256]) for i in range(0, len(img), 256)])
    txt_t = torch.cat([model.text_tangent(tokenizer(txt[i:i + 256])) for i in range(0, len(txt), 256)])
    return {"img": img_t.float().contiguous(), "txt": txt_t.float().contiguous()}


def build_world_meru(world_dir: Path, seed: int, profile: str, log: Any = None) -> None:
    """Train the world's MERU model on its clean data and write models/meru/ (see module docstring)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown world profile {profile!r} for the MERU model; known: {sorted(PROFILES)}")
    prof = PROFILES[profile]
    from harness.world.io import LOG, report_progress

    if log is None:  # the world build's detail lines (-v); its bar shows the steps

        def log(msg: str) -> None:
            LOG.debug("meru: %s", msg)
    t0 = time.time()
    out_dir = Path(world_dir) / "models" / "meru"
    out_dir.mkdir(parents=True, exist_ok=True)
    size = _image_size(MODEL_NAME)
    train = _clean_pairs(seed, prof.n_train, size)
    model, preprocess, tokenizer, record = train_meru(
        train, prof, seed, log=log, progress=lambda done, total, note: report_progress("meru", done, total, "step", note))
    held_out = _reference_pairs(seed, prof.n_ref, size)
    ref = reference_set(model, preprocess, tokenizer, held_out, seed)
    _atomic_save(hype_state_dict(model), out_dir / "model.pt")
    _atomic_save(ref, out_dir / "reference_set.pt")
    meta = {
        "model_name": MODEL_NAME, "kind": "meru", "layout": "hype", "seed": seed, "profile": profile,
        "curv_init": model.curv_init, "curvature": float(model.curv.detach()),
        "alpha_img": float(model.alpha_img.detach().exp()), "alpha_txt": float(model.alpha_txt.detach().exp()),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "reference_set": {"file": "reference_set.pt", "img": int(ref["img"].shape[0]),
                          "txt": int(ref["txt"].shape[0]), "seed": seed + REFERENCE_SEED_OFFSET},
        "training": record, "seconds": round(time.time() - t0, 1),
    }
    _atomic_text(json.dumps(meta, indent=2) + "\n", out_dir / "model.json")
