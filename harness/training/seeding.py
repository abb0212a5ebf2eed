"""Make open_clip_train's webdataset pipeline a function of (seed, epoch, rank, worker).

Stock open_clip_train 3.3.0 is not reproducible on webdataset input: its sample shuffle buffer
(`wds.shuffle`) seeds itself from the wall clock and pid, and the augmentation RNG of a dataloader
worker carries over from one epoch to the next, so a run resumed at checkpoint k draws different
crops than the uninterrupted run. Inside `deterministic_data(seed)`:

- the shard sampler (`ResampledShards2`) becomes `SeededResampledShards`, which at the start of
  every epoch re-seeds the process's `random`, `numpy` and `torch` RNGs from (seed, epoch, rank,
  worker) before handing out shards exactly as open_clip does;
- the sample shuffle draws from an RNG seeded from the same tuple.

The sample distribution, buffer sizes and everything else stay open_clip's. Both replacements are
module-level classes, so the pipeline still pickles for spawned workers.

The same context also pins the CPU numerics (harness/numerics.py: ATen AVX2 kernels, products on
OpenBLAS's Haswell kernels, MKL's COMPATIBLE branch for the rest, no oneDNN,
`numerics.TRAIN_THREADS` threads), so a CPU run gives the same weights on every x86-64 machine with
AVX2; it raises NumericsError when they cannot be pinned.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
import webdataset
from open_clip_train import data as oc_data
from torch.utils.data import get_worker_info
from webdataset.filters import FilterFunction, _shuffle

from harness import numerics

# Seed of the epoch now being read in this process; set by SeededResampledShards, read by the shuffle.
_epoch_seed: int | None = None


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and Python versions."""
    digest = hashlib.sha256(("/".join(str(int(p)) for p in parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def bound_image_decoding() -> None:
    """In this (dataloader) process, an image over the harness's pixel limit (harness.pool.max_image_pixels)
    is refused by Pillow at open, before decoding; open_clip_train's pipeline then skips the sample
    (its handler logs and continues), as scoring skips and counts it."""
    import warnings

    from PIL import Image

    from harness.pool import max_image_pixels

    Image.MAX_IMAGE_PIXELS = max_image_pixels()
    warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse above the limit, not above 2x


class SeededResampledShards(oc_data.ResampledShards2):
    """open_clip's resampling shard list, re-seeding this process's RNGs at each epoch start."""

    run_seed: int = 0  # set on the instance by deterministic_data (travels with the pickle)

    def __iter__(self) -> Iterator[dict]:
        global _epoch_seed
        epoch = self.epoch.get_value() if isinstance(self.epoch, oc_data.SharedEpoch) else self.epoch + 1
        info = get_worker_info()
        seed = derive_seed(self.run_seed, epoch, _rank(), info.id if info is not None else -1)
        _epoch_seed = seed
        bound_image_decoding()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        return super().__iter__()


def _seeded_shuffle_stage(data, bufsize: int = 1000, initial: int = 100):
    data = iter(data)
    try:
        first = next(data)  # starts the shard sampler upstream, which sets this epoch's seed
    except StopIteration:
        return
    rng = random.Random(derive_seed(_epoch_seed, 1) if _epoch_seed is not None else None)
    yield from _shuffle(itertools.chain([first], data), bufsize, initial, rng)


def _seeded_shuffle(bufsize: int = 1000, initial: int = 100, **_ignored) -> FilterFunction:
    return FilterFunction(_seeded_shuffle_stage, bufsize=bufsize, initial=initial)


@contextlib.contextmanager
def deterministic_data(seed: int):
    """Patch open_clip_train's data module for the duration of one training call."""

    def make_shards(*args, **kwargs):
        shards = SeededResampledShards(*args, **kwargs)
        shards.run_seed = seed
        return shards

    saved_shards, saved_shuffle = oc_data.ResampledShards2, webdataset.shuffle
    oc_data.ResampledShards2 = make_shards
    webdataset.shuffle = _seeded_shuffle  # open_clip_train.data calls wds.shuffle(...) by attribute
    try:
        with numerics.pinned(numerics.TRAIN_THREADS):
            yield
    finally:
        oc_data.ResampledShards2, webdataset.shuffle = saved_shards, saved_shuffle
