"""DataComp's image-based filtering, as DataComp computes it.

Cluster the pool's L/14 image features with k-means; a centroid is a *target* when it is the nearest
centroid of at least one reference "ImageNet" image; keep the samples whose caption passes DataComp's
caption check and whose own nearest centroid is a target. Every step follows mlfoundations/datacomp
``baselines/apply_filter.py`` (line numbers at commit 4a8df19):

- nearest centroid: ``argmax(features @ centroids.T)`` with the features as float32 and the centroids
  exactly as stored, with no normalisation (``get_centroid_ids_gpu``, lines 80-108). DataComp's centroids come from a
  Euclidean k-means, so they are not unit vectors, and normalising them changes the assignment.
- targets: the reference features assigned the same way, unique ids (lines 535-554).
- caption check (``caption_filter``, lines 57-77): fastText lid.176 says English, more than one
  fastText token (``fasttext.tokenize``: see ``harness.langid.fasttext_tokens``), more than 5 characters.
- ``image_based & clip_l14_30`` equals DataComp's ``image_based_intersect_clip_score``: DataComp filters
  by the CLIP score first (lines 149-158), but assignments are per sample, so the order does not matter.

Options (``--set image_based.<name>=...``):

- ``centroids=PATH``: DataComp's centroid file (``<scale>_centroids_l14.pt``, a pickled numpy array)
  or a ``.npy``. Without it the centroids are fitted on the pool with DataComp's recipe
  (``baselines/image_based_clustering.py``): the L/14 image features of the samples that pass the
  caption check (lines 88-98, the default ``caption_filtering``), as float32 (line 209), faiss
  ``Clustering`` with ``niter=20``, ``seed=0``, ``max_points_per_centroid=10000000`` (no
  sub-sampling) on an exact L2 index (lines 27-70; DataComp runs ``GpuIndexFlatL2`` without float16,
  the harness faiss-cpu's ``IndexFlatL2``, the same computation on another device).
- ``k``: number of centroids when fitting; default one per 128 pool samples (DataComp's small scale:
  100k centroids for 12.8M samples), at most 100k and at most the number of training samples.
- ``sample_ratio``: DataComp's option of the same name (lines 99-102): when > 0, each metadata file's
  caption-filtered features are sampled with replacement to ``int(n * sample_ratio)`` rows (DataComp
  used 0.3 at large and 0.03 at xlarge scale). The harness draws from a generator seeded per file,
  so a fit repeats; DataComp's worker processes draw from unseeded generators. Default -1: all.
- ``reference=PATH``: the reference image features, a ``.npy`` [N, D], a ``.npz`` (key ``l14_img``
  or the only array) or DataComp's ``in1k_clip_vit_l14_*.pt`` (``{"image_features": ...}``); a
  directory is searched for such files. Default: ``ctx.model_path("imagenet_like")`` and
  ``<world>/imagenet_like/`` (the tiny world's stand-in for ImageNet).
- ``lid_model=PATH``: fastText's ``lid.176.bin`` (default: ``$HARNESS_LID176``, else lid.176.ftz).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from harness import langid, safeload
from harness.plugins import MetadataBatch, Needs, PluginError, Predicate, ScoringContext, register
from harness.stages import sha256_file

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


def nearest_centroid(features: np.ndarray, centroids: np.ndarray, batch: int = 65536) -> np.ndarray:
    """DataComp's assignment (apply_filter.py, lines 99-106): ``argmax(features.float() @ centroids.T)``,
    batched, with the centroids as given (no normalisation)."""
    c = np.asarray(centroids, dtype=np.float32)
    out = np.empty(len(features), dtype=np.int64)
    for i in range(0, len(features), batch):
        out[i : i + batch] = np.argmax(np.asarray(features[i : i + batch], dtype=np.float32) @ c.T, axis=1)
    return out


def fit_kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """k Euclidean k-means centroids of x, DataComp's ``train_kmeans`` recipe
    (baselines/image_based_clustering.py, lines 27-70) on faiss-cpu."""
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError as exc:
        raise PluginError(
            "image_based: fitting centroids needs faiss (DataComp's k-means): run `make setup` or "
            "`pip install faiss-cpu`, or pass DataComp's centroid file with --set image_based.centroids=PATH"
        ) from exc
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise PluginError(f"image_based: {len(x)} training samples for k={k} centroids; use a smaller k")
    d = x.shape[1]
    clus = faiss.Clustering(d, k)
    clus.niter = niter
    clus.seed = seed
    clus.max_points_per_centroid = 10_000_000  # DataComp: no sub-sampling of the training set (line 45)
    clus.verbose = False
    index = faiss.IndexFlatL2(d)  # exact L2 search, float32 (DataComp: GpuIndexFlatL2, useFloat16=False)
    clus.train(x, index)
    return faiss.vector_float_to_array(clus.centroids).reshape(k, d)


def caption_ok(texts: list[str], lid_model: str | None = None) -> np.ndarray:
    """DataComp's ``caption_filter`` (apply_filter.py, lines 57-77): fastText says English, more than
    one fastText token, more than 5 characters."""
    words = np.fromiter((langid.fasttext_word_count(t) for t in texts), dtype=np.int64, count=len(texts))
    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return langid.detect_english(texts, lid_model) & (words > 1) & (chars > 5)


@register
class ImageBased(Predicate):
    name = "image_based"
    label = "Image-based"
    description = "DataComp image-based: L/14 image k-means clusters that hold ImageNet-like images (+ caption check)"
    needs = Needs(columns=("text",), features=("l14_img",), models=("imagenet_like",))

    def __init__(
        self,
        k: int | None = None,
        centroids: str | None = None,
        reference: str | None = None,
        sample_ratio: float = -1.0,
        lid_model: str | None = None,
        **options: Any,
    ):
        opts = {"k": k, "centroids": centroids, "reference": reference,
                "sample_ratio": None if float(sample_ratio) <= 0 else float(sample_ratio), "lid_model": lid_model}
        super().__init__(**{key: v for key, v in opts.items() if v is not None}, **options)
        self.k = None if k is None else int(k)
        self.centroids_path = centroids
        self.reference_path = reference
        self.sample_ratio = float(sample_ratio)
        self.lid_model = lid_model
        self._centroids: np.ndarray | None = None
        self._targets: np.ndarray | None = None
        self._pool_root: Path | None = None
        # the k-means seed is fixed (DataComp's --seed default, image_based_clustering.py line 182): the
        # clustering is part of the filter, not of the run's randomness
        self.kmeans_seed = 0

    def settings(self) -> dict[str, Any]:
        s = {**self.options, "detector": langid.detector_name(self.lid_model), "kmeans_seed": self.kmeans_seed,
             "assignment": "raw inner product"}  # version 2: DataComp's raw centroids and k-means recipe
        if not self.centroids_path:
            s["kmeans"] = f"faiss {_faiss_version()} L2 niter=20 on caption-filtered samples"
        for key in ("centroids", "reference"):
            p = self.options.get(key)
            if p and Path(p).is_file():
                s[key + "_sha"] = sha256_file(p)[:16]
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
                # as loaded, like DataComp's torch.cat of the in1k feature files (apply_filter.py, lines 537-543)
                return np.concatenate([np.asarray(_load_array(f), dtype=np.float32) for f in files])
        raise PluginError(
            "image_based: no reference ('ImageNet') image features found; looked in "
            + ", ".join(str(c) for c in candidates)
            + f" for {', '.join(REFERENCE_NAMES)} or in1k_clip_vit_l14_*.pt; pass --set image_based.reference=PATH"
        )

    def setup(self, ctx: ScoringContext) -> None:
        """Load or fit the centroids and find the target clusters: once per engine worker, before the
        first batch (on Ray, once on the driver: the fitted state travels with the filter)."""
        self._prepare(ctx)

    def _prepare(self, ctx: ScoringContext) -> None:
        if self._targets is not None and self._pool_root == ctx.pool.root:
            return
        if self.centroids_path:
            centroids = np.asarray(_load_array(Path(self.centroids_path).expanduser()), dtype=np.float32)
        else:
            centroids = self._fit_pool(ctx)
        ref = self._reference_features(ctx)
        if ref.ndim != 2 or centroids.ndim != 2 or ref.shape[1] != centroids.shape[1]:
            raise PluginError(
                f"image_based: reference features have shape {ref.shape}, centroids {centroids.shape}; "
                "both must be [N, D] with the same D"
            )
        self._centroids = centroids
        self._targets = np.unique(nearest_centroid(ref, centroids))
        self._pool_root = ctx.pool.root

    def _fit_pool(self, ctx: ScoringContext) -> np.ndarray:
        """DataComp's clustering input (image_based_clustering.py, lines 73-103 and 209): per metadata
        file, the L/14 image features of the caption-filtered rows, optionally sampled; then k-means."""
        parts = []
        for i, batch in enumerate(ctx.pool.iter_metadata(("text",), ("l14_img",))):
            feats = np.asarray(batch.features["l14_img"])[caption_ok(batch.texts(), self.lid_model)]
            if self.sample_ratio > 0 and len(feats):
                rng = np.random.default_rng([self.kmeans_seed, i])
                feats = feats[rng.choice(len(feats), size=int(len(feats) * self.sample_ratio))]
            if len(feats):
                parts.append(feats)
        if not parts:
            raise PluginError(f"image_based: no sample of {ctx.pool.root} passes the caption check; nothing to cluster")
        x = np.concatenate(parts).astype(np.float32)
        n = len(ctx.pool)
        k = self.k if self.k is not None else int(min(100_000, max(8, round(n / 128))))
        return fit_kmeans(x, min(k, len(x)) if self.k is None else k, seed=self.kmeans_seed)

    # -- the predicate -------------------------------------------------------------------------

    def keep(self, batch: MetadataBatch, ctx: ScoringContext) -> np.ndarray:
        self._prepare(ctx)  # a no-op after setup(); keeps a direct call (without an engine) working
        assert self._centroids is not None and self._targets is not None
        ok = caption_ok(batch.texts(), self.lid_model)
        labels = nearest_centroid(batch.features["l14_img"], self._centroids)
        return ok & np.isin(labels, self._targets)


def _faiss_version() -> str:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        return "missing"
    return str(getattr(faiss, "__version__", "unknown"))
