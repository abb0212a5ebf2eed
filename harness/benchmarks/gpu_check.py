"""`make gpu-check`: does the harness's GPU path work on this machine, and how fast is it?

    python -m harness.benchmarks.gpu_check [--device auto|cuda|cpu] [--pool-samples N] [--train-steps K] [--keep DIR]

Runs, on the chosen device, the code a real run uses, on inputs generated in a temporary folder (no
downloads, no world needed), and prints one line per stage with its throughput and peak memory:

- train: the first optimizer steps of the fixed recipe through `harness.training.train` (open_clip_train
  in this process); on CUDA the `small` recipe: ViT-B-32 with its real per-GPU batch of 4096 on one GPU;
- dfn, hype, tmars: the registered scorers (`setup` + `score_samples`) over a generated DataComp-layout
  pool; on CUDA with the real architectures, randomly initialised (ViT-B-32 for DFN and T-MARS's scoring
  CLIP, MERU ViT-L/16 for HYPE; the weights do not change the cost);
- evaluate: `harness.evaluation.evaluate` of the trained checkpoint on a generated zero-shot suite.

On CPU the same code runs on the tiny configs (the `tiny` recipe's tiny-clip, the world's ref-b32-tiny
and hype-tiny), small enough for a test. Training steps are TEST-ONLY runs (`num_samples`), marked so in
their record. Peak memory is torch.cuda.max_memory_allocated per stage on CUDA; on CPU it is the
process's peak resident set so far (it only grows).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import resource
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Profile:
    scale: str                 # training recipe
    clip: str                  # open_clip config of DFN and T-MARS's scoring CLIP
    meru: str                  # config of HYPE's hyperbolic CLIP
    image_size: int            # generated pool / shard images
    pool_samples: int
    train_steps: int           # optimizer steps (at least the recipe's checkpoint count)
    shard_samples: int         # distinct training samples written (drawn with replacement)
    eval_images: int           # per task, 2 tasks
    batch_size: int            # scoring and evaluation batch


PROFILES = {
    "cuda": Profile("small", "ViT-B-32", "hype-meru-vit-l-16", 224, 1024, 5, 4096, 2000, 256),
    "cpu": Profile("tiny", "ref-b32-tiny", "hype-tiny", 64, 48, 4, 128, 64, 32),
}


@dataclass
class StageResult:
    stage: str
    config: str
    items: int
    unit: str
    seconds: float
    peak_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


class _Meter:
    """Wall time and peak memory of one stage on `device`."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> _Meter:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = int(torch.cuda.max_memory_allocated())
        else:  # ru_maxrss is in KiB on Linux
            self.peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        self.seconds = time.perf_counter() - self.t0


# --- generated inputs --------------------------------------------------------------------------

