"""Drive open_clip_train with the fixed recipe: in-process on CPU / one GPU, torchrun on several.

A run directory (`out_dir`) holds `recipe.json` (scale, recipe, the exact open_clip argument list
of every launch) and open_clip_train's own `<name>/out.log`, `params.txt` and
`checkpoints/epoch_latest.pt` / `epoch_<N>.pt`. Calling `train` again on the same directory
resumes from the last checkpoint (`--resume latest`) or, when the run is complete, returns the
final checkpoint at once; a request whose recipe, seed or data differ from the recorded run is
refused rather than mixed into it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.stages import atomic_write_text
from harness.training.console import train_logging
from harness.training.recipe import (
    Recipe,
    RecipeError,
    experiment_name,
    get_recipe,
    open_clip_args,
)

RECORD_NAME = "recipe.json"
log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """open_clip_train failed or did not leave the checkpoint it should have."""


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------

_SHARD_RE = re.compile(r"^(\d+)\.tar$")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")


def train_data_pattern(shards_dir: Path) -> str:
    """The brace pattern over a resharder output directory, e.g. `/d/{00000000..00000011}.tar`.

    Uses `meta.json` (output_shard_count / output_shard_format) when the resharder wrote one, else
    the `NNNNNNNN.tar` files present, which must run from 0 without gaps. Refuses a directory with
    no shards or no samples in them: resampled training would otherwise spin forever.
    """
    shards_dir = Path(shards_dir)
    if not shards_dir.is_dir():
        raise FileNotFoundError(f"training shards directory not found: {shards_dir}")
    meta_file = shards_dir / "meta.json"
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
            count, fmt = int(meta["output_shard_count"]), str(meta["output_shard_format"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{meta_file}: not a resharder meta.json ({exc})") from exc
        names = [fmt.format(i) for i in range(count)]
    else:
        found = sorted((m.group(1) for p in shards_dir.iterdir() if (m := _SHARD_RE.match(p.name))), key=int)
        names = [f"{s}.tar" for s in found]
        width = {len(s) for s in found}
        if len(width) > 1:
            raise ValueError(f"{shards_dir}: shard names of different widths ({sorted(width)})")
        count = len(names)
        if count and int(found[-1]) != count - 1:
            have = {int(s) for s in found}
            missing = next(i for i in range(count + 1) if i not in have)
            raise ValueError(f"{shards_dir}: shard {missing:0{width.pop()}d}.tar is missing (shards must run from 0)")
    if not names:
        raise ValueError(f"{shards_dir}: no webdataset shards (NNNNNNNN.tar) found")
    for name in names:
        if not (shards_dir / name).is_file():
            raise ValueError(f"{shards_dir}: shard {name} listed in meta.json is missing")
    _require_samples(shards_dir, names)
    if len(names) == 1:
        return str(shards_dir / names[0])
    first, last = Path(names[0]).stem, Path(names[-1]).stem
    return f"{shards_dir}/{{{first}..{last}}}.tar"


def _require_samples(shards_dir: Path, names: list[str]) -> None:
    """Stop at the first shard holding an image + caption pair; refuse when none does."""
    for name in names:
        path = shards_dir / name
        images: set[str] = set()
        texts: set[str] = set()
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    stem, ext = os.path.splitext(member.name)
                    ext = ext.lower()
                    (images if ext in _IMAGE_EXTS else texts if ext == ".txt" else set()).add(stem)
                    if images & texts:
                        return
        except tarfile.TarError as exc:
            raise ValueError(f"{path}: not a readable tar file ({exc})") from exc
    raise ValueError(f"{shards_dir}: the shards hold no image+caption sample (<key>.jpg with <key>.txt)")


# --------------------------------------------------------------------------------------------
# The plan: recipe + request -> exact argument list
# --------------------------------------------------------------------------------------------

# Flags that define where and what a run is; not even research mode may touch them.
_STRUCTURAL = {"train-data", "logs", "name", "seed", "resume", "accum-freq", "dataset-type",
               "save-most-recent", "dataset-resampled", "device"}
# Flags the recipe derives from its fields: research mode changes the field, not the flag.
_DERIVED = {"batch-size": "global_batch", "epochs": "num_checkpoints", "train-num-samples": "samples_seen",
            "lr": "lr", "warmup": "warmup", "model": "model", "precision": "precision",
            "workers": "workers", "beta2": "beta2", "eps": "eps", "grad-checkpointing": "grad_checkpointing",
            "save-frequency": "save_frequency", "log-every-n-steps": "log_every_n_steps"}
_RECIPE_FIELDS = {"model", "samples_seen", "global_batch", "lr", "warmup", "num_checkpoints", "precision",
                  "workers", "beta2", "eps", "grad_checkpointing", "log_every_n_steps", "save_frequency"}


@dataclass
class TrainPlan:
    scale: str
    recipe: Recipe                  # after research overrides, if any
    seed: int
    shards_dir: Path
    out_dir: Path
    train_data: str
    world_size: int
    accum_freq: int
    device: str                     # "cpu" or "cuda"
    name: str
    args: list[str]
    research_overrides: dict[str, Any] = field(default_factory=dict)
    num_samples: int | None = None  # test-only: total samples seen instead of the recipe's

    @property
    def mode(self) -> str:
        if self.research_overrides:
            return "research"
        return "test-only" if self.num_samples is not None else "recipe"

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / self.name / "checkpoints"

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoint_dir / f"epoch_{self.recipe.num_checkpoints}.pt"

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoint_dir / "epoch_latest.pt"

    @property
    def recipe_total_samples(self) -> int:
        """Samples this run sees in all (the test-only length when set)."""
        return self.recipe.samples_seen if self.num_samples is None else self.num_samples

    @property
    def log_file(self) -> Path:
        return self.out_dir / self.name / "out.log"

    def identity(self) -> dict[str, Any]:
        """What a resumed launch must share with the recorded run (world size may change)."""
        return {
            "scale": self.scale,
            "recipe": self.recipe.as_dict(),
            "seed": self.seed,
            "train_data": self.train_data,
            "name": self.name,
            "research_overrides": self.research_overrides,
            "num_samples": self.num_samples,
        }


def plan_run(
    shards_dir: Path,
    out_dir: Path,
    scale: str,
    *,
    seed: int = 0,
    world_size: int = 1,
    accum_freq: int = 1,
    device: str = "cpu",
    num_samples: int | None = None,
    research_overrides: dict[str, Any] | None = None,
) -> TrainPlan:
    """Resolve a request into the exact open_clip_train argument list (no side effects)."""
    recipe = get_recipe(scale)
    overrides = dict(research_overrides or {})
    raw_flags: dict[str, Any] = {}
    field_changes: dict[str, Any] = {}
    for key, value in overrides.items():
        dashed, under = key.replace("_", "-").lstrip("-"), key.replace("-", "_").lstrip("_")
        if under in _RECIPE_FIELDS:
            field_changes[under] = value
        elif dashed in _DERIVED:
            raise RecipeError(f"research override {key!r}: set the recipe field {_DERIVED[dashed]!r} instead")
        elif dashed in _STRUCTURAL:
            raise RecipeError(f"research override {key!r}: --{dashed} is fixed by the driver, not a hyper-parameter")
        elif under not in _open_clip_options():
            raise RecipeError(f"research override {key!r}: open_clip_train has no option --{dashed}")
        else:
            raw_flags[dashed] = value
    if field_changes:
        recipe = replace(recipe, **field_changes)
    if num_samples is not None and num_samples < recipe.num_checkpoints:
        raise RecipeError(f"num_samples={num_samples} is below the {recipe.num_checkpoints} checkpoints")
    out_dir = Path(out_dir).absolute()
    shards_dir = Path(shards_dir).absolute()
    train_data = train_data_pattern(shards_dir)
    name = experiment_name(scale) + ("" if not overrides else "-research") + (
        "" if num_samples is None else "-test")
    args = open_clip_args(recipe, train_data=train_data, logs=str(out_dir), name=name, seed=seed,
                          world_size=world_size, accum_freq=accum_freq, samples_seen=num_samples)
    for flag, value in raw_flags.items():
        args = _set_flag(args, flag, value)
    if device == "cpu":
        args += ["--device", "cpu"]  # explicit: never silently pick up a GPU for a CPU run
    return TrainPlan(scale=scale, recipe=recipe, seed=seed, shards_dir=shards_dir, out_dir=out_dir,
                     train_data=train_data, world_size=world_size, accum_freq=accum_freq, device=device,
                     name=name, args=args, research_overrides=overrides, num_samples=num_samples)


def _set_flag(args: list[str], flag: str, value: Any) -> list[str]:
    """Replace, add or (value False/None) remove `--flag` in an argument list."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == f"--{flag}":
            i += 1
            while i < len(args) and not args[i].startswith("--"):
                i += 1  # drop the old value(s)
            continue
        out.append(args[i])
        i += 1
    if value is True:
        out.append(f"--{flag}")
    elif value is not False and value is not None:
        values = value if isinstance(value, list | tuple) else [value]
        out += [f"--{flag}", *(str(v) for v in values)]
    return out


