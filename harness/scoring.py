"""Scoring engine: runs a filter over a pool and writes a cached score table.

- metadata scorers and predicates run vectorised, one metadata file at a time;
- model scorers run batched over the shards (tqdm progress), one partial parquet per shard in a
  work directory, so an interrupted run resumes at the next unfinished shard;
- the finished table is ``<cache_dir>/<scorer>-<key>.parquet``, with ``key`` a hash of
  (scorer, settings, model fingerprint, pool fingerprint, plugin file hash); rows follow the pool's
  metadata order.

Score table contract (docs/architecture.md): a ``uid`` column and one float column per term; the
schema metadata key ``b"harness"`` holds the record as JSON (scorer, settings, model_fingerprint,
pool_fingerprint, code_fingerprint, plus kind, rows, missing). A predicate's table has one term, ``keep`` (1.0/0.0).

NaN is allowed in exactly one case: a sample whose image is missing or undecodable in the shards
(model scorers) gets NaN in every term, is counted in ``record["missing"]`` and is never selected.
A scorer that returns NaN/inf for a sample it did score, or the wrong number of rows, is an error
naming the plugin and the term.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness import numerics
from harness.plugins import Filter, PluginError, Predicate, Scorer, ScoringContext, instantiate
from harness.pool import (
    MetadataBatch,
    Pool,
    PoolError,
    Sample,
    SampleStats,
    decoded_batch_bytes,
    find_uids,
    image_bytes,
    iter_shard_samples,
    uid_order,
    uids_to_array,
)
from harness.stages import atomic_path

ENGINE_VERSION = 1
RECORD_KEY = b"harness"
KEEP_TERM = "keep"
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


def cache_key(name: str, settings: dict[str, Any], model_fp: str, pool_fp: str, code_fp: str = "") -> str:
    blob = json.dumps(
        {"scorer": name, "settings": settings, "model": model_fp, "pool": pool_fp, "code": code_fp,
         "v": ENGINE_VERSION, "numerics": numerics.mode()},  # pinned or native kernels give other bits
        sort_keys=True,
        default=_json_default,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _check_terms(
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


def _call(filt: Filter, method: str, where: str, *args: Any) -> Any:
    """Call a plugin method; an exception from the plugin becomes a PluginError naming it and where."""
    try:
        return getattr(filt, method)(*args)
    except (PluginError, PoolError, MemoryError):
        raise
    except Exception as exc:
        at = f" ({where})" if where else ""
        raise PluginError(f"filter {filt.name!r}: {method}() raised {type(exc).__name__}: {exc}{at}") from exc


def combine_terms(filt: Filter, frame: pd.DataFrame) -> np.ndarray:
    """The scorer's combined score, validated (NaN only where every term is NaN)."""
    assert isinstance(filt, Scorer)
    out = np.asarray(_call(filt, "combine", "", frame), dtype=np.float64).reshape(-1)
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
        _call(filt, "setup", "", ctx)
        return str(_call(filt, "fingerprint", "", ctx))


def _model_identity(filt: Filter) -> dict[str, Any] | None:
    identity = getattr(filt, "model_identity", None)
    return identity() if callable(identity) else None


def _term_names(filt: Filter) -> tuple[str, ...]:
    return (KEEP_TERM,) if isinstance(filt, Predicate) else tuple(type(filt).terms)


# ---------------------------------------------------------------------------------------------
# the engine


