"""Offline readers for the suite's sources.

- clip_benchmark webdatasets (LAION-AI/CLIP_benchmark clip_benchmark/datasets/builder.py, build_wds_dataset): ``classnames.txt``,
  ``zeroshot_classification_templates.txt``, optional ``dataset_type.txt``, ``test/nshards.txt``,
  ``test/{0..N-1}.tar`` with members ``<key>.webp|png|jpg|jpeg`` plus ``.cls`` (label), ``.txt``
  (captions, one per line) and ``.npy`` (per-sample metadata of the WILDS and fairness sets).
  Read in shard order, members grouped by key the way webdataset does (key = name up to the first
  dot of the base name).
- Hugging Face datasets (Flickr, MSCOCO, WinoGAViL): a directory written by ``save_to_disk``
  (``load_from_disk``), parquet files (the hub's parquet conversion or a snapshot of them), or a
  ``datasets`` cache entry as DataComp's download_evalsets.py leaves it
  (``load_dataset("nlphuji/<name>", split="test", cache_dir=<data>/hf_cache)``), read lazily row by row.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")


class DataError(RuntimeError):
    """A task's local data is missing or malformed (the message names the file)."""


def read_lines(path: Path, keep_blank: bool = True) -> list[str]:
    """Stripped lines of a classnames/templates file (splitlines: no trailing empty line).

    clip-benchmark >= 1.6 keeps blank lines (CLIP_benchmark commit 832e17d, issue #111: CLEVR
    Distance has a blank class name); clip-benchmark 1.4.0, which DataComp pins, drops them
    (builder.py ``build_wds_dataset``, lines 630 and 637 at v1.4.0): ``keep_blank=False``.
    """
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    return lines if keep_blank else [line for line in lines if line]


@dataclass
class WdsInfo:
    root: Path
    shards: list[Path]
    classnames: list[str] | None
    templates: list[str] | None
    dataset_type: str


def open_wds(root: Path, split: str = "test", compat: str = "datacomp") -> WdsInfo:
    """A clip_benchmark webdataset's shards and metadata; ``compat`` decides blank lines (compat.py)."""
    root = Path(root)
    keep_blank = compat == "corrected"
    nfile = root / split / "nshards.txt"
    if not nfile.exists():
        raise DataError(f"{nfile} not found: not a clip_benchmark webdataset (fetch it with download-eval)")
    try:
        n = int(nfile.read_text().strip())
    except ValueError as e:
        raise DataError(f"{nfile}: expected an integer shard count") from e
    shards = [root / split / f"{i}.tar" for i in range(n)]
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise DataError(f"{root / split}: {len(missing)} of {n} shards missing (e.g. {missing[:3]})")
    cfile, tfile, dfile = root / "classnames.txt", root / "zeroshot_classification_templates.txt", root / "dataset_type.txt"
    return WdsInfo(
        root=root,
        shards=shards,
        classnames=read_lines(cfile, keep_blank) if cfile.exists() else None,
        templates=read_lines(tfile, keep_blank) if tfile.exists() else None,
        dataset_type=dfile.read_text().strip().lower() if dfile.exists() else "classification",
    )


_PIL_FORMAT = {"webp": "WEBP", "png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}


def _decode(ext: str, data: bytes) -> Any:
    if ext in IMAGE_EXTS:
        try:  # the extension names the format: skip PIL's probing of every plugin
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[ext]])
        except Exception:
            img = Image.open(io.BytesIO(data))
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")
    if ext == "cls":
        return int(data.decode("utf-8").strip())
    if ext == "txt":
        return data.decode("utf-8")
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    return data


@dataclass
class ReadStats:
    samples: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, why: str) -> None:
        self.skipped += 1
        if len(self.reasons) < 20:
            self.reasons.append(why)


def iter_wds_raw(shards: list[Path]) -> Iterator[tuple[Path, str, dict[str, bytes]]]:
    """(shard, key, {ext: bytes}) for each sample of the given shards, in order, undecoded.

    Members are grouped by key the way webdataset does (consecutive members sharing the name up
    to the first dot of the base name). An unreadable tar raises DataError naming it.
    """
    for shard in shards:
        try:
            with tarfile.open(shard, "r|*") as tar:
                current: str | None = None
                raw: dict[str, bytes] = {}
                for member in tar:
                    if not member.isfile():
                        continue
                    base = member.name.rsplit("/", 1)[-1]
                    if "." not in base:
                        continue
                    prefix = member.name[: len(member.name) - len(base)]
                    key, ext = prefix + base.split(".", 1)[0], base.split(".", 1)[1].lower()
                    if key != current:
                        if current is not None:
                            yield shard, current, raw
                        current, raw = key, {}
                    f = tar.extractfile(member)
                    raw[ext] = f.read() if f is not None else b""
                if current is not None:
                    yield shard, current, raw
        except tarfile.TarError as e:
            raise DataError(f"{shard}: unreadable tar ({e})") from e


