"""Image-caption sets outside the pool: model training data and held-out samples for tests.

Each use draws from its own random stream, so no training or held-out sample is a pool or eval sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .samples import (
    CLEAN_MIX,
    DEFAULT_DETAIL,
    SPECIFIC_DETAIL,
    WEB_MIX,
    Plan,
    fit_square,
    plan_samples,
    render_plan,
)
from .scenes import Scene

# Random streams (the second entry of every sample's seed sequence).
STREAM_POOL = 1
STREAM_TRAIN_WEB = 2
STREAM_TRAIN_CLEAN = 3
STREAM_HELDOUT = 4
STREAM_IMAGENET_LIKE = 5
STREAM_EVAL = 100          # + task index
STREAM_OTHERS = 1000       # free for other builders (e.g. the MERU world model): use STREAM_OTHERS + k


@dataclass
class Pairs:
    images: list[Image.Image]
    captions: list[str]
    scenes: list[Scene]
    noise: list[str]
    detail: list[str]
    plans: list[Plan]

    def __len__(self) -> int:
        return len(self.captions)

    def as_uint8(self, size: int) -> np.ndarray:
        """[N, size, size, 3] uint8, each image shorter-side resized and centre-cropped."""
        return np.stack([np.asarray(fit_square(im, size)) for im in self.images])


def _render(plans: list[Plan], size: int | None) -> Pairs:
    images = []
    for p in plans:
        im = render_plan(p).image
        images.append(fit_square(im, size) if size else im)
    return Pairs(images=images, captions=[p.caption for p in plans], scenes=[p.scene for p in plans],
                 noise=[p.noise for p in plans], detail=[p.detail for p in plans], plans=plans)


def training_pairs(seed: int, n: int, kind: str = "clean", size: int | None = None) -> Pairs:
    """Training data for models, never pool or eval samples.

    kind="clean": clean, specific captions only (medium or detailed), the DFN's "high quality" data.
    kind="web":   web-like: mostly clean with generic/medium/detailed captions, plus a little of every
                  noise and a good share of text-in-image pairs (see samples.WEB_MIX).
    size: if given, images are resized+centre-cropped to size x size (saves memory for training).
    """
    return _render(training_plans(seed, n, kind), size)


def training_plans(seed: int, n: int, kind: str = "clean") -> list[Plan]:
    """The plans of training_pairs(seed, n, kind) (cheap; rendering is the costly part)."""
    if kind == "clean":
        return plan_samples(seed, STREAM_TRAIN_CLEAN, n, CLEAN_MIX, SPECIFIC_DETAIL)
    if kind == "web":
        return plan_samples(seed, STREAM_TRAIN_WEB, n, WEB_MIX, DEFAULT_DETAIL)
    raise ValueError(f"training_pairs kind must be 'clean' or 'web', not {kind!r}")


def render_arrays(plans: list[Plan], size: int) -> np.ndarray:
    """[len(plans), size, size, 3] uint8: each plan rendered, shorter-side resized and centre-cropped."""
    return np.stack([np.asarray(fit_square(render_plan(p).image, size)) for p in plans])


def heldout_pairs(seed: int, n: int, noise: str | dict[str, float] = "clean",
                  detail: dict[str, float] | None = None, size: int | None = None) -> Pairs:
    """Fresh samples with known noise (oracle in `.noise`), for AUC-style tests.

    noise: one noise type ("clean", "mismatched", ...) or a mix {type: fraction}. Different noise
    arguments give independent samples (the stream depends on the request).
    """
    mix = {noise: 1.0} if isinstance(noise, str) else dict(noise)
    key = sum((i + 1) * ord(c) for i, c in enumerate(repr(sorted(mix.items())) + repr(detail)))
    plans = plan_samples(seed, STREAM_HELDOUT * 1_000_003 + key, n, mix, detail or DEFAULT_DETAIL)
    return _render(plans, size)
