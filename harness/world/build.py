"""`build_world`: generate (or reuse) a tiny DataComp world directory, step by step.

Steps and their completion records (a step is skipped when its record matches: the settings'
fingerprint and `code_fingerprint`, the digest of the source the step runs):
  models/ref_b32, models/ref_l14   models/<name>/complete.json   (the pool needs both)
  pool + oracle                    .build/pool.json   (also keyed by the two models' weight hashes)
  eval suite                       .build/eval.json
  imagenet_like                    .build/imagenet_like.json (keyed by ref_l14's weights)
  other models (dfn, meru, ...)    models/<name>/complete.json
  world.json                       written last; lists every completed model and the content fingerprint

Every step that computes (model training, rendering, features) runs in a worker process
(`python -m harness.world.worker`) started with pinned numerics (harness/numerics.py) and one
thread, so the bytes do not depend on the machine, on the calling process's torch settings or on
how many workers ran side by side. Steps run in parallel (`workers`, default: one per core, at
most one per step) in the order `plan_order` finds shortest from their measured costs; the pool
step (pool, oracle, ImageNet-like set) waits for ref_b32 and ref_l14, the eval suite for nothing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.stages import atomic_write_text

from .. import console, numerics
from .fingerprint import world_fingerprint
from .io import LOG, PROGRESS_ENV
from .profiles import profile_knobs
from .reference_models import MODEL_BUILDERS, REQUIRED_MODELS, resolve_builder

# 2: text_in_image letters in the caption colour, larger
# 3: pinned numerics (harness/numerics.py: ATen AVX2, MKL COMPATIBLE, no oneDNN), one thread for
#    every computing step (features included), no timings in model.json
# 4: pinned matrix products through OpenBLAS's Haswell kernels (harness/pinned_gemm.py); the
#    numerics mode enters the settings fingerprint
# 5: a smaller default profile (6,400-sample pool, reference models trained 160 steps of 64):
#    about 6 minutes on 2 cores instead of 20
WORLD_VERSION = 5
DEFAULT_MODELS: tuple[str, ...] = tuple(MODEL_BUILDERS)  # ref_b32, ref_l14, dfn, meru
# The data steps' worker jobs: "pool" writes the pool, its oracle and the ImageNet-like set (all
# scored by ref_b32 and ref_l14, so it waits for them); "eval" writes the eval suite (no model).
POOL_JOB, EVAL_JOB = "pool", "eval"
DATA_JOBS = (POOL_JOB, EVAL_JOB)
# seconds each step took in a worker on the idle 2-core development machine (default profile, world
# v5, the 320 s build; BENCHMARKS.md): plan_order schedules by them and the build's bar weighs by them
_COST = {"meru": 139, "ref_l14": 134, "pool": 113, "dfn": 88, "ref_b32": 87, "eval": 16}
_COST_UNKNOWN = 100  # a model registered by a plugin
_PLAN_SEARCH_MAX = 8  # up to this many steps, every start order is simulated (8! = 40,320 orders)


class WorldMismatchError(RuntimeError):
    """The output directory already holds a world built with other settings."""


def settings_fingerprint(seed: int, profile: str, knobs: dict) -> str:
    """Identity of what was asked for (generator version, seed, profile, knobs); see world_fingerprint
    for the identity of what was generated."""
    blob = json.dumps({"version": WORLD_VERSION, "seed": seed, "profile": profile, "knobs": knobs,
                       "numerics": numerics.mode(numerics.WORLD_THREADS)}, sort_keys=True)  # pinned or native kernels: other bits
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_workers(n_jobs: int) -> int:
    """HARNESS_WORLD_WORKERS, else one per core (at most one per model). The count changes no byte."""
    env = os.environ.get("HARNESS_WORLD_WORKERS", "")
    if env:
        if not env.isdigit():
            raise ValueError(f"HARNESS_WORLD_WORKERS={env!r}: expected a whole number (0 = no worker processes)")
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_jobs))


def _job_needs(job: str, jobs: list[str] | tuple[str, ...]) -> set[str]:
    """The steps among `jobs` that `job` waits for: the pool's scores come from ref_b32 and ref_l14."""
    return {m for m in REQUIRED_MODELS if m in jobs} if job == POOL_JOB else set()


