"""`harness run`: score, select, reshard, train, evaluate and summarise one filter expression.

Each stage writes into the run directory and leaves a completion record keyed by the fingerprints of
what it consumed (see harness.stages); a stage whose record still matches is skipped, so a rerun is
cheap, an interrupted run resumes, and changing an input recomputes exactly what depends on it.
Score tables live one level up, per pool, and are shared by every expression that uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.stages import (
    Stage,
    atomic_write_json,
    fingerprint,
    fingerprint_files,
    fingerprint_tree,
    run_lock,
    sha256_file,
)

log = logging.getLogger("harness.run")


@dataclass
class RunConfig:
    filter: str
    scale: str = "tiny"
    seed: int = 0
    world: Path | None = None  # a generated world (pool + models + eval suite)
    pool: Path | None = None  # a real DataComp pool (when no world)
    runs: Path = Path("runs")
    suite: str | None = None  # default: "tiny" for a world, "datacomp" otherwise
    eval_data: Path | None = None  # root of the suite's data (default: the world dir)
    models: dict[str, str] = field(default_factory=dict)  # model name -> path/id overrides
    plugins: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # per-scorer options {"hype": {...}}
    device: str = "cpu"
    gpus: int = 0
    workers: int = 2
    partial: bool = False
    engine: str = "local"  # scoring engine: local or ray
    ray_address: str | None = None
    ray_workers: int | None = None
    # TEST-ONLY: total samples seen instead of the recipe's (the training run is marked test-only);
    # lets tests run the whole flow, interruptions included, in seconds
    train_num_samples: int | None = None


def filter_slug(expression: str) -> str:
    """A directory name for an expression: readable when it can be, unique always."""
    compact = re.sub(r"\s+", "", expression)
    safe = re.sub(r"[^A-Za-z0-9.+=_-]", "_", compact)
    if safe != compact or len(safe) > 60:
        digest = hashlib.sha256(compact.encode()).hexdigest()[:8]
        safe = f"{safe[:50]}-{digest}"
    return safe


def pool_name(cfg: RunConfig) -> str:
    root = cfg.world if cfg.world is not None else cfg.pool
    assert root is not None
    return Path(root).resolve().name


def run_dir(cfg: RunConfig) -> Path:
    return cfg.runs / pool_name(cfg) / cfg.scale / filter_slug(cfg.filter) / f"seed{cfg.seed}"


def _resolve_inputs(cfg: RunConfig) -> tuple[Path, Path | None, Path, str]:
    """Pool dir, models dir, eval data root and suite name for this run (building the world if asked)."""
    if cfg.world is not None:
        world = Path(cfg.world)
        ensure_world(world)
        return world / "pool", world / "models", cfg.eval_data or world, cfg.suite or "tiny"
    if cfg.pool is None:
        raise ValueError("give a world (--world DIR) or a DataComp pool (--pool DIR)")
    if cfg.eval_data is None:
        raise ValueError("a real pool needs --eval-data DIR (see `harness download-eval`)")
    return Path(cfg.pool), None, Path(cfg.eval_data), cfg.suite or "datacomp"


def ensure_world(world: Path) -> dict[str, Any]:
    """Build the world if it is missing, or finish it (e.g. a model added later) with its own settings.

    An existing world keeps the seed, profile and knobs it was made with; a new directory named like
    `world-seed7` is built with seed 7 and the default profile.
    """
    from harness.world import build_world

    record = Path(world) / "world.json"
    if record.exists():
        info = json.loads(record.read_text())
        return build_world(world, seed=int(info["seed"]), profile=info["profile"], knobs=info.get("knobs"))
    match = re.search(r"seed(\d+)$", Path(world).name)
    return build_world(world, seed=int(match.group(1)) if match else 0)


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run the whole flow for one expression; returns the summary (also written to summary.json)."""
    from harness.expressions import parse, scorer_names
    from harness.plugins import load_plugins, validate_options

    load_plugins(cfg.plugins)
    # refuse a bad expression, and options or models it would ignore, before any work
    validate_options(scorer_names(parse(cfg.filter)), {**cfg.options, "models": cfg.models})
    pool_dir, models_dir, eval_root, suite = _resolve_inputs(cfg)
    out = run_dir(cfg)
    with run_lock(out):
        return _run_locked(cfg, out, pool_dir, models_dir, eval_root, suite)


def _timed(stage: Stage, timings: dict[str, float], fn, *args, discard: tuple[Path, ...] = (),
           **kwargs) -> dict[str, Any]:
    if stage.done():
        log.info("%s: up to date, skipped", stage.name)
        timings[stage.name] = 0.0
        return stage.outputs()
    resumed = stage.begin(discard)  # partial outputs of other inputs are removed, never resumed
    log.info("%s: %s", stage.name, "resuming" if resumed else "running")
    start = time.perf_counter()
    outputs = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    stage.complete(outputs, seconds)
    timings[stage.name] = seconds
    log.info("%s: done in %.1f s", stage.name, seconds)
    return outputs