_OPTIONS: set[str] | None = None


def _open_clip_options() -> set[str]:
    global _OPTIONS
    if _OPTIONS is None:
        from open_clip_train.params import parse_args

        _OPTIONS = set(vars(parse_args([])))
    return _OPTIONS


# --------------------------------------------------------------------------------------------
# The run record
# --------------------------------------------------------------------------------------------


def _atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_record(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / RECORD_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{path}: unreadable run record ({exc})") from exc


def check_resumable(plan: TrainPlan) -> dict[str, Any] | None:
    """The existing record if it describes this same run; refuse to mix different runs."""
    record = read_record(plan.out_dir)
    if record is None:
        if plan.latest_checkpoint.exists():
            raise RecipeError(f"{plan.out_dir}: holds checkpoints but no {RECORD_NAME}; refusing to resume an "
                              "unrecorded run (use a fresh out_dir)")
        return None
    theirs = {k: record.get(k) for k in plan.identity()}
    ours = json.loads(json.dumps(plan.identity()))  # same JSON normal form as the file
    if theirs != ours:
        diff = sorted(k for k in ours if ours[k] != theirs[k])
        raise RecipeError(f"{plan.out_dir} holds a different run (differs in: {', '.join(diff)}); "
                          "refusing to resume into it; use a fresh out_dir")
    return record


def _versions() -> dict[str, str]:
    from harness.versions import package_versions

    return package_versions("torch", "open_clip_torch", "webdataset", "datacomp-harness")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_record(plan: TrainPlan, previous: dict[str, Any] | None, status: str) -> dict[str, Any]:
    record = dict(previous or {})
    launches = list(record.get("launches", []))
    if status == "running":
        launches.append({"started": _now(), "world_size": plan.world_size, "accum_freq": plan.accum_freq,
                         "device": plan.device, "resumed": plan.latest_checkpoint.exists(),
                         "args": plan.args})
    record.update(plan.identity())
    record.update({
        "mode": plan.mode,
        "datacomp_scale": plan.recipe.datacomp and plan.mode == "recipe",
        "optimizer": plan.recipe.optimizer(),
        "world_size": plan.world_size,
        "accum_freq": plan.accum_freq,
        "per_device_batch": plan.recipe.per_device_batch(plan.world_size, plan.accum_freq),
        "args": plan.args,
        "deterministic_data": "harness.training.seeding (seeded per (seed, epoch, rank, worker))",
        "versions": _versions(),
        "status": status,
        "launches": launches,
        "log": str(plan.log_file),
        "final_checkpoint": str(plan.final_checkpoint) if status == "complete" else None,
    })
    if plan.mode == "test-only":
        record["note"] = "test-only run: num_samples replaces the recipe's samples seen; not a recipe result"
    elif plan.mode == "research":
        record["note"] = "research run: hyper-parameters differ from the fixed recipe; not comparable"
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(plan.out_dir / RECORD_NAME, record)
    return record


# --------------------------------------------------------------------------------------------
# Running open_clip_train
# --------------------------------------------------------------------------------------------


def ensure_model_config(model: str) -> None:
    """Register the harness's model configs and make sure open_clip knows `model`."""
    import open_clip

    from harness.models import register_configs

    register_configs()

    if ":" not in model and model not in open_clip.list_models():
        raise RecipeError(f"open_clip has no model config {model!r} (harness.models.register_configs() adds "
                          "harness/model_configs/*.json)")


class _ProcessState:
    """What open_clip_train's main() changes in the calling process, to put back afterwards."""

    def __init__(self) -> None:
        root = logging.getLogger()
        self.handlers = list(root.handlers)
        self.root_level = root.level
        self.levels = {n: lg.level for n, lg in logging.root.manager.loggerDict.items()
                       if isinstance(lg, logging.Logger)}
        self.random = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark,
                      torch.backends.cudnn.deterministic)
        self.threads = torch.get_num_threads()
        self.environ = dict(os.environ)
        self.argv = list(sys.argv)

    def restore(self) -> None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in self.handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(self.root_level)
        for name, lg in logging.root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(self.levels.get(name, logging.NOTSET))
        random.setstate(self.random)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.deterministic) = self.flags
        torch.set_num_threads(self.threads)
        for key in set(os.environ) - set(self.environ):
            del os.environ[key]
        os.environ.update(self.environ)
        sys.argv[:] = self.argv


