"""The recipe's numbers against DataComp's scale_configs.py and train.py."""

from __future__ import annotations

import pytest

from harness.training.recipe import SCALES, RecipeError, get_recipe, open_clip_args

# scale: (samples seen, model, global batch, lr, warmup, beta2 flag, precision)
DATACOMP = {
    "small": (12_800_000, "ViT-B-32", 4096, 5e-4, 500, None, "amp"),
    "medium": (128_000_000, "ViT-B-32", 4096, 5e-4, 500, None, "amp"),
    "large": (1_280_000_000, "ViT-B-16", 8192, 5e-4, 500, None, "amp"),
    "xlarge": (12_800_000_000, "ViT-L-14", 90112, 1e-3, 10_000, 0.95, "amp_bfloat16"),
}


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("scale", sorted(DATACOMP))
def test_datacomp_scale_numbers(scale):
    samples, model, batch, lr, warmup, beta2, precision = DATACOMP[scale]
    r = get_recipe(scale)
    assert (r.samples_seen, r.model, r.global_batch, r.lr, r.warmup, r.beta2, r.precision) == (
        samples, model, batch, lr, warmup, beta2, precision)
    assert (r.num_checkpoints, r.workers, r.grad_checkpointing, r.datacomp) == (5, 4, True, True)
    # effective optimizer: open_clip's ViT defaults unless the scale sets beta2
    opt = r.optimizer()
    assert opt["beta1"] == 0.9 and opt["eps"] == 1e-6 and opt["weight_decay"] == 0.2
    assert opt["beta2"] == (0.95 if scale == "xlarge" else 0.98)


@pytest.mark.parametrize("scale", sorted(DATACOMP))
@pytest.mark.parametrize("world", [1, 8, 16])
def test_per_device_batch_keeps_global_batch(scale, world):
    r = get_recipe(scale)
    args = open_clip_args(r, train_data="d/{0..1}.tar", logs="L", name="n", seed=0, world_size=world)
    per_device = int(_value(args, "--batch-size"))
    assert per_device * world == DATACOMP[scale][2]
    assert {1: {"small": 4096, "medium": 4096, "large": 8192, "xlarge": 90112},
            8: {"small": 512, "medium": 512, "large": 1024, "xlarge": 11264},
            16: {"small": 256, "medium": 256, "large": 512, "xlarge": 5632}}[world][scale] == per_device
    # samples seen are split over the checkpoints ("epochs"), whatever the world size
    assert int(_value(args, "--train-num-samples")) * int(_value(args, "--epochs")) == DATACOMP[scale][0]


def test_gradient_accumulation_divides_per_device_batch():
    args = open_clip_args(get_recipe("xlarge"), train_data="d", logs="L", name="n", seed=0, world_size=16,
                          accum_freq=2)
    assert _value(args, "--batch-size") == "2816" and _value(args, "--accum-freq") == "2"


def test_uneven_split_is_refused_not_floored():
    with pytest.raises(RecipeError, match="does not split evenly over 3 processes"):
        get_recipe("small").per_device_batch(3)


def test_small_at_8_gpus_is_datacomp_train_py_argument_list():
    """Exactly what DataComp's train.py passes for --scale small on 8 GPUs with its defaults."""
    args = open_clip_args(get_recipe("small"), train_data="/data/{00000000..00001287}.tar", logs="/out",
                          name="small_scale", seed=0, world_size=8)
    assert args == [
        "--save-frequency", "0", "--ddp-static-graph", "--local-loss", "--gather-with-grad",
        "--grad-checkpointing", "--train-data", "/data/{00000000..00001287}.tar",
        "--train-num-samples", "2560000", "--warmup", "500", "--dataset-type", "webdataset",
        "--precision", "amp", "--workers", "4", "--model", "ViT-B-32", "--batch-size", "512",
        "--epochs", "5", "--lr", "0.0005", "--logs", "/out", "--name", "small_scale", "--seed", "0",
        "--accum-freq", "1", "--log-every-n-steps", "100", "--save-most-recent", "--resume", "latest",
        "--dataset-resampled",
    ]


def test_xlarge_passes_beta2_and_lr():
    args = open_clip_args(get_recipe("xlarge"), train_data="d", logs="L", name="n", seed=3, world_size=16)
    assert args[-2:] == ["--beta2", "0.95"]
    assert _value(args, "--lr") == "0.001" and _value(args, "--warmup") == "10000"
    assert _value(args, "--train-num-samples") == "2560000000" and _value(args, "--seed") == "3"


def test_tiny_scale_is_the_generated_worlds_cpu_recipe():
    r = get_recipe("tiny")
    assert r.model == "tiny-clip" and r.precision == "fp32" and not r.datacomp
    assert r.samples_seen % r.num_checkpoints == 0 and r.train_num_samples % r.global_batch == 0
    args = open_clip_args(r, train_data="d", logs="L", name="n", seed=0)
    # open_clip would pick non-ViT Adam defaults for a name without "vit"; the recipe pins the ViT ones
    assert args[-4:] == ["--beta2", "0.98", "--eps", "1e-06"]
    assert "--grad-checkpointing" not in args
    assert set(SCALES) == {"tiny", "small", "medium", "large", "xlarge"}


def test_unknown_scale():
    with pytest.raises(RecipeError, match="unknown scale 'huge'; known scales: small, medium"):
        get_recipe("huge")
