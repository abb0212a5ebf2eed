"""``harness reshard``: a subset -> webdataset training shards, as DataComp's resharder writes them.

Output (``out_dir``)::

    {:08d}.tar            up to ``shard_size`` samples each; members ``<uid>-<j>.<ext>`` (j = 0..k-1
                          for a uid listed k times: that is how upsampling works), the input
                          sample's members (jpg, txt, json, ...) copied byte for byte
    {:08d}_stats.json     {"successes": <samples in that shard>}
    sample_ids.npy        a copy of the subset file
    meta.json             settings and counts (processed_count, output_count, output_shard_count, ...)

Input shards are split among ``workers`` processes, each streaming its shards and writing its own
output shards; the shards are numbered afterwards in (worker, order) order so the result does not
depend on timing. Corrupt samples (no json, bad uid) and unreadable shards are skipped and counted.

A uid met more than once in the input (twice in a shard, or in two shards, possibly with different
images) is written once -- with the subset's multiplicity -- from its first occurrence in shard name
order, and every repeat is reported with both shard names (a warning; ``duplicates`` in meta.json).
DataComp's resharder (resharder.py, ``process_example``) writes each occurrence, so its output count
can exceed the subset and its "not found in the input" count go negative; the scoring engine here
also keeps the first occurrence. Across workers, the later worker's copies are removed from its
temporary shards before they are numbered (workers hold contiguous runs of the sorted shards).
"""

from __future__ import annotations

import array
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.expressions import load_subset
from harness.pool import (
    UID_DTYPE,
    Pool,
    SampleStats,
    checked_sample_json,
    iter_shard_raw,
    uid_ranges,
    uid_to_pair,
)

SHARD_FORMAT = "{:08d}.tar"
STATS_FORMAT = "{:08d}_stats.json"
_TMP_PREFIX = ".reshard-w"
log = logging.getLogger("harness.reshard")


@dataclass
class _Task:
    worker: int
    shards: list[str]
    subset: str
    out_dir: str
    shard_size: int
    attempt: str = ""  # unique per reshard() call: a worker orphaned by a killed earlier call never
    #                    writes to a file name this call uses


class _ShardWriter:
    """Writes <tmp>-<i>.tar files of at most ``maxcount`` samples each."""

    def __init__(self, out_dir: Path, worker: int, maxcount: int, attempt: str = ""):
        self.out_dir, self.worker, self.maxcount, self.attempt = out_dir, worker, maxcount, attempt
        self.tar: tarfile.TarFile | None = None
        self.count = 0
        self.written: list[tuple[str, int]] = []  # (temp file name, samples)
        self.mtime = time.time()

    def _open(self) -> None:
        self._close()
        name = f"{_TMP_PREFIX}{self.attempt}{self.worker:04d}-{len(self.written):06d}.tar"
        self.tar = tarfile.open(self.out_dir / name, "w")  # noqa: SIM115 (closed in _close)
        self.written.append((name, 0))
        self.count = 0

    def _close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            name, _ = self.written[-1]
            self.written[-1] = (name, self.count)
            self.tar = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        try:
            if self.tar is None or self.count >= self.maxcount:
                self._open()
            assert self.tar is not None
            for ext, data in members.items():
                self.tar.addfile(_member(f"{key}.{ext}", len(data), self.mtime), io.BytesIO(data))
        except OSError as exc:  # e.g. a full disk: name the file being written
            raise self._failed(exc) from None
        self.count += 1

    def _failed(self, exc: OSError) -> OSError:
        name = self.written[-1][0] if self.written else "(no shard open)"
        return OSError(exc.errno, f"reshard: cannot write {self.out_dir / name}: {exc.strerror or exc}")

    def close(self) -> list[tuple[str, int]]:
        try:
            self._close()
        except OSError as exc:
            raise self._failed(exc) from None
        return self.written


