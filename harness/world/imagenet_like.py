"""`imagenet_like/`: a clean, labelled "ImageNet training set" of the TinyNet classes.

DataComp's image-based filter keeps pool samples whose L/14 image embedding falls in a cluster that
some ImageNet training image falls into; this folder is that reference set for the tiny world:
  classnames.txt   the 80 TinyNet classes ("red circle", ...), line i = label i
  labels.npy       int64 [N]
  l14_img.npy      float32 [N, D] ref_l14 image features (L2-normalised)
  b32_img.npy      float32 [N, D] ref_b32 image features (L2-normalised)
  images.tar       s0000000.jpg + .cls (the images themselves)
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from harness.stages import atomic_path, atomic_write_bytes, atomic_write_text

from . import vocab as V
from .data import STREAM_IMAGENET_LIKE
from .eval_suite import TINYNET_CLASSES
from .io import add_tar_member
from .samples import encode_jpeg
from .scenes import render_scene, sample_scene


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_imagenet_like(world_dir: Path, seed: int, knobs: dict, encoders: dict) -> dict:
    root = Path(world_dir) / "imagenet_like"
    root.mkdir(parents=True, exist_ok=True)
    per_class = int(knobs["imagenet_like_per_class"])
    labels = np.repeat(np.arange(len(TINYNET_CLASSES)), per_class).astype(np.int64)
    images = []
    with atomic_path(root / "images.tar") as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, label in enumerate(labels):
            rng = np.random.default_rng([seed, STREAM_IMAGENET_LIKE, i])
            scene = sample_scene(rng, colour=V.COLOUR_NAMES[label % 8], shape=V.SHAPES[label // 8])
            img = render_scene(scene)
            images.append(img)
            add_tar_member(tar, f"s{i:07d}.jpg", encode_jpeg(img))
            add_tar_member(tar, f"s{i:07d}.cls", str(int(label)).encode())
    atomic_write_text(root / "classnames.txt", "\n".join(TINYNET_CLASSES) + "\n")
    atomic_write_bytes(root / "labels.npy", _npy_bytes(labels))
    for tag, enc in encoders.items():
        atomic_write_bytes(root / f"{tag}_img.npy", _npy_bytes(enc.encode_images(images).astype(np.float32)))
    return {"samples": int(len(labels)), "classes": len(TINYNET_CLASSES)}
