"""Test scorers for the Ray engine, loaded as a user plugin file (the workers get their code by value).

- scaleout_pixels: a model-free "model scorer" (reads images and captions from the shards) whose
  score is exact arithmetic on the sample, so the two engines must agree bit for bit;
- scaleout_crash: the same, but the worker process dies (os._exit) the first time it meets a chosen
  uid; a marker file makes it die only once, whichever worker meets the uid;
- scaleout_counted_image_based: image_based, logging each k-means fit to a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.baselines.image_based import ImageBased
from harness.plugins import Needs, Scorer, register


@register
class PixelScorer(Scorer):
    name = "scaleout_pixels"
    description = "test: mean pixel of the image and caption length"
    needs = Needs(images=True, captions=True)
    terms = ("pixel", "chars")

    def score_samples(self, samples, ctx):
        pixel = np.array([np.asarray(s.image, dtype=np.float64).mean() / 255.0 for s in samples])
        chars = np.array([float(len(s.caption)) for s in samples])
        return {"pixel": pixel, "chars": chars}

    def combine(self, terms):
        return terms["pixel"].to_numpy() + terms["chars"].to_numpy() / 100.0


@register
class CrashOnce(PixelScorer):
    name = "scaleout_crash"
    description = "test: dies once, on a chosen uid"

    def __init__(self, uid: str = "", marker: str = ""):
        super().__init__(uid=uid, marker=marker)
        self.uid, self.marker = uid, marker

    def score_samples(self, samples, ctx):
        if any(s.uid == self.uid for s in samples) and self.marker:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # died here before: score normally this time
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(1)  # a worker killed mid-batch
        return super().score_samples(samples, ctx)


def crash_marker_pid(marker: str | Path) -> int:
    return int(Path(marker).read_text())


@register
class CountedImageBased(ImageBased):
    """image_based that writes one line to ``fit_log`` each time it fits its k-means (in any process)."""

    name = "scaleout_counted_image_based"

    def __init__(self, fit_log: str = "", **options):
        super().__init__(**options)
        self.fit_log = fit_log

    def _fit_pool(self, ctx):
        with open(self.fit_log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super()._fit_pool(ctx)
