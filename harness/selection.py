"""``harness select``: a filter expression -> DataComp subset (.npy, u8,u8, sorted) + provenance JSON.

The subset loads with ``np.load`` exactly as DataComp's resharder reads it; a row listed k times
(from ``uids:`` terms with repeats) is written k times.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import expressions
from harness.plugins import ScoringContext, get_filter, instantiate, validate_options
from harness.pool import UID_DTYPE, Pool, is_sorted_uids, sort_uids
from harness.stages import atomic_path

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
    """The language detector, when some filter of the expression uses one."""
    from harness import langid

    for f in filters:
        if "detector" in (s := f.settings()):
            return str(s["detector"])
    if any(getattr(f, "lid_model", None) is not None for f in filters):
        return langid.detector_name()
    return None


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


def select(
    pool: Pool,
    expr: str,
    out_dir: str | Path,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``expr`` over the pool; write ``subset.npy`` + ``subset.json`` in ``out_dir``.

    Returns the provenance dict (also what subset.json holds).
    """
    from harness.scoring import compute_many

    t0 = time.perf_counter()
    ast = expressions.parse(expr)  # refuses a bad expression before any work
    ctx = dataclasses.replace(ctx, pool=pool, seed=seed)
    names = expressions.scorer_names(ast)
    # a context may carry options for other expressions too; unknown filters/options/models are errors
    validate_options(names, ctx.options, scoped=False)
    filters = {name: instantiate(name, ctx) for name in names}
    n = len(pool)

    # every filter of the expression at once: metadata filters share one pass over the files
    computed = dict(zip(names, compute_many(pool, list(filters.values()), ctx, cache_dir, progress), strict=True))

    def scores(name: str) -> np.ndarray:
        return computed[name].combined()

    def pool_uids() -> np.ndarray:  # only uids: terms need every uid as u8,u8
        return pool.uids()

    result, terms = expressions.evaluate(ast, n, scores, pool_uids)
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
        "terms": [t.as_dict() for t in terms],
        "scores": score_info,
        "detector": _detector_used(list(filters.values())),
        "subset": SUBSET_NPY,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    payload = json.dumps(info, indent=2, default=str).encode()
    _atomic_write_bytes(out / SUBSET_JSON, lambda f: f.write(payload))
    return info
