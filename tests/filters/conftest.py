from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # filters_fakepool, shared by these tests

from filters_fakepool import make_fake_pool  # noqa: E402


@pytest.fixture(scope="session")
def fake_pool_dir(tmp_path_factory):
    """A 120-row pool: 3 metadata files, 2 shards, scores with ties. Read-only for tests."""
    root = tmp_path_factory.mktemp("fakepool")
    df = make_fake_pool(root)
    return root, df
