"""HYPE (Kim et al., ECCV 2024): hyperbolic entailment filtering, as `hype`, `hype_img` and `hype_in`.

Terms stored in the score table (one column each, see baselines/hype/README.md):

- ``eps_i``  image specificity: mean over the reference texts t of the entailment energy E(t, image)
- ``eps_t``  text specificity: mean over the reference images i of E(text, i)
- ``neg_dl`` minus the Lorentzian distance between the sample's image and caption
- ``cos``    the pool's Euclidean CLIP score (``clip_l14_similarity_score`` metadata column)
- ``c_in``   (``hype_in`` only) DataComp's image-based cluster indicator, 1.0 when the
             ``image_based`` filter keeps the sample (its cached score table, a declared dependency)

``combine`` sums the terms after normalising each over the WHOLE pool:
``score = sum_k w_k * norm(term_k)`` with ``norm`` one of ``zscore`` (default: (x - mean) / std),
``rank`` (the fraction of the pool below x, in [0, 1]) or ``none`` (raw values), and weights 1 by
default. Options (``--set hype.norm=rank``, ``--set hype.weights=eps_i=1,eps_t=1,neg_dl=1,cos=0``):

- ``norm``: "zscore" | "rank" | "none"
- ``weights``: a dict or "term=w,term=w" string; terms left out keep weight 1
- ``reference``: a HYPE reference-set file ({"img": [N, D], "txt": [M, D]} tangent vectors); default
  ``reference_set.pt`` next to the model (the world's model directory)
- ``model_name``: open_clip config of a checkpoint file (default ViT-L-14, the official HYPE model)
- ``chunk``: block size of the specificity computation (memory bound; does not change the scores)

The model comes from ``ctx.model_path("meru")``: the world's ``models/meru`` directory, or what the
user passes with ``--model meru=/path/to/hype/ckpt.pt``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.baselines.hype import DEFAULT_CHUNK
from harness.plugins import Needs, PluginError, Scorer, ScoringContext, register
from harness.pool import Sample, find_uids, uid_order, uids_to_array

NORMALISATIONS = ("zscore", "rank", "none")
COS_COLUMN = "clip_l14_similarity_score"


# torch and the geometry load only when a HYPE scorer runs: loading the plugins (every harness
# command, and selection over tens of millions of rows) then costs no torch import.
def _geometry() -> Any:
    from harness.baselines.hype import geometry

    return geometry


def _no_grad(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def parse_weights(weights: Any, terms: tuple[str, ...]) -> dict[str, float]:
    """Per-term weights from a dict or a "term=w,term=w" string; unknown terms are an error."""
    out = dict.fromkeys(terms, 1.0)
    if weights is None or weights == "":
        return out
    if isinstance(weights, str):
        pairs = {}
        for part in weights.split(","):
            if "=" not in part:
                raise PluginError(f"hype weights: {part!r} is not term=weight (in {weights!r})")
            k, v = part.split("=", 1)
            pairs[k.strip()] = v.strip()
        weights = pairs
    if not isinstance(weights, dict):
        raise PluginError(f"hype weights must be a dict or 'term=w,...' string, got {type(weights).__name__}")
    for k, v in weights.items():
        if k not in out:
            raise PluginError(f"hype weights: unknown term {k!r}; the terms are {list(terms)}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"hype weights: weight of {k!r} is not a number: {v!r}") from exc
        if not np.isfinite(out[k]):
            raise PluginError(f"hype weights: weight of {k!r} must be finite, got {v!r}")
    return out


def normalise(values: np.ndarray, how: str) -> np.ndarray:
    """One term normalised over the whole pool, NaN (samples without an image) left as NaN."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    out = np.full_like(x, np.nan)
    if how == "none":
        return x.copy()
    if not ok.any():
        return out
    v = x[ok]
    if how == "zscore":
        sd = v.std()
        # A constant term carries no ranking information: it contributes 0, not NaN.
        out[ok] = (v - v.mean()) / sd if sd > 0 else 0.0
    elif how == "rank":
        # Average ranks (ties share a rank), scaled to [0, 1].
        order = np.argsort(v, kind="stable")
        ranks = np.empty(len(v))
        ranks[order] = np.arange(len(v), dtype=np.float64)
        sv = v[order]
        starts = np.r_[0, np.nonzero(sv[1:] != sv[:-1])[0] + 1]
        ends = np.r_[starts[1:], len(sv)]
        for a, b in zip(starts, ends, strict=True):
            if b - a > 1:
                ranks[order[a:b]] = (a + b - 1) / 2
        out[ok] = ranks / max(len(v) - 1, 1)
    else:
        raise PluginError(f"hype norm must be one of {NORMALISATIONS}, got {how!r}")
    return out


