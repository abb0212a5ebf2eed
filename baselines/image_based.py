"""DataComp's image-based filtering.

Cluster the pool's L/14 image features with k-means; a centroid is a *target* when it is the nearest
centroid (largest inner product, as DataComp's ``argmax(features @ centroids.T)``) of at least one
reference "ImageNet" image; keep the samples whose own nearest centroid is a target and whose caption
passes DataComp's caption check (English, more than 1 fastText-style word, more than 5 characters).

DataComp uses 100k centroids fitted on the real pool (its ``<scale>_centroids_l14.pt`` files) and the
OpenAI L/14 features of ImageNet-1k train. Here:

- ``centroids=PATH``: DataComp's centroid file (``.pt`` holding a numpy array or tensor) or a ``.npy``;
  without it, k-means is fitted on the pool (faiss when installed, else scikit-learn's
  MiniBatchKMeans), ``k`` defaulting to one centroid per 128 samples (DataComp's small scale:
  100k centroids for 12.8M samples), capped at 100k, fitted on at most ``fit_samples`` rows.
- ``reference=PATH``: the reference image features, a ``.npy`` [N, D], a ``.npz`` (key ``l14_img``
  or the only array) or DataComp's ``in1k_clip_vit_l14_*.pt`` (``{"image_features": ...}``); a
  directory is searched for such files. Default: ``ctx.model_path("imagenet_like")`` and
  ``<world>/imagenet_like/`` (the tiny world's stand-in for ImageNet).

The intersection with the L/14 30% CLIP score (the filter that built DataComp-1B) is the expression
``image_based & clip_l14_30``: centroid assignments do not depend on the CLIP threshold, so the
intersection equals DataComp's ``image_based_intersect_clip_score``.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness import langid, safeload
from harness.plugins import MetadataBatch, Needs, PluginError, Predicate, ScoringContext, register

REFERENCE_NAMES = ("l14_img.npy", "features.npy", "image_features.npy", "l14_img.npz", "features.npz")


def _load_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return safeload.np_load(path)
    if path.suffix == ".npz":
        with np.load(path) as z:
            key = "l14_img" if "l14_img" in z.files else (z.files[0] if len(z.files) == 1 else None)
            if key is None:
                raise PluginError(f"{path}: expected an 'l14_img' array, found {z.files}")
            return z[key]
    if path.suffix in (".pt", ".pth"):
        obj = safeload.torch_load(path)  # weights_only: a crafted .pt never runs code
        if isinstance(obj, dict):
            obj = obj.get("image_features", obj.get("centroids"))
        if hasattr(obj, "numpy"):
            obj = obj.float().numpy()
        if not isinstance(obj, np.ndarray):
            raise PluginError(f"{path}: no feature array (expected a tensor/array or {{'image_features': ...}})")
        return obj
    raise PluginError(f"{path}: unsupported feature file (use .npy, .npz or .pt)")


def _find_reference(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        for name in REFERENCE_NAMES:
            if (path / name).is_file():
                return [path / name]
        pts = sorted(path.glob("in1k_clip_vit_l14_*.pt"))
        if pts:
            return pts
    return []


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def nearest_centroid(features: np.ndarray, centroids: np.ndarray, batch: int = 65536) -> np.ndarray:
    """DataComp's assignment: argmax of the inner product, batched."""
    c = np.asarray(centroids, dtype=np.float32)
    out = np.empty(len(features), dtype=np.int64)
    for i in range(0, len(features), batch):
        out[i : i + batch] = np.argmax(np.asarray(features[i : i + batch], dtype=np.float32) @ c.T, axis=1)
    return out


def fit_kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k centroids of x (faiss if installed, else MiniBatchKMeans), L2-normalised like the features."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = max(1, min(k, len(x)))
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        faiss = None
    if faiss is not None:
        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
        km.train(x)
        centroids = km.centroids
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=max(1024, 4 * k))
        km.fit(x)
        centroids = km.cluster_centers_
    return _normalise(centroids)


def caption_ok(texts: list[str], lid_model: str | None = None) -> np.ndarray:
    """DataComp's caption_filter: English, > 1 word (fastText tokens ~ whitespace split), > 5 chars."""
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return langid.detect_english(texts, lid_model) & (words > 1) & (chars > 5)


