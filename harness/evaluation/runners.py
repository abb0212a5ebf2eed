"""One runner per task kind: read the task's local data, encode with the shared encoder, score.

Every runner returns the metrics dict of one DataComp result line (before ``main_metric``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics as M
from .loaders import (
    HF_CACHE_DIR,
    DataError,
    ReadStats,
    StreamJob,
    SuiteStream,
    hf_cache_entry,
    iter_batches,
    open_hf,
    open_wds,
    to_image,
)
from .suites import TASK_KINDS, Task


class RunContext:
    """What the runners share across one suite: the encoder, batch settings, caches, the decode pool.

    Prompt embeddings are cached by text for the whole suite: ImageNet 1k, v2 and Sketch share
    1000 classes x 80 templates, and ImageNet-A/-R/-O reuse subsets of them, so the ImageNet-family
    classifiers are encoded once instead of six times. A whole classifier is cached by its
    (classnames, templates). With ``stream`` (a SuiteStream over ``jobs``, task key -> job index)
    the webdataset tasks read their batches from one decode pool that works ahead across tasks.
    ``compat`` is the evaluation's compatibility mode (compat.py).
    """

    def __init__(self, encoder: Any, batch_size: int = 64, num_workers: int = 0,
                 stream: SuiteStream | None = None, jobs: dict[str, int] | None = None,
                 compat: str = "datacomp"):
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers
        self.compat = compat
        self.stream, self.jobs = stream, jobs or {}
        self._prompts: dict[str, np.ndarray] = {}
        self._classifiers: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}

    def encode_prompts(self, texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self._prompts))
        if new:
            for t, f in zip(new, self.encoder.encode_texts(new, amp=True), strict=True):
                self._prompts[t] = f
        return np.stack([self._prompts[t] for t in texts])

    def batches(self, task: Task, shards: list[Path], need: tuple[str, ...], stats: ReadStats) -> Iterator[list[dict]]:
        """The task's batches: from the suite's decode pool when it holds this task, else read here."""
        j = self.jobs.get(task.key)
        if (self.stream is not None and j is not None and self.stream.can_serve(j)
                and self.stream.jobs[j] == StreamJob(tuple(shards), need)):
            return self.stream.batches(j, stats)
        return iter_batches(shards, need, self.encoder.preprocess, self.batch_size, self.num_workers, stats)


def task_data_path(task: Task, data_root: Path) -> Path:
    """Where a task's data is read from: its ``source.path`` under ``data_root`` when that exists;
    for a Hugging Face task otherwise DataComp's datasets cache entry
    ``<data_root>/hf_cache/<namespace>___<name>`` (download_evalsets.py lines 36-41 write it with
    ``load_dataset(source.hub, split="test", cache_dir=<data_root>/hf_cache)``)."""
    root = task.data_dir(data_root)
    if root.exists() or task.source.format != "hf" or not task.source.hub:
        return root
    return hf_cache_entry(Path(data_root) / HF_CACHE_DIR, task.source.hub) or root


def wds_job(task: Task, data_root: Path) -> StreamJob | None:
    """What the task's runner will read from a webdataset (shards, needed fields), or None when it
    reads no webdataset or its data is not readable (the runner then reports the error itself)."""
    root = task_data_path(task, data_root)
    kind = task.task
    if kind not in TASK_KINDS or kind == "winogavil":
        return None
    try:
        if kind == "zeroshot_retrieval" and not (root / "test" / "nshards.txt").exists():
            return None  # a Hugging Face copy
        info = open_wds(root)
    except (DataError, OSError):
        return None
    if kind == "zeroshot_classification":
        need: tuple[str, ...] = ("txt",) if info.dataset_type == "retrieval" else ("cls",)
    elif kind == "zeroshot_retrieval":
        need = ("txt",)
    elif kind == "fairface":
        need = ("npy",)
    else:  # WILDS, Dollar Street, GeoDE
        need = ("cls", "npy")
    return StreamJob(tuple(info.shards), need)


# ---------------------------------------------------------------- classification core


def _classifier(ctx: RunContext, classnames: list[str], templates: list[str]) -> np.ndarray:
    key = (tuple(classnames), tuple(templates))
    if key not in ctx._classifiers:
        texts = [t.format(c=c) for c in classnames for t in templates]
        feats = ctx.encode_prompts(texts)
        ctx._classifiers[key] = M.class_weights(feats.reshape(len(classnames), len(templates), -1))
    return ctx._classifiers[key]


def classify_wds(task: Task, root: Path, ctx: RunContext, need_meta: bool = False, k: int = 5) -> dict[str, Any]:
    """Zero-shot classification over a webdataset: top-k predictions, labels, optional metadata."""
    info = open_wds(root, compat=ctx.compat)
    if not info.classnames or not info.templates:
        raise DataError(f"{root}: classnames.txt and zeroshot_classification_templates.txt are required")
    weights = _classifier(ctx, info.classnames, info.templates)
    need = ("cls", "npy") if need_meta else ("cls",)
    stats = ReadStats()
    topk, labels, metas = [], [], []
    for batch in ctx.batches(task, info.shards, need, stats):
        feats = ctx.encoder.encode_image_batch([s["image"] for s in batch], amp=False)
        logits = M.zeroshot_logits(feats, weights)
        topk.append(M.topk_predictions(logits, k).numpy())
        labels.extend(s["cls"] for s in batch)
        if need_meta:
            metas.extend(np.asarray(s["npy"]).reshape(-1) for s in batch)
    if not labels:
        raise DataError(f"{root}: no readable samples ({stats.skipped} skipped: {stats.reasons[:3]})")
    return {
        "topk": np.concatenate(topk),
        "labels": np.asarray(labels, dtype=np.int64),
        "metadata": np.stack(metas) if need_meta else None,
        "n_classes": len(info.classnames),
        "skipped": stats.skipped,
    }


def _with_skips(metrics: dict, skipped: int) -> dict:
    if skipped:
        metrics["skipped_samples"] = skipped
    return metrics


def run_zeroshot_classification(task: Task, root: Path, ctx: RunContext) -> dict:
    info = open_wds(root)
    if info.dataset_type == "retrieval":
        return run_wds_retrieval(task, root, ctx)
    r = classify_wds(task, root, ctx)
    return _with_skips(M.classification_metrics(r["topk"], r["labels"], r["n_classes"]), r["skipped"])


def run_wilds(kind: str) -> Callable[[Task, Path, RunContext], dict]:
    def runner(task: Task, root: Path, ctx: RunContext) -> dict:
        r = classify_wds(task, root, ctx, need_meta=True)
        out = M.classification_metrics(r["topk"], r["labels"], r["n_classes"])
        pred, y, md = r["topk"][:, 0], r["labels"], r["metadata"]
        if kind == "iwildcam":
            out.update(M.iwildcam_metrics(pred, y))
        elif kind == "camelyon17":
            out.update(M.camelyon17_metrics(pred, y, md))
        elif kind == "fmow":
            out.update(M.fmow_metrics(pred, y, md, compat=ctx.compat))
        elif kind == "dollar_street":
            out.update(M.dollar_street_metrics(r["topk"], y, md))
        elif kind == "geode":
            out.update(M.geode_metrics(pred, y, md))
        return _with_skips(out, r["skipped"])

    return runner


def run_fairface(task: Task, root: Path, ctx: RunContext) -> dict:
    """Four zero-shot heads; classnames/templates are "<head>:<text>" lines; labels in the .npy."""
    info = open_wds(root, compat=ctx.compat)
    if not info.classnames or not info.templates:
        raise DataError(f"{root}: classnames.txt and zeroshot_classification_templates.txt are required")
    heads: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"classnames": [], "templates": []})
    for t in info.templates:
        head, text = t.split(":", 1)
        heads[head]["templates"].append(text)
    for c in info.classnames:
        head, text = c.split(":", 1)
        heads[head]["classnames"].append(text)
    missing = [h for h in M.FAIRFACE_HEADS if not heads[h]["classnames"] or not heads[h]["templates"]]
    if missing:
        raise DataError(f"{root}: no classnames/templates for head(s) {missing}")
    weights = {h: _classifier(ctx, heads[h]["classnames"], heads[h]["templates"]) for h in M.FAIRFACE_HEADS}
    stats = ReadStats()
    preds: dict[str, list[np.ndarray]] = {h: [] for h in M.FAIRFACE_HEADS}
    metas = []
    for batch in ctx.batches(task, info.shards, ("npy",), stats):
        feats = ctx.encoder.encode_image_batch([s["image"] for s in batch], amp=False)
        for h in M.FAIRFACE_HEADS:
            preds[h].append(M.zeroshot_logits(feats, weights[h]).argmax(dim=1).numpy())
        metas.extend(np.asarray(s["npy"]).reshape(-1) for s in batch)
    if not metas:
        raise DataError(f"{root}: no readable samples ({stats.skipped} skipped)")
    out = M.fairface_metrics({h: np.concatenate(v) for h, v in preds.items()}, np.stack(metas))
    return _with_skips(out, stats.skipped)


# ---------------------------------------------------------------- retrieval


def _retrieval(ctx: RunContext, pairs) -> dict:
    """pairs: iterable of (preprocessed image, list of its captions); encoded batch by batch."""
    enc = ctx.encoder
    feats, texts, index, batch = [], [], [], []
    n = 0

    def flush():
        if batch:
            feats.append(enc.encode_image_batch(batch, amp=True))
            batch.clear()

    for item, caps in pairs:
        batch.append(item)
        texts.extend(caps)
        index.extend([n] * len(caps))
        n += 1
        if len(batch) == ctx.batch_size:
            flush()
    flush()
    if n == 0:
        raise DataError("no readable image-caption pairs")
    tfeats = enc.encode_texts(texts, amp=True)
    return M.retrieval_metrics(np.concatenate(feats), tfeats, index, recall_k=(1, 5, 10))


def run_wds_retrieval(task: Task, root: Path, ctx: RunContext) -> dict:
    """clip_benchmark retrieval webdataset (dataset_type.txt = retrieval): .txt holds one caption a line."""
    info = open_wds(root)
    stats = ReadStats()
    batches = ctx.batches(task, info.shards, ("txt",), stats)
    pairs = ((s["image"], s["txt"].splitlines()) for b in batches for s in b)
    return _with_skips(_retrieval(ctx, pairs), stats.skipped)


def run_hf_retrieval(task: Task, root: Path, ctx: RunContext) -> dict:
    """Flickr / MSCOCO Hugging Face copies: columns ``image`` and ``caption`` (list of captions)."""
    if (root / "test" / "nshards.txt").exists():
        return run_wds_retrieval(task, root, ctx)
    rows = open_hf(root)
    rows.require(("image", "caption"))
    pairs = ((ctx.encoder.preprocess(to_image(r["image"], root)),
              [r["caption"]] if isinstance(r["caption"], str) else list(r["caption"])) for r in rows)
    return _retrieval(ctx, pairs)


def run_winogavil(task: Task, root: Path, ctx: RunContext) -> dict:
    """WinoGAViL: columns ``cue``, ``candidates``, ``associations``, ``candidate_images``."""
    rows = open_hf(root)
    rows.require(("cue", "candidates", "associations", "candidate_images"))
    enc = ctx.encoder
    scores, groups = [], []
    for r in rows:
        cue = enc.encode_texts([M.winogavil_prompt(r["cue"])], amp=True)[0]
        imgs = [enc.preprocess(to_image(x, root)) for x in r["candidate_images"]]
        feats = enc.encode_image_batch(imgs, amp=True)
        sims = (torch.from_numpy(cue[None, :]) @ torch.from_numpy(feats).t()).squeeze(0).numpy()
        y_true = np.isin(r["candidates"], r["associations"])
        scores.append(M.winogavil_instance(sims, y_true))
        groups.append(len(imgs))
    return M.winogavil_metrics(scores, groups)


# the task kinds a suite's `task:` may name (harness.evaluation.suites.TASK_KINDS)
TASK_KINDS.register("zeroshot_classification", run_zeroshot_classification)
TASK_KINDS.register("zeroshot_retrieval", run_hf_retrieval)
TASK_KINDS.register("winogavil", run_winogavil)
TASK_KINDS.register("wilds_iwildcam", run_wilds("iwildcam"))
TASK_KINDS.register("wilds_camelyon17", run_wilds("camelyon17"))
TASK_KINDS.register("wilds_fmow", run_wilds("fmow"))
TASK_KINDS.register("dollar_street", run_wilds("dollar_street"))
TASK_KINDS.register("geode", run_wilds("geode"))
TASK_KINDS.register("fairface", run_fairface)


def missing_data(task: Task, data_root: Path) -> str | None:
    """Why the task cannot start (its data is absent), None when it can try; checked before any work."""
    root = task_data_path(task, data_root)
    if root.exists():
        return None
    also = ""
    if task.source.format == "hf" and task.source.hub:
        also = f" (nor {task.source.hub} in the datasets cache {Path(data_root) / HF_CACHE_DIR})"
    return f"task {task.key} ({task.name}): {root} not found{also}"


def run_task(task: Task, data_root: Path, ctx: RunContext) -> dict:
    why = missing_data(task, data_root)
    if why is not None:
        raise DataError(why)
    return TASK_KINDS.get(task.task)(task, task_data_path(task, data_root), ctx)