def _take_ready(waiting: list[str], needs: dict[str, set[str]], done: set[str]) -> str | None:
    """Remove and return the first waiting step whose prerequisites are done: the rule by which a free
    worker picks its next step, in the build (_run_in_workers) and in its simulation."""
    job = next((j for j in waiting if needs[j] <= done), None)
    if job is not None:
        waiting.remove(job)
    return job


def _step_costs(jobs: list[str] | tuple[str, ...], table: dict[str, float] | None = None) -> dict[str, float]:
    """Each step's expected seconds: from `table` (default the measured _COST), _COST_UNKNOWN if absent."""
    table = _COST if table is None else table
    return {job: table.get(job, _COST_UNKNOWN) for job in jobs}


def simulated_makespan(order: list[str] | tuple[str, ...], n_workers: int, cost: dict[str, float]) -> float:
    """When a build of the steps in `order` would end if every free worker took the first step of
    `order` whose prerequisites are done (what _run_in_workers does) and each took cost[step] s."""
    needs = {job: _job_needs(job, order) for job in order}
    waiting, running, done, now = list(order), [], set(), 0.0
    while waiting or running:
        while len(running) < max(1, n_workers) and (job := _take_ready(waiting, needs, done)) is not None:
            running.append((now + cost[job], job))
        if not running:
            raise ValueError(f"world steps {waiting} wait for steps that are not part of the build")
        running.sort()
        now, job = running.pop(0)
        done.add(job)
    return now


def plan_order(jobs: list[str], n_workers: int, cost: dict[str, float] | None = None) -> list[str]:
    """The start order of the build's steps with the shortest simulated build (`simulated_makespan`,
    steps weighed by `cost`, default the measured _COST). Starting the longest step first is not
    enough: on two workers it would run MERU beside ref_l14 and leave the pool, which waits for both
    reference models, to the end. Up to _PLAN_SEARCH_MAX steps every order is tried (ties go to the
    one nearest longest-first); beyond that, longest first."""
    c = _step_costs(jobs, cost)
    longest_first = sorted(jobs, key=lambda job: (-c[job], job))
    if len(jobs) > _PLAN_SEARCH_MAX or n_workers <= 1:
        return longest_first
    return list(min(itertools.permutations(longest_first), key=lambda o: simulated_makespan(o, n_workers, c)))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _weights_hash(out: Path, name: str) -> str:
    from ..stages import sha256_file

    return sha256_file(out / "models" / name / "model.pt")


# What every step runs besides its builder's package: the generator, the pinned numerics, the model configs
_SHARED_CODE = ("world", "numerics.py", "pinned_gemm.py", "models.py", "model_configs")


