"""Fixtures for the training tests: small generated shards and test-only model configs."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from training_micro import MICRO, MICRO_CFG, TINY_STANDIN  # noqa: F401  (re-exported for fixtures)

from harness.benchmarks.synthetic_shards import write_shards


@pytest.fixture(scope="session")
def model_config_dir(tmp_path_factory) -> Path:
    """A directory of test model configs, registered with open_clip in this process."""
    from harness.models import register_configs

    register_configs()
    cfg_dir = tmp_path_factory.mktemp("model_configs")
    (cfg_dir / f"{MICRO}.json").write_text(json.dumps(MICRO_CFG))
    if "tiny-clip" not in open_clip.list_models():
        (cfg_dir / "tiny-clip.json").write_text(json.dumps(TINY_STANDIN))
    open_clip.add_model_config(cfg_dir)
    return cfg_dir


@pytest.fixture(scope="session")
def train_shards(tmp_path_factory, model_config_dir) -> Path:
    """4 shards x 24 rendered shape/caption samples, DataComp resharder layout."""
    return write_shards(tmp_path_factory.mktemp("shards"), n_samples=96, per_shard=24, image_size=32)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
