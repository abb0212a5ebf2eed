"""`make bench`: run every benchmark in a fresh process and collect their Markdown into one file.

Each benchmark module has a `main()` that prints a Markdown section (its own side-by-side
comparisons, as ratios measured in the same run). Running them in separate processes keeps peak-memory
figures honest and one failure from hiding the others.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS: list[tuple[str, str]] = [
    ("world", "harness.benchmarks.world"),
    ("selection and resharding", "harness.benchmarks.selection"),
    ("HYPE specificity", "harness.benchmarks.hype"),
    ("T-MARS detection and re-scoring", "harness.benchmarks.tmars"),
    ("training throughput", "harness.benchmarks.training"),
    ("evaluation", "harness.benchmarks.evaluation"),
    ("scoring engines (local vs Ray)", "harness.benchmarks.scoring_engines"),
]


def machine_line() -> str:
    cores = os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as handle:
            kb = int(handle.readline().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {cores} cores{mem}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.generated.md"))
    parser.add_argument("--only", action="append", default=[], help="module name(s) to run")
    args = parser.parse_args(argv)
    sections = [f"# Benchmarks (generated {time.strftime('%Y-%m-%d %H:%M')})", "", f"Machine: {machine_line()}", ""]
    failed = 0
    for title, module in BENCHMARKS:
        if args.only and module not in args.only:
            continue
        print(f"== {title} ({module})", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        sections.append(f"## {title}\n")
        if proc.returncode == 0:
            sections.append(proc.stdout.strip())
        else:
            failed += 1
            sections.append(f"FAILED (exit {proc.returncode}):\n\n```\n{proc.stderr.strip()[-3000:]}\n```")
        sections.append(f"\n_`python -m {module}` took {seconds:.1f} s._\n")
        print(proc.stdout, flush=True)
    args.out.write_text("\n".join(sections) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
