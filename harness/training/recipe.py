"""The fixed CLIP training recipe: DataComp's scales plus `tiny` for the generated world.

The numbers for small/medium/large/xlarge are DataComp's `scale_configs.py` and the defaults of its
`train.py`; `open_clip_args` turns a scale into the exact argument list
DataComp's train.py hands to `open_clip_train.main.main`, in the same order, so a run here is the
run DataComp would have launched. The recipe is data, not a knob: nothing in this module takes a
hyper-parameter from the caller (research overrides are applied, and recorded, by the driver).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError


class RecipeError(UsageError):
    """A request that the fixed recipe cannot honour (unknown scale, an override, bad arithmetic)."""


@dataclass(frozen=True)
class Recipe:
    """One scale of the fixed recipe. Fields left None fall back to open_clip's own defaults."""

    scale: str
    model: str                      # open_clip model config name
    samples_seen: int               # total samples drawn (with replacement), whatever the subset size
    global_batch: int               # summed over devices and gradient-accumulation steps
    lr: float
    warmup: int                     # optimizer steps of linear warm-up, then cosine decay
    num_checkpoints: int            # the "epochs": samples_seen / num_checkpoints samples each
    precision: str                  # open_clip --precision
    workers: int                    # dataloader workers per process (part of the data order)
    beta2: float | None = None      # None: open_clip's default for the model (0.98 for ViTs)
    eps: float | None = None        # None: open_clip's default for the model (1e-6 for ViTs)
    grad_checkpointing: bool = True # memory only; numerically identical either way
    log_every_n_steps: int = 100
    save_frequency: int = 0         # 0: only the final epoch_N.pt besides epoch_latest.pt
    datacomp: bool = True           # one of DataComp's published scales

    @property
    def train_num_samples(self) -> int:
        """Samples per checkpoint "epoch" (DataComp: integer division)."""
        return self.samples_seen // self.num_checkpoints

    def per_device_batch(self, world_size: int, accum_freq: int = 1) -> int:
        """Global batch / (world size x accumulation); refuses a split that would change the global batch.

        DataComp floors the division silently; here an uneven split is an error, because it would
        quietly train with a different global batch than the recipe says.
        """
        if world_size < 1 or accum_freq < 1:
            raise RecipeError(f"world size ({world_size}) and accum_freq ({accum_freq}) must be >= 1")
        parts = world_size * accum_freq
        if self.global_batch % parts:
            raise RecipeError(
                f"scale {self.scale!r}: global batch {self.global_batch} does not split evenly over "
                f"{world_size} processes x {accum_freq} accumulation steps; choose a divisor of "
                f"{self.global_batch}"
            )
        return self.global_batch // parts

    def optimizer(self) -> dict[str, Any]:
        """The effective AdamW settings (open_clip defaults filled in) for the run record."""
        vit = "vit" in self.model.lower()
        return {
            "name": "adamw",
            "lr": self.lr,
            "beta1": 0.9,
            "beta2": self.beta2 if self.beta2 is not None else (0.98 if vit else 0.999),
            "eps": self.eps if self.eps is not None else (1e-6 if vit else 1e-8),
            "weight_decay": 0.2,
            "no_weight_decay": "gains, biases, logit_scale",
            "schedule": "cosine",
            "warmup_steps": self.warmup,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "train_num_samples": self.train_num_samples}


# DataComp scale_configs.py, train.py defaults (workers 4, num_checkpoints 5, precision amp,
# log every 100 steps, save frequency 0) and its README/slurm_train.sh advice of amp_bfloat16 at
# xlarge ("amp results in a significant performance drop at xlarge scale").
_DATACOMP = dict(num_checkpoints=5, workers=4, grad_checkpointing=True, log_every_n_steps=100)

