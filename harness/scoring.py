"""Score tables: runs filters over a pool through a scoring engine and caches what they give.

- the engine (harness.engines: local or Ray, chosen once from ``ctx.engine`` or the ``engine``
  argument) computes the raw terms: metadata filters in one pass over the metadata files, model
  scorers over the shards into one work table per shard (an interrupted run resumes at the next
  unfinished shard); this module aligns those to the pool's metadata order by uid;
- a filter that declares dependencies (``Filter.dependencies``) gets their tables from here, computed
  or read from the cache first, and their keys enter its own key;
- the finished table is ``<cache_dir>/<scorer>-<key>.parquet``, with ``key`` a hash of
  (scorer, settings, model fingerprint, pool fingerprint, plugin file hash, dependencies' keys); rows
  follow the pool's metadata order.

Score table contract (docs/architecture.md): a ``uid`` column and one float column per term; the
schema metadata key ``b"harness"`` holds the record as JSON (scorer, settings, model_fingerprint,
pool_fingerprint, code_fingerprint, plus kind, rows, missing). A predicate's table has one term, ``keep`` (1.0/0.0).

NaN is allowed in exactly one case: a sample whose image is missing or undecodable in the shards
(model scorers) gets NaN in every term, is counted in ``record["missing"]`` and is never selected.
A scorer that returns NaN/inf for a sample it did score, or the wrong number of rows, is an error
naming the plugin and the term.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness import numerics
from harness.engines import EngineSettings, make_engine
from harness.engines.base import (
    KEEP_TERM,
    ScoringEngine,
    atomic_write_table,
    call_plugin,
    term_names,
    work_table_path,
)
from harness.plugins import (
    DependencyScores,
    Filter,
    PluginError,
    Predicate,
    Scorer,
    ScoringContext,
    instantiate,
)
from harness.pool import Pool, SampleStats, find_uids, uid_order, uids_to_array

ENGINE_VERSION = 1
RECORD_KEY = b"harness"
log = logging.getLogger("harness.scoring")

ScoreTable = pd.DataFrame  # uid + terms; ``table.attrs["record"]`` holds the record


@dataclass
class Terms:
    """A filter's terms over the whole pool, in metadata order, without the uid column."""

    filter: Filter
    terms: dict[str, np.ndarray]
    record: dict[str, Any]
    path: Path | None = None
    _combined: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_predicate(self) -> bool:
        return isinstance(self.filter, Predicate)

    def combined(self) -> np.ndarray:
        """One float score per row (higher = keep); for a predicate 1.0 keep / 0.0 drop."""
        if self._combined is None:
            if self.is_predicate:
                self._combined = self.terms[KEEP_TERM]
            elif type(self.filter).combine is Scorer.combine and len(self.terms) == 1:
                self._combined = np.asarray(next(iter(self.terms.values())), dtype=np.float64)
            else:
                self._combined = combine_terms(self.filter, pd.DataFrame(self.terms, copy=False))
        return self._combined


# ---------------------------------------------------------------------------------------------
# helpers


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-able: {o!r}")


def code_fingerprint(filt: Filter) -> str:
    """Hash of the file that defines the plugin's class: editing a plugin invalidates its tables.

    A class with no source file (defined interactively) falls back to its qualified name.
    """
    cls = type(filt)
    try:
        source = Path(inspect.getsourcefile(cls) or "").read_bytes()
    except (TypeError, OSError):
        return f"{cls.__module__}.{cls.__qualname__}"
    return hashlib.sha256(source).hexdigest()[:16]


