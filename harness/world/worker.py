"""Worker process of the world build: `python -m harness.world.worker --out DIR --job NAME ...`.

Started by build_world with the pinned-numerics environment (harness/numerics.py); runs one step
(a model name; "pool" for the pool, its oracle and the ImageNet-like set; "eval" for the eval
suite) with one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import console, numerics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.world.worker", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--job", required=True, help="a world model name, 'pool' or 'eval'")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--builder", default=None, help="the model's builder, 'module:function' (as the parent "
                   "process had it in reference_models.MODEL_BUILDERS)")
    args = p.parse_args(argv)
    console.setup(int(os.environ.get(console.VERBOSITY_ENV) or console.NORMAL))
    numerics.init_worker(numerics.WORLD_THREADS)
    from .build import run_job
    from .reference_models import MODEL_BUILDERS

    if args.builder:
        MODEL_BUILDERS.register(args.job, args.builder, replace=True)

    with numerics.pinned(numerics.WORLD_THREADS):
        run_job(args.out, args.job, args.seed, args.profile)
    return 0


if __name__ == "__main__":
    status = main()
    # every file is written and closed by now; skip the interpreter's slow teardown of torch
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
