"""``harness select``: a filter expression -> DataComp subset (.npy, u8,u8, sorted) + provenance JSON.

The subset loads with ``np.load`` exactly as DataComp's resharder reads it; a row listed k times
(from ``uids:`` terms with repeats) is written k times.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import expressions
from harness.compat import check_compat
from harness.errors import UsageError
from harness.plugins import Filter, Scorer, ScoringContext, get_filter, instantiate, validate_options
from harness.pool import UID_DTYPE, Pool, is_sorted_uids, sort_uids
from harness.stages import atomic_path

log = logging.getLogger("harness.selection")

SUBSET_NPY = "subset.npy"
SUBSET_JSON = "subset.json"


def _atomic_write_bytes(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def save_subset(path: str | Path, uids: np.ndarray) -> None:
    """np.save a u8,u8 array (sorted here unless it already is) atomically."""
    arr = np.asarray(uids)
    if arr.dtype != UID_DTYPE:
        raise ValueError(f"subset must have dtype {UID_DTYPE}, got {arr.dtype}")
    if not is_sorted_uids(arr):  # a pass over the words is far cheaper than sorting again
        arr = sort_uids(arr)
    _atomic_write_bytes(Path(path), lambda f: np.save(f, arr, allow_pickle=False))


def _detector_used(filters: list[Any]) -> str | None:
    """The language detector(s), when some filter of the expression uses one: the detector's name
    (library, model file and its SHA-256); several, joined with "; ", when filters use different ones
    (``laion2b`` uses gcld3, the other caption filters fastText)."""
    from harness import langid

    names = [str(s["detector"]) for f in filters if "detector" in (s := f.settings())]
    if not names and any(getattr(f, "lid_model", None) is not None for f in filters):
        names = [langid.detector_name()]
    return "; ".join(dict.fromkeys(names)) or None


def _score_dtype(filt: Any, pool: Pool) -> np.dtype:
    """The dtype a score is stored in, for explicit thresholds in compat "datacomp": a metadata-column
    filter's (clip_b32, clip_l14: the ``column`` class attribute) is the parquet column's, float32 in
    DataComp's metadata; every other score is float64 (the harness computes it so)."""
    column = getattr(type(filt), "column", None)
    if isinstance(column, str) and isinstance(filt, Scorer) and type(filt).combine is Scorer.combine:
        schema = pool.schema()
        if column in schema.names:
            return np.dtype(schema.field(column).type.to_pandas_dtype())
    return np.dtype(np.float64)


def _percent_base(filt: Any) -> str:
    """Percents of a model-scored filter count the samples with a score (a decodable image); those of
    a metadata filter (DataComp's clip_b32 / clip_l14 columns) every metadata row, as DataComp does."""
    return "scored" if isinstance(filt, Scorer) and type(filt).uses_samples() else "pool"


def _validate_once(pool: Pool, cache_dir: str | Path | None) -> None:
    """Check the pool's uids (format, no duplicates) once per pool state; remembered in cache_dir."""
    if cache_dir is None:
        pool.validate()
        return
    marker = Path(cache_dir) / f".pool-valid-{pool.fingerprint()}"
    if marker.exists():
        return
    pool.validate()
    marker.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(marker, lambda f: f.write(b"ok\n"))


def selection_inputs(pool: Pool, expr: str, ctx: ScoringContext, seed: int = 0,
                     instances: dict[str, Filter] | None = None) -> dict[str, Any]:
    """Everything a selection is computed from, by content: the parsed expression, the seed, each
    filter's score-table identity (its plugin file, options, model weights and the pool's content, see
    `harness.scoring.score_record`) and the bytes of every ``uids:`` file. A run whose inputs are
    unchanged keeps its subset; any change re-selects.

    ``instances``, when given, receives the filters it made: hand them to ``select(filters=...)`` so
    that a scorer which loaded its model to fingerprint it is not loaded a second time."""
    from harness.scoring import score_record
    from harness.stages import content_digest

    ast = expressions.parse(expr)
    ctx = dataclasses.replace(ctx, pool=pool, seed=seed)
    made = {name: instantiate(name, ctx) for name in expressions.scorer_names(ast)}
    if instances is not None:
        instances.update(made)
    filters = {name: score_record(filt, ctx)["key"] for name, filt in made.items()}
    uid_files = {}
    for atom in expressions.atoms(ast):
        if isinstance(atom, expressions.UidsAtom):
            path = Path(atom.path)
            uid_files[str(path.resolve())] = content_digest(path) if path.is_file() else None
    return {"expression": str(ast), "seed": seed, "compat": ctx.compat, "pool": pool.fingerprint(),
            "filters": filters, "uids_files": uid_files}


