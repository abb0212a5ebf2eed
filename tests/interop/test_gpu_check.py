"""`make gpu-check` (harness.benchmarks.gpu_check): its CPU path runs every stage on the test world's tiny configs."""

from __future__ import annotations

import math

import pytest
import torch

from harness.benchmarks.gpu_check import (
    PROFILES,
    check_scorer,
    format_results,
    main,
    run_checks,
    write_models,
    write_pool,
)
from harness.training import read_record


def test_cpu_path_runs_every_stage_on_the_test_world(tiny_world, tmp_path):
    device, results = run_checks(tmp_path, "cpu", pool_samples=16, world=tiny_world)
    assert device == "cpu"
    assert [r.stage for r in results] == ["train", "dfn", "hype", "tmars", "evaluate"]
    train, dfn, hype, tmars, evaluate = results
    # the tiny recipe's real batch, one step per checkpoint; a TEST-ONLY run, marked so
    assert (train.items, train.extra["steps"]) == (4 * 128, 4) and "per-device batch 128" in train.config
    assert read_record(tmp_path / "train")["mode"] == "test-only"
    assert dfn.items == hype.items == tmars.items == 16
    assert dfn.config == "ref-b32-tiny" and hype.config == "hype-tiny"  # the world's models
    assert hype.extra["terms"] == ["cos", "eps_i", "eps_t", "neg_dl"]
    assert tmars.extra["terms"] == ["masked_area_fraction", "masked_score", "n_boxes", "original_score"]
    assert evaluate.items == 2 * PROFILES["cpu"].eval_images and math.isfinite(evaluate.extra["average"])
    assert all(r.seconds > 0 and r.peak_bytes > 0 for r in results)
    table = format_results(device, results)
    assert table.count("\n") == 7 and "peak RSS" in table and "| train | tiny-clip" in table


def test_generated_pool_and_models_score_like_a_world(tmp_path):
    """The inputs the CUDA path generates (here with the CPU profile's configs) go through the real scorers."""
    profile = PROFILES["cpu"]
    pool = write_pool(tmp_path / "pool", 6, 48)
    models = write_models(tmp_path / "models", profile)
    assert sorted(p.name for p in models.iterdir()) == ["dfn", "meru", "ref_b32"]
    result = check_scorer("hype", pool, models, profile, "cpu")
    assert result.items == 6 and result.config == "hype-tiny"
    result = check_scorer("dfn", pool, models, profile, "cpu")
    assert result.items == 6 and result.extra["terms"] == ["cos"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        main(["--device", "cuda", "--keep", str(tmp_path)])


def test_profiles_match_the_recipes():
    from harness.training import get_recipe

    assert get_recipe(PROFILES["cuda"].scale).model == "ViT-B-32"
    assert get_recipe(PROFILES["cuda"].scale).per_device_batch(1) == 4096
    assert get_recipe(PROFILES["cpu"].scale).model == "tiny-clip"
