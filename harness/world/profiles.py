"""World profiles: every size knob of a world in one place (see README.md for what each one means)."""

from __future__ import annotations

import copy
from typing import Any

from .samples import DEFAULT_DETAIL, DEFAULT_MIX

_DEFAULT: dict[str, Any] = {
    "pool_size": 6_400,           # DataComp small / 2000
    "shard_size": 1_000,          # samples per pool shard ({:08d}.tar)
    "metadata_files": 4,          # metadata parquet/npz pairs (rows spread at random over them)
    "noise_mix": dict(DEFAULT_MIX),
    "detail_mix": dict(DEFAULT_DETAIL),
    "eval_size": {"imagenet": 800, "shift": 400, "vtab": 400, "retrieval": 400, "other": 400},
    "imagenet_like_per_class": 10,
    # reference models: open_clip config, training data kind and size, steps, batch, peak lr
    # (AdamW, 10% warm-up then cosine). Tiny ViTs sit on a loss plateau at log(batch) for the first
    # ~60-90 steps; a higher lr (>= 4e-3) or 16 px patches kept them there, so do not cut steps below ~150.
    # Since world v5 batch 64 and 160 steps, near the test profile's sizes: the build takes about
    # 6 minutes on 2 cores instead of 20 (BENCHMARKS.md, "World v5").
    "train": {
        "ref_b32": {"config": "ref-b32-tiny", "data": "web", "n": 5_000, "steps": 160, "batch": 64, "lr": 2e-3},
        "ref_l14": {"config": "ref-l14-tiny", "data": "web", "n": 5_000, "steps": 160, "batch": 64, "lr": 2e-3},
        "dfn": {"config": "ref-b32-tiny", "data": "clean", "n": 3_000, "steps": 160, "batch": 64, "lr": 2e-3},
    },
}

_TEST: dict[str, Any] = copy.deepcopy(_DEFAULT) | {
    "pool_size": 2_000,
    "shard_size": 500,
    "metadata_files": 3,
    "eval_size": {"imagenet": 160, "shift": 80, "vtab": 80, "retrieval": 80, "other": 80},
    "imagenet_like_per_class": 5,
}
_TEST["train"] = {
    "ref_b32": {"config": "ref-b32-tiny", "data": "web", "n": 4_000, "steps": 200, "batch": 64, "lr": 2e-3},
    "ref_l14": {"config": "ref-l14-tiny", "data": "web", "n": 4_000, "steps": 200, "batch": 64, "lr": 2e-3},
    "dfn": {"config": "ref-b32-tiny", "data": "clean", "n": 3_000, "steps": 160, "batch": 64, "lr": 2e-3},
}

PROFILES: dict[str, dict[str, Any]] = {"default": _DEFAULT, "test": _TEST}


def profile_knobs(profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The knobs of a profile, with `overrides` (top-level keys) applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown world profile {profile!r}; known: {sorted(PROFILES)}")
    knobs = copy.deepcopy(PROFILES[profile])
    for key, value in (overrides or {}).items():
        if key not in knobs:
            raise ValueError(f"unknown world knob {key!r}; known: {sorted(knobs)}")
        knobs[key] = value
    return knobs
