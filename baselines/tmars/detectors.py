"""Text detectors for T-MARS: one small interface, a registry, and the offline default (PP-OCR).

A detector turns a list of images into, per image, an array of text regions in continuous pixel
coordinates (pixel (i, j) covers [i, i+1) x [j, j+1)):

- shape (k, 4): axis-aligned boxes (x0, y0, x1, y1), or
- shape (k, n, 2): polygons (n >= 3 vertices, e.g. the quadrilaterals PP-OCR and FAST return).

An image with no text gets an array with k = 0. Masking (``harness.baselines.tmars.masking``) uses the
axis-aligned bounding box of each region, so either form works.

A detector may expose a ``fingerprint`` string (weights and settings); the tmars scorer puts it in
the score table's cache key.

Adding a detector (FAST, as the T-MARS paper used, or any other)::

    from harness.baselines.tmars import register_detector

    @register_detector("fast")
    class FastDetector:
        def __init__(self, checkpoint: str, threads: int = 1): ...
        def detect(self, images): ...   # list[PIL.Image] -> list[np.ndarray]

and select it with ``--set tmars.detector=fast`` (its constructor options go in
``--set 'tmars.detector_options={"checkpoint": "..."}'``). A detector may also be a dotted path ``"my_pkg.module:ClassName"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from harness.registry import Registry
from harness.stages import sha256_file


@runtime_checkable
class TextDetector(Protocol):
    """Finds text regions; see the module docstring for the box format."""

    def detect(self, images: list[Image.Image]) -> list[np.ndarray]: ...


_DETECTORS: Registry[Callable[..., TextDetector]] = Registry(
    "text detector", ValueError, hint=lambda: "; or give a 'module:Class' path")


def register_detector(name: str) -> Callable[[Callable[..., TextDetector]], Callable[..., TextDetector]]:
    """Class (or factory) decorator: make a detector available by ``name`` (a name taken by another
    detector is a ValueError)."""
    return _DETECTORS.register(name)


def detector_names() -> list[str]:
    return _DETECTORS.names()


def get_detector(name: str, **options: Any) -> TextDetector:
    """Build a detector by registry name or ``"module:Class"`` path, passing ``options`` to it."""
    if name not in _DETECTORS and ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import text detector {name!r}: {exc}") from exc
    else:
        factory = _DETECTORS.get(name)  # an unknown name: ValueError naming the known ones
    detector = factory(**options)
    if not isinstance(detector, TextDetector):
        raise TypeError(f"text detector {name!r} has no detect(images) method")
    return detector


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


@register_detector("rapidocr")
class RapidOCRDetector:
    """PP-OCRv4 text detection (DB) from ``rapidocr-onnxruntime``, detection stage only.

    The ONNX model ships inside the package, so this works offline. ``limit_type="max"`` keeps the
    image at its own size (PP-OCR's default ``"min"`` would blow a 128 px image up to 736 px).
    Small images are first enlarged (bicubic) so that their longer side is ``upscale_to`` pixels,
    and with ``invert_pass`` the detector also runs on the inverted image (PP-OCR misses much
    light text on light textured backgrounds); the boxes of both passes are kept.

    Measured on the world's text_in_image renders (200, JPEG round trip; recall = the boxes cover
    >= 50% of the text's box) and 100 clean renders:

    ==========================  ======  ==========================  ==========
    setting                     recall  clean images with a box     ms / image
    ==========================  ======  ==========================  ==========
    upscale_to=0                0.84    3%                          ~2.5
    upscale_to=192              0.88    4%                          ~5
    upscale_to=192 + invert     0.915   5% (0.8% of their area)     ~10
    upscale_to=256              0.93    12% (2.3% of their area)    ~10
    ==========================  ======  ==========================  ==========

    256 px also boxes plain shapes on flat backgrounds (10% of the area of shapes-only renders in
    harness.benchmarks.text_images), hence the default of 192 + the inverted pass.
    """

    def __init__(
        self,
        upscale_to: int = 192,
        invert_pass: bool = True,
        box_thresh: float = 0.5,
        thresh: float = 0.3,
        unclip_ratio: float = 2.0,
        threads: int = 1,
        model_path: str | None = None,
    ) -> None:
        # options may arrive as text from the command line
        upscale_to, threads = int(upscale_to), int(threads)
        box_thresh, thresh, unclip_ratio = float(box_thresh), float(thresh), float(unclip_ratio)
        import rapidocr_onnxruntime
        import yaml
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _PPOCRDet

        root = Path(rapidocr_onnxruntime.__file__).parent
        with open(root / "config.yaml") as f:
            cfg = dict(yaml.safe_load(f)["Det"])
        cfg.update(
            model_path=str(model_path or root / cfg["model_path"]),
            limit_type="max",
            thresh=thresh,
            box_thresh=box_thresh,
            unclip_ratio=unclip_ratio,
            # -1 lets onnxruntime take every core; the engine runs several workers, so default to 1.
            intra_op_num_threads=threads if threads > 0 else -1,
            inter_op_num_threads=1 if threads > 0 else -1,
        )
        if not Path(cfg["model_path"]).is_file():
            raise FileNotFoundError(f"PP-OCR detection model not found: {cfg['model_path']}")
        self.upscale_to = int(upscale_to)
        self.invert_pass = (
            invert_pass if isinstance(invert_pass, bool) else str(invert_pass).lower() in ("1", "true", "yes")
        )
        self._det = _PPOCRDet(cfg)
        # identifies the weights and the settings that change the boxes (part of score-table keys)
        digest = sha256_file(cfg["model_path"])[:12]
        self.fingerprint = f"ppocr-det:{digest}:up{self.upscale_to}:inv{int(self.invert_pass)}:t{thresh}:b{box_thresh}:u{unclip_ratio}"

    def _detect_one(self, image: Image.Image) -> np.ndarray:
        w, h = image.size
        scale = 1.0
        longer = max(w, h)
        if self.upscale_to and longer < self.upscale_to:
            scale = self.upscale_to / longer
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        rgb = _to_rgb_array(image)
        if min(rgb.shape[:2]) < 16:  # too small for the network's 32 px rounding; no text findable
            return np.zeros((0, 4, 2), np.float32)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # PP-OCR was trained on OpenCV's BGR order
        found = [self._det(bgr)[0]]
        if self.invert_pass:  # PP-OCR misses much light text on light texture; inverted, it is dark
            found.append(self._det(255 - bgr)[0])
        found = [np.asarray(b, np.float32).reshape(-1, 4, 2) for b in found if b is not None and len(b)]
        if not found:
            return np.zeros((0, 4, 2), np.float32)
        boxes = np.concatenate(found)
        # PP-OCR reports integer pixel indices; +0.5 turns them into pixel centres in continuous
        # coordinates, so the bounding box of a quad covers its extreme pixels.
        quads = (np.asarray(boxes, np.float32).reshape(-1, 4, 2) + 0.5) / scale
        return quads

    def detect(self, images: list[Image.Image]) -> list[np.ndarray]:
        return [self._detect_one(im) for im in images]
