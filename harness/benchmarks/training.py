"""Training throughput: our driver against open_clip_train's own CLI, same shards, config and arguments.

    python -m harness.benchmarks.training [--shards DIR] [--scale tiny] [--samples N] [--repeats R]

Both sides run in a fresh Python process, so both pay the same start-up (imports, model build):
  - driver: `harness.training.train(...)` (plan, run record, seeded data pipeline, in-process
    open_clip_train.main.main),
  - CLI:    `open_clip_train.main` run as `__main__` (what `python -m open_clip_train.main` does)
    with exactly the argument list our driver recorded, only `--logs` pointing elsewhere; the
    harness model configs are registered first, since open_clip does not know `tiny-clip`.
Throughput = samples trained / wall seconds of the process; the steady-state figure is the mean of
the per-step samples/s that open_clip_train logs (first step of each epoch left out). Prints a
Markdown section (for `make bench`) and writes bench.json next to the runs.

Shards: --shards, else the tiny world's pool shards (.cache/world-seed0/pool/shards), else
synthetic rendered-shape shards generated into the output directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.training.driver import plan_run
from harness.training.recipe import SCALES, get_recipe

_RATE = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/\d+ .*?Batch \(t\): [\d.]+, ([\d.eE+-]+)/s,")

# Registers model configs in the child, then runs what follows on the command line.
_BOOT = """
import sys, open_clip
from harness.models import register_configs
register_configs()
for path in {extra!r}:
    open_clip.add_model_config(path)
"""
_CLI = _BOOT + """
import runpy
runpy.run_module("open_clip_train.main", run_name="__main__", alter_sys=True)
"""
_DRIVER = _BOOT + """
import json
from harness.training import train
kw = json.loads(sys.argv[1])
print(train(**kw))
"""


def samples_trained(args: list[str]) -> int:
    """What open_clip_train draws for these arguments (full batches, rounded to the workers)."""
    def val(flag: str) -> int:
        return int(args[args.index(flag) + 1])

    batch, workers = val("--batch-size"), max(1, val("--workers"))
    batches = math.ceil(math.ceil(val("--train-num-samples") / batch) / workers) * workers
    return batches * batch * val("--epochs")


def steady_rate(log_file: Path, batch: int) -> float | None:
    rates = [float(rate) for seen, rate in _RATE.findall(log_file.read_text(errors="replace"))
             if int(seen) > batch]
    return statistics.fmean(rates) if rates else None


def _run(code: str, argv: list[str], log: Path) -> float:
    env = {**os.environ}
    start = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.run([sys.executable, "-c", code, *argv], stdout=sink, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"benchmark run failed (exit {proc.returncode}); {log}:\n{tail}")
    return seconds


def default_shards(work: Path) -> Path:
    world = Path(os.environ.get("WORLD", ".cache/world-seed0")) / "pool" / "shards"
    if world.is_dir() and any(world.glob("*.tar")):
        return world
    from harness.benchmarks.synthetic_shards import write_shards

    out = work / "synthetic_shards"
    if not (out / "00000012.tar").exists():
        write_shards(out, n_samples=12_800, per_shard=1000, image_size=64)
    return out


def bench(shards: Path | None, out: Path, scale: str = "tiny", samples: int | None = None, repeats: int = 1,
          seed: int = 0, model_configs: list[str] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    shards = shards or default_shards(out)
    extra = [str(Path(p).absolute()) for p in model_configs or []]
    results: dict[str, list[dict]] = {"driver": [], "cli": []}
    for r in range(repeats):
        driver_out, cli_out = out / f"driver{r}", out / f"cli{r}"
        for d in (driver_out, cli_out):
            if d.exists():
                raise FileExistsError(f"{d} exists; the benchmark needs fresh run directories (use a new --out)")
        plan = plan_run(shards, driver_out, scale, seed=seed, num_samples=samples)
        cli_args = [*plan.args]
        cli_args[cli_args.index("--logs") + 1] = str(cli_out)
        n = samples_trained(plan.args)
        batch = int(plan.args[plan.args.index("--batch-size") + 1])
        kw = {"shards_dir": str(shards), "out_dir": str(driver_out), "scale": scale, "seed": seed,
              "num_samples": samples}
        order = [("cli", _CLI, cli_args, cli_out), ("driver", _DRIVER, [json.dumps(kw)], driver_out)]
        if r % 2:
            order.reverse()  # alternate which side runs first, against drift on a shared machine
        for side, code, argv, run_dir in order:
            run_dir.mkdir(parents=True)
            seconds = _run(code.format(extra=extra), argv, run_dir / "process.log")
            results[side].append({"seconds": seconds, "samples": n, "samples_per_s": n / seconds,
                                  "steady_samples_per_s": steady_rate(run_dir / plan.name / "out.log", batch)})
    summary = {side: {"samples_per_s": statistics.median(x["samples_per_s"] for x in runs),
                      "steady_samples_per_s": _median_or_none([x["steady_samples_per_s"] for x in runs]),
                      "runs": runs} for side, runs in results.items()}
    summary["ratio"] = summary["driver"]["samples_per_s"] / summary["cli"]["samples_per_s"]
    d, c = summary["driver"]["steady_samples_per_s"], summary["cli"]["steady_samples_per_s"]
    summary["steady_ratio"] = d / c if d and c else None
    summary.update({"scale": scale, "shards": str(shards), "samples": samples_trained(plan.args),
                    "repeats": repeats, "args": plan.args, "threads": os.environ.get("OMP_NUM_THREADS")})
    (out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _median_or_none(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def markdown(s: dict) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    steady = "n/a" if s["steady_ratio"] is None else f"{s['steady_ratio']:.3f}"
    lines = [
        f"Scale `{s['scale']}`, {s['samples']} samples per run, shards `{s['shards']}`, "
        f"{s['repeats']} repeat(s), OMP_NUM_THREADS={s['threads']}. Each side in a fresh process.",
        "",
        "| runner | samples/s (whole process) | samples/s (steady, from the log) |",
        "|---|---|---|",
        f"| open_clip_train CLI | {fmt(s['cli']['samples_per_s'])} | {fmt(s['cli']['steady_samples_per_s'])} |",
        f"| harness driver | {fmt(s['driver']['samples_per_s'])} | {fmt(s['driver']['steady_samples_per_s'])} |",
        "",
        f"Ratio driver / CLI: **{s['ratio']:.3f}** whole process, {steady} steady (target >= 0.95).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.benchmarks.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, default=None, help="training shards (NNNNNNNN.tar)")
    p.add_argument("--scale", default="tiny", choices=sorted(SCALES))
    p.add_argument("--samples", type=int, default=None,
                   help="samples seen per run (default: a quarter of the scale's recipe)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-config", action="append", default=[], help="extra open_clip config file or dir")
    p.add_argument("--out", type=Path, default=None, help="work directory (default: a fresh temp dir)")
    ns = p.parse_args(argv)
    samples = ns.samples or get_recipe(ns.scale).samples_seen // 4
    out = ns.out or Path(tempfile.mkdtemp(prefix="train-bench-"))
    summary = bench(ns.shards, out, ns.scale, samples, ns.repeats, ns.seed, ns.model_config)
    print(markdown(summary))
    print(f"\n_Runs and bench.json in `{out}`._")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
