"""Labeling functions for the WS filter: other filters, each turned into a good / bad / abstain vote.

Two steps, so that the per-row part runs batch by batch inside the scoring engine and the pool-wide
part (quantile thresholds) runs once on the whole pool:

1. `lf_inputs(meta, tables)` -> one row per sample with the raw quantities the functions look at
   (`INPUT_COLUMNS`): is the caption English, its length in words and characters, the image's
   shorter side and aspect ratio, the two CLIP scores of the pool metadata, and the combined score of
   each other scorer whose table is given (NaN where a quantity is unknown).
2. `apply_lfs(inputs, names)` -> an int8 vote matrix (+1 good, -1 bad, 0 abstain), one column per
   function.

`compute_votes(meta, tables)` does both. The functions (`LABELING_FUNCTIONS`):

  english        -1 when the caption is not English (DataComp's basic language rule), else abstain
  caption_length -1 when the caption has <= 2 words or <= 5 characters (DataComp's basic rule)
  image_size     -1 when the shorter image side is < 200 px (DataComp's basic rule)
  aspect_ratio   -1 when the longer/shorter side ratio is > 3 (DataComp's basic rule)
  clip_b32, clip_l14, tmars, dfn, hype
                 +1 at or above the pool's `high_quantile` of that score, -1 below its
                 `low_quantile`, abstain in between (defaults 0.7 / 0.3: top 30% good, bottom 30% bad)

The rule-based functions only ever vote bad: a short caption is evidence of a bad pair, a long one is
no evidence of a good one. A NaN input (a sample a scorer could not decode, a missing size) abstains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "INPUT_COLUMNS",
    "LABELING_FUNCTIONS",
    "SCORER_LFS",
    "LFConfig",
    "LabelingFunction",
    "apply_lfs",
    "available_lfs",
    "combined_column",
    "compute_votes",
    "detect_english",
    "lf_inputs",
    "quantile_votes",
    "score_thresholds",
]

# Other scorers whose combined score can be a labeling function (their registry names).
SCORER_LFS: tuple[str, ...] = ("tmars", "dfn", "hype")

INPUT_COLUMNS: tuple[str, ...] = (
    "english", "caption_words", "caption_chars", "min_side", "aspect",
    "clip_b32", "clip_l14", *SCORER_LFS,
)

# Metadata columns each raw input is computed from.
_INPUT_SOURCES: dict[str, tuple[str, ...]] = {
    "english": ("text",),
    "caption_words": ("text",),
    "caption_chars": ("text",),
    "min_side": ("original_width", "original_height"),
    "aspect": ("original_width", "original_height"),
    "clip_b32": ("clip_b32_similarity_score",),
    "clip_l14": ("clip_l14_similarity_score",),
}
META_COLUMNS: tuple[str, ...] = ("text", "original_width", "original_height",
                                 "clip_b32_similarity_score", "clip_l14_similarity_score")


@dataclass(frozen=True)
class LFConfig:
    """Thresholds of the labeling functions (defaults: DataComp's basic filter, 30/30 quantile bands)."""

    min_words: int = 3          # caption needs > 2 words ...
    min_chars: int = 6          # ... and > 5 characters
    min_side: float = 200.0     # shorter image side >= 200 px
    max_aspect: float = 3.0     # longer / shorter side <= 3
    low_quantile: float = 0.3   # score LFs vote bad below this pool quantile
    high_quantile: float = 0.7  # ... and good at or above this one

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_quantile <= self.high_quantile <= 1.0:
            raise ValueError(
                f"need 0 <= low_quantile <= high_quantile <= 1, got {self.low_quantile}, {self.high_quantile}"
            )


Thresholds = Mapping[str, tuple[float, float]]  # score LF name -> (low, high) cut points


@dataclass(frozen=True)
class LabelingFunction:
    name: str
    description: str
    inputs: tuple[str, ...]  # INPUT_COLUMNS it reads
    vote: Callable[[pd.DataFrame, LFConfig, tuple[float, float] | None], np.ndarray]
    quantile: bool = False  # votes by pool quantiles of inputs[0] (needs pool-wide thresholds)


def _bad_if(mask: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.where(known & mask, -1, 0).astype(np.int8)


def _vote_english(x: pd.DataFrame, cfg: LFConfig, cuts: tuple[float, float] | None) -> np.ndarray:
    v = x["english"].to_numpy(np.float64)
    return _bad_if(v < 0.5, ~np.isnan(v))


def _vote_length(x: pd.DataFrame, cfg: LFConfig, cuts: tuple[float, float] | None) -> np.ndarray:
    w = x["caption_words"].to_numpy(np.float64)
    c = x["caption_chars"].to_numpy(np.float64)
    return _bad_if((w < cfg.min_words) | (c < cfg.min_chars), ~(np.isnan(w) | np.isnan(c)))


def _vote_size(x: pd.DataFrame, cfg: LFConfig, cuts: tuple[float, float] | None) -> np.ndarray:
    s = x["min_side"].to_numpy(np.float64)
    return _bad_if(s < cfg.min_side, ~np.isnan(s))


def _vote_aspect(x: pd.DataFrame, cfg: LFConfig, cuts: tuple[float, float] | None) -> np.ndarray:
    a = x["aspect"].to_numpy(np.float64)
    return _bad_if(a > cfg.max_aspect, ~np.isnan(a))


def quantile_cuts(score: np.ndarray, low_q: float, high_q: float) -> tuple[float, float]:
    """(low, high) cut points: the low_q and high_q quantiles of the known (non-NaN) scores."""
    s = np.asarray(score, dtype=np.float64)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(s, [low_q, high_q])
    return float(lo), float(hi)


def band_votes(score: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    """+1 at or above cuts[1], -1 below cuts[0], 0 in between or where the score is NaN."""
    s = np.asarray(score, dtype=np.float64)
    lo, hi = cuts
    out = np.zeros(s.shape, dtype=np.int8)
    known = ~np.isnan(s)
    out[known & (s >= hi)] = 1
    out[known & (s < lo)] = -1
    return out


def quantile_votes(score: np.ndarray, low_q: float, high_q: float) -> np.ndarray:
    """band_votes at the score's own low_q / high_q quantiles."""
    return band_votes(score, quantile_cuts(score, low_q, high_q))


def _score_lf(column: str) -> Callable[[pd.DataFrame, LFConfig, tuple[float, float] | None], np.ndarray]:
    def vote(x: pd.DataFrame, cfg: LFConfig, cuts: tuple[float, float] | None) -> np.ndarray:
        score = x[column].to_numpy(np.float64)
        if cuts is None:  # the rows given are the whole pool
            cuts = quantile_cuts(score, cfg.low_quantile, cfg.high_quantile)
        return band_votes(score, cuts)

    return vote


LABELING_FUNCTIONS: dict[str, LabelingFunction] = {
    lf.name: lf
    for lf in (
        LabelingFunction("english", "bad if the caption is not English", ("english",), _vote_english),
        LabelingFunction("caption_length", "bad if <= 2 words or <= 5 characters",
                         ("caption_words", "caption_chars"), _vote_length),
        LabelingFunction("image_size", "bad if the shorter side < 200 px", ("min_side",), _vote_size),
        LabelingFunction("aspect_ratio", "bad if the aspect ratio > 3", ("aspect",), _vote_aspect),
        LabelingFunction("clip_b32", "CLIP B/32 score: good top band, bad bottom band", ("clip_b32",),
                         _score_lf("clip_b32"), quantile=True),
        LabelingFunction("clip_l14", "CLIP L/14 score: good top band, bad bottom band", ("clip_l14",),
                         _score_lf("clip_l14"), quantile=True),
        LabelingFunction("tmars", "T-MARS masked score: good top band, bad bottom band", ("tmars",),
                         _score_lf("tmars"), quantile=True),
        LabelingFunction("dfn", "DFN score: good top band, bad bottom band", ("dfn",), _score_lf("dfn"),
                         quantile=True),
        LabelingFunction("hype", "HYPE score: good top band, bad bottom band", ("hype",),
                         _score_lf("hype"), quantile=True),
    )
}


# --- step 1: raw inputs -----------------------------------------------------------------------------

def detect_english(texts: Sequence[str | None]) -> np.ndarray:
    """1.0 where the caption's top-1 language is English, 0.0 where not, NaN for a missing caption.

    harness.langid decides (fastText lid.176, as DataComp's basic filter), so WS and the
    `basic` filter agree on what English is.
    """
    from harness.langid import detect_english as is_english

    out = np.full(len(texts), np.nan)
    idx = [i for i, t in enumerate(texts) if isinstance(t, str)]
    if idx:
        out[idx] = np.asarray(is_english([texts[i] for i in idx]), dtype=np.float64)
    return out


def combined_column(table: pd.DataFrame, scorer: str) -> str:
    """The column holding a score table's combined score (see harness.scoring)."""
    for col in ("combined", "score"):
        if col in table.columns:
            return col
    numeric = [c for c in table.columns if c != "uid" and pd.api.types.is_numeric_dtype(table[c])]
    if len(numeric) == 1:
        return numeric[0]
    raise ValueError(
        f"score table of {scorer!r} has no 'combined' column and several terms {numeric}; "
        "pass the table from harness.scoring.score(), which adds the combined score"
    )


def lf_inputs(meta: pd.DataFrame,
              tables: Mapping[str, pd.DataFrame | np.ndarray] | None = None) -> pd.DataFrame:
    """Raw quantities per sample (INPUT_COLUMNS, float64, NaN = unknown), rows aligned with `meta`.

    meta: pool metadata rows (uses text, original_width, original_height and the CLIP score columns
    when present). tables: other scorers' scores by registry name, either a table (uid + combined
    score, matched to `meta` by uid; a uid missing from it gets NaN) or an array aligned with `meta`.
    """
    n = len(meta)
    out = pd.DataFrame(index=pd.RangeIndex(n), columns=list(INPUT_COLUMNS), dtype=np.float64)
    if "text" in meta.columns:
        texts = [t if isinstance(t, str) else None for t in meta["text"].tolist()]
        out["english"] = detect_english(texts)
        out["caption_words"] = [np.nan if t is None else float(len(t.split())) for t in texts]
        out["caption_chars"] = [np.nan if t is None else float(len(t)) for t in texts]
    if {"original_width", "original_height"} <= set(meta.columns):
        w = pd.to_numeric(meta["original_width"], errors="coerce").to_numpy(np.float64)
        h = pd.to_numeric(meta["original_height"], errors="coerce").to_numpy(np.float64)
        short, long_ = np.minimum(w, h), np.maximum(w, h)
        out["min_side"] = short
        with np.errstate(divide="ignore", invalid="ignore"):
            out["aspect"] = np.where(short > 0, long_ / short, np.nan)
    for key, col in (("clip_b32", "clip_b32_similarity_score"), ("clip_l14", "clip_l14_similarity_score")):
        if col in meta.columns:
            out[key] = pd.to_numeric(meta[col], errors="coerce").to_numpy(np.float64)
    for name, table in (tables or {}).items():
        if name not in SCORER_LFS:
            raise ValueError(f"no labeling function reads a {name!r} score table; known: {', '.join(SCORER_LFS)}")
        if isinstance(table, np.ndarray):
            if table.shape != (n,):
                raise ValueError(f"{name!r} scores have shape {table.shape}, expected ({n},) aligned with the metadata")
            out[name] = table.astype(np.float64)
            continue
        if "uid" not in table.columns:
            raise ValueError(f"score table of {name!r} has no uid column")
        col = combined_column(table, name)
        by_uid = pd.Series(table[col].to_numpy(np.float64), index=table["uid"].astype(str))
        if not by_uid.index.is_unique:
            raise ValueError(f"score table of {name!r} repeats uids (e.g. {by_uid.index[by_uid.index.duplicated()][0]})")
        out[name] = by_uid.reindex(meta["uid"].astype(str)).to_numpy()
    return out


# --- step 2: votes ----------------------------------------------------------------------------------

def available_lfs(inputs: pd.DataFrame) -> list[str]:
    """Functions whose inputs are known for at least one sample, in LABELING_FUNCTIONS order."""
    return [
        name for name, lf in LABELING_FUNCTIONS.items()
        if all(c in inputs.columns and inputs[c].notna().any() for c in lf.inputs)
    ]


def score_thresholds(inputs: pd.DataFrame, names: Sequence[str], config: LFConfig | None = None) -> dict[str, tuple[float, float]]:
    """Pool-wide (low, high) cut points of the quantile functions among `names` (inputs = whole pool)."""
    cfg = config or LFConfig()
    return {
        n: quantile_cuts(inputs[LABELING_FUNCTIONS[n].inputs[0]].to_numpy(np.float64), cfg.low_quantile,
                         cfg.high_quantile)
        for n in names if LABELING_FUNCTIONS[n].quantile
    }


def apply_lfs(inputs: pd.DataFrame, names: Sequence[str] | None = None,
              config: LFConfig | None = None, thresholds: Thresholds | None = None,
              check: bool = True) -> tuple[np.ndarray, list[str]]:
    """Vote matrix (rows of `inputs` x functions) and the function names, in column order.

    names=None uses every available function; a named function whose inputs are all unknown is an
    error (it would abstain everywhere) unless check=False (a batch of a larger pool).
    thresholds: pool-wide cut points of the quantile functions (score_thresholds); without them the
    quantiles are taken over `inputs`, which must then be the whole pool.
    """
    cfg = config or LFConfig()
    if names is None:
        names = available_lfs(inputs)
    else:
        names = list(names)
        unknown = [n for n in names if n not in LABELING_FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown labeling function(s) {unknown}; known: {', '.join(LABELING_FUNCTIONS)}")
        usable = set(available_lfs(inputs))
        missing = [n for n in names if n not in usable]
        if missing and check:
            raise ValueError(
                f"labeling function(s) {missing} have no input (missing metadata column or score table: "
                f"{', '.join(c for n in missing for c in LABELING_FUNCTIONS[n].inputs)})"
            )
    if not names:
        raise ValueError("no labeling function has its inputs; WS needs at least one")
    votes = np.zeros((len(inputs), len(names)), dtype=np.int8)
    for j, name in enumerate(names):
        lf = LABELING_FUNCTIONS[name]
        cuts = None if thresholds is None or not lf.quantile else thresholds[name]
        votes[:, j] = lf.vote(inputs, cfg, cuts)
    return votes, list(names)


def compute_votes(meta: pd.DataFrame, tables: Mapping[str, pd.DataFrame | np.ndarray] | None = None,
                  names: Sequence[str] | None = None,
                  config: LFConfig | None = None) -> tuple[np.ndarray, list[str]]:
    """Votes of the labeling functions for the pool's metadata and any available score tables."""
    return apply_lfs(lf_inputs(meta, tables), names, config)
