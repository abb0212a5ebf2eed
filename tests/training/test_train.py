"""Real (tiny) training runs through open_clip_train: checkpoints, determinism, kill-and-resume.

TEST-ONLY PATH: these runs use `num_samples` (samples seen) and, except the smoke run of the tiny
recipe itself, research_overrides={"model": MICRO, "global_batch": 8} so each run takes seconds;
the driver marks such runs "test-only" / "research" in recipe.json.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import open_clip
import pytest
import torch
from training_micro import MICRO

from harness.training import read_record, train

MICRO_RUN = {"model": MICRO, "global_batch": 8}
N = 64  # samples seen: 4 checkpoints x 16 samples = 2 steps of 8 per checkpoint


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference_run(train_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return train(train_shards, out, "tiny", seed=0, num_samples=N, research_overrides=MICRO_RUN)


def test_tiny_recipe_run_gives_a_loadable_checkpoint(train_shards, tmp_path, model_config_dir):
    root = logging.getLogger()
    handlers, level, rng = list(root.handlers), root.level, torch.get_rng_state()
    ckpt = train(train_shards, tmp_path, "tiny", seed=0, num_samples=4 * 128)  # test-only: 4 steps
    # open_clip_train's logging handlers and RNG seeding do not leak into the caller
    # (checked first: open_clip's module-level logging.info calls basicConfig on an empty root)
    assert root.handlers == handlers and root.level == level and torch.equal(torch.get_rng_state(), rng)
    assert ckpt == tmp_path / "tiny_scale-test" / "checkpoints" / "epoch_4.pt"
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=str(ckpt))
    fresh = open_clip.create_model("tiny-clip")
    trained = dict(model.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in fresh.named_parameters())
    record = read_record(tmp_path)
    assert record["mode"] == "test-only" and record["status"] == "complete"
    assert record["args"] == record["launches"][0]["args"] and record["final_checkpoint"] == str(ckpt)
    assert record["args"][record["args"].index("--batch-size") + 1] == "128"
    assert (tmp_path / "tiny_scale-test" / "out.log").read_text().count("Train Epoch: 3") >= 1


def test_same_seed_gives_identical_weights(reference_run, train_shards, tmp_path):
    again = train(train_shards, tmp_path / "again", "tiny", seed=0, num_samples=N, research_overrides=MICRO_RUN)
    assert _same(_weights(reference_run), _weights(again))
    other = train(train_shards, tmp_path / "other", "tiny", seed=1, num_samples=N, research_overrides=MICRO_RUN)
    assert not _same(_weights(reference_run), _weights(other))


def test_completed_run_is_not_retrained(reference_run, train_shards):
    before = reference_run.stat().st_mtime_ns
    out = reference_run.parents[2]
    assert train(train_shards, out, "tiny", seed=0, num_samples=N, research_overrides=MICRO_RUN) == reference_run
    # not retrained: the checkpoint is untouched and no second launch was recorded
    assert reference_run.stat().st_mtime_ns == before
    assert len(read_record(out)["launches"]) == 1


def test_kill_after_first_checkpoint_then_resume_matches_uninterrupted(
        reference_run, train_shards, tmp_path, model_config_dir):
    out = tmp_path / "killed"
    # A real crash: the child SIGKILLs itself right after open_clip_train renames epoch_latest.pt into place.
    script = textwrap.dedent(f"""
        import os, signal, open_clip, torch
        torch.set_num_threads(1)
        open_clip.add_model_config({str(model_config_dir)!r})
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            real_replace(src, dst, *a, **k)
            if str(dst).endswith("epoch_latest.pt"):
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
        from harness.training import train
        train({str(train_shards)!r}, {str(out)!r}, "tiny", seed=0, num_samples={N}, research_overrides={MICRO_RUN!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpt_dir = out / "tiny_scale-research-test" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["epoch_latest.pt"]
    assert torch.load(ckpt_dir / "epoch_latest.pt", weights_only=True)["epoch"] == 1
    assert read_record(out)["status"] == "running"

    final = train(train_shards, out, "tiny", seed=0, num_samples=N, research_overrides=MICRO_RUN)
    assert _same(_weights(final), _weights(reference_run))
    record = read_record(out)
    assert [launch["resumed"] for launch in record["launches"]] == [False, True]
    assert "resuming checkpoint" in (out / "tiny_scale-research-test" / "out.log").read_text()


def test_bad_arguments_surface_as_errors_and_restore_state(train_shards, tmp_path):
    from harness.training import TrainingError

    root = logging.getLogger()
    handlers = list(root.handlers)
    with pytest.raises(TrainingError, match="open_clip_train exited with status 2"):
        train(train_shards, tmp_path, "tiny", num_samples=N,
              research_overrides={**MICRO_RUN, "lr-scheduler": ["cosine", "extra"]})
    assert root.handlers == handlers
    assert json.loads((tmp_path / "recipe.json").read_text())["status"] == "running"


def test_entry_point_runs_the_recipe_in_process(train_shards, tmp_path, monkeypatch, capsys):
    """What each torchrun / SLURM process runs, here as the single CPU process."""
    from harness.training.entry import main

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--shards", str(train_shards), "--out", str(tmp_path), "--scale", "tiny", "--seed", "0",
                 "--num-samples", str(N), "--research-overrides", json.dumps(MICRO_RUN), "--device", "cpu"]) == 0
    ckpt = tmp_path / "tiny_scale-research-test" / "checkpoints" / "epoch_4.pt"
    assert capsys.readouterr().out.strip().endswith(str(ckpt))
    assert read_record(tmp_path)["status"] == "complete"
