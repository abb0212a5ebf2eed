"""What every scoring engine shares: its settings, the protocol it implements, and the rules it applies
to a plugin's output (term validation, the atomic table write, the per-shard work table's name).

An engine computes a filter's raw terms; it does not decide what is cached or how a table is keyed
(harness.scoring does that, the same for every engine, so the engine is not part of any cache key).

- ``score_metadata(filters, pool, ctx)``: metadata scorers and predicates over the whole pool, one
  dict of terms per filter, rows in the pool's metadata order;
- ``score_shards(filt, shards, ctx, work, progress)``: a model scorer over some of the pool's tar
  shards, one work table ``work_table_path(work, shard)`` per shard (scored samples in tar order, then
  the samples without a decodable image with NaN terms); returns what the reader met (SampleStats).

Each engine calls every filter's ``setup(ctx)`` once per worker before the filter sees data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.engines.settings import EngineSettings
from harness.plugins import Filter, PluginError, Predicate, Scorer, ScoringContext
from harness.pool import MetadataBatch, Pool, PoolError, SampleStats
from harness.stages import atomic_path

__all__ = ["EngineSettings", "KEEP_TERM", "ScoringEngine", "atomic_write_table", "call_plugin", "check_terms",
           "metadata_inputs", "metadata_terms", "set_up", "term_names", "work_table_path"]

KEEP_TERM = "keep"


class ScoringEngine(Protocol):
    """Computes raw terms; see the module docstring for the contract of each method."""

    settings: EngineSettings

    def score_metadata(self, filters: list[Filter], pool: Pool, ctx: ScoringContext) -> list[dict[str, np.ndarray]]:
        ...

    def score_shards(self, filt: Scorer, shards: list[Path], ctx: ScoringContext, work: Path,
                     progress: bool) -> SampleStats:
        ...


# ---------------------------------------------------------------------------------------------
# rules every engine applies


def term_names(filt: Filter) -> tuple[str, ...]:
    """The columns of a filter's table besides uid: its terms, or ``keep`` for a predicate."""
    return (KEEP_TERM,) if isinstance(filt, Predicate) else tuple(type(filt).terms)


def metadata_inputs(filters: Sequence[Filter]) -> tuple[list[str], list[str]]:
    """(parquet columns, npz features) that a set of metadata filters reads, each once, in order."""
    cols = list(dict.fromkeys(c for f in filters for c in type(f).needs.columns))
    feats = list(dict.fromkeys(c for f in filters for c in type(f).needs.features))
    return cols, feats


def work_table_path(work: Path, shard: Path) -> Path:
    """The per-shard work table of a model scorer: its resume point."""
    return work / f"{shard.stem}.parquet"


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a parquet table so that a reader sees the old file or the whole new one, never a part."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def call_plugin(filt: Filter, method: str, where: str, *args: Any) -> Any:
    """Call a plugin method; an exception from the plugin becomes a PluginError naming it and where."""
    try:
        return getattr(filt, method)(*args)
    except (PluginError, PoolError, MemoryError):
        raise
    except Exception as exc:
        at = f" ({where})" if where else ""
        raise PluginError(f"filter {filt.name!r}: {method}() raised {type(exc).__name__}: {exc}{at}") from exc


def check_terms(
    filt: Filter, out: Any, n: int, expected: tuple[str, ...], where: str, allow_nan: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Validate a plugin's output: a dict with every term, n finite floats each."""
    if not isinstance(out, dict):
        raise PluginError(f"filter {filt.name!r} returned {type(out).__name__}, expected a dict of terms ({where})")
    missing = [t for t in expected if t not in out]
    if missing:
        raise PluginError(f"filter {filt.name!r} did not return term(s) {missing} ({where}); got {list(out)}")
    res = {}
    for t in expected:
        try:
            arr = np.asarray(out[t]).reshape(-1)
            if arr.dtype.kind != "f":  # floats stay as given (the caller widens them in place)
                arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"filter {filt.name!r}, term {t!r}: not numeric ({where}): {exc}") from exc
        if arr.shape[0] != n:
            raise PluginError(f"filter {filt.name!r}, term {t!r}: {arr.shape[0]} values for {n} rows ({where})")
        bad = ~np.isfinite(arr)
        if allow_nan is not None:
            bad &= ~(np.isnan(arr) & allow_nan)
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise PluginError(
                f"filter {filt.name!r}, term {t!r}: {arr[i]} at row {i} ({where}); scores must be finite "
                "(NaN is reserved for samples without a decodable image)"
            )
        res[t] = arr
    return res


def metadata_terms(filt: Filter, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
    """One metadata filter over one batch, validated: its terms, or ``keep`` (1.0/0.0) for a predicate."""
    where = Path(batch.path).name
    if isinstance(filt, Predicate):
        keep = np.asarray(call_plugin(filt, "keep", where, batch, ctx)).reshape(-1)
        if keep.shape[0] != len(batch):
            raise PluginError(f"filter {filt.name!r}: keep() gave {keep.shape[0]} values for {len(batch)} rows ({where})")
        if keep.dtype != bool:
            raise PluginError(f"filter {filt.name!r}: keep() must return booleans, got {keep.dtype} ({where})")
        return {KEEP_TERM: keep.astype(np.float64)}
    out = call_plugin(filt, "score_metadata", where, batch, ctx)
    return check_terms(filt, out, len(batch), term_names(filt), where)


def set_up(filters: Sequence[Filter], ctx: ScoringContext) -> None:
    """Every filter's setup(ctx), once, before it sees data (what each engine worker does first)."""
    for f in filters:
        call_plugin(f, "setup", "", ctx)
