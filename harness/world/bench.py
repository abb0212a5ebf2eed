"""Benchmark: build the default tiny world from scratch, then call again (cached). Prints Markdown.

`python -m harness.world.bench [--out DIR] [--profile default|test]`; a temporary directory by default.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--profile", default="default")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from . import build_world

    with tempfile.TemporaryDirectory(prefix="world-bench-") as tmp:
        out = args.out or Path(tmp) / "world"
        t0 = time.perf_counter()
        world = build_world(out, seed=args.seed, profile=args.profile)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_world(out, seed=args.seed, profile=args.profile)
        second = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    threads = os.environ.get("HARNESS_WORLD_THREADS", "1")
    print(f"`harness world --seed {args.seed} --profile {args.profile}` (training threads: {threads})\n")
    print("| step | seconds |\n|---|---|")
    for step, sec in sorted(world["seconds"].items()):
        print(f"| {step} | {sec} |")
    print(f"| **total (first build)** | **{first:.0f}** |")
    print(f"| second call (cached) | {second:.2f} |")
    print(f"\nCPU time {ru.ru_utime + ru.ru_stime:.0f}s, peak RSS {ru.ru_maxrss / 2**20:.2f} GiB; "
          f"pool {world['pool']['samples']} samples in {world['pool']['shards']} shards.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
