"""The world's reference models: a registry of builders and our CLIP trainer.

Every builder is called as `fn(world_dir: Path, seed: int, profile: str) -> None` and writes
`<world_dir>/models/<name>/` (model.pt, model.json, anything else it needs). The world builder
records completion per model, so a model can be added to an existing world later.

- ref_b32, ref_l14: stand-ins for OpenAI's CLIP B/32 and L/14 (two sizes), trained on web-like data
  (with some noise and text-in-image pairs, so they learn to read rendered words). They fill the
  pool's clip_*_similarity_score columns and npz features.
- dfn: a data-filtering network, the B/32-sized architecture trained only on clean, specific pairs.
- meru: the hyperbolic MERU-style model for HYPE (built by harness.baselines.hype.world_model).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.stages import atomic_write_bytes, atomic_write_text

from ..registry import Registry
from .io import LOG, report_progress
from .profiles import profile_knobs

# name -> "module:function". A builder is named, not imported, so that the world build can hand it to
# a fresh worker process (--builder) and import only the builders it runs. The order is the default build order.
MODEL_BUILDERS: Registry[str] = Registry("world model", ValueError)
MODEL_BUILDERS.register("ref_b32", "harness.world.reference_models:build_ref_b32")
MODEL_BUILDERS.register("ref_l14", "harness.world.reference_models:build_ref_l14")
MODEL_BUILDERS.register("dfn", "harness.world.reference_models:build_dfn")
MODEL_BUILDERS.register("meru", "harness.baselines.hype.world_model:build_world_meru")
# The pool's scores and features come from these, so every world has them.
REQUIRED_MODELS: tuple[str, ...] = ("ref_b32", "ref_l14")


class MissingBuilderError(RuntimeError):
    """A registered builder's module or function does not exist (a wrong MODEL_BUILDERS entry)."""


def resolve_builder(name: str) -> Callable[[Path, int, str], None]:
    module_name, _, fn_name = MODEL_BUILDERS.get(name).partition(":")  # an unknown name: ValueError naming the known
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # a registry entry naming no module is named as such; an import error inside an existing module
        # is a bug there and propagates
        if e.name and module_name.startswith(e.name):
            raise MissingBuilderError(
                f"world model {name!r}: its builder module {module_name} ({MODEL_BUILDERS[name]}) does not exist") from e
        raise
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise MissingBuilderError(f"{module_name} has no function {fn_name!r} (builder of world model {name!r})")
    return fn


def world_knobs(world_dir: Path, profile: str) -> dict:
    """The knobs this world is being built with (written by build_world before any model is built)."""
    path = Path(world_dir) / ".build" / "knobs.json"
    if path.is_file():
        return json.loads(path.read_text())
    return profile_knobs(profile)


# --- training ------------------------------------------------------------------------------------

ARRAYS_DIR = ".build/arrays"  # rendered training images shared by the build's worker processes
_PARTS = 4


