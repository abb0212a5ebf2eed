"""The Ray engine for scoring: the same score tables as the local engine, computed on a Ray cluster.

- model scorers: Ray Data reads the pool's tar shards as raw bytes (decoding is the scorer's work, as
  in the local engine) and an actor pool scores them, one set-up scorer (one model) per actor; on
  CUDA the actors share the GPUs (a fraction each), since each decodes its own images on one CPU. A
  dead actor is restarted and its batches retried, so a killed worker costs time, not rows. The
  driver gathers the rows of each shard and writes the same per-shard work table the local engine
  writes (scored samples in tar order, then the samples without a decodable image, NaN);
  harness.scoring's alignment then makes the final table. Shards finish (and are written,
  atomically) as they complete: an interrupted Ray run resumes like a local one.
- metadata scorers and predicates: set up once on the driver (an ``image_based`` k-means is fitted
  there, once, however many files the pool has), then shipped set-up to one Ray task per metadata
  file, each a vectorised batch over that file's parquet rows and npz features, concatenated in file
  order.

Why a small datasource instead of ``ray.data.read_webdataset(decoder=None)``: Ray's reader raises on a
truncated tar, a duplicated member or non-contiguous keys, where the local reader
(``harness.pool.iter_shard_raw``) keeps what it could read and counts the damage. The datasource below
is a Ray Data ``FileBasedDatasource`` whose read tasks call that very reader, so both engines see the
same samples and count the same corrupt items. The shards must therefore be on a filesystem every node
mounts (NFS, Lustre, a bucket mounted with s3fs/gcsfuse), which is how DataComp pools are kept anyway.

Ray is an optional extra: ``pip install '.[ray]'``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harness import numerics
from harness.engines.base import (
    EngineSettings,
    atomic_write_table,
    check_terms,
    metadata_inputs,
    metadata_terms,
    set_up,
    term_names,
    work_table_path,
)
from harness.plugins import Filter, Scorer, ScoringContext
from harness.pool import (
    IMAGE_EXTS,
    Pool,
    Sample,
    SampleStats,
    iter_shard_raw,
    sample_from_raw,
)

# rows of the shard reader: one per sample, plus one "end" row per shard (its row count and any error)
_READ_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("index", pa.int64()),
        ("end", pa.bool_()),
        ("error", pa.string()),
        ("json", pa.binary()),
        ("txt", pa.binary()),
        ("img", pa.binary()),
    ]
)
_READ_CHUNK = 256  # rows per block yielded by the reader


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # an optional extra: say how to get it
        raise RuntimeError("the Ray engine needs Ray: pip install '.[ray]' (or 'ray[data]>=2.40')") from exc
    return ray


def init_ray(options: EngineSettings) -> Any:
    """Connect to (or start) Ray once per process; returns the ``ray`` module."""
    ray = _require_ray()
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            cpus = max(options.workers or (os.cpu_count() or 1), 1)
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = False  # the engine keeps its own tqdm bar
    return ray


def _workers(ray: Any, options: EngineSettings) -> int:
    if options.workers is not None:  # EngineSettings refuses workers < 1
        return options.workers
    return max(int(ray.cluster_resources().get("CPU", 1)), 1)


def gpu_share(ray: Any, options: EngineSettings) -> tuple[int, float]:
    """(actors, GPU fraction per actor) for a CUDA scorer.

    An actor decodes its images on its own CPU, so one actor per GPU would leave the GPU waiting on
    JPEG decoding; the default is up to 4 actors per GPU (each with its own model copy), packed evenly.
    """
    n_gpu = int(ray.cluster_resources().get("GPU", 0))
    if n_gpu < 1:
        raise RuntimeError("the scoring device is CUDA but the Ray cluster has no GPUs; use --device cpu")
    workers = options.workers or max(1, min(_workers(ray, EngineSettings("ray")), 4 * n_gpu))
    per_gpu = -(-workers // n_gpu)
    return workers, 1.0 / per_gpu


def _ship_by_value(filt: Filter) -> None:
    """A plugin loaded from a user file (--plugins f.py) is not importable on the workers: send its code."""
    mod = sys.modules.get(type(filt).__module__)
    if mod is None or mod.__name__ == "__main__":
        return
    top = mod.__name__.split(".")[0]
    if top == "harness":  # harness.baselines included: importing harness maps it on every worker
        return
    try:
        importable = importlib.util.find_spec(mod.__name__) is not None
    except (ImportError, ValueError):
        importable = False
    if not importable or top == "harness_user_plugins":
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(mod)


def _fresh_copy(filt: Filter) -> Filter:
    """The filter as constructed, without what setup() loaded (each actor loads its own model onto its
    own device instead of receiving the driver's through the object store), with the dependency scores
    the engine handed it; the filter itself when it cannot be rebuilt from its options."""
    try:
        fresh = type(filt)(**filt.options)
        if fresh.settings() == filt.settings():
            fresh.bind_dependencies(filt.dependency_scores())
            return fresh
    except Exception:  # a plugin whose constructor does not take its options back
        pass
    return filt


# ---------------------------------------------------------------------------------------------
# the shard reader (a Ray Data datasource)


def _shard_datasource(paths: list[str], images: bool) -> Any:
    from ray.data.datasource import FileBasedDatasource

    class PoolShards(FileBasedDatasource):
        """Tar shards as raw sample rows (harness.pool.iter_shard_raw), plus one end row per shard."""

        _FILE_EXTENSIONS = ["tar"]

        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            # the local reader opens the file itself: it also checks the end of the archive by seeking
            stats = SampleStats()
            name = Path(path).name
            rows: list[dict[str, Any]] = []
            count = 0
            for key, raw in iter_shard_raw(path, stats):
                img = next((raw[e] for e in IMAGE_EXTS if e in raw), None) if images else None
                rows.append({"key": key, "shard": name, "index": count, "end": False, "error": "",
                             "json": raw.get("json"), "txt": raw.get("txt"), "img": img})
                count += 1
                if len(rows) >= _READ_CHUNK:
                    yield pa.Table.from_pylist(rows, schema=_READ_SCHEMA)
                    rows = []
            end = {"corrupt_shards": stats.corrupt_shards, "errors": stats.errors}
            rows.append({"key": "", "shard": name, "index": count, "end": True, "error": json.dumps(end),
                         "json": None, "txt": None, "img": None})
            yield pa.Table.from_pylist(rows, schema=_READ_SCHEMA)

    return PoolShards(paths)


# ---------------------------------------------------------------------------------------------
# the scoring actor


class _ShardScorer:
    """A Ray actor: one set-up scorer that scores batches of raw shard rows.

    Output, one row per input row: uid, shard, index, status ("ok", "no_image", "corrupt" or "end"),
    notes (what the reader met, JSON list; for an end row the shard's own record) and one float column
    per term (NaN unless "ok").
    """

    def __init__(self, filt: Scorer, ctx: ScoringContext, terms: tuple[str, ...]):
        self.filt, self.ctx, self.terms = filt, ctx, terms
        self.images = type(filt).needs.images
        if str(ctx.device).split(":")[0] == "cpu":  # the local engine's kernels and threads (harness/numerics.py)
            numerics.init_worker(numerics.INFERENCE_THREADS)
        with numerics.inference(ctx.device):  # the local engine sets up inside it too
            filt.setup(ctx)  # once per actor, before its first batch

    def _sample(self, r: dict[str, Any], notes: list[str]) -> tuple[str, Sample | None]:
        """(status, sample) under the reader's own rules (harness.pool.sample_from_raw)."""
        raw = {k: r[k] for k in ("json", "txt") if r[k] is not None}
        if r["img"] is not None:
            raw["jpg"] = r["img"]  # the datasource kept the first image member, whatever its extension
        stats = SampleStats()
        sample = sample_from_raw(r["key"], raw, r["shard"], self.images, stats)
        notes.extend(stats.errors)
        if sample is None:
            return "corrupt", None
        status = "no_image" if self.images and sample.image is None else "ok"
        return (status + "_bad_caption" if stats.bad_captions else status), sample

    def __call__(self, batch: pa.Table) -> pd.DataFrame:
        rows = batch.to_pylist()
        n = len(rows)
        uid, status, notes = [""] * n, ["end"] * n, [""] * n
        samples: list[Sample] = []
        at: list[int] = []  # row of each scored sample in the batch
        for i, r in enumerate(rows):
            if r["end"]:
                notes[i] = r["error"]
                continue
            msgs: list[str] = []
            status[i], sample = self._sample(r, msgs)
            notes[i] = json.dumps(msgs) if msgs else ""
            if sample is None:
                continue
            uid[i] = sample.uid
            if status[i].startswith("ok"):
                samples.append(sample)
                at.append(i)
        out = pd.DataFrame({"uid": uid, "shard": batch.column("shard").to_pylist(),
                            "index": batch.column("index").to_numpy(), "status": status, "notes": notes})
        for t in self.terms:
            out[t] = np.full(n, np.nan)
        if samples:
            where = f"ray batch, shard {samples[0].shard}, samples {samples[0].uid}..{samples[-1].uid}"
            with numerics.inference(self.ctx.device):  # on this call's thread: the pinned matrix products
                scored = self.filt.score_samples(samples, self.ctx)
            got = check_terms(self.filt, scored, len(samples), self.terms, where)
            for t in self.terms:
                out.loc[at, t] = got[t]
        return out


# ---------------------------------------------------------------------------------------------
# model scorers


class _ShardCollector:
    """Gathers the scored rows of each shard; writes its work table once every row has arrived."""

    def __init__(self, shards: list[Path], work: Path, terms: tuple[str, ...]):
        self.by_name = {s.name: s for s in shards}
        self.work, self.terms = work, terms
        self.parts: dict[str, list[pd.DataFrame]] = {}
        self.rows: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.stats: dict[str, SampleStats] = {}  # per finished shard

    def add(self, frame: pd.DataFrame) -> int:
        """Takes one output batch; returns how many samples it carried (for the progress bar)."""
        for name, part in frame.groupby("shard", sort=False):
            name = str(name)
            if name not in self.by_name:
                raise RuntimeError(f"Ray engine: rows of an unknown shard {name!r} came back")
            self.parts.setdefault(name, []).append(part)
            self.rows[name] = self.rows.get(name, 0) + len(part)
            end = part[part["status"] == "end"]
            if len(end):
                self.expected[name] = int(end["index"].iloc[0]) + 1  # the samples and the end row
            if self.rows[name] == self.expected.get(name):
                self._finish(name)
        return int((frame["status"] != "end").sum())

    def _finish(self, name: str) -> None:
        rows = pd.concat(self.parts.pop(name)).sort_values("index", kind="stable")
        status = rows["status"]
        if (status == "end").sum() != 1 or rows["index"].nunique() != len(rows):
            raise RuntimeError(f"Ray engine: shard {name} came back with duplicated or missing rows")
        stats = SampleStats(shards=1)
        stats.samples = int((~status.isin(["end", "corrupt"])).sum())
        stats.corrupt_samples = int((status == "corrupt").sum())
        stats.undecodable_images = int(status.str.startswith("no_image").sum())
        stats.bad_captions = int(status.str.endswith("bad_caption").sum())
        for msgs in rows.loc[(status != "end") & (rows["notes"] != ""), "notes"]:
            for m in json.loads(msgs):
                stats.note(m)
        end = json.loads(rows.loc[status == "end", "notes"].iloc[0])
        stats.corrupt_shards = int(end["corrupt_shards"])
        for m in end["errors"]:
            stats.note(m)
        self.stats[name] = stats
        # the local engine's layout: scored samples in tar order, then those without an image (NaN)
        table = pd.concat([rows[status.str.startswith("ok")], rows[status.str.startswith("no_image")]])
        data: dict[str, Any] = {"uid": pa.array(table["uid"].tolist(), pa.string())}
        for t in self.terms:
            data[t] = table[t].to_numpy(dtype=np.float64)
        atomic_write_table(pa.table(data), work_table_path(self.work, Path(name)))

    def total_stats(self) -> SampleStats:
        total = SampleStats()
        for name in self.by_name:  # in shard order, as the local engine meets them
            if name in self.stats:
                total.add(self.stats[name])
        return total


@dataclass
class RayEngine:
    settings: EngineSettings = field(default_factory=lambda: EngineSettings("ray"))

    def score_shards(self, filt: Scorer, shards: list[Path], ctx: ScoringContext, work: Path,
                     progress: bool) -> SampleStats:
        """Score ``shards`` on Ray; writes each shard's work table, as the local engine does.

        Returns the counts of what the reader met (corrupt samples and shards, undecodable images, bad
        captions), as the local engine's SampleStats.
        """
        from harness import console

        options = self.settings
        ray = init_ray(options)
        if not shards:
            return SampleStats()
        terms = term_names(filt)
        gpu = str(ctx.device).startswith("cuda")
        workers, share = gpu_share(ray, options) if gpu else (_workers(ray, options), 0.0)
        _ship_by_value(filt)
        # a fresh Pool: no cached uid array (16 bytes a row) shipped to every actor
        actor_ctx = dataclasses.replace(ctx, pool=Pool(ctx.pool.root) if ctx.pool is not None else None)
        ds = ray.data.read_datasource(
            _shard_datasource([str(s) for s in shards], type(filt).needs.images),
            # reading raw bytes is light; a CPU held by a reader would starve the actors on a small node
            num_cpus=0,
            concurrency=workers,
        )
        scored = ds.map_batches(
            _ShardScorer,
            fn_constructor_args=(_fresh_copy(filt), actor_ctx, terms),
            batch_size=ctx.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            num_gpus=share,
            # Ray Data's actor defaults (max_restarts=-1, max_task_retries=-1) restart a dead worker and
            # retry its batch: the table still comes out whole (tests/scaleout kill one to check)
        )
        work.mkdir(parents=True, exist_ok=True)
        collector = _ShardCollector(shards, work, terms)
        bar = console.progress(desc=f"score {filt.name} (ray x{workers})", unit="sample", enabled=progress)
        try:
            for frame in scored.iter_batches(batch_size=None, batch_format="pandas"):
                bar.update(collector.add(frame))
        finally:
            bar.close()
        missing = [s.name for s in shards if s.name not in collector.stats]
        if missing:
            raise RuntimeError(f"Ray engine: shard(s) {missing[:5]} did not come back complete")
        return collector.total_stats()

    def score_metadata(self, filters: list[Filter], pool: Pool, ctx: ScoringContext) -> list[dict[str, np.ndarray]]:
        """Metadata scorers and predicates over the pool: one Ray task per metadata file, every filter in
        it, results concatenated in file order (what the local engine returns)."""
        options = self.settings
        ray = init_ray(options)
        # once, on the driver (the worker that holds the whole pool): what setup() prepares, such as
        # image_based's pool-wide k-means, travels with the filters to every task
        set_up(filters, ctx)
        for f in filters:
            _ship_by_value(f)
        files = pool.metadata_files
        offsets = np.concatenate([[0], np.cumsum(pool.file_rows())]).astype(int)
        filters_ref = ray.put(list(filters))
        ctx_ref = ray.put(dataclasses.replace(ctx, pool=Pool(pool.root)))  # without the cached uid array
        task = ray.remote(num_cpus=1, max_retries=options.max_retries)(_score_file)
        window = _workers(ray, options)
        futures: list[Any] = []
        pending: list[Any] = []
        for i, path in enumerate(files):
            if len(pending) >= window:  # at most `workers` files in flight
                _, pending = ray.wait(pending, num_returns=1)
            ref = task.remote(filters_ref, ctx_ref, str(path), int(offsets[i]))
            futures.append(ref)
            pending.append(ref)
        parts = ray.get(futures)
        out = []
        for j, f in enumerate(filters):
            names = term_names(f)
            out.append({t: np.concatenate([p[j][t] for p in parts]) if parts else np.empty(0) for t in names})
        return out


def _score_file(filters: list[Filter], ctx: ScoringContext, path: str, offset: int) -> list[dict[str, np.ndarray]]:
    """Every (set-up) filter over one metadata file (read once), validated as the local engine does;
    ``offset`` is the file's first row in the whole pool, as the local pass gives it."""
    cols, feats = metadata_inputs(filters)
    batch = ctx.pool.metadata_batch(Path(path), cols, feats, offset)
    return [metadata_terms(f, batch, ctx) for f in filters]
