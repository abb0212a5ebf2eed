"""DFN (Fang et al., ICLR 2024, "Data Filtering Networks"): a CLIP trained on high-quality pairs is the
filter; a sample's score is that model's image-text cosine; keep the top 15%.

The filtering network comes from ``ctx.model_path("dfn")``:
- the tiny world: ``<world>/models/dfn``, a CLIP the world trains on clean, specific pairs generated
  apart from the pool (never on the evaluation tasks);
- a real pool: any open_clip id or checkpoint, ``--model dfn=hf-hub:apple/DFN-public`` being the public
  filtering network (ViT-B/32) released with the paper; the plugin option ``model`` does the same.

Term: ``cos`` (cosine of the L2-normalised image and caption embeddings), which is the combined score.
A sample without a decodable image gets NaN (the engine's rule) and is never selected.
`dfn` keeps 15% (the paper's DataComp-medium setting), `dfn20` etc. choose another fraction.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.models import paired_cosine
from harness.plugins import Needs, PluginError, Sample, Scorer, ScoringContext, register

MODEL_NAME = "dfn"
PUBLIC_FILTER = "hf-hub:apple/DFN-public"



@register
class DataFilteringNetwork(Scorer):
    name = "dfn"
    label = "DFN"
    description = "DFN: image-text cosine under a filtering network trained on high-quality pairs (Fang et al. 2024)"
    needs = Needs(images=True, captions=True, models=(MODEL_NAME,))
    default_percent: ClassVar[float | None] = 15.0
    terms = ("cos",)

    def __init__(self, model: str | None = None) -> None:
        super().__init__(model=model)
        self.model = model
        self._clip: Any = None
        self._spec: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "version": 1}

    def _model_spec(self, ctx: ScoringContext) -> str:
        return str(self.model) if self.model else ctx.model_path(MODEL_NAME)

    def setup(self, ctx: ScoringContext) -> None:
        spec = self._model_spec(ctx)
        if self._clip is None or self._spec != spec:
            from harness.models import load_clip

            try:
                self._clip = load_clip(spec, device=ctx.device)
            except (OSError, ValueError, RuntimeError) as exc:
                raise PluginError(
                    f"dfn: cannot load the filtering network {spec!r}: {exc} "
                    f"(a world model dir, an open_clip checkpoint, or an id such as {PUBLIC_FILTER})"
                ) from exc
            self._spec = spec

    def fingerprint(self, ctx: ScoringContext) -> str:
        if self._clip is None:
            raise RuntimeError("dfn: setup() first")  # the engine then calls setup()
        return str(self._clip.fingerprint)

    def model_identity(self) -> dict[str, Any] | None:
        return getattr(self._clip, "identity", None) if self._clip is not None else None

    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        if self._clip is None:
            self.setup(ctx)
        for s in samples:
            if s.image is None:
                raise PluginError(f"dfn: sample {s.uid} ({s.shard}) has no decoded image")
        bs = ctx.batch_size
        img = self._clip.encode_images([s.image for s in samples], batch_size=bs)
        txt = self._clip.encode_texts([s.caption for s in samples], batch_size=bs)
        if img.shape[0] != len(samples) or txt.shape[0] != len(samples):
            raise PluginError(f"dfn: model returned {img.shape[0]}/{txt.shape[0]} embeddings for {len(samples)} samples")
        return {"cos": paired_cosine(img, txt)}