def cache_key(name: str, settings: dict[str, Any], model_fp: str, pool_fp: str, code_fp: str = "",
              depends: dict[str, str] | None = None) -> str:
    ident = {"scorer": name, "settings": settings, "model": model_fp, "pool": pool_fp, "code": code_fp,
             "v": ENGINE_VERSION, "numerics": numerics.mode(numerics.INFERENCE_THREADS)}  # pinned or native kernels give other bits
    if depends:  # the keys of the tables it reads: a changed dependency rescores (absent: keys as before)
        ident["depends"] = depends
    blob = json.dumps(ident, sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def combine_terms(filt: Filter, frame: pd.DataFrame) -> np.ndarray:
    """The scorer's combined score, validated (NaN only where every term is NaN)."""
    assert isinstance(filt, Scorer)
    out = np.asarray(call_plugin(filt, "combine", "", frame), dtype=np.float64).reshape(-1)
    if out.shape[0] != len(frame):
        raise PluginError(f"filter {filt.name!r}: combine() gave {out.shape[0]} values for {len(frame)} rows")
    finite = np.isfinite(out)
    if finite.all():  # the common case: no need to look at the terms
        return out
    all_nan = frame.isna().all(axis=1).to_numpy() if len(frame.columns) else np.zeros(len(frame), bool)
    bad = ~finite & ~(np.isnan(out) & all_nan)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise PluginError(f"filter {filt.name!r}: combine() gave {out[i]} at row {i}; scores must be finite")
    return out


def _model_fingerprint(filt: Filter, ctx: ScoringContext) -> str:
    if not isinstance(filt, Scorer):
        return ""
    try:
        return str(filt.fingerprint(ctx))
    except (AttributeError, RuntimeError):
        # a scorer that can only fingerprint its loaded model
        call_plugin(filt, "setup", "", ctx)
        return str(call_plugin(filt, "fingerprint", "", ctx))


def _model_identity(filt: Filter) -> dict[str, Any] | None:
    identity = getattr(filt, "model_identity", None)
    return identity() if callable(identity) else None


def _run_samples(
    filt: Scorer, pool: Pool, ctx: ScoringContext, work: Path, progress: bool, engine: ScoringEngine
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    names = term_names(filt)
    shards = pool.shards
    if not shards:
        raise PluginError(f"filter {filt.name!r} needs the pool's shards, but {pool.shards_dir} has none")
    pool.validate()  # results are aligned by uid: a duplicate uid would make that ambiguous
    work.mkdir(parents=True, exist_ok=True)
    todo = [s for s in shards if not work_table_path(work, s).exists()]
    stats = SampleStats()
    if todo:  # every engine writes the same per-shard work tables
        stats.add(engine.score_shards(filt, todo, ctx, work, progress))
    # align the shard results to metadata order by uid
    pool_uids = pool.uids()
    order = uid_order(pool_uids)
    sorted_uids = pool_uids[order]
    out = {t: np.full(len(pool_uids), np.nan) for t in names}
    filled = np.zeros(len(pool_uids), dtype=bool)
    unknown = 0
    for shard in shards:
        part = pq.read_table(work_table_path(work, shard))
        if part.num_rows == 0:
            continue
        arr = uids_to_array(part.column("uid"), where=f"{work / shard.stem}.parquet")
        pos = find_uids(sorted_uids, arr)
        ok = pos >= 0
        unknown += int((~ok).sum())
        rows = order[pos[ok]]
        first = ~filled[rows]  # a uid met twice in the shards: the first occurrence wins
        rows, sel = rows[first], np.nonzero(ok)[0][first]
        for t in names:
            out[t][rows] = part.column(t).to_numpy()[sel]
        filled[rows] = True
    info = {
        "missing": int(np.count_nonzero(np.isnan(out[names[0]]))),
        "not_in_shards": int((~filled).sum()),
        "unknown_uids_in_shards": unknown,
        "sample_stats": stats.as_dict() if todo else None,
    }
    if info["missing"] or info["unknown_uids_in_shards"]:  # one line per pass; the record has the counts
        damage = stats.summary()
        log.warning(
            "score %s: %d of %d rows have no score (NaN, never selected): %d not found in the shards, "
            "%d without a decodable image; %d shard samples not in the metadata%s",
            filt.name, info["missing"], len(pool_uids), info["not_in_shards"],
            info["missing"] - info["not_in_shards"], unknown, f"; skipped {damage}" if damage else "",
        )
    elif damage := stats.summary():  # damage that cost no row (e.g. a corrupt shard tail of repeats)
        log.warning("score %s: skipped %s", filt.name, damage)
    return out, info


def pool_input_fingerprint(pool: Pool, filt: Filter) -> str:
    """What of the pool a filter reads: the metadata, and the shards too for an image/caption scorer."""
    if isinstance(filt, Scorer) and type(filt).uses_samples():
        return f"{pool.fingerprint()}+{pool.shards_fingerprint()}"
    return pool.fingerprint()


def score_record(filt: Filter, ctx: ScoringContext) -> dict[str, Any]:
    """The identity of a filter's score table over ``ctx.pool`` (its ``key`` names the cached table)."""
    return _identify(filt, ctx, ctx.pool, ())[0]


# a dependency as identified before it is computed: its filter and its record
_Dependency = tuple[Filter, dict[str, Any]]


def _identify(filt: Filter, ctx: ScoringContext, pool: Pool,
              stack: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, _Dependency]]:
    """A filter's record and, by name, the filters it depends on with theirs (recursively identified,
    cycles refused); nothing is computed."""
    deps: dict[str, _Dependency] = {}
    path = (*stack, filt.name)
    for name in call_plugin(filt, "dependencies", "", ctx):
        if name in path:
            raise PluginError(f"filter {filt.name!r}: dependency cycle {' -> '.join((*path, name))}")
        dep = instantiate(name, ctx)
        deps[name] = (dep, _identify(dep, ctx, pool, path)[0])
    return _record(filt, ctx, pool_input_fingerprint(pool, filt), {n: r["key"] for n, (_, r) in deps.items()}), deps


def _record(filt: Filter, ctx: ScoringContext, pool_fp: str, depends: dict[str, str]) -> dict[str, Any]:
    settings = filt.settings()
    model_fp = _model_fingerprint(filt, ctx)
    code_fp = code_fingerprint(filt)
    record = {
        "scorer": filt.name,
        "settings": settings,
        "model_fingerprint": model_fp,
        "model": _model_identity(filt),  # after the fingerprint: a scorer may load its model for it
        "pool_fingerprint": pool_fp,
        "code_fingerprint": code_fp,
        "numerics": numerics.mode(numerics.INFERENCE_THREADS),
        "kind": type(filt).kind(),
        "terms": list(term_names(filt)),
        "key": cache_key(filt.name, settings, model_fp, pool_fp, code_fp, depends),
    }
    if depends:
        record["depends_on"] = dict(depends)
    return record


def _pool_uid_strings(pool: Pool) -> pa.Array:
    return pa.concat_arrays(
        [c for p in pool.metadata_files for c in pq.read_table(p, columns=["uid"]).column("uid").chunks]
    )


def compute_many(
    pool: Pool,
    filters: list[Filter],
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> list[Terms]:
    """Terms of several filters over the pool: cached tables are read back, the remaining metadata
    filters share one pass over the metadata, model scorers run over the shards one by one.

    ``engine`` (None: ``ctx.engine``) chooses the engine once for the whole call, dependencies
    included. The tables are the same on every engine, so the engine is not part of the cache key.
    """
    settings = engine if engine is not None else ctx.engine
    if not isinstance(settings, EngineSettings):
        raise TypeError(f"engine must be an EngineSettings, got {type(settings).__name__} {settings!r}")
    return _compute(pool, filters, ctx, cache_dir, progress, make_engine(settings), ())


def _compute(pool: Pool, filters: Sequence[Filter], ctx: ScoringContext, cache_dir: str | Path | None,
             progress: bool, engine: ScoringEngine, stack: tuple[str, ...]) -> list[Terms]:
    results: list[Terms | None] = [None] * len(filters)
    pending: list[tuple[int, Filter, dict[str, Any], Path | None]] = []
    for i, filt in enumerate(filters):
        record, deps = _identify(filt, ctx, pool, stack)
        names = term_names(filt)
        use_cache = cache_dir is not None and getattr(type(filt), "cache", True)
        path = Path(cache_dir) / f"{filt.name}-{record['key']}.parquet" if use_cache else None
        cached = _read_cached(path, record, len(pool)) if path is not None and path.exists() else None
        if cached is not None:
            stored, table = cached
            record.update({k: v for k, v in stored.items() if k not in record})
            record["cached"] = True
            results[i] = Terms(filt, {t: table.column(t).to_numpy() for t in names}, record, path)
            continue
        if deps:  # their tables first (cached ones read back), handed over before setup()
            dep_cache = cache_dir if cache_dir is not None else ctx.cache_dir
            got = _compute(pool, [d for d, _ in deps.values()], ctx, dep_cache, progress, engine,
                           (*stack, filt.name))
            filt.bind_dependencies({n: DependencyScores(n, t.record["key"], t.terms, t.combined())
                                    for n, t in zip(deps, got, strict=True)})
        if isinstance(filt, Scorer) and type(filt).uses_samples():
            work = (
                Path(cache_dir) / f"{filt.name}-{record['key']}.work"
                if cache_dir is not None
                else Path(tempfile.mkdtemp(prefix=f"score-{filt.name}-"))
            )
            terms, info = _run_samples(filt, pool, ctx, work, progress, engine)
            record.update(info)
            results[i] = _finish(pool, filt, terms, record, path)
            shutil.rmtree(work, ignore_errors=True)
        else:
            pending.append((i, filt, record, path))
    if pending:
        outs = engine.score_metadata([f for _, f, _, _ in pending], pool, ctx)
        for (i, filt, record, path), terms in zip(pending, outs, strict=True):
            record["missing"] = 0
            results[i] = _finish(pool, filt, terms, record, path)
    return [r for r in results if r is not None]


def _read_cached(path: Path, record: dict[str, Any], rows: int) -> tuple[dict[str, Any], pa.Table] | None:
    """A cached table if it is readable and is what its name says (same key, every row and term);
    None, with a warning, otherwise: a damaged or foreign cache entry is recomputed, never used."""
    try:
        stored = json.loads((pq.read_schema(path).metadata or {}).get(RECORD_KEY, b"{}"))
        table = pq.read_table(path, columns=list(record["terms"]))
        problem = ("its record is for another key" if stored.get("key") != record["key"]
                   else f"it has {table.num_rows} rows, the pool {rows}" if table.num_rows != rows else "")
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        problem = f"unreadable ({type(exc).__name__}: {exc})"
    if problem:
        log.warning("score cache %s: %s; recomputing it", path, problem)
        return None
    return stored, table


def _finish(pool: Pool, filt: Filter, terms: dict[str, np.ndarray], record: dict[str, Any], path: Path | None) -> Terms:
    record["rows"] = int(len(next(iter(terms.values()))))
    record["cached"] = False
    if path is not None:
        uid_col = _pool_uid_strings(pool)
        if len(uid_col) != record["rows"]:
            raise PluginError(f"filter {filt.name!r}: {record['rows']} rows scored, pool has {len(uid_col)}")
        table = pa.table({"uid": uid_col, **terms})
        table = table.replace_schema_metadata({RECORD_KEY: json.dumps(record, default=_json_default).encode()})
        atomic_write_table(table, path)
    return Terms(filt, terms, record, path)


def compute_terms(
    pool: Pool,
    scorer_name: str,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    progress: bool = True,
    filt: Filter | None = None,
    engine: EngineSettings | None = None,
) -> Terms:
    """One filter's terms over the pool (cached); what selection uses (no uid strings held)."""
    filt = filt if filt is not None else instantiate(scorer_name, ctx)
    return compute_many(pool, [filt], ctx, cache_dir, progress, engine)[0]


def score(
    pool: Pool,
    scorer_name: str,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> ScoreTable:
    """The score table of one filter over the pool: uid + one column per term (record in ``.attrs``)."""
    t = compute_terms(pool, scorer_name, ctx, cache_dir, progress, engine=engine)
    uid = _pool_uid_strings(pool)
    frame = pd.DataFrame({"uid": pd.Series(uid.to_pandas(types_mapper=pd.ArrowDtype))})
    frame["uid"] = frame["uid"].astype("string[pyarrow]")
    for name, arr in t.terms.items():
        frame[name] = arr
    frame.attrs["record"] = t.record
    return frame


def read_score_table(path: str | Path) -> ScoreTable:
    """A cached score table with its record in ``.attrs["record"]``."""
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    frame.attrs["record"] = json.loads(meta.get(RECORD_KEY, b"{}"))
    return frame