SCALES: dict[str, Recipe] = {
    "small": Recipe("small", "ViT-B-32", 12_800_000, 4096, 5e-4, 500, precision="amp", **_DATACOMP),
    "medium": Recipe("medium", "ViT-B-32", 128_000_000, 4096, 5e-4, 500, precision="amp", **_DATACOMP),
    "large": Recipe("large", "ViT-B-16", 1_280_000_000, 8192, 5e-4, 500, precision="amp", **_DATACOMP),
    "xlarge": Recipe(
        "xlarge", "ViT-L-14", 12_800_000_000, 90112, 1e-3, 10_000, precision="amp_bfloat16", beta2=0.95,
        **_DATACOMP,
    ),
    # The generated world's scale: two passes over the default world's 6,400-sample pool (100 steps),
    # about 2 minutes on a 2-core CPU. Half of this (one pass, DataComp's samples-seen = pool size)
    # left an unfiltered run at chance level: tiny ViTs sit on a loss plateau for their first ~60-90
    # steps, so the run would rank filters by how fast they leave it (BENCHMARKS.md, "World v5").
    # fp32 (CPU autocast would be slower and less exact); beta2/eps spelled out because the config
    # name lacks "vit" and open_clip would otherwise fall back to its non-ViT Adam defaults;
    # no gradient checkpointing (it only saves memory, and costs ~30% time on a model this small);
    # one dataloader worker so decoding overlaps the training step on the second core.
    "tiny": Recipe(
        "tiny", "tiny-clip", 12_800, 128, 2e-3, 20, num_checkpoints=4, precision="fp32", workers=1,
        beta2=0.98, eps=1e-6, grad_checkpointing=False, log_every_n_steps=10, datacomp=False,
    ),
}

# Flags DataComp always passes (train.py builds them unconditionally).
DATACOMP_FIXED_FLAGS = (
    "--ddp-static-graph", "--local-loss", "--gather-with-grad", "--dataset-type webdataset",
    "--dataset-resampled", "--save-most-recent", "--resume latest",
)


def get_recipe(scale: str) -> Recipe:
    try:
        return SCALES[scale]
    except KeyError:
        raise RecipeError(f"unknown scale {scale!r}; known scales: {', '.join(SCALES)}") from None


def experiment_name(scale: str) -> str:
    """DataComp's default experiment name (train.py: f"{scale}_scale")."""
    return f"{scale}_scale"


def open_clip_args(
    recipe: Recipe,
    *,
    train_data: str,
    logs: str,
    name: str,
    seed: int,
    world_size: int = 1,
    accum_freq: int = 1,
    samples_seen: int | None = None,
) -> list[str]:
    """The argument list for open_clip_train.main.main, in DataComp train.py's order.

    `samples_seen` replaces the recipe's total (the driver allows that only on its labelled
    test-only path). Device selection is left to open_clip (cuda when present, else CPU).
    """
    total = recipe.samples_seen if samples_seen is None else samples_seen
    per_checkpoint = total // recipe.num_checkpoints
    if per_checkpoint < 1:
        raise RecipeError(f"{total} samples cannot be split over {recipe.num_checkpoints} checkpoints")
    args = [
        "--save-frequency", f"{recipe.save_frequency}",
        "--ddp-static-graph",
        "--local-loss",
        "--gather-with-grad",
    ]
    if recipe.grad_checkpointing:
        args.append("--grad-checkpointing")
    args += [
        "--train-data", train_data,
        "--train-num-samples", f"{per_checkpoint}",
        "--warmup", f"{recipe.warmup}",
        "--dataset-type", "webdataset",
        "--precision", recipe.precision,
        "--workers", f"{recipe.workers}",
        "--model", recipe.model,
        "--batch-size", f"{recipe.per_device_batch(world_size, accum_freq)}",
        "--epochs", f"{recipe.num_checkpoints}",
        "--lr", f"{recipe.lr}",
        "--logs", logs,
        "--name", name,
        "--seed", f"{seed}",
        "--accum-freq", f"{accum_freq}",
        "--log-every-n-steps", f"{recipe.log_every_n_steps}",
        "--save-most-recent",
        "--resume", "latest",
        "--dataset-resampled",
    ]
    if recipe.beta2 is not None:
        args += ["--beta2", f"{recipe.beta2}"]
    if recipe.eps is not None:
        args += ["--eps", f"{recipe.eps}"]
    return args
