"""Specificity benchmark: throughput (pool items x reference items per second) and peak memory.

``python -m harness.benchmarks.hype [--dim 768] [--ref 4096] [--pools 2000,20000] [--chunk 1024]``
prints a Markdown snippet for BENCHMARKS.md. Embeddings are random tangent vectors of HYPE's
ViT-L/14 width (768); the cost of the geometry does not depend on what the vectors mean.

Peak memory is measured as the largest resident-set growth above the level before each run
(sampled by a thread; CUDA: torch.cuda.max_memory_allocated). With chunking it is bounded by the
chunk size, so it stays flat as the pool grows.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from harness.baselines.hype import geometry as G


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: fall back to the (monotone) max RSS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_growth(fn: Callable[[], None], device: str) -> tuple[float, int]:
    """(seconds, peak memory growth in bytes) of fn()."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, torch.cuda.max_memory_allocated() - base
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    peak[0] = max(peak[0], _rss_bytes())
    return dt, peak[0] - base


def measure_one(n: int, n_ref: int, dim: int, chunk: int, device: str, seed: int = 0) -> dict:
    """One pool size, in the current process (call it in a fresh one: allocator caches from an earlier
    run would hide the working set)."""
    gen = torch.Generator().manual_seed(seed)
    curv = torch.tensor(1.0, device=device)
    ref = G.exp_map0((torch.randn(n_ref, dim, generator=gen) * 0.05).to(device), curv)
    pool = G.exp_map0((torch.randn(n, dim, generator=gen) * 0.05).to(device), curv)
    out = torch.empty(n, device=device)

    def work() -> None:
        out.copy_(G.text_specificity(pool, ref, curv, chunk=chunk))

    dt, peak = _peak_growth(work, device)
    return {"pool": n, "ref": n_ref, "dim": dim, "chunk": chunk, "seconds": dt,
            "pairs_per_s": n * n_ref / dt, "peak_mib": peak / 2**20, "pool_mib": pool.numel() * 4 / 2**20}


def run(pools: list[int], n_ref: int, dim: int, chunk: int, device: str) -> list[dict]:
    """Each measurement in its own subprocess; plus one unchunked run of the largest pool for contrast."""
    import json
    import subprocess
    import sys

    rows = []
    plan = [(n, chunk) for n in pools] + [(max(pools), max(max(pools), n_ref))]
    for n, c in plan:
        cmd = [sys.executable, "-m", "harness.benchmarks.hype", "--one", str(n), "--ref", str(n_ref),
               "--dim", str(dim), "--chunk", str(c), "--device", device]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


def markdown(rows: list[dict], device: str, threads: int) -> str:
    """The rows as a Markdown table with a one-line header."""
    lines = [
        f"HYPE specificity (eps_t; eps_i costs the same), {device}, {threads} thread(s), fp32, "
        f"reference set {rows[0]['ref']} x {rows[0]['dim']}, chunk {rows[0]['chunk']}:",
        "",
        "| pool items | seconds | pool x reference pairs / s | peak extra memory (MiB) | pool embeddings (MiB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = f"{r['pool']:,}" if r["chunk"] == rows[0]["chunk"] else f"{r['pool']:,} (unchunked)"
        lines.append(f"| {label} | {r['seconds']:.2f} | {r['pairs_per_s']:.3g} | {r['peak_mib']:.1f} "
                     f"| {r['pool_mib']:.1f} |")
    lines.append("")
    lines.append("Peak extra memory: resident-set growth during the computation, beyond the embeddings "
                 "already held (each row in a fresh process). Chunked, it is bounded by chunk x reference "
                 "and does not grow with the pool; the unchunked row shows what chunking saves.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--ref", type=int, default=4096)
    p.add_argument("--pools", default="2000,20000")
    p.add_argument("--chunk", type=int, default=G.DEFAULT_CHUNK)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="also write the snippet to this file")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one measurement
    a = p.parse_args(argv)
    if a.one is not None:
        import json

        print(json.dumps(measure_one(a.one, a.ref, a.dim, a.chunk, a.device)))
        return
    pools = [int(x) for x in a.pools.split(",") if x]
    rows = run(pools, a.ref, a.dim, a.chunk, a.device)
    text = markdown(rows, a.device, torch.get_num_threads())
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
