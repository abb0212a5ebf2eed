"""Shared pytest fixtures.

`tiny_world`: the generated tiny world (profile "test", seed 0), built once and cached in
`.cache/test-world-seed0` under the repository root (override the path with HARNESS_TEST_WORLD).
It includes every world model (harness.world.DEFAULT_MODELS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def tiny_world_path() -> Path:
    return Path(os.environ.get("HARNESS_TEST_WORLD") or REPO_ROOT / ".cache" / "test-world-seed0")


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    import shutil

    from harness.world import DEFAULT_MODELS, WorldMismatchError, build_world

    models = DEFAULT_MODELS
    path = tiny_world_path()
    try:
        build_world(path, seed=0, profile="test", models=models)
    except WorldMismatchError:
        if "HARNESS_TEST_WORLD" in os.environ:
            raise  # never delete a directory the user named
        # the default cache from an older world version: it is only a cache, so rebuild it
        shutil.rmtree(path)
        build_world(path, seed=0, profile="test", models=models)
    return path