@lru_cache(maxsize=2)
def _training_arrays(world_dir: Path, seed: int, n: int, kind: str, size: int) -> tuple[np.ndarray, list[str]]:
    """training_pairs(seed, n, kind, size) as uint8 arrays + captions, rendered once per build.

    ref_b32 and ref_l14 train on the same web data, in parallel workers: the images are rendered
    in parts, each part by the first worker that takes its lock, and saved in ARRAYS_DIR; a worker
    then waits for the parts the other one is rendering. With one worker it renders every part.
    Same bytes as rendering all at once (each image depends only on its plan).
    """
    from filelock import FileLock, Timeout

    from .data import render_arrays, training_plans

    plans = training_plans(seed, n, kind)
    cache = Path(world_dir) / ARRAYS_DIR
    cache.mkdir(parents=True, exist_ok=True)
    parts = [(cache / f"{kind}-seed{seed}-n{n}-{size}px.{i}.npy", n * i // _PARTS, n * (i + 1) // _PARTS)
             for i in range(_PARTS)]
    for path, lo, hi in parts:  # render the parts nobody else is rendering
        lock = FileLock(f"{path}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            if not path.is_file():
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, render_arrays(plans[lo:hi], size))
                os.replace(tmp, path)
        finally:
            lock.release()
    arrays = []
    for path, _, _ in parts:
        with FileLock(f"{path}.lock"):  # waits while another worker renders this part
            arrays.append(np.load(path))
    return np.concatenate(arrays), [p.caption for p in plans]


def train_clip(config: str, images: np.ndarray, captions: list[str], *, steps: int, batch: int, lr: float,
               seed: int, label: str = "clip", warmup_frac: float = 0.1, weight_decay: float = 0.1):
    """Train an open_clip model from scratch with the symmetric contrastive loss; returns the model.

    images: uint8 [N, S, S, 3] already at the model's input size. The batch order comes from a
    seeded generator; the weights are the same on every machine when the caller pins the numerics
    and the thread count (the world builder's workers do: harness.numerics.init_worker).
    """
    import open_clip
    import torch
    import torch.nn.functional as F

    from ..models import quiet_random_init, register_configs

    register_configs()
    torch.manual_seed(seed)
    with quiet_random_init():  # trained from scratch: random initial weights are the point
        model = open_clip.create_model(config)
    model.train()
    tokenizer = open_clip.get_tokenizer(config)
    tokens = tokenizer(captions)
    x_all = torch.from_numpy(images)
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    decay = [p for n_, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n_]
    no_decay = [p for n_, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n_)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch)
    warmup = max(1, int(steps * warmup_frac))
    t0 = time.time()
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        x = (x_all[idx].permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        img_f, txt_f, logit_scale = model(x, tokens[idx])[:3]
        logits = logit_scale * img_f @ txt_f.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        value = loss.item()
        report_progress(label, step + 1, steps, "step", f"loss {value:.3f}")
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            spent = time.time() - t0
            LOG.debug("%s: step %d/%d loss %.3f (%.0fs, about %.0fs left)", label, step + 1, steps, value,
                      spent, spent / (step + 1) * (steps - step - 1))
    model.eval()
    return model


def save_clip(model, model_dir: Path, meta: dict) -> None:
    import io

    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(model_dir / "model.pt", buf.getvalue())
    atomic_write_text(model_dir / "model.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _build_clip(name: str, world_dir: Path, seed: int, profile: str, description: str) -> None:
    knobs = world_knobs(world_dir, profile)["train"][name]
    import open_clip

    from ..models import register_configs

    register_configs()
    size = int(open_clip.get_model_config(knobs["config"])["vision_cfg"]["image_size"])
    LOG.debug("%s: rendering %d %s training pairs", name, knobs["n"], knobs["data"])
    images, captions = _training_arrays(Path(world_dir), seed, int(knobs["n"]), knobs["data"], size)
    LOG.debug("%s: training %s for %d steps", name, knobs["config"], knobs["steps"])
    # distinct seeds per model, so two models on the same data still differ
    model_seed = (seed * 1_000_003 + sum(map(ord, name))) % 2**31
    model = train_clip(knobs["config"], images, captions, steps=int(knobs["steps"]), batch=int(knobs["batch"]),
                       lr=float(knobs["lr"]), seed=model_seed, label=name)
    meta = {
        "model_name": knobs["config"], "kind": "clip", "name": name, "description": description,
        "trained_on": knobs["data"], "train_samples": int(knobs["n"]), "steps": int(knobs["steps"]),
        "batch": int(knobs["batch"]), "lr": float(knobs["lr"]), "seed": seed, "profile": profile,
        "image_size": size,
    }  # no timings here: model.json is part of the world's content fingerprint
    save_clip(model, Path(world_dir) / "models" / name, meta)


def build_ref_b32(world_dir: Path, seed: int, profile: str) -> None:
    _build_clip("ref_b32", world_dir, seed, profile,
                "stand-in for OpenAI CLIP ViT-B/32: coarse patches, trained on web-like pairs")


def build_ref_l14(world_dir: Path, seed: int, profile: str) -> None:
    _build_clip("ref_l14", world_dir, seed, profile,
                "stand-in for OpenAI CLIP ViT-L/14: finer patches, deeper, trained on web-like pairs")


def build_dfn(world_dir: Path, seed: int, profile: str) -> None:
    _build_clip("dfn", world_dir, seed, profile,
                "data-filtering network: B/32-sized CLIP trained only on clean, specific pairs")


def clear_caches() -> None:
    _training_arrays.cache_clear()
