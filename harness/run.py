"""`harness run`: score, select, reshard, train, evaluate and summarise one filter expression.

Each stage writes into the run directory and leaves a completion record keyed by the fingerprints of
what it consumed (see harness.stages); a stage whose record still matches is skipped, so a rerun is
cheap, an interrupted run resumes, and changing an input recomputes exactly what depends on it.
Score tables live one level up, per pool, and are shared by every expression that uses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness.pool
import harness.reshard
from harness import numerics
from harness.stages import (
    Stage,
    atomic_write_json,
    content_digest,
    fingerprint,
    fingerprint_tree,
    run_lock,
    source_fingerprint,
)
from harness.summary import FILE_NAME as SUMMARY_FILE
from harness.summary import SCHEMA_VERSION, Summary
from harness.versions import ABSENT, git_commit, harness_version, package_versions

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
    compat: str | None = None  # DataComp-compatibility mode: "datacomp" (default) or "corrected"
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


@contextlib.contextmanager
def in_stage(name: str) -> Iterator[None]:
    """Mark an exception raised inside with the stage it came from (the CLI's one-line error names it)."""
    try:
        yield
    except Exception as exc:
        with contextlib.suppress(AttributeError):
            exc.harness_stage = name  # type: ignore[attr-defined]
        raise


def _timed(stage: Stage, timings: dict[str, float], fn, *args, discard: tuple[Path, ...] = (),
           **kwargs) -> dict[str, Any]:
    if stage.done():
        log.info("%s: up to date, skipped", stage.name)
        timings[stage.name] = 0.0
        return stage.outputs()
    resumed = stage.begin(discard)  # partial outputs of other inputs are removed, never resumed
    log.info("%s: %s", stage.name, "resuming" if resumed else "running")
    start = time.perf_counter()
    with in_stage(stage.name):
        outputs = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    stage.complete(outputs, seconds)
    timings[stage.name] = seconds
    log.info("%s: done in %.1f s", stage.name, seconds)
    return outputs


def _run_locked(cfg: RunConfig, out: Path, pool_dir: Path, models_dir: Path | None, eval_root: Path,
                suite: str) -> dict[str, Any]:
    from harness.compat import resolve_compat
    from harness.evaluation import evaluate
    from harness.models import spec_fingerprint
    from harness.plugins import EngineSettings, ScoringContext
    from harness.pool import Pool
    from harness.reshard import reshard
    from harness.selection import select, selection_inputs
    from harness.training import get_recipe, train

    pool = Pool(pool_dir)
    # models that live in the world are part of its content; a --model override enters twice: by its
    # spec's content below, and through each filter's score-table identity inside selection_inputs
    models_fp = fingerprint_tree(models_dir) if models_dir else ""
    scores_dir = cfg.runs.resolve() / pool_name(cfg) / "scores"
    ctx = ScoringContext(pool=pool, models_dir=models_dir, device=cfg.device,
                         options={**cfg.options, **({"models": cfg.models} if cfg.models else {})},
                         cache_dir=scores_dir,
                         engine=EngineSettings(cfg.engine, address=cfg.ray_address, workers=cfg.ray_workers),
                         compat=resolve_compat(cfg.compat))
    timings: dict[str, float] = {}

    # a --model's content, not its name: a moved hub ref or a rewritten checkpoint selects again
    overrides = {name: [spec, spec_fingerprint(spec)] for name, spec in sorted(cfg.models.items())}
    filters: dict[str, Any] = {}  # made once: a model loaded for its fingerprint is not loaded again
    with in_stage("select"):  # the key instantiates the filters: a bad option fails here, named so
        select_inputs = selection_inputs(pool, cfg.filter, ctx, cfg.seed, instances=filters)
    select_stage = Stage(out, "select", {**select_inputs, "world_models": models_fp, "models_override": overrides})
    selection = _timed(select_stage, timings, select, pool, cfg.filter, out, ctx, scores_dir, cfg.seed,
                       filters=filters)
    subset_path = out / "subset.npy"

    reshard_stage = Stage(out, "reshard", {"subset": content_digest(subset_path), "pool": pool.fingerprint(),
                                           "shards": pool.shards_fingerprint(),
                                           "code": source_fingerprint(harness.reshard, harness.pool)})
    resharding = _timed(reshard_stage, timings, reshard, pool, subset_path, out / "shards",
                        workers=cfg.workers)

    test_only = {"num_samples": cfg.train_num_samples} if cfg.train_num_samples else {}
    # the shards are a function of the reshard stage's inputs (its key); meta.json is what it wrote
    train_stage = Stage(out, "train", {"shards": [reshard_stage.key, content_digest(out / "shards" / "meta.json")],
                                       "recipe": get_recipe(cfg.scale).as_dict(), "seed": cfg.seed,
                                       "gpus": cfg.gpus, "code": training_code_fingerprint(),
                                       # pinned kernels or the machine's own give other bits (harness/numerics.py)
                                       "numerics": numerics.mode(numerics.TRAIN_THREADS),
                                       **test_only})
    trained = _timed(train_stage, timings, lambda: {"checkpoint": str(train(
        out / "shards", out / "train", scale=cfg.scale, seed=cfg.seed, gpus=cfg.gpus, **test_only))},
        discard=(out / "train",))
    checkpoint = Path(trained["checkpoint"])

    compat = resolve_compat(cfg.compat)  # the evaluation's mode (issue 16)
    eval_stage = Stage(out, "evaluate", {"checkpoint": content_digest(checkpoint), "suite": suite,
                                         "suite_definition": suite_fingerprint(suite), "compat": compat,
                                         "partial": cfg.partial, "code": evaluation_code_fingerprint(),
                                         "numerics": numerics.mode(numerics.INFERENCE_THREADS),
                                         "data_files": _eval_data_fingerprint(suite, eval_root)})
    evaluation = _timed(eval_stage, timings, evaluate, checkpoint, suite, eval_root, out,
                        device=cfg.device, partial=cfg.partial, num_workers=cfg.workers, compat=compat,
                        discard=(out / "eval_results.jsonl", out / "eval_summary.json"))

    summary = _summary(cfg, out, pool_dir, selection, resharding, evaluation, timings).to_json()
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def _eval_data_fingerprint(suite: str, eval_root: Path) -> str:
    """Content of every task's local data (names relative to the task directory, never the path)."""
    from harness.evaluation import load_suite
    from harness.evaluation.runners import task_data_path

    dirs = [(t.key, task_data_path(t, eval_root)) for t in load_suite(suite).tasks]  # hf_cache entries too
    return fingerprint([[key, fingerprint_tree(d) if d.is_dir() else None] for key, d in dirs])


def suite_fingerprint(suite: str) -> str:
    """The suite's definition file by content (editing tasks/<suite>.yaml re-evaluates)."""
    from harness.evaluation import load_suite

    path = load_suite(suite).path
    return content_digest(path) if path is not None else fingerprint(suite)


def training_code_fingerprint() -> str:
    """The recipe and driver code and the libraries that execute it."""
    import harness.training

    return fingerprint({"source": source_fingerprint(harness.training),
                        "libraries": package_versions("torch", "open_clip_torch", "webdataset")})


def evaluation_code_fingerprint() -> str:
    """The evaluator's code and the libraries whose metrics and loaders it uses."""
    import harness.evaluation

    return fingerprint({"source": source_fingerprint(harness.evaluation),
                        "libraries": package_versions("torch", "open_clip_torch", "clip-benchmark",
                                                       "webdataset", "datasets")})


def _summary(cfg: RunConfig, out: Path, pool_dir: Path, selection: dict[str, Any],
             resharding: dict[str, Any], evaluation: dict[str, Any],
             timings: dict[str, float]) -> Summary:
    import numpy as np

    from harness.world import world_fingerprint

    subset = np.load(out / "subset.npy")
    unique = int(len(np.unique(subset))) if len(subset) else 0
    record = {
        "schema_version": SCHEMA_VERSION,
        "harness_version": None if harness_version() == ABSENT else harness_version(),  # None: not installed
        "git_commit": git_commit(),
        "filter": cfg.filter,
        "scale": cfg.scale,
        "seed": cfg.seed,
        "pool": str(Path(pool_dir).resolve()),
        "samples": int(len(subset)),
        "unique_samples": unique,
        "uniform": unique == len(subset),
        "aggregates": evaluation.get("aggregates", {}),
        "partial": bool(evaluation.get("partial", False)),
        "missing_tasks": evaluation.get("missing_tasks", []),
        "tasks": evaluation.get("tasks", {}),
        "suite": evaluation.get("suite"),
        "compat": evaluation.get("compat"),  # the evaluation's compatibility mode (datacomp / corrected)
        "provenance": {
            "world": str(Path(cfg.world).resolve()) if cfg.world else None,
            # the world's content: the README's table names the fingerprint of the world it was made on
            "world_fingerprint": world_fingerprint(cfg.world) if cfg.world else None,
            "selection": selection,
            "reshard": resharding,
            "stage_seconds": timings,
            "train_num_samples": cfg.train_num_samples,  # None for a recipe run
            "run_dir": str(out.resolve()),
            "config_fingerprint": fingerprint({"filter": cfg.filter, "scale": cfg.scale, "seed": cfg.seed}),
            "python": sys.version.split()[0],
        },
    }
    # through the reader's checks: a summary is written only if `harness report` can read it back
    return Summary.from_json(record, f"summary of {out}")