@register
class HypeScorer(Scorer):
    name: ClassVar[str] = "hype"
    label: ClassVar[str] = "HYPE"
    description: ClassVar[str] = "HYPE: hyperbolic specificity eps_i + eps_t, -d_L and the CLIP L/14 score (z-scored sum)"
    needs: ClassVar[Needs] = Needs(columns=(COS_COLUMN,), images=True, captions=True, models=("meru",))
    terms: ClassVar[tuple[str, ...]] = ("eps_i", "eps_t", "neg_dl", "cos")
    default_percent: ClassVar[float | None] = None

    def __init__(
        self,
        norm: str = "zscore",
        weights: Any = None,
        reference: str | None = None,
        model_name: str | None = None,
        chunk: int = DEFAULT_CHUNK,
        normalisation: str | None = None,
        **options: Any,
    ):
        if normalisation is not None:  # the spelling `harness run --help` shows
            norm = normalisation
        if options:
            raise PluginError(f"{self.name}: unknown option(s) {sorted(options)}; "
                              "known: norm (or normalisation), weights, reference, model_name, chunk")
        if norm not in NORMALISATIONS:
            raise PluginError(f"{self.name}: norm must be one of {NORMALISATIONS}, got {norm!r}")
        self.norm = norm
        self.weights = parse_weights(weights, type(self).terms)
        self.reference = reference
        self.model_name = model_name
        self.chunk = int(chunk)
        if self.chunk <= 0:
            raise PluginError(f"{self.name}: chunk must be positive, got {chunk!r}")
        super().__init__(norm=norm, weights=self.weights, reference=reference, model_name=model_name)
        self._meru = None
        self._ref_img: Any = None  # torch.Tensor once set up
        self._ref_txt: Any = None
        self._cos: tuple[np.ndarray, np.ndarray] | None = None  # (sorted uid keys, values)

    # -- loading ------------------------------------------------------------------------------
    def _model_spec(self, ctx: ScoringContext) -> Path:
        return Path(ctx.model_path("meru"))

    def _reference_path(self, spec: Path) -> Path:
        if self.reference:
            return Path(self.reference)
        if spec.is_dir():
            return spec / "reference_set.pt"
        raise PluginError(
            f"{self.name}: the model {spec} is a checkpoint file; give its reference set with "
            "--set hype.reference=/path/to/reference.pt"
        )

    def fingerprint(self, ctx: ScoringContext) -> str:
        from harness.baselines.hype.model import LOADER_VERSION
        from harness.stages import sha256_file

        def fingerprint_file(path: Path) -> str:  # the first 16 hex digits of its sha256, as the loader's
            return sha256_file(path)[:16]

        spec = self._model_spec(ctx)
        ckpt = spec / "model.pt" if spec.is_dir() else spec
        ref = self._reference_path(spec)
        if not ckpt.exists() or not ref.exists():
            missing = ckpt if not ckpt.exists() else ref
            raise PluginError(f"{self.name}: {missing} not found")
        # the loader version: how a checkpoint is loaded (e.g. its LayerNorm eps) changes its scores
        return f"{fingerprint_file(ckpt)}-{fingerprint_file(ref)}-loader{LOADER_VERSION}"

    def setup(self, ctx: ScoringContext) -> None:
        if self._meru is not None:
            return
        self._load_model_and_references(ctx, image_side=True)
        self._cos = self._load_metadata_term(ctx, COS_COLUMN)

    def _load_model_and_references(self, ctx: ScoringContext, image_side: bool) -> None:
        """Load the MERU model and lift its reference set (tangent vectors) onto the hyperboloid once;
        the image side (for eps_t) only when it is used."""
        from harness.baselines.hype.model import load_meru, load_reference_set

        G = _geometry()
        spec = self._model_spec(ctx)
        self._meru = load_meru(spec, model_name=self.model_name, device=ctx.device)
        img, txt = load_reference_set(self._reference_path(spec), width=self._meru.model.embed_dim)
        curv = self._meru.model.curv.detach().to(ctx.device)
        self._ref_txt = G.exp_map0(txt.to(ctx.device), curv)
        if image_side:
            self._ref_img = G.exp_map0(img.to(ctx.device), curv)

    def _load_metadata_term(self, ctx: ScoringContext, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A metadata column as (sorted uids, values) for lookups by uid from shard samples."""
        table = ctx.pool.read_columns(["uid", column])
        uids = uids_to_array(table.column("uid"), where=f"{ctx.pool.metadata_dir} uid")
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        order = uid_order(uids)
        return uids[order], values[order]

    # -- scoring ------------------------------------------------------------------------------
    def _lookup(self, table: tuple[np.ndarray, np.ndarray], samples: list[Sample], column: str) -> np.ndarray:
        uids, values = table
        pos = find_uids(uids, uids_to_array([s.uid for s in samples], where="shard samples"))
        if (pos < 0).any():
            uid = samples[int(np.nonzero(pos < 0)[0][0])].uid
            raise PluginError(f"{self.name}: sample {uid} is in the shards but not in the metadata ({column})")
        return values[pos]

    @_no_grad
    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        if self._meru is None:
            self.setup(ctx)
        import torch

        G = _geometry()
        meru = self._meru
        curv = meru.model.curv.detach()
        img_tan = torch.from_numpy(meru.encode_images([s.image for s in samples], ctx.batch_size))
        txt_tan = torch.from_numpy(meru.encode_texts([s.caption for s in samples], ctx.batch_size))
        img = G.exp_map0(img_tan.to(ctx.device), curv)
        txt = G.exp_map0(txt_tan.to(ctx.device), curv)
        out = {
            "eps_i": G.image_specificity(img, self._ref_txt, curv, chunk=self.chunk).cpu().numpy(),
            "eps_t": G.text_specificity(txt, self._ref_img, curv, chunk=self.chunk).cpu().numpy(),
            "neg_dl": (-G.paired_dist(img, txt, curv)).cpu().numpy(),
            "cos": self._lookup(self._cos, samples, COS_COLUMN),
        }
        return {t: out[t] for t in type(self).terms if t in out}

    def combine(self, terms: Any) -> np.ndarray:
        total = np.zeros(len(terms), dtype=np.float64)
        for t in type(self).terms:
            w = self.weights[t]
            if w != 0:
                total += w * normalise(terms[t].to_numpy(dtype=np.float64), self.norm)
        return total


@register
class HypeImageScorer(HypeScorer):
    """Image specificity alone (HYPE's image-only induction, eps_i)."""

    name: ClassVar[str] = "hype_img"
    description: ClassVar[str] = "HYPE image specificity eps_i alone"
    needs: ClassVar[Needs] = Needs(images=True, models=("meru",))
    terms: ClassVar[tuple[str, ...]] = ("eps_i",)

    def setup(self, ctx: ScoringContext) -> None:
        if self._meru is None:
            self._load_model_and_references(ctx, image_side=False)

    @_no_grad
    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        if self._meru is None:
            self.setup(ctx)
        import torch

        G = _geometry()
        curv = self._meru.model.curv.detach()
        img_tan = torch.from_numpy(self._meru.encode_images([s.image for s in samples], ctx.batch_size))
        img = G.exp_map0(img_tan.to(ctx.device), curv)
        return {"eps_i": G.image_specificity(img, self._ref_txt, curv, chunk=self.chunk).cpu().numpy()}


@register
class HypeClusterScorer(HypeScorer):
    """HYPE's full composite: the four terms plus DataComp's image-based cluster indicator c_in."""

    name: ClassVar[str] = "hype_in"
    description: ClassVar[str] = "HYPE + the image-based (ImageNet cluster) indicator c_in"
    needs: ClassVar[Needs] = Needs(
        columns=(COS_COLUMN,), features=("l14_img",), images=True, captions=True, models=("meru",)
    )
    terms: ClassVar[tuple[str, ...]] = ("eps_i", "eps_t", "neg_dl", "cos", "c_in")
    uses: ClassVar[tuple[str, ...]] = ("image_based",)  # c_in: its options apply
    depends_on: ClassVar[tuple[str, ...]] = ("image_based",)  # c_in is its cached keep column

    def setup(self, ctx: ScoringContext) -> None:
        super().setup(ctx)
        self._c_in = self._cluster_indicator(ctx)

    def _cluster_indicator(self, ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray]:
        """The ``image_based`` table the engine handed over (1.0 where it keeps the row), keyed by uid."""
        keep = np.asarray(self.scores_of("image_based").terms["keep"], dtype=np.float64)
        k = ctx.pool.uids()  # the table's rows are the pool's metadata order
        if len(k) != len(keep):
            raise PluginError(f"{self.name}: the image_based table has {len(keep)} rows, the pool {len(k)}")
        order = uid_order(k)
        return k[order], keep[order]

    @_no_grad
    def score_samples(self, samples: list[Sample], ctx: ScoringContext) -> dict[str, np.ndarray]:
        out = super().score_samples(samples, ctx)
        out["c_in"] = self._lookup(self._c_in, samples, "image_based")
        return out