def _jpeg(rng: np.random.Generator, size: int, word: str | None = None) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.fromarray(rng.integers(60, 200, (size, size, 3), dtype=np.uint8))
    if word:  # rendered text, so T-MARS's detector has something to find
        ImageDraw.Draw(img).text((size // 8, size // 3), word, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_pool(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """A DataComp-layout pool: metadata/00000000.parquet (uid, text, clip_l14_similarity_score) and
    shards/00000000.tar ({key}.jpg/.txt/.json per sample)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    uids = [f"{int(a):016x}{int(b):016x}" for a, b in rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)]
    words = ["sale", "open", "menu", "hello"]
    captions = [f"a photo of thing {i} on a table" for i in range(n)]
    (root / "metadata").mkdir(parents=True)
    (root / "shards").mkdir()
    pq.write_table(pa.table({"uid": uids, "text": captions,
                             "clip_l14_similarity_score": rng.uniform(0.1, 0.4, n)}),
                   root / "metadata" / "00000000.parquet")
    with tarfile.open(root / "shards" / "00000000.tar", "w") as tar:
        for i, uid in enumerate(uids):
            key = f"0000{i:05d}"
            members = {"jpg": _jpeg(rng, size, words[i % 4] if i % 2 else None), "txt": captions[i].encode(),
                       "json": json.dumps({"uid": uid, "caption": captions[i], "key": key}).encode()}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return root


def write_models(root: Path, profile: Profile, seed: int = 0) -> Path:
    """World-layout model folders (model.json + model.pt) with random weights: dfn and ref_b32 (CLIP),
    meru (HYPE's hyperbolic CLIP + a random reference set of tangent vectors)."""
    import open_clip
    import torch

    from harness.baselines.hype.model import MeruCLIP, hype_state_dict
    from harness.models import register_configs

    register_configs()
    torch.manual_seed(seed)
    clip = open_clip.create_model(profile.clip)
    for name in ("dfn", "ref_b32"):
        d = root / name
        d.mkdir(parents=True)
        torch.save(clip.state_dict(), d / "model.pt")
        (d / "model.json").write_text(json.dumps({"name": name, "model_name": profile.clip, "kind": "clip"}))
    meru = MeruCLIP.from_config(profile.meru)
    d = root / "meru"
    d.mkdir()
    torch.save(hype_state_dict(meru), d / "model.pt")
    width = open_clip.get_model_config(profile.meru)["embed_dim"]
    torch.save({"img": 0.1 * torch.randn(64, width), "txt": 0.1 * torch.randn(64, width)}, d / "reference_set.pt")
    (d / "model.json").write_text(json.dumps({"name": "meru", "model_name": profile.meru, "kind": "meru"}))
    return root


# --- stages ------------------------------------------------------------------------------------

def check_train(work: Path, profile: Profile, device: str) -> tuple[StageResult, Path]:
    import torch

    from harness.benchmarks.synthetic_shards import write_shards
    from harness.benchmarks.training import samples_trained, steady_rate
    from harness.training import get_recipe, read_record, train

    recipe = get_recipe(profile.scale)
    gpus = 1 if device.startswith("cuda") else 0
    batch = recipe.per_device_batch(max(gpus, 1))
    # TEST-ONLY: samples seen = steps x global batch, spread over the recipe's checkpoints
    steps = max(profile.train_steps, recipe.num_checkpoints)
    steps -= steps % recipe.num_checkpoints
    shards = write_shards(work / "shards", n_samples=profile.shard_samples, per_shard=max(64, profile.shard_samples // 8),
                          image_size=profile.image_size)
    threads = torch.get_num_threads()
    with _Meter(device) as m:
        ckpt = train(shards, work / "train", profile.scale, seed=0, gpus=gpus, num_samples=steps * recipe.global_batch)
    torch.set_num_threads(threads)
    logs = sorted((work / "train").glob("*/out.log"))
    steady = steady_rate(logs[0], batch) if logs else None
    # open_clip_train rounds each epoch's batches up to a multiple of the dataloader workers
    samples = samples_trained(read_record(work / "train")["args"])
    return StageResult("train", f"{recipe.model}, {profile.scale} recipe, per-device batch {batch}", samples,
                       "samples", m.seconds, m.peak, {"steps": samples // recipe.global_batch,
                                                      "steady_samples_per_s": steady}), ckpt


def check_scorer(name: str, pool_dir: Path, models: Path, profile: Profile, device: str) -> StageResult:
    from harness.plugins import ScoringContext, get_filter, load_plugins
    from harness.pool import Pool

    load_plugins([])
    pool = Pool(pool_dir)
    ctx = ScoringContext(pool=pool, models_dir=models, device=device, batch_size=profile.batch_size)
    scorer = get_filter(name)()
    samples = list(itertools.islice(pool.iter_samples(), profile.pool_samples))
    with _Meter(device) as load:
        scorer.setup(ctx)
    with _Meter(device) as m:
        terms = {}
        for i in range(0, len(samples), profile.batch_size):
            for k, v in scorer.score_samples(samples[i:i + profile.batch_size], ctx).items():
                terms.setdefault(k, []).append(np.asarray(v))
    out = {k: np.concatenate(v) for k, v in terms.items()}
    bad = [k for k, v in out.items() if len(v) != len(samples)]
    if bad:
        raise RuntimeError(f"gpu check: scorer {name} returned the wrong number of values for {bad}")
    model = models / ("meru" if name == "hype" else "dfn" if name == "dfn" else "ref_b32")
    config = json.loads((model / "model.json").read_text())["model_name"]
    return StageResult(name, config, len(samples), "samples", m.seconds, max(m.peak, load.peak),
                       {"setup_s": round(load.seconds, 3), "terms": sorted(out)})


def check_evaluate(work: Path, checkpoint: Path, profile: Profile, device: str) -> StageResult:
    from harness.benchmarks.evaluation import make_synthetic
    from harness.evaluation import evaluate

    (work / "eval").mkdir(parents=True, exist_ok=True)
    data, _, suite = make_synthetic(work / "eval", n_tasks=2, n_images=profile.eval_images)
    with _Meter(device) as m:
        summary = evaluate(str(checkpoint), suite, data, work / "eval_out", device=device,
                           batch_size=profile.batch_size, num_workers=0)
    return StageResult("evaluate", f"{len(suite.tasks)} zero-shot tasks", 2 * profile.eval_images, "images",
                       m.seconds, m.peak, {"average": summary["aggregates"].get("Average")})


def run_checks(work: Path, device: str = "auto", pool_samples: int | None = None,
               train_steps: int | None = None, world: Path | None = None) -> tuple[str, list[StageResult]]:
    """Every stage on `device`; with `world`, the scorers use the world's models and the first
    `pool_samples` samples of its pool instead of generated ones."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("gpu check: --device cuda asked for, but torch sees no CUDA device")
    profile = PROFILES["cuda" if device.startswith("cuda") else "cpu"]
    if pool_samples:
        profile = Profile(**{**asdict(profile), "pool_samples": pool_samples})
    if train_steps:
        profile = Profile(**{**asdict(profile), "train_steps": train_steps})
    results = []
    train_result, ckpt = check_train(work, profile, device)
    results.append(train_result)
    if world is not None:
        pool, models = Path(world) / "pool", Path(world) / "models"
        missing = [m for m in ("dfn", "ref_b32", "meru") if not (models / m / "model.json").is_file()]
        if missing:
            raise RuntimeError(f"gpu check: {models} lacks the world model(s) {', '.join(missing)}")
    else:
        pool = write_pool(work / "pool", profile.pool_samples, profile.image_size)
        models = write_models(work / "models", profile)
    for name in ("dfn", "hype", "tmars"):
        results.append(check_scorer(name, pool, models, profile, device))
    results.append(check_evaluate(work, ckpt, profile, device))
    return device, results


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def format_results(device: str, results: list[StageResult]) -> str:
    mem = "peak GPU memory" if device.startswith("cuda") else "peak RSS (process)"
    lines = [f"| stage | model | items | seconds | throughput | {mem} |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        rate = f"{r.rate:,.1f} {r.unit}/s"
        if r.extra.get("steady_samples_per_s"):
            rate += f" (steady {r.extra['steady_samples_per_s']:,.1f})"
        lines.append(f"| {r.stage} | {r.config} | {r.items:,} {r.unit} | {r.seconds:.2f} | {rate} | "
                     f"{r.peak_bytes / 2**30:.2f} GiB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.benchmarks.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu (default: auto)")
    ap.add_argument("--pool-samples", type=int, default=None, help="generated pool size for the scorers "
                    f"(default: {PROFILES['cuda'].pool_samples} on CUDA, {PROFILES['cpu'].pool_samples} on CPU)")
    ap.add_argument("--train-steps", type=int, default=None, help="optimizer steps, rounded to the recipe's "
                    f"checkpoint count (default: {PROFILES['cuda'].train_steps} on CUDA, {PROFILES['cpu'].train_steps} on CPU)")
    ap.add_argument("--world", type=Path, default=None,
                    help="score the first --pool-samples samples of this generated world with its own models "
                         "(default: a generated pool and randomly initialised models)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="harness-gpu-check-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        device, results = run_checks(work, args.device, args.pool_samples, args.train_steps, args.world)
    print(f"GPU check on {describe_device(device)}\n")
    print(format_results(device, results), end="")
    if args.json:
        args.json.write_text(json.dumps({"device": describe_device(device), "stages": [
            {**asdict(r), "rate": r.rate} for r in results]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
