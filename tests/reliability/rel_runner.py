"""`harness run` as the interruption tests drive it: a subprocess that runs harness.run.run() and marks,
in a probe directory, when each stage's work starts, so the test knows when to SIGKILL it.

Used instead of `python -m harness.cli run` only because the CLI has no flag for the test-only training
length (RunConfig.train_num_samples); the flow is the same function the CLI calls.

    python rel_runner.py WORLD RUNS FILTER TRAIN_SAMPLES PROBE_DIR [HOLD_STAGE HOLD_SECONDS]

A stage named in HOLD_STAGE sleeps HOLD_SECONDS after its start mark and before its work, so a kill
"during" a stage that takes milliseconds (scoring a metadata column) lands inside it.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path


def _probe(module, attr: str, stage: str, probe: Path, hold: dict[str, float]) -> None:
    real = getattr(module, attr)

    @functools.wraps(real)
    def wrapped(*args, **kwargs):
        (probe / f"{stage}.started").write_text(str(time.time()))
        time.sleep(hold.get(stage, 0.0))
        result = real(*args, **kwargs)
        (probe / f"{stage}.finished").write_text(str(time.time()))
        return result

    setattr(module, attr, wrapped)


def main(argv: list[str]) -> int:
    world, runs, expr, samples, probe = argv[:5]
    hold = {argv[5]: float(argv[6])} if len(argv) > 6 else {}
    probe_dir = Path(probe)
    probe_dir.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    import harness.evaluation
    import harness.reshard
    import harness.scoring
    import harness.training
    from harness.run import RunConfig, run

    _probe(harness.scoring, "compute_many", "score", probe_dir, hold)
    _probe(harness.reshard, "reshard", "reshard", probe_dir, hold)
    _probe(harness.training, "train", "train", probe_dir, hold)
    _probe(harness.evaluation, "evaluate", "evaluate", probe_dir, hold)
    run(RunConfig(filter=expr, world=Path(world), runs=Path(runs), train_num_samples=int(samples), workers=2))
    (probe_dir / "done").write_text("")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