def iter_wds_samples(shards: list[Path], need: tuple[str, ...], stats: ReadStats | None = None) -> Iterator[dict]:
    """Samples of the given shards, in order: {"__key__", "image", and each field in ``need``}.

    ``need`` names fields other than the image ("cls", "txt", "npy"). A sample with no image, a
    missing needed field, or a member that fails to decode is skipped and counted in ``stats``.
    """
    stats = stats if stats is not None else ReadStats()
    for shard, key, raw in iter_wds_raw(shards):
        s = _assemble(key, raw, need, shard, stats)
        if s is not None:
            yield s


def _assemble(key: str, raw: dict[str, bytes], need: tuple[str, ...], shard: Path, stats: ReadStats) -> dict | None:
    img_ext = next((e for e in IMAGE_EXTS if e in raw), None)
    if img_ext is None:
        stats.skip(f"{shard.name}:{key}: no image member")
        return None
    out: dict[str, Any] = {"__key__": key}
    try:
        out["image"] = _decode(img_ext, raw[img_ext])
        for n in need:
            if n not in raw:
                stats.skip(f"{shard.name}:{key}: no .{n} member")
                return None
            out[n] = _decode(n, raw[n])
    except Exception as e:  # a corrupt member: skip the sample, count it
        stats.skip(f"{shard.name}:{key}: {type(e).__name__}: {e}")
        return None
    stats.samples += 1
    return out


# ---------------------------------------------------------------- batching (optionally in worker processes)


def iter_batches(
    shards: list[Path], need: tuple[str, ...], preprocess: Callable[[Image.Image], Any], batch_size: int,
    num_workers: int = 0, stats: ReadStats | None = None,
) -> Iterator[list[dict]]:
    """Batches of samples with ``image`` replaced by ``preprocess(image)``.

    With workers, shards are dealt round-robin to torch DataLoader workers that decode and
    preprocess in parallel; every sample carries its own label/metadata, so the interleaved order
    does not matter to any metric. Skip counts are only tracked in-process (num_workers=0).
    """
    if num_workers <= 0:
        batch: list[dict] = []
        for s in iter_wds_samples(shards, need, stats):
            s["image"] = preprocess(s["image"])
            batch.append(s)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    ds = _ShardStream(shards, need, preprocess)
    loader = tud.DataLoader(ds, batch_size=batch_size, num_workers=min(num_workers, len(shards)),
                            collate_fn=list)
    yield from loader


class _ShardStream(tud.IterableDataset):
    """Shards split across DataLoader workers."""

    def __init__(self, shards, need, preprocess):
        self.shards, self.need, self.preprocess = shards, need, preprocess

    def __iter__(self):
        info = tud.get_worker_info()
        mine = self.shards if info is None else self.shards[info.id :: info.num_workers]
        for s in iter_wds_samples(mine, self.need):
            s["image"] = self.preprocess(s["image"])
            yield s


# ---------------------------------------------------------------- one decode pool for a whole suite


@dataclass(frozen=True)
class StreamJob:
    """The webdataset part of one task: its shards and the fields its runner needs."""

    shards: tuple[Path, ...]
    need: tuple[str, ...]


def _identity(x: Any) -> Any:
    return x


class _SuiteBatches(tud.IterableDataset):
    """Every job's batches in one stream, dealt batch by batch to the DataLoader workers.

    All workers walk every tar (reading is cheap next to decoding) and so agree on a global batch
    number ``g``; worker ``w`` decodes and yields only the batches with ``g % n == w``. Batches are
    ``batch_size`` consecutive samples of one job (the last one of a job may be shorter), exactly
    the batches the per-task loop makes. A tar error ends its job with an error entry.
    """

    def __init__(self, jobs: list[StreamJob], preprocess: Callable[[Image.Image], Any], batch_size: int):
        self.jobs, self.preprocess, self.batch_size = jobs, preprocess, batch_size

    def __iter__(self) -> Iterator[dict]:
        info = tud.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        g = 0
        for j, job in enumerate(self.jobs):
            group: list[tuple[Path, str, dict[str, bytes]]] = []
            count = 0
            try:
                for item in iter_wds_raw(list(job.shards)):
                    if g % n == w:
                        group.append(item)
                    count += 1
                    if count == self.batch_size:
                        if g % n == w:
                            yield self._batch(g, j, job, group)
                        g, group, count = g + 1, [], 0
                if count:
                    if g % n == w:
                        yield self._batch(g, j, job, group)
                    g += 1
            except DataError as e:
                if g % n == w:
                    yield {"g": g, "job": j, "error": str(e)}
                g += 1

    def _batch(self, g: int, j: int, job: StreamJob, group) -> dict:
        stats = ReadStats()
        samples = []
        for shard, key, raw in group:
            s = _assemble(key, raw, job.need, shard, stats)
            if s is not None:
                s["image"] = self.preprocess(s["image"])
                samples.append(s)
        images = [s.pop("image") for s in samples]
        if images and all(isinstance(x, torch.Tensor) and x.shape == images[0].shape for x in images):
            images = torch.stack(images)  # one shared-memory block to send instead of one per sample
        return {"g": g, "job": j, "samples": samples, "images": images, "read": stats.samples,
                "skipped": stats.skipped, "reasons": stats.reasons}


