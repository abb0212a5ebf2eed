"""`build_world`: generate (or reuse) a tiny DataComp world directory, step by step.

Steps and their completion records (a step is skipped when its record matches):
  models/ref_b32, models/ref_l14   models/<name>/complete.json   (the pool needs both)
  pool + oracle                    .build/pool.json   (also keyed by the two models' weight hashes)
  eval suite                       .build/eval.json
  imagenet_like                    .build/imagenet_like.json (keyed by ref_l14's weights)
  other models (dfn, meru, ...)    models/<name>/complete.json
  world.json                       written last; lists every completed model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_text, log
from .profiles import profile_knobs
from .reference_models import MODEL_BUILDERS, REQUIRED_MODELS, MissingBuilderError, resolve_builder

WORLD_VERSION = 2  # 2: text_in_image letters in the caption colour, larger
DEFAULT_MODELS: tuple[str, ...] = tuple(MODEL_BUILDERS)  # ref_b32, ref_l14, dfn, meru


class WorldMismatchError(RuntimeError):
    """The output directory already holds a world built with other settings."""


def world_fingerprint(seed: int, profile: str, knobs: dict) -> str:
    blob = json.dumps({"version": WORLD_VERSION, "seed": seed, "profile": profile, "knobs": knobs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _weights_hash(out: Path, name: str) -> str:
    from ..models import file_fingerprint

    return file_fingerprint(out / "models" / name / "model.pt")


def model_done(out: Path, name: str, fingerprint: str) -> bool:
    rec = _read_json(Path(out) / "models" / name / "complete.json")
    return bool(rec) and rec.get("world_fingerprint") == fingerprint


def _step_done(out: Path, step: str, key: dict) -> bool:
    rec = _read_json(out / ".build" / f"{step}.json")
    return bool(rec) and rec.get("key") == key


def _record_step(out: Path, step: str, key: dict, result: Any, seconds: float) -> None:
    atomic_write_text(out / ".build" / f"{step}.json",
                      json.dumps({"key": key, "result": result, "seconds": round(seconds, 1)}, indent=1) + "\n")


def _ordered_models(models: tuple[str, ...] | None) -> list[str]:
    requested = DEFAULT_MODELS if models is None else tuple(models)
    unknown = [m for m in requested if m not in MODEL_BUILDERS]
    if unknown:
        raise ValueError(f"unknown world model(s) {unknown}; known: {sorted(MODEL_BUILDERS)}")
    return list(dict.fromkeys([*REQUIRED_MODELS, *requested]))


def build_world(out: Path, seed: int = 0, profile: str = "default", models: tuple[str, ...] | None = None,
                knobs: dict | None = None) -> dict:
    """Build the tiny world in `out` (or reuse it) and return world.json's content.

    seed:    fixes every sample, eval item and model weight (same seed + same thread count ->
             identical parquet, npz, oracle, shards and weights).
    profile: "default" (12,800-sample pool, ~minutes) or "test" (2,000 samples, fast; for tests).
    models:  world models to build; default all registered (ref_b32, ref_l14, dfn, meru). ref_b32
             and ref_l14 are always built (the pool's scores come from them). A model whose builder
             module is missing raises MissingBuilderError naming it; leave it out and add it later:
             models are built incrementally and the rest is reused.
    knobs:   overrides of profile knobs (harness/world/profiles.py; documented in README.md):
             pool_size, shard_size, metadata_files, noise_mix, detail_mix, eval_size,
             imagenet_like_per_class, train.
    """
    out = Path(out)
    names = _ordered_models(models)
    full_knobs = profile_knobs(profile, knobs)
    fp = world_fingerprint(seed, profile, full_knobs)
    existing = _read_json(out / "world.json")
    if existing is not None and existing.get("fingerprint") != fp:
        raise WorldMismatchError(
            f"{out} already holds a world (generator version {existing.get('version')}, seed {existing.get('seed')}, "
            f"profile {existing.get('profile')!r}, fingerprint {existing.get('fingerprint')}); asked for version "
            f"{WORLD_VERSION}, seed {seed}, profile {profile!r} (fingerprint {fp}). Choose another output "
            f"directory or delete {out}.")
    if (existing is not None and all(m in existing.get("models", {}) and model_done(out, m, fp) for m in names)
            and all(_step_done(out, step, key) for step, key in _data_keys(out, fp).items())):
        log(f"[world] {out}: up to date (seed {seed}, profile {profile})")
        return existing
    builders = {m: resolve_builder(m) for m in names}  # fails fast, before any heavy work

    from filelock import FileLock

    (out / ".build").mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".build" / "lock")):
        ident = _read_json(out / ".build" / "identity.json")
        if ident is not None and ident.get("fingerprint") != fp:
            raise WorldMismatchError(f"{out} holds a partly built world with other settings "
                                     f"({ident}); choose another output directory or delete {out}")
        atomic_write_text(out / ".build" / "identity.json",
                          json.dumps({"fingerprint": fp, "seed": seed, "profile": profile}) + "\n")
        atomic_write_text(out / ".build" / "knobs.json", json.dumps(full_knobs, indent=1, sort_keys=True) + "\n")
        t_start = time.time()
        for name in REQUIRED_MODELS:
            _build_model(out, name, builders[name], seed, profile, fp)
        _build_data(out, seed, full_knobs, fp)
        for name in names:
            if name not in REQUIRED_MODELS:
                _build_model(out, name, builders[name], seed, profile, fp)
        from .reference_models import clear_caches

        clear_caches()
        world = _world_json(out, seed, profile, full_knobs, fp, existing)
        atomic_write_text(out / "world.json", json.dumps(world, indent=1, sort_keys=True) + "\n")
        log(f"[world] {out}: done in {time.time() - t_start:.0f}s")
    return world


def _build_model(out: Path, name: str, fn, seed: int, profile: str, fp: str) -> None:
    if model_done(out, name, fp):
        log(f"[world] model {name}: up to date")
        return
    model_dir = out / "models" / name
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a half-built model from an interrupted run
    t0 = time.time()
    log(f"[world] model {name}: building ({MODEL_BUILDERS[name]})")
    fn(out, seed, profile)
    if not (model_dir / "model.json").is_file():
        raise RuntimeError(f"builder of world model {name!r} ({MODEL_BUILDERS[name]}) wrote no {model_dir}/model.json")
    rec = {"name": name, "builder": MODEL_BUILDERS[name], "world_fingerprint": fp, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(model_dir / "complete.json", json.dumps(rec, indent=1) + "\n")
    log(f"[world] model {name}: done in {time.time() - t0:.0f}s")


def _data_keys(out: Path, fp: str) -> dict[str, dict]:
    """What each data step's record must hold for the step to count as done."""
    from .pool_writer import POOL_FORMAT

    try:
        weights = {m: _weights_hash(out, m) for m in REQUIRED_MODELS}
    except FileNotFoundError:
        weights = {}
    return {"pool": {"world": fp, "weights": weights, "format": POOL_FORMAT},
            "eval": {"world": fp},
            "imagenet_like": {"world": fp, "weights": weights}}


def _build_data(out: Path, seed: int, knobs: dict, fp: str) -> None:
    from ..models import load_clip
    from .eval_suite import write_suite
    from .imagenet_like import write_imagenet_like
    from .pool_writer import write_pool

    keys = _data_keys(out, fp)
    encoders: dict = {}

    def enc() -> dict:
        if not encoders:
            encoders.update(b32=load_clip(out / "models" / "ref_b32"), l14=load_clip(out / "models" / "ref_l14"))
        return encoders

    key = keys["pool"]
    if not _step_done(out, "pool", key):
        t0 = time.time()
        log(f"[world] pool: {knobs['pool_size']} samples")
        result = write_pool(out, seed, knobs, enc())
        _record_step(out, "pool", key, result, time.time() - t0)
    key = keys["eval"]
    if not _step_done(out, "eval", key):
        t0 = time.time()
        result = write_suite(out, seed, knobs)
        _record_step(out, "eval", key, result, time.time() - t0)
    key = keys["imagenet_like"]
    if not _step_done(out, "imagenet_like", key):
        t0 = time.time()
        result = write_imagenet_like(out, seed, knobs, enc())
        _record_step(out, "imagenet_like", key, result, time.time() - t0)


def _world_json(out: Path, seed: int, profile: str, knobs: dict, fp: str, existing: dict | None) -> dict:
    import open_clip
    import PIL
    import torch

    models = {}
    for d in sorted((out / "models").iterdir()):
        if d.is_dir() and model_done(out, d.name, fp):
            meta = _read_json(d / "model.json") or {}
            models[d.name] = {"dir": f"models/{d.name}", "kind": meta.get("kind"), "model_name": meta.get("model_name")}
    pool = (_read_json(out / ".build" / "pool.json") or {}).get("result", {})
    n = max(1, pool.get("samples", 1))
    steps = {s: (_read_json(out / ".build" / f"{s}.json") or {}).get("seconds") for s in ("pool", "eval", "imagenet_like")}
    return {
        "version": WORLD_VERSION, "seed": seed, "profile": profile, "fingerprint": fp, "knobs": knobs,
        "pool": {"path": "pool", **pool,
                 "noise_fractions": {k: round(v / n, 6) for k, v in pool.get("noise_counts", {}).items()}},
        "oracle": "oracle.parquet",
        "eval": {"suite": "tiny", "path": "eval",
                 "tasks": (_read_json(out / ".build" / "eval.json") or {}).get("result", {})},
        "imagenet_like": (_read_json(out / ".build" / "imagenet_like.json") or {}).get("result", {}),
        "models": models,
        "seconds": {**steps, **{m: (_read_json(out / "models" / m / "complete.json") or {}).get("seconds")
                                for m in models}},
        "created_with": {"torch": torch.__version__, "open_clip": open_clip.__version__,
                         "numpy": np.__version__, "pillow": PIL.__version__},
    }


def cli_main(argv: list[str] | None = None) -> int:
    """`harness world`: build the tiny world. Returns a process exit code."""
    p = argparse.ArgumentParser(prog="harness world", description=(
        "Generate the tiny DataComp world: a DataComp-layout pool with web-like noise, oracle labels, "
        "reference models and a zero-shot suite. Cached: a second call returns at once."))
    p.add_argument("--out", required=True, type=Path, help="world directory to create or reuse")
    p.add_argument("--seed", type=int, default=0, help="fixes every sample and model weight (default 0)")
    p.add_argument("--profile", default="default", choices=["default", "test"],
                   help="default: 12,800-sample pool; test: 2,000 samples, builds in about a minute")
    p.add_argument("--models", default=None,
                   help=f"comma-separated world models to build (default: all: {','.join(DEFAULT_MODELS)})")
    args = p.parse_args(argv)
    models = tuple(m for m in args.models.split(",") if m) if args.models else None
    try:
        world = build_world(args.out, seed=args.seed, profile=args.profile, models=models)
    except (MissingBuilderError, WorldMismatchError, ValueError) as e:
        print(f"harness world: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "samples": world["pool"].get("samples"),
                      "models": sorted(world["models"])}))
    return 0