def _member(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o444
    info.uname = info.gname = "bigdata"
    return info


def _work(task: _Task) -> dict[str, Any]:
    subset = load_subset(task.subset)
    stats = SampleStats()
    writer = _ShardWriter(Path(task.out_dir), task.worker, task.shard_size, task.attempt)
    processed = output = 0
    # a uid met again (same or a later shard of this worker) is not written again: taken[pos] marks the
    # subset row at pos as supplied (1 byte a subset row), by the shard recorded beside its position
    taken = np.zeros(len(subset), dtype=bool)
    positions, from_shard = array.array("q"), array.array("i")  # 12 bytes a written uid
    duplicates: list[tuple[str, int, int]] = []  # (uid, shard kept, shard skipped)
    for s_idx, shard in enumerate(task.shards):
        for key, raw in iter_shard_raw(shard, stats):
            meta = checked_sample_json(key, raw, Path(shard).name, stats)
            if meta is None:
                continue
            processed += 1
            uid = meta["uid"].lower()
            start, end = uid_ranges(subset, np.array([uid_to_pair(uid)], dtype=UID_DTYPE))
            pos, k = int(start[0]), int(end[0] - start[0])
            if k and taken[pos]:
                duplicates.append((uid, _shard_of(positions, from_shard, pos), s_idx))
                continue
            if k:
                taken[pos] = True
                positions.append(pos)
                from_shard.append(s_idx)
            for j in range(k):
                writer.write(f"{uid}-{j}", raw)
            output += k
    return {"worker": task.worker, "written": writer.close(), "processed": processed, "output": output,
            "stats": stats.as_dict(), "shards": [Path(p).name for p in task.shards],
            "positions": np.frombuffer(positions, dtype=np.int64) if positions else np.empty(0, np.int64),
            "from_shard": np.frombuffer(from_shard, dtype=np.int32) if from_shard else np.empty(0, np.int32),
            "duplicates": duplicates}


def _shard_of(positions: array.array, from_shard: array.array, pos: int) -> int:
    """The shard that supplied subset row ``pos`` (duplicates are rare: a linear search is fine)."""
    return int(from_shard[np.flatnonzero(np.frombuffer(positions, dtype=np.int64) == pos)[0]])


def _drop_keys(out: Path, written: list[tuple[str, int]], uids: set[str]) -> list[tuple[str, int]]:
    """Rewrite a worker's temporary shards without the samples of ``uids`` (keys ``<uid>-<j>``)."""
    kept_files: list[tuple[str, int]] = []
    for name, _ in written:
        path, tmp = out / name, out / (name + ".dedup")
        keys: set[str] = set()
        with tarfile.open(path) as src, tarfile.open(tmp, "w") as dst:
            for m in src:
                key = m.name.split(".", 1)[0]
                if key.rsplit("-", 1)[0] in uids:
                    continue
                keys.add(key)
                dst.addfile(m, src.extractfile(m))
        os.replace(tmp, path)
        if keys:
            kept_files.append((name, len(keys)))
        else:
            path.unlink()
    return kept_files


def _resolve_duplicates(out: Path, subset: np.ndarray, results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A uid met in shards of two workers is kept from the first shard in name order (the earlier
    worker: workers hold contiguous runs of the sorted shards); the later worker's copies are removed.
    Returns every duplicate met, within and across workers, with the shard names."""
    found: list[dict[str, str]] = []
    owner: np.ndarray | None = None  # per subset row: (worker, shard index) that supplied it, packed
    for w_idx, r in enumerate(results):
        names = r["shards"]
        found += [{"uid": u, "kept_from": names[a], "skipped_from": names[b]} for u, a, b in r["duplicates"]]
        pos, src = np.asarray(r["positions"], np.int64), np.asarray(r["from_shard"], np.int64)
        if owner is None:
            owner = np.full(len(subset), -1, dtype=np.int64)
        again = owner[pos] >= 0
        if again.any():
            drop = {f"{int(subset['f0'][p]):016x}{int(subset['f1'][p]):016x}" for p in pos[again]}
            for p, b in zip(pos[again], src[again], strict=True):
                w, a = divmod(int(owner[p]), 1 << 32)
                found.append({"uid": f"{int(subset['f0'][p]):016x}{int(subset['f1'][p]):016x}",
                              "kept_from": results[w]["shards"][a], "skipped_from": names[int(b)]})
            r["written"] = _drop_keys(out, r["written"], drop)
            r["output"] -= int(sum(_subset_count(subset, int(p)) for p in pos[again]))
        owner[pos[~again]] = (w_idx << 32) + src[~again]
    return found


def _subset_count(subset: np.ndarray, pos: int) -> int:
    """How many times the subset lists the uid whose first position is ``pos``."""
    hi, lo = subset["f0"], subset["f1"]
    end = pos + 1
    while end < len(subset) and hi[end] == hi[pos] and lo[end] == lo[pos]:
        end += 1
    return end - pos


def _split(shards: list[Path], workers: int) -> list[list[str]]:
    """Contiguous chunks of roughly equal size (by bytes), one per worker."""
    if not shards:
        return []
    workers = max(1, min(workers, len(shards)))
    sizes = np.array([max(1, s.stat().st_size) for s in shards], dtype=np.float64)
    bounds = np.searchsorted(np.cumsum(sizes), np.linspace(0, sizes.sum(), workers + 1)[1:-1], side="left")
    edges = [0, *[int(b) + 1 for b in bounds], len(shards)]
    chunks = [[str(s) for s in shards[a:b]] for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return chunks


def _clear_outputs(out: Path) -> None:
    for p in out.iterdir():
        if (
            p.name.startswith(_TMP_PREFIX)
            or p.name in ("meta.json", "sample_ids.npy")
            or (p.suffix == ".tar" and p.stem.isdigit())
            or (p.name.endswith("_stats.json") and p.name[:-11].isdigit())
        ):
            p.unlink()


def reshard(
    pool: Pool,
    subset_npy: str | Path,
    out_dir: str | Path,
    workers: int = 2,
    shard_size: int = 10000,
) -> dict[str, Any]:
    """Write the subset's samples (with multiplicity) as training shards; returns the meta dict."""
    t0 = time.perf_counter()
    subset_path = Path(subset_npy)
    subset = load_subset(subset_path)  # validates dtype and order before any work
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    shards = pool.shards
    if not shards:
        raise FileNotFoundError(f"{pool.shards_dir}: no .tar shards to reshard")
    attempt = f"{os.getpid()}-{time.time_ns()}-"
    tasks = [_Task(i, chunk, str(subset_path.resolve()), str(out), shard_size, attempt)
             for i, chunk in enumerate(_split(shards, workers))]
    try:
        if len(tasks) == 1:
            results = [_work(tasks[0])]
        else:
            with mp.get_context("spawn").Pool(len(tasks)) as procs:
                results = procs.map(_work, tasks, chunksize=1)
        results.sort(key=lambda r: r["worker"])
        duplicates = _resolve_duplicates(out, subset, results)
    except BaseException:  # e.g. a full disk: leave no temporary shard of this attempt behind
        for p in out.glob(f"{_TMP_PREFIX}{attempt}*"):
            p.unlink(missing_ok=True)
        raise

    # number the shards deterministically: worker order, then the order each worker wrote them
    stats = SampleStats()
    index = 0
    for r in results:
        for name, count in r["written"]:
            os.replace(out / name, out / SHARD_FORMAT.format(index))
            (out / STATS_FORMAT.format(index)).write_text(json.dumps({"successes": count}))
            index += 1
        known = SampleStats.__dataclass_fields__
        stats.add(SampleStats(**{k: v for k, v in r["stats"].items() if k in known}))
    shutil.copyfile(subset_path, out / ".sample_ids.npy.tmp")
    os.replace(out / ".sample_ids.npy.tmp", out / "sample_ids.npy")

    if line := stats.summary():  # skipped input is counted in meta.json and said once here
        log.warning("reshard: skipped %s", line)
    if duplicates:
        d = duplicates[0]
        log.warning("reshard: %d uid(s) met in more than one sample; each written once, from the first shard "
                    "in name order (e.g. %s in %s, again in %s; all listed in meta.json)",
                    len(duplicates), d["uid"], d["kept_from"], d["skipped_from"])
    processed = sum(r["processed"] for r in results)
    output = sum(r["output"] for r in results)
    if output < len(subset):
        log.warning("reshard: %d of %d subset rows were not found in the shards (see meta.json)",
                    len(subset) - output, len(subset))
    seconds = time.perf_counter() - t0
    meta: dict[str, Any] = {
        "input_dir": str(pool.shards_dir),
        "output_dir": str(out),
        "subset_file": str(subset_path),
        "shard_format": SHARD_FORMAT,
        "output_shard_format": SHARD_FORMAT,
        "output_shard_stats_format": STATS_FORMAT,
        "shard_size": shard_size,
        "num_workers": len(tasks),
        "processed_count": processed,
        "output_count": output,
        "output_shard_count": index,
        "worker_success": len(results),
        "blur_count": 0,
        "blur_time": 0.0,
        "subset_size": int(len(subset)),
        "missing_from_input": int(len(subset)) - output,
        "corrupt_samples": stats.corrupt_samples,
        "corrupt_shards": stats.corrupt_shards,
        "duplicate_uids": len(duplicates),  # harness policy: first occurrence in shard name order is written
        "duplicates": duplicates[:100],
        "errors": stats.errors,
        "seconds": round(seconds, 3),
        "samples_per_s": round(processed / seconds, 1) if seconds > 0 else None,
        "cwd": str(Path.cwd()),
    }
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")
    return meta