@functools.cache
def code_fingerprint(model: str | None = None) -> str:
    """Digest of the source a step runs: harness/world, the numerics, the model configs and, for a
    model, every .py/.json file of its builder's package. A step whose code changed is rebuilt even
    when the settings did not (once, a MERU built before its model code changed was reused)."""
    harness_dir = Path(__file__).resolve().parents[1]
    roots = [harness_dir / p for p in _SHARED_CODE]
    if model is not None:
        module = importlib.import_module(MODEL_BUILDERS.get(model).partition(":")[0])
        if getattr(module, "__file__", None):
            roots.append(Path(module.__file__).resolve().parent)
    h = hashlib.sha256()
    for root in dict.fromkeys(roots):
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for f in files:
            if f.is_file() and f.suffix in (".py", ".json"):
                h.update(f"{f.relative_to(root.parent).as_posix()}\0".encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def model_done(out: Path, name: str, fingerprint: str) -> bool:
    rec = _read_json(Path(out) / "models" / name / "complete.json")
    if not rec or rec.get("world_fingerprint") != fingerprint:
        return False
    # a model whose builder this process does not register (a plugin not imported) is listed as built
    return name not in MODEL_BUILDERS or rec.get("code") == code_fingerprint(name)


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
    clash = [m for m in requested if m in DATA_JOBS]
    if clash:
        raise ValueError(f"world model name(s) {clash} are taken by the build's data steps {list(DATA_JOBS)}; "
                         "register the model under another name")
    return list(dict.fromkeys([*REQUIRED_MODELS, *requested]))


def build_world(out: Path, seed: int = 0, profile: str = "default", models: tuple[str, ...] | None = None,
                knobs: dict | None = None, workers: int | None = None) -> dict:
    """Build the tiny world in `out` (or reuse it) and return world.json's content.

    seed:    fixes every sample, eval item and model weight: the same seed gives identical parquet,
             npz, oracle, shards and weights on every x86-64 machine with AVX2 (harness/numerics.py).
    profile: "default" (6,400-sample pool, ~5 minutes on 2 cores) or "test" (2,000 samples, fast; for tests).
    models:  world models to build; default all registered (ref_b32, ref_l14, dfn, meru). ref_b32
             and ref_l14 are always built (the pool's scores come from them). A registered model whose
             builder module does not exist raises MissingBuilderError naming it. Models are built
             incrementally: adding one to a built world reuses the rest.
    knobs:   overrides of profile knobs (harness/world/profiles.py; documented in README.md):
             pool_size, shard_size, metadata_files, noise_mix, detail_mix, eval_size,
             imagenet_like_per_class, train.
    workers: worker processes (one thread each) for the models and data steps; default
             HARNESS_WORLD_WORKERS or one per core. 0 runs every step in this process (pinned as
             well; for debugging). The number changes no byte of the world.
    """
    out = Path(out)
    names = _ordered_models(models)
    full_knobs = profile_knobs(profile, knobs)
    fp = settings_fingerprint(seed, profile, full_knobs)
    existing = _read_json(out / "world.json")
    if existing is not None and existing.get("fingerprint") != fp:
        raise WorldMismatchError(
            f"{out} already holds a world (generator version {existing.get('version')}, seed {existing.get('seed')}, "
            f"profile {existing.get('profile')!r}, fingerprint {existing.get('fingerprint')}); asked for version "
            f"{WORLD_VERSION}, seed {seed}, profile {profile!r} (fingerprint {fp}). Choose another output "
            f"directory or delete {out}.")
    if (existing is not None and all(m in existing.get("models", {}) and model_done(out, m, fp) for m in names)
            and all(_step_done(out, step, key) for step, key in _data_keys(out, fp).items())):
        LOG.info("world %s: up to date (seed %d, profile %s)", out, seed, profile)
        return existing
    for m in names:
        resolve_builder(m)  # fails fast, before any heavy work

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
        todo = sorted((m for m in names if not model_done(out, m, fp)), key=lambda m: -_COST.get(m, _COST_UNKNOWN))
        keys = _data_keys(out, fp)
        data_jobs = []
        if (any(m in REQUIRED_MODELS for m in todo)  # new ref weights -> new features
                or not (_step_done(out, "pool", keys["pool"]) and _step_done(out, "imagenet_like", keys["imagenet_like"]))):
            data_jobs.append(POOL_JOB)
        if not _step_done(out, "eval", keys["eval"]):
            data_jobs.append(EVAL_JOB)
        n_workers = default_workers(len(todo) + len(data_jobs)) if workers is None else int(workers)
        for name in names:
            if name not in todo:
                LOG.debug("world model %s: up to date", name)
        _run_steps(out, seed, profile, todo, data_jobs, n_workers)
        from .reference_models import ARRAYS_DIR, clear_caches

        clear_caches()
        shutil.rmtree(out / ARRAYS_DIR, ignore_errors=True)  # rendered training images: only for the build
        world = _world_json(out, seed, profile, full_knobs, fp, existing)
        atomic_write_text(out / "world.json", json.dumps(world, indent=1, sort_keys=True) + "\n")
        LOG.info("world %s: done in %.0f s; content fingerprint %s", out, time.time() - t_start,
                 world["content_fingerprint"])
    return world


def _job_command(out: Path, job: str, seed: int, profile: str) -> list[str]:
    cmd = [sys.executable, "-m", "harness.world.worker", "--out", str(out), "--job", job, "--seed", str(seed),
           "--profile", profile]
    return cmd if job in DATA_JOBS else [*cmd, "--builder", MODEL_BUILDERS[job]]


def _runs_in_worker(name: str) -> bool:
    """False for a builder a fresh process cannot import (a module made at run time, e.g. in a test)."""
    module = sys.modules.get(MODEL_BUILDERS[name].partition(":")[0])
    return module is None or getattr(module, "__file__", None) is not None


def run_job(out: Path, job: str, seed: int, profile: str) -> None:
    """One step of the build (a model name, POOL_JOB or EVAL_JOB), in this process. The worker's entry point."""
    knobs = json.loads((out / ".build" / "knobs.json").read_text())
    fp = settings_fingerprint(seed, profile, knobs)
    if job == POOL_JOB:
        _build_pool(out, seed, knobs, fp)
    elif job == EVAL_JOB:
        _build_eval(out, seed, knobs, fp)
    else:
        _build_model(out, job, resolve_builder(job), seed, profile, fp)


def _run_steps(out: Path, seed: int, profile: str, todo: list[str], data_jobs: list[str], n_workers: int) -> None:
    """Build the models in `todo` and the data steps in `data_jobs` (the pool waits for ref_b32/ref_l14).

    Each step runs in its own worker process (`python -m harness.world.worker`) started with
    pinned numerics and one thread; up to n_workers run at once. n_workers=0: all in this process.
    """
    local = [m for m in todo if not _runs_in_worker(m)]
    if n_workers <= 0 or any(m in REQUIRED_MODELS for m in local):  # all in this process, pinned the same way
        _run_here(out, [*todo, *data_jobs], seed, profile)
        return
    remote = [m for m in todo if m not in local]
    if remote or data_jobs:
        _run_in_workers(out, seed, profile, [*remote, *data_jobs], n_workers)
    _run_here(out, local, seed, profile)


def _run_here(out: Path, jobs: list[str], seed: int, profile: str) -> None:
    """Run the steps in this process, pinned as a worker would be."""
    if not jobs:
        return
    with numerics.pinned(numerics.WORLD_THREADS):
        for job in jobs:
            t0 = time.time()
            run_job(out, job, seed, profile)
            LOG.info("world %s: done in %.0f s", job, time.time() - t0)


class _WorldBar:
    """One bar for the whole build: the steps weighed by _COST, each running step's share read from
    the progress file its worker writes (io.report_progress); the running steps' counts as its note."""

    def __init__(self, jobs: list[str], progress_dir: Path) -> None:
        self.weights = _step_costs(jobs)
        self.progress_dir, self.done = progress_dir, 0.0
        progress_dir.mkdir(parents=True, exist_ok=True)
        self.bar = console.progress(total=sum(self.weights.values()), desc="world", leave=False,
                                    bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")

    def report_file(self, job: str) -> Path:
        """Where the worker of `job` reports (io.PROGRESS_ENV); emptied for a step that starts."""
        path = self.progress_dir / f"{job}.json"
        path.unlink(missing_ok=True)
        return path

    def update(self, running: dict[str, Any]) -> None:
        share, notes = 0.0, []
        for job in running:
            try:
                report = json.loads((self.progress_dir / f"{job}.json").read_text())
            except (OSError, ValueError):  # not started yet, or replaced while read
                continue
            share += self.weights[job] * report["done"] / max(1, report["total"])
            notes.append(f"{report['label']} {report['done']}/{report['total']} {report['unit']}s "
                         f"{report['note']}".strip())
        self.bar.set_postfix_str(", ".join(notes), refresh=False)
        self.bar.update(min(self.done + share, self.bar.total) - self.bar.n)  # redrawn at most every mininterval

    def finished(self, job: str) -> None:
        self.done += self.weights[job]
        (self.progress_dir / f"{job}.json").unlink(missing_ok=True)

    def close(self) -> None:
        self.bar.close()
        shutil.rmtree(self.progress_dir, ignore_errors=True)


def _run_in_workers(out: Path, seed: int, profile: str, jobs: list[str], n_workers: int) -> None:
    order = plan_order(jobs, n_workers)
    estimate = ""
    if profile == "default":  # _COST is the default profile's, measured on an idle 2-core machine
        minutes = max(1, round(simulated_makespan(order, n_workers, _step_costs(order)) / 60))
        estimate = f" (about {minutes} min on an idle 2-core machine)"
    LOG.info("world %s: building %s in %d worker process(es), one thread each, pinned numerics%s", out,
             ", ".join(order), n_workers, estimate)
    env = numerics.child_environ(numerics.WORLD_THREADS)
    env[console.VERBOSITY_ENV] = str(console.verbosity())  # the workers' console: this one's -q/-v
    bar = _WorldBar(jobs, out / ".build" / "progress")
    # what this process can import (its builders' modules), the worker can too
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    needs = {job: _job_needs(job, order) for job in order}
    waiting, done = list(order), set()
    running: dict[str, subprocess.Popen] = {}
    started: dict[str, float] = {}

    try:
        while True:
            while len(running) < n_workers and (job := _take_ready(waiting, needs, done)) is not None:
                started[job] = time.time()
                running[job] = subprocess.Popen(_job_command(out, job, seed, profile),
                                                env={**env, PROGRESS_ENV: str(bar.report_file(job))})
            if not running:
                break
            time.sleep(0.2)
            bar.update(running)
            for job, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[job]
                if proc.returncode != 0:
                    raise RuntimeError(f"world step {job!r} failed in its worker process (exit status "
                                       f"{proc.returncode}; its traceback is above); rerun to resume: finished "
                                       "steps are kept")
                done.add(job)
                bar.finished(job)
                left = len(waiting) + len(running)
                LOG.info("world %s: done in %.0f s (%d step(s) left)", job, time.time() - started[job], left)
        if waiting:
            raise RuntimeError(f"{out}: world steps {waiting} wait for steps that were not built")
    finally:
        bar.close()
        for proc in running.values():  # an error elsewhere or Ctrl-C: stop the other workers
            proc.terminate()
        for proc in running.values():
            proc.wait()


def _build_model(out: Path, name: str, fn, seed: int, profile: str, fp: str) -> None:
    if model_done(out, name, fp):
        return
    model_dir = out / "models" / name
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a half-built model from an interrupted run
    t0 = time.time()
    LOG.debug("world model %s: building (%s)", name, MODEL_BUILDERS[name])
    fn(out, seed, profile)
    if not (model_dir / "model.json").is_file():
        raise RuntimeError(f"builder of world model {name!r} ({MODEL_BUILDERS[name]}) wrote no {model_dir}/model.json")
    rec = {"name": name, "builder": MODEL_BUILDERS[name], "world_fingerprint": fp, "code": code_fingerprint(name),
           "seconds": round(time.time() - t0, 1)}
    atomic_write_text(model_dir / "complete.json", json.dumps(rec, indent=1) + "\n")
    LOG.debug("world model %s: done in %.0f s", name, time.time() - t0)


def _data_keys(out: Path, fp: str) -> dict[str, dict]:
    """What each data step's record must hold for the step to count as done."""
    from .pool_writer import POOL_FORMAT

    try:
        weights = {m: _weights_hash(out, m) for m in REQUIRED_MODELS}
    except FileNotFoundError:
        weights = {}
    code = code_fingerprint()
    return {"pool": {"world": fp, "weights": weights, "format": POOL_FORMAT, "code": code},
            "eval": {"world": fp, "code": code},
            "imagenet_like": {"world": fp, "weights": weights, "code": code}}


def _build_pool(out: Path, seed: int, knobs: dict, fp: str) -> None:
    """The pool, its oracle and the ImageNet-like set: the data steps that ref_b32 and ref_l14 score."""
    from ..models import load_clip
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
        LOG.debug("world pool: %d samples", knobs["pool_size"])
        result = write_pool(out, seed, knobs, enc())
        _record_step(out, "pool", key, result, time.time() - t0)
    key = keys["imagenet_like"]
    if not _step_done(out, "imagenet_like", key):
        t0 = time.time()
        result = write_imagenet_like(out, seed, knobs, enc())
        _record_step(out, "imagenet_like", key, result, time.time() - t0)


def _build_eval(out: Path, seed: int, knobs: dict, fp: str) -> None:
    """The eval suite: drawn from the seed alone, so it runs beside the models."""
    from .eval_suite import write_suite

    key = _data_keys(out, fp)["eval"]
    if not _step_done(out, "eval", key):
        t0 = time.time()
        result = write_suite(out, seed, knobs)
        _record_step(out, "eval", key, result, time.time() - t0)


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
        "content_fingerprint": world_fingerprint(out, finished=False),
        "numerics": _numerics_record(),
        "seconds": {**steps, **{m: (_read_json(out / "models" / m / "complete.json") or {}).get("seconds")
                                for m in models}},
        "created_with": {"torch": torch.__version__, "open_clip": open_clip.__version__,
                         "numpy": np.__version__, "pillow": PIL.__version__},
    }


def _numerics_record() -> dict:
    """How the computing steps were pinned (they ran in pinned worker processes)."""
    if not numerics.enabled():
        return {"mode": "native"}
    from .. import pinned_gemm

    return {"mode": "pinned", "cpu_capability": numerics.PINNED_CAPABILITY, "mkl_cbwr": numerics.MKL_BRANCH,
            "gemm": pinned_gemm.identity(), "onednn": False, "threads": numerics.WORLD_THREADS}
