"""Fixtures of the report tests: fabricated run directories and a fabricated tiny world."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from report_fixtures import WORLD_LABELS, hype_selection, tasks_for, uid_of, write_run


@pytest.fixture
def tiny_world(tmp_path: Path) -> Path:
    world = tmp_path / "world"
    (world / "pool" / "metadata").mkdir(parents=True)
    pool_uids = [uid_of(i) for i in range(40)]  # uid 39 has no oracle label
    pq.write_table(pa.table({"uid": pool_uids[:25], "text": ["x"] * 25}), world / "pool/metadata/00000000.parquet")
    pq.write_table(pa.table({"uid": pool_uids[25:], "text": ["x"] * 15}), world / "pool/metadata/00000001.parquet")
    oracle_uids = pool_uids[:39] + [uid_of(1000)]
    pq.write_table(pa.table({"uid": oracle_uids, "noise": WORLD_LABELS + ["clean"]}), world / "oracle.parquet")
    return world


@pytest.fixture
def golden_runs(tmp_path: Path, tiny_world: Path) -> list[Path]:
    """The fixed fabricated results behind the golden tables (tiny and small scale)."""
    root = tmp_path / "runs"
    runs = []
    for seed, shift in enumerate((0.0, 0.01, 0.02)):
        runs.append(write_run(root, "no_filter", "tiny", seed, 2000, tasks_for(0.20, shift), world=tiny_world,
                              subset=[uid_of(i) for i in range(40)]))
    runs.append(write_run(root, "clip_l14_30", "tiny", 0, 600, tasks_for(0.25, 0.0), world=tiny_world,
                          subset=[uid_of(i) for i in [*range(10), *range(20, 25)]]))
    for seed, shift in enumerate((0.0, -0.02, 0.02)):
        runs.append(write_run(root, "hype10", "tiny", seed, 200, tasks_for(0.26, shift), world=tiny_world,
                              subset=hype_selection()))
    for seed, shift in enumerate((0.005, 0.015)):
        runs.append(write_run(root, "hype10+dfn", "tiny", seed, 420, tasks_for(0.28, shift), unique=400,
                              world=tiny_world, subset=hype_selection()[:14]))
    runs.append(write_run(root, "tmars", "tiny", 0, 500, tasks_for(0.30, 0.0, drop=("retrieval/flickr_1k_test_image_text_retrieval",)),
                          world=tiny_world, subset=[uid_of(i) for i in range(15)]))
    runs.append(write_run(root, "hype10", "small", 0, 1_234_567, tasks_for(0.05, 0.0), pool="small-pool"))
    return runs