class EmptySelectionError(UsageError):
    """The expression keeps no sample: refused at select, before reshard and training."""


def _check_result(expr: str, pool: Pool, result: np.ndarray, terms: list[Any]) -> None:
    """Say what the user must know before anything trains on the result."""
    for t in terms:
        if t.not_in_pool:  # foreign uids: ignored, but never silently
            log.warning("select: %s: %d of its uids are not in the pool %s (ignored)", t.text, t.not_in_pool,
                        pool.root)
    if not np.any(result):
        per_term = ", ".join(f"{t.text}: {t.kept}" for t in terms)
        raise EmptySelectionError(f"select: expression {expr!r} keeps no sample of the {len(result)} in "
                                  f"{pool.root} (kept per term: {per_term})")


def select(
    pool: Pool,
    expr: str,
    out_dir: str | Path,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    seed: int = 0,
    progress: bool = True,
    compat: str | None = None,
    filters: dict[str, Filter] | None = None,
) -> dict[str, Any]:
    """Evaluate ``expr`` over the pool; write ``subset.npy`` + ``subset.json`` in ``out_dir``.

    ``compat`` ("datacomp" or "corrected"; None: the context's, by default "datacomp") is the
    compatibility mode (harness.expressions). ``filters``: instances already made for this context
    by ``selection_inputs`` (by name), used instead of new ones. Returns the provenance dict (also
    what subset.json holds).
    """
    from harness.scoring import compute_many

    t0 = time.perf_counter()
    ast = expressions.parse(expr)  # refuses a bad expression before any work
    compat = check_compat(compat or ctx.compat)
    ctx = dataclasses.replace(ctx, pool=pool, seed=seed, compat=compat)
    names = expressions.scorer_names(ast)
    # a context may carry options for other expressions too; unknown filters/options/models are errors
    validate_options(names, ctx.options, scoped=False)
    made = filters or {}
    filters = {name: made[name] if name in made else instantiate(name, ctx) for name in names}
    n = len(pool)

    # every filter of the expression at once: metadata filters share one pass over the files
    computed = dict(zip(names, compute_many(pool, list(filters.values()), ctx, cache_dir, progress), strict=True))

    def scores(name: str) -> np.ndarray:
        return computed[name].combined()

    def pool_uids() -> np.ndarray:  # only uids: terms need every uid as u8,u8
        return pool.uids()

    result, terms = expressions.evaluate(
        ast, n, scores, pool_uids, compat=compat,
        score_dtype=lambda name: _score_dtype(filters[name], pool),
        percent_base=lambda name: _percent_base(filters[name]),
    )
    _check_result(expr, pool, result, terms)
    score_info = {
        name: {
            "kind": get_filter(name).kind(),
            "settings": t.record.get("settings"),
            "model_fingerprint": t.record.get("model_fingerprint"),
            "model": t.record.get("model"),  # e.g. a hub model's resolved revision and file hashes
            "cache": str(t.path) if t.path else None,
            "missing": t.record.get("missing", 0),
        }
        for name, t in computed.items()
    }
    computed.clear()  # the scores (8 bytes a row per term) are done with: the uid work below reuses their memory
    _validate_once(pool, cache_dir)
    # the pool's uids were converted once, in the metadata pass (or are read now, when every score was cached)
    uids = pool.uids()
    if len(uids) != n:
        raise ValueError(f"{pool}: {len(uids)} uids but {n} metadata rows")
    chosen = sort_uids(uids, result if result.dtype == bool else np.repeat(np.arange(n), result.astype(np.int64)))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_subset(out / SUBSET_NPY, chosen)
    unique = int(np.count_nonzero(result)) if result.dtype != bool else int(result.sum())
    info: dict[str, Any] = {
        "expression": expr,
        "parsed": str(ast),
        "pool": str(pool.root),
        "pool_fingerprint": pool.fingerprint(),
        "pool_size": n,
        "kept": int(len(chosen)),
        "unique": unique,
        "fraction": (len(chosen) / n) if n else 0.0,
        "seed": seed,
        "compat": compat,
        "terms": [t.as_dict() for t in terms],
        "scores": score_info,
        "detector": _detector_used(list(filters.values())),
        "subset": SUBSET_NPY,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    payload = json.dumps(info, indent=2, default=str).encode()
    _atomic_write_bytes(out / SUBSET_JSON, lambda f: f.write(payload))
    return info