class SuiteStream:
    """One persistent pool of decode workers for a whole suite.

    The per-task loop (clip_benchmark, DataComp) starts a DataLoader per task: its workers fork,
    fill the pipeline, and drain at the end of every task, while the model waits; a one-shard task
    keeps only one of them busy. Here the workers decode the suite's tasks back to back, so the
    next task's first batches are ready while the current one is still being encoded, and batches
    (not shards) are dealt to workers. Decoding, preprocessing and batch contents are the same as
    the per-task loop's; only who decodes and when changes.

    ``prefetch_factor`` batches per worker are in flight, the DataLoader default, so the pool holds
    no more memory than one per-task loader. ``batches(j, stats)`` returns job ``j``'s batches in order; jobs must be asked for in
    increasing order (a skipped job's batches are discarded).
    """

    def __init__(self, jobs: list[StreamJob], preprocess: Callable[[Image.Image], Any], batch_size: int,
                 num_workers: int, prefetch_factor: int = 2):
        if num_workers < 1:
            raise ValueError("SuiteStream needs at least one worker process")
        self.jobs = list(jobs)
        loader = tud.DataLoader(_SuiteBatches(self.jobs, preprocess, batch_size), batch_size=None,
                                num_workers=num_workers, collate_fn=_identity, prefetch_factor=prefetch_factor)
        self._it: Iterator[dict] | None = iter(loader)  # forks the workers: decoding starts now
        self._held: dict[int, dict] = {}  # entries that arrived ahead of their turn, by g
        self._next_g = 0
        self._cursor = 0  # lowest job that may still be asked for

    def _peek(self) -> dict | None:
        while self._next_g not in self._held:
            if self._it is None:
                return None
            try:
                e = next(self._it)
            except StopIteration:
                self.close()
                return None
            self._held[e["g"]] = e
        return self._held[self._next_g]

    def _pop(self) -> None:
        del self._held[self._next_g]
        self._next_g += 1

    def can_serve(self, j: int) -> bool:
        return j >= self._cursor

    def batches(self, j: int, stats: ReadStats | None = None) -> Iterator[list[dict]]:
        if not self.can_serve(j):
            raise ValueError(f"job {j} was already passed (next is {self._cursor})")
        self._cursor = j + 1
        stats = stats if stats is not None else ReadStats()
        while (e := self._peek()) is not None and e["job"] <= j:
            self._pop()
            if e["job"] < j:
                continue  # a job whose task did not run (finished, failed, or not a wds task after all)
            if "error" in e:
                raise DataError(e["error"])
            stats.samples += e["read"]
            for why in e["reasons"]:
                stats.skip(why)
            stats.skipped += e["skipped"] - len(e["reasons"])  # reasons are capped per batch
            images = e["images"]
            images = list(images.unbind(0)) if isinstance(images, torch.Tensor) else images
            for s, x in zip(e["samples"], images, strict=True):
                s["image"] = x
            if e["samples"]:
                yield e["samples"]

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._held.clear()

    def __enter__(self) -> SuiteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- Hugging Face datasets


