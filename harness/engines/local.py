"""The local engine: every filter in this process.

- metadata scorers and predicates run vectorised, one metadata file at a time, all of them in ONE pass
  over the metadata files (each file is read once);
- a model scorer runs batched over the shards (tqdm progress), one work table per shard, written
  atomically as the shard finishes: an interrupted run resumes at the next unfinished shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from harness import numerics
from harness.engines.base import (
    EngineSettings,
    atomic_write_table,
    call_plugin,
    check_terms,
    metadata_inputs,
    metadata_terms,
    set_up,
    term_names,
    work_table_path,
)
from harness.plugins import Filter, PluginError, Scorer, ScoringContext
from harness.pool import Pool, Sample, SampleStats, decoded_batch_bytes, image_bytes, iter_shard_samples


@dataclass
class LocalEngine:
    settings: EngineSettings = field(default_factory=EngineSettings)

    def score_metadata(self, filters: list[Filter], pool: Pool, ctx: ScoringContext) -> list[dict[str, np.ndarray]]:
        cols, feats = metadata_inputs(filters)
        total = len(pool)
        # filled in place, file by file: no per-file float64 copies to concatenate afterwards
        results: list[dict[str, np.ndarray]] = [{t: np.empty(total) for t in term_names(f)} for f in filters]
        set_up(filters, ctx)
        for batch in pool.iter_metadata(cols, feats):
            lo, hi = batch.offset, batch.offset + len(batch)
            if hi > total:
                raise PluginError(f"{batch.path}: the metadata grew while it was read ({hi} > {total} rows)")
            for f, acc in zip(filters, results, strict=True):
                out = metadata_terms(f, batch, ctx)
                for t, arr in acc.items():
                    arr[lo:hi] = out[t]
        return results

    def score_shards(self, filt: Scorer, shards: list[Path], ctx: ScoringContext, work: Path,
                     progress: bool) -> SampleStats:
        from harness import console

        stats = SampleStats()
        names = term_names(filt)
        totals = [_shard_total(s) for s in shards]
        total = sum(t for t in totals if t is not None) if all(t is not None for t in totals) else None
        # pinned kernels and threads on CPU: the same scores on every machine (harness/numerics.py)
        with numerics.inference(ctx.device):
            set_up([filt], ctx)
            bar = console.progress(total=total, desc=f"score {filt.name}", unit="sample", enabled=progress)
            try:
                for shard in shards:
                    part = _score_shard(filt, shard, ctx, names, stats, bar)
                    atomic_write_table(part, work_table_path(work, shard))  # resume point
            finally:
                bar.close()
        return stats


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
        out = check_terms(filt, call_plugin(filt, "score_samples", where, list(batch), ctx), len(batch), names, where)
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
