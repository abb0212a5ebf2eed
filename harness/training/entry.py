"""Per-process entry point for torchrun / SLURM launches of the fixed recipe.

    python -m torch.distributed.run --nproc_per_node 8 -m harness.training.entry \
        --shards DIR --out DIR --scale medium --seed 0

Every process re-derives the same plan from the recipe, using the world size torchrun (or SLURM)
put in its environment, so the per-device batch is global batch / (world size x accum_freq);
rank 0 checks and writes recipe.json. Then each process calls open_clip_train.main.main in-process
with our model configs registered and the data pipeline seeded (harness.training.seeding).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from open_clip_train.distributed import world_info_from_env

from harness.training.driver import ensure_model_config, execute, plan_run
from harness.training.recipe import SCALES, get_recipe


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.training.entry", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, required=True, help="directory of NNNNNNNN.tar training shards")
    p.add_argument("--out", type=Path, required=True, help="run directory (recipe.json, logs, checkpoints)")
    p.add_argument("--scale", required=True, choices=sorted(SCALES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accum-freq", type=int, default=1)
    p.add_argument("--num-samples", type=int, default=None, help="TEST ONLY: replaces the recipe's samples seen")
    p.add_argument("--research-overrides", type=json.loads, default=None,
                   help="research mode: JSON object of recipe fields / open_clip options (marks the run)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    _, rank, world_size = world_info_from_env()
    overrides = ns.research_overrides or {}
    ensure_model_config(overrides.get("model", get_recipe(ns.scale).model))
    plan = plan_run(ns.shards, ns.out, ns.scale, seed=ns.seed, world_size=world_size, accum_freq=ns.accum_freq,
                    device=ns.device, num_samples=ns.num_samples, research_overrides=overrides or None)
    checkpoint = execute(plan, rank=rank)
    if rank == 0:
        print(checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