class HfRows:
    """Rows of a local Hugging Face dataset copy, read lazily (images decoded one row at a time)."""

    def __init__(self, root: Path, columns: list[str], factory: Callable[[], Iterator[dict]]):
        self.root, self.columns, self._factory = root, columns, factory

    def __iter__(self) -> Iterator[dict]:
        return self._factory()

    def require(self, columns: tuple[str, ...]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(f"{self.root}: missing column(s) {missing}; has {self.columns}")


# DataComp's evaluation directory keeps its Hugging Face datasets in a `datasets` cache here
# (mlfoundations/datacomp download_evalsets.py lines 36-41; eval_utils/retr_eval.py lines 38-46 and
# eval_utils/wino_eval.py lines 47-56 load them back with the same cache_dir).
HF_CACHE_DIR = "hf_cache"


def hf_cache_entry(cache_dir: Path, repo_id: str) -> Path | None:
    """``<cache_dir>/<namespace>___<name>``: where ``datasets`` keeps ``repo_id`` prepared, if it does.

    The naming is datasets' own (DatasetBuilder._relative_data_dir: "namespace___name", then
    config/version/hash folders; the same in the 2.8.0 DataComp pins and in current releases).
    """
    from datasets.naming import camelcase_to_snakecase

    if repo_id.count("/") != 1:
        return None
    namespace, name = repo_id.split("/")
    root = Path(cache_dir) / f"{namespace}___{camelcase_to_snakecase(name)}"
    return root if _cache_versions(root) else None


def _cache_versions(root: Path) -> list[Path]:
    """The prepared versions (<config>/<version>/<hash> folders with a dataset_info.json) in an entry."""
    if not root.is_dir() or "___" not in root.name:
        return []
    return [d for d in root.glob("*/*/*") if d.is_dir() and (d / "dataset_info.json").is_file()]


def _cache_split_files(version_dir: Path, dataset_name: str, split: str) -> list[Path]:
    """``<name>-<split>.arrow`` or its shards ``<name>-<split>-00000-of-0000N.arrow``, in order."""
    single = version_dir / f"{dataset_name}-{split}.arrow"
    if single.is_file():
        return [single]
    return sorted(version_dir.glob(f"{dataset_name}-{split}-[0-9]*-of-[0-9]*.arrow"))


def _open_hf_cache(root: Path, split: str) -> HfRows:
    """A datasets cache entry: the most recently prepared version holding ``split`` (what an offline
    ``load_dataset`` picks, datasets' packaged_modules/cache), read as the arrow streams it wrote."""
    import pyarrow as pa

    name = root.name.split("___", 1)[1]
    versions = [(d, _cache_split_files(d, name, split)) for d in _cache_versions(root)]
    versions = [(d, files) for d, files in versions if files]
    if not versions:
        raise DataError(f"{root}: a datasets cache entry without a prepared {split!r} split "
                        f"(expected {name}-{split}.arrow under <config>/<version>/<hash>/)")
    _, files = max(versions, key=lambda v: v[0].stat().st_mtime)

    def schema(path: Path) -> pa.Schema:
        with open(path, "rb") as f:
            return pa.ipc.open_stream(f).schema

    def rows() -> Iterator[dict]:
        for path in files:
            with open(path, "rb") as f:
                for batch in pa.ipc.open_stream(f):
                    yield from batch.to_pylist()

    try:
        columns = list(schema(files[0]).names)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{files[0]}: not an arrow stream written by datasets ({e})") from e
    return HfRows(root, columns, rows)


def open_hf(root: Path, split: str = "test") -> HfRows:
    """A ``save_to_disk`` directory (Dataset, or DatasetDict with ``split``), a ``datasets`` cache entry
    (``<cache_dir>/<namespace>___<name>``, see hf_cache_entry) or a directory of parquet files (files
    under a ``<split>`` folder or named ``<split>*`` are preferred)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root} not found (fetch it with download-eval)")
    if _cache_versions(root):
        return _open_hf_cache(root, split)
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(root))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{root}: no split {split!r} (has {list(ds)})")
            ds = ds[split]
        return HfRows(root, list(ds.column_names), lambda: iter(ds))
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise DataError(f"{root}: neither a save_to_disk dataset nor parquet files")
    chosen = [f for f in files if split in f.relative_to(root).parts[:-1] or f.name.startswith(split)] or files
    import pyarrow.parquet as pq

    def rows() -> Iterator[dict]:
        for f in chosen:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64):
                yield from batch.to_pylist()

    return HfRows(root, list(pq.ParquetFile(chosen[0]).schema_arrow.names), rows)


def to_image(value: Any, root: Path | None = None) -> Image.Image:
    """A Hugging Face image cell (PIL image, {"bytes","path"} struct, or a path) -> RGB PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        value = value.get("path")
    if isinstance(value, str):
        p = Path(value)
        if not p.is_absolute() and root is not None:
            p = root / p
        if not p.exists() and root is not None:
            p = _relocated(p, root) or p
        return Image.open(p).convert("RGB")
    raise DataError(f"cannot read an image from a {type(value).__name__} cell")


def _relocated(path: Path, root: Path) -> Path | None:
    """A datasets cache stores the absolute path of each image its loading script extracted
    (``<cache_dir>/downloads/extracted/...``); when the cache was moved, find it under the new place."""
    parts = path.parts
    if "downloads" not in parts:
        return None
    tail = Path(*parts[parts.index("downloads"):])
    for base in (root.parent, root):  # root is <cache_dir>/<namespace>___<name>
        if (base / tail).exists():
            return base / tail
    return None
