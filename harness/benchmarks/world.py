"""Benchmark: build the default tiny world from scratch, then call again (cached). Prints Markdown.

`python -m harness.benchmarks.world [--out DIR] [--profile default|test]`; a temporary directory by default.
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
    p.add_argument("--workers", type=int, default=None, help="world worker processes (default: one per core)")
    args = p.parse_args(argv)
    from . import build_world

    with tempfile.TemporaryDirectory(prefix="world-bench-") as tmp:
        out = args.out or Path(tmp) / "world"
        t0 = time.perf_counter()
        world = build_world(out, seed=args.seed, profile=args.profile, workers=args.workers)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_world(out, seed=args.seed, profile=args.profile)
        second = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    from harness.world.build import default_workers

    workers = args.workers if args.workers is not None else default_workers(5)
    print(f"`harness world --seed {args.seed} --profile {args.profile}` ({workers} worker processes, one thread "
          f"each; load average {os.getloadavg()[0]:.1f})\n")
    print("| step | seconds (in its worker; steps overlap) |\n|---|---|")
    for step, sec in sorted(world["seconds"].items()):
        print(f"| {step} | {sec} |")
    print(f"| **total (first build)** | **{first:.0f}** |")
    print(f"| second call (cached) | {second:.2f} |")
    cpu = ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime
    print(f"\nCPU time {cpu:.0f}s (workers included), peak RSS {max(ru.ru_maxrss, ch.ru_maxrss) / 2**20:.2f} GiB; "
          f"pool {world['pool']['samples']} samples in {world['pool']['shards']} shards; "
          f"content fingerprint {world['content_fingerprint']}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