def _metadata_out(filt: Filter, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
    where = Path(batch.path).name
    if isinstance(filt, Predicate):
        keep = np.asarray(_call(filt, "keep", where, batch, ctx)).reshape(-1)
        if keep.shape[0] != len(batch):
            raise PluginError(f"filter {filt.name!r}: keep() gave {keep.shape[0]} values for {len(batch)} rows ({where})")
        if keep.dtype != bool:
            raise PluginError(f"filter {filt.name!r}: keep() must return booleans, got {keep.dtype} ({where})")
        return {KEEP_TERM: keep.astype(np.float64)}
    out = _call(filt, "score_metadata", where, batch, ctx)
    return _check_terms(filt, out, len(batch), _term_names(filt), where)


def _run_metadata(filters: list[Filter], pool: Pool, ctx: ScoringContext) -> list[dict[str, np.ndarray]]:
    """Every metadata filter in ONE pass over the metadata files (each file is read once)."""
    cols = list(dict.fromkeys(c for f in filters for c in type(f).needs.columns))
    feats = list(dict.fromkeys(c for f in filters for c in type(f).needs.features))
    total = len(pool)
    # filled in place, file by file: no per-file float64 copies to concatenate afterwards
    results: list[dict[str, np.ndarray]] = [{t: np.empty(total) for t in _term_names(f)} for f in filters]
    for f in filters:
        if isinstance(f, Scorer):
            _call(f, "setup", "", ctx)
    for batch in pool.iter_metadata(cols, feats):
        lo, hi = batch.offset, batch.offset + len(batch)
        if hi > total:
            raise PluginError(f"{batch.path}: the metadata grew while it was read ({hi} > {total} rows)")
        for f, acc in zip(filters, results, strict=True):
            out = _metadata_out(f, batch, ctx)
            for t, arr in acc.items():
                arr[lo:hi] = out[t]
    return results


def _shard_total(shard: Path) -> int | None:
    stats = shard.with_name(shard.stem + "_stats.json")
    try:
        return int(json.loads(stats.read_text())["successes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _score_shard(
    filt: Scorer, shard: Path, ctx: ScoringContext, names: tuple[str, ...], stats: SampleStats, bar: Any
) -> pa.Table:
    needs = type(filt).needs
    uids: list[str] = []
    cols: dict[str, list[np.ndarray]] = {t: [] for t in names}
    batch: list[Sample] = []

    def flush() -> None:
        if not batch:
            return
        where = f"shard {shard.name}, samples {batch[0].uid}..{batch[-1].uid}"
        out = _check_terms(filt, _call(filt, "score_samples", where, list(batch), ctx), len(batch), names, where)
        uids.extend(s.uid for s in batch)
        for t in names:
            cols[t].append(out[t])
        bar.update(len(batch))
        batch.clear()

    no_image: list[str] = []
    budget, held = decoded_batch_bytes(), 0  # decoded pixels waiting in the batch stay bounded
    for s in iter_shard_samples(shard, decode_images=needs.images, stats=stats):
        if needs.images and s.image is None:
            no_image.append(s.uid)  # scored NaN below, never selected
            bar.update(1)
            continue
        batch.append(s)
        held += image_bytes(s.image) if s.image is not None else 0
        if len(batch) >= ctx.batch_size or held >= budget:
            flush()
            held = 0
    flush()
    data: dict[str, Any] = {"uid": pa.array(uids + no_image, pa.string())}
    for t in names:
        vals = np.concatenate(cols[t]) if cols[t] else np.empty(0)
        data[t] = np.concatenate([vals, np.full(len(no_image), np.nan)])
    return pa.table(data)


def _run_samples(
    filt: Scorer, pool: Pool, ctx: ScoringContext, work: Path, progress: bool, ray: Any = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from harness import console

    names = _term_names(filt)
    shards = pool.shards
    if not shards:
        raise PluginError(f"filter {filt.name!r} needs the pool's shards, but {pool.shards_dir} has none")
    pool.validate()  # results are aligned by uid: a duplicate uid would make that ambiguous
    work.mkdir(parents=True, exist_ok=True)
    todo = [s for s in shards if not (work / f"{s.stem}.parquet").exists()]
    stats = SampleStats()
    if todo and ray is not None:  # the Ray engine writes the same per-shard work tables
        from harness.scoring_ray import score_shards_ray

        stats.add(score_shards_ray(filt, todo, ctx, names, work, ray, progress))
    elif todo:
        _call(filt, "setup", "", ctx)
        totals = [_shard_total(s) for s in todo]
        total = sum(totals) if all(t is not None for t in totals) else None
        bar = console.progress(total=total, desc=f"score {filt.name}", unit="sample", enabled=progress)
        try:
            for shard in todo:
                part = _score_shard(filt, shard, ctx, names, stats, bar)
                _atomic_write_table(part, work / f"{shard.stem}.parquet")  # resume point
        finally:
            bar.close()
    # align the shard results to metadata order by uid
    pool_uids = pool.uids()
    order = uid_order(pool_uids)
    sorted_uids = pool_uids[order]
    out = {t: np.full(len(pool_uids), np.nan) for t in names}
    filled = np.zeros(len(pool_uids), dtype=bool)
    unknown = 0
    for shard in shards:
        part = pq.read_table(work / f"{shard.stem}.parquet")
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
    return _record(filt, ctx, pool_input_fingerprint(ctx.pool, filt))


def _record(filt: Filter, ctx: ScoringContext, pool_fp: str) -> dict[str, Any]:
    settings = filt.settings()
    model_fp = _model_fingerprint(filt, ctx)
    code_fp = code_fingerprint(filt)
    return {
        "scorer": filt.name,
        "settings": settings,
        "model_fingerprint": model_fp,
        "model": _model_identity(filt),  # after the fingerprint: a scorer may load its model for it
        "pool_fingerprint": pool_fp,
        "code_fingerprint": code_fp,
        "numerics": numerics.mode(),
        "kind": type(filt).kind(),
        "terms": list(_term_names(filt)),
        "key": cache_key(filt.name, settings, model_fp, pool_fp, code_fp),
    }


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
    engine: str | None = None,
    ray_address: str | None = None,
    ray_workers: int | None = None,
) -> list[Terms]:
    """Terms of several filters over the pool: cached tables are read back, the remaining metadata
    filters share one pass over the metadata, model scorers run over the shards one by one.

    ``engine="ray"`` computes them on Ray (harness/scoring_ray.py): ``ray_address`` None starts a local
    instance, ``ray_workers`` None uses every CPU (GPU on CUDA). The tables are the same, so the engine
    is not part of the cache key.
    """
    # unset engine options come from the context (what `--engine ray` sets for a whole run)
    engine = engine or ctx.engine
    ray_address = ray_address if ray_address is not None else ctx.ray_address
    ray_workers = ray_workers if ray_workers is not None else ctx.ray_workers
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown scoring engine {engine!r}; choose 'local' or 'ray'")
    ray = None
    if engine == "ray":
        from harness.scoring_ray import RayOptions

        ray = RayOptions(address=ray_address, workers=ray_workers)
    results: list[Terms | None] = [None] * len(filters)
    pending: list[tuple[int, Filter, dict[str, Any], Path | None]] = []
    for i, filt in enumerate(filters):
        record = _record(filt, ctx, pool_input_fingerprint(pool, filt))
        names = _term_names(filt)
        use_cache = cache_dir is not None and getattr(type(filt), "cache", True)
        path = Path(cache_dir) / f"{filt.name}-{record['key']}.parquet" if use_cache else None
        cached = _read_cached(path, record, len(pool)) if path is not None and path.exists() else None
        if cached is not None:
            stored, table = cached
            record.update({k: v for k, v in stored.items() if k not in record})
            record["cached"] = True
            results[i] = Terms(filt, {t: table.column(t).to_numpy() for t in names}, record, path)
        elif isinstance(filt, Scorer) and type(filt).uses_samples():
            work = (
                Path(cache_dir) / f"{filt.name}-{record['key']}.work"
                if cache_dir is not None
                else Path(tempfile.mkdtemp(prefix=f"score-{filt.name}-"))
            )
            # pinned kernels and threads on CPU: the same scores on every machine (harness/numerics.py);
            # Ray's actors pin themselves
            with numerics.inference(ctx.device) if ray is None else contextlib.nullcontext():
                terms, info = _run_samples(filt, pool, ctx, work, progress, ray)
            record.update(info)
            results[i] = _finish(pool, filt, terms, record, path)
            shutil.rmtree(work, ignore_errors=True)
        else:
            pending.append((i, filt, record, path))
    if pending:
        if ray is not None:
            from harness.scoring_ray import score_metadata_ray

            outs = score_metadata_ray([f for _, f, _, _ in pending], pool, ctx, ray)
        else:
            outs = _run_metadata([f for _, f, _, _ in pending], pool, ctx)
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
        _atomic_write_table(table, path)
    return Terms(filt, terms, record, path)


def compute_terms(
    pool: Pool,
    scorer_name: str,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    progress: bool = True,
    filt: Filter | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    ray_workers: int | None = None,
) -> Terms:
    """One filter's terms over the pool (cached); what selection uses (no uid strings held)."""
    filt = filt if filt is not None else instantiate(scorer_name, ctx)
    return compute_many(pool, [filt], ctx, cache_dir, progress, engine, ray_address, ray_workers)[0]


def score(
    pool: Pool,
    scorer_name: str,
    ctx: ScoringContext,
    cache_dir: str | Path | None,
    progress: bool = True,
    engine: str | None = None,
    ray_address: str | None = None,
    ray_workers: int | None = None,
) -> ScoreTable:
    """The score table of one filter over the pool: uid + one column per term (record in ``.attrs``)."""
    t = compute_terms(pool, scorer_name, ctx, cache_dir, progress, engine=engine, ray_address=ray_address,
                      ray_workers=ray_workers)
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