def _safe_pt_load(file_path: str, map_location: Any = None) -> Any:
    """open_clip_train's resume loader, with weights_only=True whatever the environment says."""
    from harness import safeload

    return safeload.torch_load(file_path, map_location=map_location or "cpu")


def _atomic_save(real: Any) -> Any:
    """torch.save that writes ``.<name>.partial`` and renames it: a failed write (a full disk) leaves
    neither a truncated checkpoint nor open_clip_train's ``tmp.pt``, and names the file in one line."""

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(f, (str, os.PathLike)):
            return real(obj, f, *args, **kwargs)
        path = Path(f)
        partial = path.with_name(f".{path.name}.partial")
        try:
            real(obj, partial, *args, **kwargs)
            os.replace(partial, path)
        except (OSError, RuntimeError) as exc:
            partial.unlink(missing_ok=True)
            # torch reports a failed write as "[enforce fail at inline_container.cc:...] ... file write failed"
            free = shutil.disk_usage(path.parent).free / 2**20
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write failed"
            raise TrainingError(f"train: cannot write checkpoint {path}: {cause} ({free:.1f} MiB free there); "
                                "no partial file was left, free some space and rerun to resume") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return None

    return save


def run_open_clip(args: list[str], seed: int, log_file: Path | None = None) -> None:
    """Call open_clip_train.main.main(args) in this process, as DataComp does, and clean up after it."""
    from open_clip_train import main as oc_main
    from PIL import Image

    from harness.models import quiet_random_init
    from harness.training.seeding import deterministic_data

    state = _ProcessState()
    pil_limit = Image.MAX_IMAGE_PIXELS  # the data pipeline lowers it (seeding.bound_image_decoding)
    real_save, real_load = torch.save, oc_main.pt_load
    torch.save, oc_main.pt_load = _atomic_save(real_save), _safe_pt_load
    try:
        # the recipe trains from scratch: open_clip's "initialized randomly" is the intent, not a fault
        with deterministic_data(seed), warnings.catch_warnings(), quiet_random_init():
            result = oc_main.main(copy.copy(args))
    except SystemExit as exc:  # argparse errors and open_clip's exit(1)
        raise TrainingError(f"open_clip_train exited with status {exc.code}{_log_hint(log_file)}") from None
    finally:
        torch.save, oc_main.pt_load = real_save, real_load
        Image.MAX_IMAGE_PIXELS = pil_limit
        state.restore()
    if result == -1:
        raise TrainingError(f"open_clip_train refused to run{_log_hint(log_file)}")


