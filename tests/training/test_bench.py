"""The throughput benchmark runs both sides on the same shards and arguments (tiny sample count)."""

from __future__ import annotations

import json

from harness.benchmarks.training import bench, markdown, samples_trained


def test_samples_trained_follows_open_clip_rounding():
    args = ["--batch-size", "128", "--workers", "1", "--train-num-samples", "6400", "--epochs", "4"]
    assert samples_trained(args) == 25_600
    args = ["--batch-size", "128", "--workers", "4", "--train-num-samples", "1000", "--epochs", "2"]
    assert samples_trained(args) == 2 * 8 * 128  # ceil(1000/128)=8 batches, already a multiple of 4 workers


def test_bench_compares_driver_and_cli_on_the_same_arguments(train_shards, tmp_path, model_config_dir):
    summary = bench(train_shards, tmp_path, "tiny", samples=4 * 128, model_configs=[str(model_config_dir)])
    assert summary["samples"] == 512
    for side in ("driver", "cli"):
        (run,) = summary[side]["runs"]
        assert run["samples"] == 512 and run["seconds"] > 0
        assert run["samples_per_s"] == 512 / run["seconds"]
    # the CLI ran open_clip_train itself with our argument list (only --logs differs)
    cli_params = (tmp_path / "cli0" / "tiny_scale-test" / "params.txt").read_text()
    driver_params = (tmp_path / "driver0" / "tiny_scale-test" / "params.txt").read_text()
    differ = [a for a, b in zip(cli_params.splitlines(), driver_params.splitlines(), strict=True) if a != b]
    assert [line.split(":")[0] for line in differ] == ["checkpoint_path", "log_path", "logs"]
    assert summary["ratio"] == summary["driver"]["samples_per_s"] / summary["cli"]["samples_per_s"]
    assert json.loads((tmp_path / "bench.json").read_text())["ratio"] == summary["ratio"]
    assert "Ratio driver / CLI" in markdown(summary)
