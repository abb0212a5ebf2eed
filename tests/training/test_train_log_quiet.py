"""The recipe trains from scratch on purpose: open_clip's "No pretrained weights loaded ... initialized
randomly" warning must not appear in its log, where it would hide the one real case (issue 20 item 5)."""

from __future__ import annotations

from training_micro import MICRO

from harness.training import train

RANDOM_INIT = "initialized randomly"


def test_training_log_has_no_random_init_warning(train_shards, tmp_path, caplog) -> None:
    ckpt = train(train_shards, tmp_path, "tiny", seed=0, num_samples=16,
                 research_overrides={"model": MICRO, "global_batch": 8})
    log = (ckpt.parent.parent / "out.log").read_text()
    assert "Train Epoch" in log  # the log is open_clip_train's, and it was written
    assert RANDOM_INIT not in log
    assert not [r for r in caplog.records if RANDOM_INIT in r.getMessage()]
