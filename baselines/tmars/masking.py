"""T-MARS masking: fill each text region with its own mean colour.

Rules (what the tests pin down):
- A region (box ``(x0, y0, x1, y1)`` or polygon ``(n, 2)``) in continuous pixel coordinates is
  replaced by its axis-aligned bounding box, then turned into the pixels it touches:
  columns ``floor(x0) .. ceil(x1) - 1``, rows likewise, clipped to the image. A box with no
  pixel left after clipping is dropped (it does not count in ``n_boxes``).
- Each box's fill colour is the per-channel mean of that box's pixels in the ORIGINAL image,
  rounded to the nearest integer. Where boxes overlap, the later box's colour wins.
- Pixels outside every box are untouched; the output is RGB (other modes are converted first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class MaskResult:
    image: Image.Image
    n_boxes: int  # boxes with at least one pixel inside the image
    area_fraction: float  # fraction of the image's pixels inside the union of the boxes


def regions_to_rects(regions: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer pixel rectangles ``(c0, r0, c1, r1)`` (half-open) of the regions, clipped; empty ones dropped."""
    arr = np.asarray(regions, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.int64)
    if arr.ndim == 2 and arr.shape[1] == 4:
        lo, hi = arr[:, :2], arr[:, 2:]
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    elif arr.ndim == 3 and arr.shape[2] == 2 and arr.shape[1] >= 3:
        lo, hi = arr.min(axis=1), arr.max(axis=1)
    else:
        raise ValueError(
            f"text regions must have shape (k, 4) boxes or (k, n>=3, 2) polygons, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("text regions contain NaN or infinite coordinates")
    rects = np.empty((len(arr), 4), np.int64)
    rects[:, 0] = np.clip(np.floor(lo[:, 0]), 0, width)
    rects[:, 1] = np.clip(np.floor(lo[:, 1]), 0, height)
    rects[:, 2] = np.clip(np.ceil(hi[:, 0]), 0, width)
    rects[:, 3] = np.clip(np.ceil(hi[:, 1]), 0, height)
    keep = (rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])
    return rects[keep]


def mask_image(image: Image.Image, regions: np.ndarray) -> MaskResult:
    """Fill every region's bounding box with the box's mean colour (see the module rules)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    rects = regions_to_rects(regions, width, height)
    if len(rects) == 0:
        return MaskResult(image, 0, 0.0)
    original = np.asarray(image)
    out = original.copy()
    covered = np.zeros((height, width), bool)
    for c0, r0, c1, r1 in rects:
        patch = original[r0:r1, c0:c1].reshape(-1, original.shape[2])
        # exact integer arithmetic (round half up), so the expected colour is easy to state
        total = patch.astype(np.int64).sum(axis=0)
        n = patch.shape[0]
        out[r0:r1, c0:c1] = ((2 * total + n) // (2 * n)).astype(np.uint8)
        covered[r0:r1, c0:c1] = True
    return MaskResult(Image.fromarray(out, "RGB"), len(rects), float(covered.mean()))


def mask_images(images: list[Image.Image], regions: list[np.ndarray]) -> list[MaskResult]:
    if len(images) != len(regions):
        raise ValueError(f"{len(images)} images but {len(regions)} region arrays")
    return [mask_image(im, r) for im, r in zip(images, regions, strict=True)]
