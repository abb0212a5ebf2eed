"""One local Ray instance (2 CPUs) for the whole scale-out test session, and a small damaged pool."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # scaleout_pool, shared by these tests

from scaleout_pool import make_pool  # noqa: E402

PLUGINS = str(Path(__file__).parent / "ray_plugins.py")


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install '.[ray]'")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the workers inherit it
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def scaleout_world(tmp_path_factory):
    """<tmp>/pool (4 metadata files x 30 rows, 4 shards: damaged, truncated, clean, empty) and
    <tmp>/imagenet_like (image_based's reference images: 5 pool images)."""
    from harness.plugins import load_plugins

    load_plugins([PLUGINS])
    root = tmp_path_factory.mktemp("scaleout")
    df = make_pool(root / "pool")
    ref = root / "imagenet_like"
    ref.mkdir()
    np.save(ref / "l14_img.npy", np.load(root / "pool" / "metadata" / "00000000.npz")["l14_img"][:5])
    return root, df
