"""Scoring throughput of a model scorer: the local engine beside Ray with 1 and 2 workers.

    python -m harness.benchmarks.scoring_engines [--world DIR] [--scorer dfn] [--samples 2000] [--workers 1,2]

The pool is a slice of a world (every metadata file, the first ``--samples`` shard samples), so a run
takes a minute or two on a laptop. Each engine scores it from scratch (no cache); a Ray time includes
starting the actors and loading one model per actor, which every job pays once (seconds: it matters on
a small pool, not on a real one). Ray itself is started before the clock (as a cluster would be) and
each engine first runs one untimed job on a small slice (imports, page cache, Ray's worker
processes). Prints a Markdown table, and the per-sample CPU cost of decoding a web-sized JPEG.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORLDS = (REPO / ".cache" / "world-seed0", REPO / ".cache" / "test-world-seed0")


def find_world(given: str | None) -> Path:
    for cand in ([Path(given)] if given else list(WORLDS)):
        if (cand / "world.json").exists() and (cand / "pool" / "metadata").is_dir():
            return cand
    raise SystemExit(
        f"no world found (looked at {given or ', '.join(map(str, WORLDS))}); build one with "
        "`harness world --seed 0 --out .cache/world-seed0` or pass --world DIR"
    )


def write_pool_slice(world: Path, out: Path, samples: int) -> Path:
    """``out`` as a world: the world's metadata (linked), shards holding its first ``samples`` shard
    samples (same shard names and sizes, the last one cut), ``models``/``imagenet_like`` linked."""
    from harness.pool import iter_shard_raw

    (out / "pool" / "metadata").mkdir(parents=True)
    (out / "pool" / "shards").mkdir()
    for f in sorted((world / "pool" / "metadata").iterdir()):
        (out / "pool" / "metadata" / f.name).symlink_to(f.resolve())
    for name in ("models", "imagenet_like"):
        if (world / name).exists():
            (out / name).symlink_to((world / name).resolve())
    left = samples
    for shard in sorted((world / "pool" / "shards").glob("*.tar")):
        if left <= 0:
            break
        with tarfile.open(out / "pool" / "shards" / shard.name, "w") as tf:
            for key, raw in iter_shard_raw(shard):
                if left <= 0:
                    break
                for ext, data in raw.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                left -= 1
    return out


def _time_engine(world: Path, scorer: str, batch_size: int, engine: str, workers: int | None) -> tuple[float, int]:
    from harness.plugins import EngineSettings, ScoringContext
    from harness.pool import Pool
    from harness.scoring import score

    pool = Pool(world / "pool")
    ctx = ScoringContext(pool=pool, models_dir=world / "models", batch_size=batch_size,
                         engine=EngineSettings(engine, workers=workers))
    t0 = time.perf_counter()
    table = score(pool, scorer, ctx, None, progress=False)
    seconds = time.perf_counter() - t0
    scored = int(table[table.attrs["record"]["terms"][0]].notna().sum())
    return seconds, scored


def decode_cost_ms(n: int = 100, size: tuple[int, int] = (512, 384)) -> float:
    """ms per sample to decode a web-sized JPEG and apply CLIP's 224 px eval transform, the CPU work
    every model scorer does per sample whatever its model (the world's renders are smaller)."""
    import numpy as np
    import open_clip
    from PIL import Image

    from harness.pool import decode_image

    rng = np.random.default_rng(0)
    w, h = size
    grad = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.3, 1, h)[:, None, None]
    arr = np.clip(grad + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    transform = open_clip.image_transform(224, is_train=False)
    t0 = time.perf_counter()
    for _ in range(n):
        transform(decode_image(data))
    return 1000 * (time.perf_counter() - t0) / n


def format_table(rows: list[dict]) -> str:
    local = next((r for r in rows if r["engine"] == "local"), None)
    base = local["samples"] / local["seconds"] if local else float("nan")
    lines = ["| engine | workers | samples | seconds | samples/s | ms/sample | vs local |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["samples"] / r["seconds"]
        lines.append(f"| {r['engine']} | {r['workers']} | {r['samples']} | {r['seconds']:.1f} | {rate:.1f} | "
                     f"{1000 / rate:.2f} | {rate / base:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.benchmarks.scoring_engines", description=__doc__.split("\n")[0])
    ap.add_argument("--world", help="a world directory (default: .cache/world-seed0, else .cache/test-world-seed0)")
    ap.add_argument("--scorer", default="dfn", help="a model scorer (default dfn)")
    ap.add_argument("--samples", type=int, default=2000, help="shard samples to score (default 2000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to time (default 1,2)")
    ap.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    world = find_world(args.world)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        warm = write_pool_slice(world, Path(tmp) / "warm", min(args.samples, 100))
        sliced = write_pool_slice(world, Path(tmp) / "world", args.samples)
        # a first, untimed job per engine: imports, model files in the page cache, Ray's worker pool
        _time_engine(warm, args.scorer, args.batch_size, "local", None)
        secs, n = _time_engine(sliced, args.scorer, args.batch_size, "local", None)
        rows.append({"engine": "local", "workers": 1, "samples": n, "seconds": secs})
        import ray

        ray.init(num_cpus=args.ray_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            for w in workers:
                _time_engine(warm, args.scorer, args.batch_size, "ray", w)
                secs, n = _time_engine(sliced, args.scorer, args.batch_size, "ray", w)
                rows.append({"engine": "ray", "workers": w, "samples": n, "seconds": secs})
        finally:
            ray.shutdown()
    print(f"\nScoring throughput, `{args.scorer}` on {world.name} ({args.samples} samples, batch {args.batch_size}); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}, ray {ray.__version__}\n")
    print(format_table(rows))
    print(f"\nJPEG decode + CLIP 224 px transform of a 512x384 image: {decode_cost_ms():.1f} ms/sample (1 core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
