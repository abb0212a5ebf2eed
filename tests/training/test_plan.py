"""Planning a run without training: shard patterns, refused overrides, research mode, run records."""

from __future__ import annotations

import json
import shutil

import pytest
from training_micro import MICRO

from harness.training import RecipeError, plan_run, train, train_data_pattern
from harness.training.driver import _set_flag, check_resumable, torchrun_command, write_record


def test_pattern_over_resharder_output(train_shards):
    assert train_data_pattern(train_shards) == f"{train_shards}/{{00000000..00000003}}.tar"


def test_pattern_uses_meta_json(tmp_path, train_shards):
    for i in range(2):
        shutil.copy(train_shards / f"{i:08d}.tar", tmp_path / f"{i:08d}.tar")
    (tmp_path / "meta.json").write_text(json.dumps({"output_shard_count": 2, "output_shard_format": "{:08d}.tar"}))
    assert train_data_pattern(tmp_path) == f"{tmp_path}/{{00000000..00000001}}.tar"
    (tmp_path / "meta.json").write_text(json.dumps({"output_shard_count": 3, "output_shard_format": "{:08d}.tar"}))
    with pytest.raises(ValueError, match="00000002.tar listed in meta.json is missing"):
        train_data_pattern(tmp_path)


def test_single_shard_is_a_plain_path(tmp_path, train_shards):
    shutil.copy(train_shards / "00000000.tar", tmp_path / "00000000.tar")
    assert train_data_pattern(tmp_path) == str(tmp_path / "00000000.tar")


def test_gap_in_shards_names_the_missing_one(tmp_path, train_shards):
    for i in (0, 1, 3):
        shutil.copy(train_shards / f"{i:08d}.tar", tmp_path / f"{i:08d}.tar")
    with pytest.raises(ValueError, match="shard 00000002.tar is missing"):
        train_data_pattern(tmp_path)


def test_empty_or_missing_directories_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        train_data_pattern(tmp_path / "nope")
    with pytest.raises(ValueError, match="no webdataset shards"):
        train_data_pattern(tmp_path)
    import tarfile

    with tarfile.open(tmp_path / "00000000.tar", "w"):
        pass
    with pytest.raises(ValueError, match="hold no image\\+caption sample"):
        train_data_pattern(tmp_path)
    (tmp_path / "00000000.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match="00000000.tar: not a readable tar"):
        train_data_pattern(tmp_path)


def test_hyperparameter_keywords_are_refused_before_any_work(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe is fixed; refusing override\(s\) batch_size, lr"):
        train(tmp_path / "no-shards", tmp_path / "out", "small", lr=1e-3, batch_size=64)
    assert not (tmp_path / "out").exists()


def test_plan_cpu_run(train_shards, tmp_path):
    plan = plan_run(train_shards, tmp_path / "run", "tiny", seed=7)
    assert plan.mode == "recipe" and plan.name == "tiny_scale"
    assert plan.args[-2:] == ["--device", "cpu"]
    assert plan.args[plan.args.index("--seed") + 1] == "7"
    assert plan.final_checkpoint == tmp_path / "run" / "tiny_scale" / "checkpoints" / "epoch_4.pt"


def test_research_overrides_are_marked_and_validated(train_shards, tmp_path):
    plan = plan_run(train_shards, tmp_path, "tiny",
                    research_overrides={"lr": 1e-3, "global_batch": 16, "grad-clip-norm": 1.0, "local_loss": False})
    assert plan.mode == "research" and plan.name == "tiny_scale-research"
    a = plan.args
    assert a[a.index("--lr") + 1] == "0.001" and a[a.index("--batch-size") + 1] == "16"
    assert a[a.index("--grad-clip-norm") + 1] == "1.0" and "--local-loss" not in a
    with pytest.raises(RecipeError, match="set the recipe field 'global_batch' instead"):
        plan_run(train_shards, tmp_path, "tiny", research_overrides={"batch-size": 8})
    with pytest.raises(RecipeError, match="--seed is fixed by the driver"):
        plan_run(train_shards, tmp_path, "tiny", research_overrides={"seed": 8})
    with pytest.raises(RecipeError, match="has no option --learning-rate"):
        plan_run(train_shards, tmp_path, "tiny", research_overrides={"learning_rate": 8})


def test_set_flag():
    args = ["--a", "1", "--b", "--c", "x", "y"]
    assert _set_flag(args, "a", 2) == ["--b", "--c", "x", "y", "--a", "2"]
    assert _set_flag(args, "b", False) == ["--a", "1", "--c", "x", "y"]
    assert _set_flag(args, "c", [3, 4]) == ["--a", "1", "--b", "--c", "3", "4"]
    assert _set_flag(args, "d", True) == [*args, "--d"]


def test_record_refuses_a_different_run_in_the_same_directory(train_shards, tmp_path):
    plan = plan_run(train_shards, tmp_path, "tiny", seed=0)
    write_record(plan, None, "running")
    assert check_resumable(plan_run(train_shards, tmp_path, "tiny", seed=0))["status"] == "running"
    with pytest.raises(RecipeError, match="differs in: seed"):
        check_resumable(plan_run(train_shards, tmp_path, "tiny", seed=1))
    with pytest.raises(RecipeError, match="differs in: name, num_samples"):
        check_resumable(plan_run(train_shards, tmp_path, "tiny", seed=0, num_samples=40))


def test_checkpoints_without_a_record_are_not_resumed(train_shards, tmp_path):
    plan = plan_run(train_shards, tmp_path, "tiny")
    plan.checkpoint_dir.mkdir(parents=True)
    plan.latest_checkpoint.write_bytes(b"x")
    with pytest.raises(RecipeError, match="holds checkpoints but no recipe.json"):
        check_resumable(plan)


def test_torchrun_launch_keeps_global_batch(train_shards, tmp_path):
    plan = plan_run(train_shards, tmp_path, "tiny", world_size=4, device="cuda",
                    research_overrides={"model": MICRO})
    assert plan.args[plan.args.index("--batch-size") + 1] == "32" and "--device" not in plan.args
    cmd = torchrun_command(plan, 4)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"]
    assert cmd[6:8] == ["-m", "harness.training.entry"]
    assert json.loads(cmd[cmd.index("--research-overrides") + 1]) == {"model": MICRO}
    # the entry point re-derives the same plan from the world size torchrun gives it
    from harness.training.entry import parse

    ns = parse(cmd[8:])
    again = plan_run(ns.shards, ns.out, ns.scale, seed=ns.seed, world_size=4, accum_freq=ns.accum_freq,
                     device=ns.device, num_samples=ns.num_samples, research_overrides=ns.research_overrides)
    assert again.args == plan.args


def test_gpus_without_cuda_are_refused(tmp_path):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("machine has GPUs")
    from harness.training import TrainingError

    with pytest.raises(TrainingError, match="cannot run several CPU processes"):
        train(tmp_path, tmp_path / "o", "tiny", gpus=2)
