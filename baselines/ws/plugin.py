"""WS: a weak-supervision ensemble of filters (after Huang et al. 2024, "Multimodal data curation via
object detection and filter ensembles").

Other filters act as labeling functions that vote good / bad / abstain (baselines/ws/labeling_functions.py:
language, caption length, image size and aspect, CLIP B/32 and L/14 score bands, and the T-MARS, DFN
and HYPE score bands when those scorers can run); a label model (baselines/ws/label_model.py,
Dawid-Skene fitted by EM) turns the votes into the posterior that a sample is good.

Terms: one vote column per labeling function (`lf_<name>`, -1/0/+1; 0 everywhere for a function not
in use) and `tiebreak` (the L/14 score). Combined score: the posterior log-odds that the sample is
good (monotone in P(good) = 1 / (1 + exp(-score)); `ws>=0` keeps P(good) >= 0.5). Log-odds rather than
the probability because a confident posterior rounds to exactly 1.0 in floating point and would tie.
Samples with the same vote pattern share a posterior; within such a tie the L/14 score orders them
(a shift far smaller than any gap between patterns), so a percent keeps about that percent.

Default keep fraction 32%: WS at the small scale kept 4.1M of the 12.8M pool (Huang et al.; HYPE
paper table). `ws30`, `ws20` choose other fractions.

Options (``--set ws.KEY=VALUE``):
  lfs            comma-separated functions to use (default: every one whose inputs exist; T-MARS, DFN and
                 HYPE only when their models are found in the context and the pool has shards)
  model          dawid_skene (default) or one_coin
  groups         alignment (default: the CLIP, T-MARS, DFN and HYPE bands are one dependent group in the
                 label model, since they all measure image-text agreement) or none
  low_quantile, high_quantile   score bands (default 0.3 / 0.7)
  cache_dir      accepted for older configurations and ignored: the other scorers' tables are cached
                 where the engine caches ws's own (else in the context's cache dir)

The other scorers' score tables are declared dependencies (``dependencies()``): the scoring engine
computes them, or reads them from the score cache, before ``setup()`` and puts their keys into ws's
own key, so `ws+dfn` scores DFN once and a changed DFN rescores ws.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.baselines.ws.label_model import LabelModel
from harness.baselines.ws.labeling_functions import (
    LABELING_FUNCTIONS,
    META_COLUMNS,
    SCORER_LFS,
    LFConfig,
    apply_lfs,
    lf_inputs,
    score_thresholds,
)
from harness.plugins import MetadataBatch, Needs, PluginError, Scorer, ScoringContext, register

LF_NAMES: tuple[str, ...] = tuple(LABELING_FUNCTIONS)
# image-text alignment scores under different models: strongly correlated, so one dependent group
ALIGNMENT: tuple[str, ...] = ("clip_b32", "clip_l14", *SCORER_LFS)
VOTE_TERMS: tuple[str, ...] = tuple(f"lf_{n}" for n in LF_NAMES)
TIEBREAK = "tiebreak"


def _as_list(value: Any) -> list[str] | None:
    if value is None or value == "" or value == "all":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


@register
class WeakSupervision(Scorer):
    name = "ws"
    label = "WS"
    description = "weak-supervision ensemble: filters vote, a Dawid-Skene label model gives P(good) (Huang et al. 2024)"
    needs = Needs(columns=META_COLUMNS)
    default_percent = 32.0  # small scale: 4.1M of 12.8M kept
    terms = (*VOTE_TERMS, TIEBREAK)
    uses = SCORER_LFS  # the scorers it reads: their --set options and --model overrides apply
    # which of them it reads depends on the context (dependencies() below): depends_on stays empty

    def __init__(self, lfs: str | list[str] | None = None, model: str = "dawid_skene",
                 groups: str = "alignment", low_quantile: float | str = 0.3, high_quantile: float | str = 0.7,
                 cache_dir: str | Path | None = None, **options: Any):
        super().__init__(lfs=lfs, model=model, groups=groups, low_quantile=low_quantile,
                         high_quantile=high_quantile, **options)
        if groups not in ("alignment", "none"):
            raise PluginError(f"ws: groups must be alignment or none, got {groups!r}")
        if groups == "alignment" and model == "one_coin":
            groups = "none"  # the one-coin model has no dependent groups
        self.groups = groups
        self.options.pop("cache_dir", None)  # where tables live is not part of the result (and not ws's choice)
        self.requested = _as_list(lfs)
        unknown = [n for n in self.requested or () if n not in LABELING_FUNCTIONS]
        if unknown:
            raise PluginError(f"ws: unknown labeling function(s) {unknown}; known: {', '.join(LF_NAMES)}")
        if model not in ("dawid_skene", "one_coin"):
            raise PluginError(f"ws: model must be dawid_skene or one_coin, got {model!r}")
        self.model = model
        self.config = LFConfig(low_quantile=float(low_quantile), high_quantile=float(high_quantile))
        self.active: list[str] | None = None
        self._scores: dict[str, np.ndarray] = {}
        self._cuts: dict[str, tuple[float, float]] = {}
        self.label_model_: LabelModel | None = None
        self.lf_names_: list[str] | None = None

    def settings(self) -> dict[str, Any]:
        s = {"lfs": self.requested, "model": self.model, "groups": self.groups,
             "low_quantile": self.config.low_quantile, "high_quantile": self.config.high_quantile}
        if self.requested is None or "english" in self.requested:
            from harness import langid  # the english vote follows the detector: part of the cache key

            s["detector"] = langid.detector_name()
        return s

    # -- which labeling functions can run --------------------------------------------------------

    @staticmethod
    def scorer_available(name: str, ctx: ScoringContext) -> str | None:
        """None when scorer `name` can run in ctx, else why not."""
        from harness.plugins import get_filter

        try:
            cls = get_filter(name)
        except PluginError:
            return f"no {name!r} filter is registered"
        for m in cls.needs.models:
            try:
                ctx.model_path(m)
            except PluginError as exc:
                return str(exc)
        if (cls.needs.images or cls.needs.captions) and not ctx.pool.shards:
            return f"the pool has no shards for {name!r} to read"
        return None

    def resolve_lfs(self, ctx: ScoringContext) -> list[str]:
        """The functions this run uses: the requested ones (each must be able to run) or all that can."""
        names = self.requested if self.requested is not None else list(LF_NAMES)
        active = []
        for n in names:
            why = self.scorer_available(n, ctx) if n in SCORER_LFS else None
            if why is None:
                active.append(n)
            elif self.requested is not None:
                raise PluginError(f"ws: labeling function {n!r} cannot run: {why}")
        return active

    def dependencies(self, ctx: ScoringContext) -> tuple[str, ...]:
        """The scorers whose tables the functions in use read (their keys enter ws's key)."""
        return tuple(n for n in self.resolve_lfs(ctx) if n in SCORER_LFS)

    def fingerprint(self, ctx: ScoringContext) -> str:
        """The functions in use (the scorers they read enter the key as dependencies)."""
        blob = json.dumps({"lfs": self.resolve_lfs(ctx)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- scoring ---------------------------------------------------------------------------------

    def setup(self, ctx: ScoringContext) -> None:
        self.active = self.resolve_lfs(ctx)
        self._scores = {}
        for n in self.active:
            if n in SCORER_LFS:  # the other scorer's combined score, in pool order (NaN = no image)
                self._scores[n] = np.asarray(self.scores_of(n).combined, dtype=np.float64)
        # pool-wide cut points of the score bands
        cols = [c for c in ("clip_b32_similarity_score", "clip_l14_similarity_score")]
        meta = ctx.pool.read_columns(cols).to_pandas()
        inputs = lf_inputs(meta, self._scores)
        self._cuts = score_thresholds(inputs, [n for n in self.active if LABELING_FUNCTIONS[n].quantile],
                                      self.config)

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        if self.active is None:
            raise PluginError("ws: score_metadata called before setup()")
        meta = batch.table.to_pandas()
        rows = slice(batch.offset, batch.offset + len(batch))
        inputs = lf_inputs(meta, {n: s[rows] for n, s in self._scores.items()})
        votes, names = apply_lfs(inputs, self.active, self.config, self._cuts, check=False)
        out = {t: np.zeros(len(batch)) for t in VOTE_TERMS}
        for j, n in enumerate(names):
            out[f"lf_{n}"] = votes[:, j].astype(np.float64)
        l14 = inputs["clip_l14"].to_numpy(np.float64)
        out[TIEBREAK] = np.nan_to_num(l14, nan=-2.0)  # below any cosine
        return out

    # -- combining -------------------------------------------------------------------------------

    def fit_table(self, terms: pd.DataFrame) -> tuple[np.ndarray, list[str], LabelModel]:
        """Votes, function names and the fitted label model from a ws score/terms table.

        The functions are the vote columns with at least one vote (one that abstains everywhere adds
        nothing to the posterior).
        """
        names = [n for n in LF_NAMES if f"lf_{n}" in terms.columns and (terms[f"lf_{n}"] != 0).any()]
        if not names:
            raise PluginError("ws: no labeling function voted on any sample; nothing to combine")
        votes = terms[[f"lf_{n}" for n in names]].to_numpy(np.float64).astype(np.int8)
        groups = [[j for j, n in enumerate(names) if n in ALIGNMENT]] if self.groups == "alignment" else None
        model = LabelModel(model=self.model, groups=groups).fit(votes)
        return votes, names, model

    def combine(self, terms: pd.DataFrame) -> np.ndarray:
        votes, names, model = self.fit_table(terms)
        self.label_model_, self.lf_names_ = model, names
        return add_tiebreak(model.log_odds(votes), terms[TIEBREAK].to_numpy(np.float64))


def add_tiebreak(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Order ties of `score` by `tiebreak` without reordering distinct scores (gaps > 1e-9)."""
    distinct = np.unique(score)
    gaps = np.diff(distinct)
    gaps = gaps[gaps > 1e-9]
    eps = min(1e-3, 0.5 * float(gaps.min())) if gaps.size else 1e-3
    rank = pd.Series(tiebreak).rank(pct=True, method="average").to_numpy()  # in (0, 1]
    return score + eps * (rank - 0.5)