@register
class ImageBased(Predicate):
    name = "image_based"
    description = "DataComp image-based: L/14 image k-means clusters that hold ImageNet-like images (+ caption check)"
    needs = Needs(columns=("text",), features=("l14_img",), models=("imagenet_like",))

    def __init__(
        self,
        k: int | None = None,
        centroids: str | None = None,
        reference: str | None = None,
        fit_samples: int = 1_000_000,
        lid_model: str | None = None,
        **options: Any,
    ):
        opts = {"k": k, "centroids": centroids, "reference": reference, "fit_samples": fit_samples,
                "lid_model": lid_model}
        super().__init__(**{key: v for key, v in opts.items() if v is not None}, **options)
        self.k = None if k is None else int(k)
        self.centroids_path = centroids
        self.reference_path = reference
        self.fit_samples = int(fit_samples)
        self.lid_model = lid_model
        self._centroids: np.ndarray | None = None
        self._targets: np.ndarray | None = None
        self._pool_root: Path | None = None
        # the k-means seed is fixed: the clustering is part of the filter, not of the run's randomness
        self.kmeans_seed = 0

    def settings(self) -> dict[str, Any]:
        s = {**self.options, "detector": langid.detector_name(self.lid_model), "kmeans_seed": self.kmeans_seed}
        for key in ("centroids", "reference"):
            p = self.options.get(key)
            if p and Path(p).is_file():
                s[key + "_sha"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16]
        return s

    # -- reference images and centroids --------------------------------------------------------

    def _reference_features(self, ctx: ScoringContext) -> np.ndarray:
        candidates: list[Path] = []
        if self.reference_path:
            candidates.append(Path(self.reference_path).expanduser())
        else:
            with contextlib.suppress(Exception):  # not under models/: look beside it (<world>/imagenet_like)
                candidates.append(Path(ctx.model_path("imagenet_like")))
            if ctx.models_dir is not None:
                candidates.append(Path(ctx.models_dir).parent / "imagenet_like")
            candidates.append(ctx.pool.root.parent / "imagenet_like")
        for c in candidates:
            files = _find_reference(c)
            if files:
                return _normalise(np.concatenate([_load_array(f) for f in files]))
        raise PluginError(
            "image_based: no reference ('ImageNet') image features found; looked in "
            + ", ".join(str(c) for c in candidates)
            + f" for {', '.join(REFERENCE_NAMES)} or in1k_clip_vit_l14_*.pt; pass --set image_based.reference=PATH"
        )

    def _prepare(self, ctx: ScoringContext) -> None:
        if self._targets is not None and self._pool_root == ctx.pool.root:
            return
        if self.centroids_path:
            centroids = _normalise(_load_array(Path(self.centroids_path).expanduser()))
        else:
            centroids = self._fit_pool(ctx)
        ref = self._reference_features(ctx)
        if ref.shape[1] != centroids.shape[1]:
            raise PluginError(
                f"image_based: reference features have dimension {ref.shape[1]}, centroids {centroids.shape[1]}"
            )
        self._centroids = centroids
        self._targets = np.unique(nearest_centroid(ref, centroids))
        self._pool_root = ctx.pool.root

    def _fit_pool(self, ctx: ScoringContext) -> np.ndarray:
        n = len(ctx.pool)
        k = self.k if self.k is not None else int(min(100_000, max(8, round(n / 128))))
        rng = np.random.default_rng(self.kmeans_seed)
        take = np.sort(rng.choice(n, size=min(n, self.fit_samples), replace=False))
        parts = []
        for batch in ctx.pool.iter_metadata((), ("l14_img",)):
            lo, hi = batch.offset, batch.offset + len(batch)
            sel = take[(take >= lo) & (take < hi)] - lo
            parts.append(np.asarray(batch.features["l14_img"][sel], dtype=np.float32))
        return fit_kmeans(np.concatenate(parts), k, seed=self.kmeans_seed)

    # -- the predicate -------------------------------------------------------------------------

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        self._prepare(ctx)
        assert self._centroids is not None and self._targets is not None
        texts = ["" if t is None else str(t) for t in batch.table.column("text").to_pylist()]
        ok = caption_ok(texts, self.lid_model)
        labels = nearest_centroid(batch.features["l14_img"], self._centroids)
        return ok & np.isin(labels, self._targets)