def _log_hint(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-5:]
    return f" (log {log_file}; last lines:\n" + "\n".join(tail) + ")"


def torchrun_command(plan: TrainPlan, gpus: int) -> list[str]:
    """One node, `gpus` processes, each running harness.training.entry (which re-derives the plan)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
           "-m", "harness.training.entry", *entry_arguments(plan)]
    return cmd


def entry_arguments(plan: TrainPlan) -> list[str]:
    out = ["--shards", str(plan.shards_dir), "--out", str(plan.out_dir), "--scale", plan.scale,
           "--seed", str(plan.seed), "--accum-freq", str(plan.accum_freq)]
    if plan.num_samples is not None:
        out += ["--num-samples", str(plan.num_samples)]
    if plan.research_overrides:
        out += ["--research-overrides", json.dumps(plan.research_overrides)]
    return out


def execute(plan: TrainPlan, rank: int = 0) -> Path:
    """Record (rank 0), run in this process, verify the final checkpoint, mark the run complete."""
    previous = check_resumable(plan) if rank == 0 else None
    if rank == 0:
        write_record(plan, previous, "running")
    # open_clip_train's log: in full to its out.log, on the console as one bar (harness.training.console)
    with train_logging(plan.recipe_total_samples, plan.recipe.num_checkpoints) as summary:
        run_open_clip(plan.args, plan.seed, plan.log_file)
    if rank == 0:
        if not plan.final_checkpoint.exists():
            raise TrainingError(f"training ended without {plan.final_checkpoint}{_log_hint(plan.log_file)}")
        write_record(plan, read_record(plan.out_dir), "complete")
        loss = "" if summary.loss is None else f", last {summary.loss_name.lower()} {summary.loss:.4f}"
        log.info("trained on %d samples%s; full log %s", summary.samples, loss, plan.log_file)
    return plan.final_checkpoint


def _warn_small_selection(shards_dir: Path, global_batch: int) -> None:
    """Fewer samples than one global batch: every batch repeats each sample many times; say so."""
    try:
        count = int(json.loads((shards_dir / "meta.json").read_text())["output_count"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a resharder output: nothing to count cheaply
    if count < global_batch:
        log.warning("train: %s holds %d sample(s), fewer than one global batch (%d): each batch repeats "
                    "them about %d times", shards_dir, count, global_batch, -(-global_batch // max(count, 1)))


def train(
    shards_dir: Path,
    out_dir: Path,
    scale: str,
    seed: int = 0,
    gpus: int = 0,
    num_samples: int | None = None,
    *,
    accum_freq: int = 1,
    research_overrides: dict[str, Any] | None = None,
    **hyperparameters: Any,
) -> Path:
    """Train CLIP on `shards_dir` with the fixed recipe of `scale`; return the final checkpoint.

    gpus=0 trains on CPU and gpus=1 on one GPU, both in this process; gpus=N>1 launches torchrun
    with N processes and the same global batch. `accum_freq` splits each global batch into steps
    (memory only). `num_samples` is the TEST-ONLY path: it replaces the recipe's samples seen and
    marks the run "test-only". `research_overrides` ({recipe field or open_clip option: value})
    is research mode: allowed, but the run is marked and named "-research". Any other keyword
    (lr=..., batch_size=...) is refused: the recipe is not a knob.
    """
    if hyperparameters:
        names = ", ".join(sorted(hyperparameters))
        raise RecipeError(f"the {scale!r} recipe is fixed; refusing override(s) {names}. Research runs pass "
                          "research_overrides={...} (the run is then marked as research)")
    if gpus < 0:
        raise RecipeError(f"gpus must be >= 0, got {gpus}")
    if gpus >= 1 and torch.cuda.device_count() < gpus:
        raise TrainingError(f"gpus={gpus} requested but torch sees {torch.cuda.device_count()} CUDA device(s); "
                            "open_clip_train cannot run several CPU processes (gpus=0 trains on CPU)")
    recipe = get_recipe(scale)
    ensure_model_config((research_overrides or {}).get("model", recipe.model))
    plan = plan_run(shards_dir, out_dir, scale, seed=seed, world_size=max(gpus, 1), accum_freq=accum_freq,
                    device="cpu" if gpus == 0 else "cuda", num_samples=num_samples,
                    research_overrides=research_overrides)
    _warn_small_selection(Path(shards_dir), plan.recipe.global_batch)
    record = check_resumable(plan)
    if record is not None and record.get("status") == "complete" and plan.final_checkpoint.exists():
        log.info("run in %s is complete; returning %s", plan.out_dir, plan.final_checkpoint)
        return plan.final_checkpoint
    if gpus <= 1:
        return execute(plan)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    launch_log = plan.out_dir / "torchrun.log"
    with open(launch_log, "ab") as sink:
        proc = subprocess.run(torchrun_command(plan, gpus), stdout=sink, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise TrainingError(f"torchrun exited with status {proc.returncode}{_log_hint(launch_log)}")
    if not plan.final_checkpoint.exists():
        raise TrainingError(f"torchrun finished without {plan.final_checkpoint}{_log_hint(launch_log)}")
    return plan.final_checkpoint