def _run_locked(cfg: RunConfig, out: Path, pool_dir: Path, models_dir: Path | None, eval_root: Path,
                suite: str) -> dict[str, Any]:
    from harness.evaluation import evaluate
    from harness.models import spec_fingerprint
    from harness.plugins import ScoringContext
    from harness.pool import Pool
    from harness.reshard import reshard
    from harness.selection import select
    from harness.training import get_recipe, train

    pool = Pool(pool_dir)
    pool_fp = pool.fingerprint()
    models_fp = fingerprint_files(p for p in models_dir.rglob("*") if p.is_file()) if models_dir else ""
    scores_dir = cfg.runs / pool_name(cfg) / "scores"
    ctx = ScoringContext(pool=pool, models_dir=models_dir, device=cfg.device,
                         options={**cfg.options, **({"models": cfg.models} if cfg.models else {})},
                         cache_dir=scores_dir, engine=cfg.engine, ray_address=cfg.ray_address,
                         ray_workers=cfg.ray_workers)
    timings: dict[str, float] = {}

    # a --model's content, not its name: a moved hub ref or a rewritten checkpoint selects again
    overrides = {name: [spec, spec_fingerprint(spec)] for name, spec in sorted(cfg.models.items())}
    select_stage = Stage(out, "select", {"filter": cfg.filter, "pool": pool_fp, "models": models_fp,
                                         "options": cfg.options, "models_override": overrides,
                                         "plugins": cfg.plugins, "seed": cfg.seed})
    selection = _timed(select_stage, timings, select, pool, cfg.filter, out, ctx, scores_dir, cfg.seed)
    subset_path = out / "subset.npy"

    reshard_stage = Stage(out, "reshard", {"subset": sha256_file(subset_path), "pool": pool_fp})
    resharding = _timed(reshard_stage, timings, reshard, pool, subset_path, out / "shards",
                        workers=cfg.workers)

    test_only = {"num_samples": cfg.train_num_samples} if cfg.train_num_samples else {}
    train_stage = Stage(out, "train", {"shards": sha256_file(out / "shards" / "meta.json"),
                                       "recipe": get_recipe(cfg.scale).as_dict(), "seed": cfg.seed,
                                       "gpus": cfg.gpus, **test_only})
    trained = _timed(train_stage, timings, lambda: {"checkpoint": str(train(
        out / "shards", out / "train", scale=cfg.scale, seed=cfg.seed, gpus=cfg.gpus, **test_only))},
        discard=(out / "train",))
    checkpoint = Path(trained["checkpoint"])

    eval_stage = Stage(out, "evaluate", {"checkpoint": sha256_file(checkpoint), "suite": suite,
                                         "data": str(eval_root), "partial": cfg.partial,
                                         "data_files": _eval_data_fingerprint(suite, eval_root)})
    evaluation = _timed(eval_stage, timings, evaluate, checkpoint, suite, eval_root, out,
                        device=cfg.device, partial=cfg.partial, num_workers=cfg.workers,
                        discard=(out / "eval_results.jsonl", out / "eval_summary.json"))

    summary = _summary(cfg, out, pool_dir, selection, resharding, evaluation, timings)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _eval_data_fingerprint(suite: str, eval_root: Path) -> str:
    """Names, sizes and times of every task's local data: changed evaluation data is re-evaluated."""
    from harness.evaluation import load_suite

    dirs = [(t.key, t.data_dir(eval_root)) for t in load_suite(suite).tasks]
    return fingerprint([[key, fingerprint_tree(d) if d.is_dir() else None] for key, d in dirs])


def _summary(cfg: RunConfig, out: Path, pool_dir: Path, selection: dict[str, Any],
             resharding: dict[str, Any], evaluation: dict[str, Any],
             timings: dict[str, float]) -> dict[str, Any]:
    import numpy as np

    subset = np.load(out / "subset.npy")
    unique = int(len(np.unique(subset))) if len(subset) else 0
    record = {
        "filter": cfg.filter,
        "scale": cfg.scale,
        "seed": cfg.seed,
        "pool": str(pool_dir),
        "samples": int(len(subset)),
        "unique_samples": unique,
        "uniform": unique == len(subset),
        "aggregates": evaluation.get("aggregates", {}),
        "partial": bool(evaluation.get("partial", False)),
        "missing_tasks": evaluation.get("missing_tasks", []),
        "tasks": evaluation.get("tasks", {}),
        "suite": evaluation.get("suite"),
        "provenance": {
            "world": str(cfg.world) if cfg.world else None,
            "selection": selection,
            "reshard": resharding,
            "stage_seconds": timings,
            "train_num_samples": cfg.train_num_samples,  # None for a recipe run
            "run_dir": str(out),
            "config_fingerprint": fingerprint({"filter": cfg.filter, "scale": cfg.scale, "seed": cfg.seed}),
            "python": sys.version.split()[0],
        },
    }
    return record
