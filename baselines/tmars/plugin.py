"""T-MARS (Maini et al., ICLR 2024): drop samples whose only match with the caption is rendered text.

Per sample: detect text regions (``harness.baselines.tmars`` detectors, PP-OCR by default), fill each
region's bounding box with its own mean colour, and score the masked image against the ORIGINAL
caption with the scoring CLIP (cosine of L2-normalised embeddings). Keep the high ones:
``tmars>=0.281`` is the paper's released DataComp-medium list (OpenAI ViT-B/32), ``tmars20`` keeps
the top 20% of the pool.

Options (``--set tmars.<name>=...``):
- ``detector``: registry name or ``"module:Class"`` of the text detector (default ``"rapidocr"``).
- ``detector_options``: dict (or JSON text) of the detector's constructor options, e.g.
  ``--set 'tmars.detector_options={"upscale_to": 0}'``.
- ``model``: the scoring CLIP as a world model dir, checkpoint or open_clip id; by default the
  model named ``ref_b32`` (the world's reference B/32; on a real pool pass
  ``--model ref_b32=ViT-B-32:openai``, the model the paper's released list was scored with).

Terms: ``masked_score`` (the combined score), ``original_score`` (same model, unmasked image),
``n_boxes`` (text boxes that fell inside the image) and ``masked_area_fraction`` (share of the
image's pixels inside the union of the boxes).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from harness.baselines.tmars.detectors import TextDetector, get_detector
from harness.baselines.tmars.masking import mask_image
from harness.models import paired_cosine
from harness.plugins import Needs, PluginError, Sample, Scorer, ScoringContext, register

SCORING_MODEL = "ref_b32"



@register
class TMars(Scorer):
    name = "tmars"
    label = "T-MARS"
    description = (
        "T-MARS: mask detected text with its mean colour, CLIP-score the masked image vs the caption"
    )
    needs = Needs(images=True, captions=True, models=(SCORING_MODEL,))
    # The released medium list (B/32 masked score >= 0.281) kept 25.3M of the 128M pool, about 20%.
    default_percent: ClassVar[float | None] = 20.0
    terms = ("masked_score", "original_score", "n_boxes", "masked_area_fraction")

    def __init__(
        self,
        detector: str = "rapidocr",
        detector_options: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> None:
        if isinstance(detector_options, str):  # from the command line: --set 'tmars.detector_options={...}'
            try:
                detector_options = json.loads(detector_options)
            except json.JSONDecodeError as exc:
                raise PluginError(
                    f"tmars: detector_options is not JSON: {detector_options!r} ({exc})"
                ) from exc
        if detector_options is not None and not isinstance(detector_options, dict):
            raise PluginError(f"tmars: detector_options must be a dict, got {detector_options!r}")
        super().__init__(detector=detector, detector_options=dict(detector_options or {}), model=model)
        self.detector_name = detector
        self.detector_options = dict(detector_options or {})
        self.model = model
        self._clip: Any = None
        self._detector: TextDetector | None = None
        self._spec: str | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "detector": self.detector_name,
            "detector_options": self.detector_options,
            "model": self.model,
            "version": 1,  # bump when masking or scoring changes meaning
        }

    # -- set-up --------------------------------------------------------------------------------

    def _model_spec(self, ctx: ScoringContext) -> str:
        return str(self.model) if self.model else ctx.model_path(SCORING_MODEL)

    def setup(self, ctx: ScoringContext) -> None:
        spec = self._model_spec(ctx)
        if self._clip is None or self._spec != spec:
            from harness.models import load_clip

            self._clip = load_clip(spec, device=ctx.device)
            self._spec = spec
        if self._detector is None:
            try:
                self._detector = get_detector(self.detector_name, **self.detector_options)
            except (ValueError, TypeError) as exc:
                raise PluginError(f"tmars: {exc}") from exc

    def fingerprint(self, ctx: ScoringContext) -> str:
        if self._clip is None or self._detector is None:
            raise RuntimeError("tmars: setup() first")  # the engine then calls setup()
        det_fp = str(getattr(self._detector, "fingerprint", type(self._detector).__qualname__))
        return f"{self._clip.fingerprint}+{self.detector_name}:{det_fp}"

    def model_identity(self) -> dict[str, Any] | None:
        return getattr(self._clip, "identity", None) if self._clip is not None else None

    # -- scoring -------------------------------------------------------------------------------

    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        if self._clip is None or self._detector is None:
            self.setup(ctx)
        assert self._clip is not None and self._detector is not None
        for s in samples:
            if s.image is None:
                raise PluginError(f"tmars: sample {s.uid} ({s.shard}) has no decoded image")
        images = [s.image for s in samples]
        regions = self._detector.detect(images)
        if len(regions) != len(images):
            raise PluginError(
                f"tmars: detector {self.detector_name!r} returned {len(regions)} results for {len(images)} images"
            )
        masked = []
        for s, r in zip(samples, regions, strict=True):
            try:
                masked.append(mask_image(s.image, r))
            except ValueError as exc:
                raise PluginError(f"tmars: detector output for sample {s.uid}: {exc}") from exc
        bs = ctx.batch_size
        txt = self._clip.encode_texts([s.caption for s in samples], batch_size=bs)
        original = paired_cosine(self._clip.encode_images(images, batch_size=bs), txt)
        # an image without boxes is unchanged, so its masked score IS its original score
        changed = np.array([m.n_boxes > 0 for m in masked])
        masked_score = original.copy()
        if changed.any():
            idx = np.nonzero(changed)[0]
            img = self._clip.encode_images([masked[i].image for i in idx], batch_size=bs)
            masked_score[idx] = paired_cosine(img, txt[idx])
        return {
            "masked_score": masked_score,
            "original_score": original,
            "n_boxes": np.array([m.n_boxes for m in masked], np.float64),
            "masked_area_fraction": np.array([m.area_fraction for m in masked], np.float64),
        }

    def combine(self, terms: Any) -> np.ndarray:
        return terms["masked_score"].to_numpy(dtype=np.float64)
