"""Item 5: a cache whose input changed since is recomputed, never reused: score tables (pool files, model
file) and run stages (select, reshard, train, evaluate).

Fingerprints of input files are (name, size, mtime_ns), as documented in harness.stages / Pool.fingerprint:
rewriting a file changes them. The run-stage tests use stand-ins for train and evaluate that keep the real
modules' resume contracts (a complete training run in the output dir is returned as is; evaluation skips
tasks already in eval_results.jsonl), so they show what the orchestration must do when an input changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_pool import GenPool

from harness.plugins import Needs, Scorer, ScoringContext
from harness.pool import Pool
from harness.scoring import compute_terms


class CountingColumn(Scorer):
    """A cached metadata scorer over clip_l14_similarity_score that counts its calls."""

    name = "rel_counting_column"
    needs = Needs(columns=("clip_l14_similarity_score",))
    default_percent = 30.0
    calls = 0

    def score_metadata(self, batch, ctx):
        CountingColumn.calls += 1
        return {"score": batch.column("clip_l14_similarity_score").astype(float)}


class CaptionLength(Scorer):
    """A shard scorer: caption length; its model file is part of its fingerprint."""

    name = "rel_counting_captions"
    needs = Needs(captions=True, models=("probe",))
    default_percent = 30.0
    calls = 0

    def fingerprint(self, ctx):
        return hashlib.sha256(Path(ctx.model_path("probe")).read_bytes()).hexdigest()[:16]

    def score_samples(self, samples, ctx):
        CaptionLength.calls += 1
        scale = float(Path(ctx.model_path("probe")).read_text())
        return {"score": np.array([scale * len(s.caption) for s in samples])}


def _bump(path: Path) -> None:
    """Make sure a rewrite is visible even on a coarse-mtime filesystem."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture
def counting(registered):
    registered(CountingColumn)
    registered(CaptionLength)
    CountingColumn.calls = CaptionLength.calls = 0


def test_metadata_score_table_is_reused_until_a_metadata_file_changes(gen_pool, tmp_path, counting):
    ctx = ScoringContext(pool=Pool(gen_pool.root))
    first = compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores", progress=False)
    again = compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores", progress=False)
    assert CountingColumn.calls == 2 and again.record["cached"] and again.path == first.path  # 2 files, once

    path = gen_pool.metadata_files[1]
    table = pq.read_table(path)
    new = pa.array(np.full(10, 0.9, np.float32))
    pq.write_table(table.set_column(table.schema.get_field_index("clip_l14_similarity_score"),
                                    "clip_l14_similarity_score", new), path)
    _bump(path)
    fresh = compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores", progress=False)
    assert not fresh.record["cached"] and fresh.path != first.path
    assert CountingColumn.calls == 4
    np.testing.assert_allclose(fresh.terms["score"][10:], 0.9, rtol=1e-6)
    np.testing.assert_allclose(fresh.terms["score"][:10], first.terms["score"][:10])


@pytest.mark.parametrize("change", ["shard", "model"])
def test_shard_score_table_is_recomputed_when_a_shard_or_the_model_changes(change, gen_pool, tmp_path, counting):
    model = tmp_path / "models" / "probe"
    model.parent.mkdir()
    model.write_text("1.0")
    ctx = ScoringContext(pool=Pool(gen_pool.root), models_dir=tmp_path / "models", batch_size=100)
    first = compute_terms(Pool(gen_pool.root), CaptionLength.name, ctx, tmp_path / "scores", progress=False)
    compute_terms(Pool(gen_pool.root), CaptionLength.name, ctx, tmp_path / "scores", progress=False)
    assert CaptionLength.calls == 2  # two shards, scored once

    if change == "model":
        model.write_text("2.0")
        expected = 2.0 * first.terms["score"]
    else:
        import io

        shard = gen_pool.shards[1]
        with tarfile.open(shard) as tf:
            members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
        with tarfile.open(shard, "w") as tf:
            for m, data in members:
                if m.name.endswith(".txt"):
                    data = b"xyz"
                    m.size = 3
                tf.addfile(m, io.BytesIO(data))
        _bump(shard)
        expected = first.terms["score"].copy()
        expected[[i for i, s in enumerate(gen_pool.shard_of) if s == 1]] = 3.0
    fresh = compute_terms(Pool(gen_pool.root), CaptionLength.name, ctx, tmp_path / "scores", progress=False)
    assert not fresh.record["cached"] and fresh.path != first.path
    assert CaptionLength.calls == 4
    np.testing.assert_array_equal(fresh.terms["score"], expected)


@pytest.mark.parametrize("damage", ["truncated", "foreign_table"])
def test_unreadable_or_foreign_cached_table_is_recomputed(damage, gen_pool, tmp_path, counting, caplog):
    ctx = ScoringContext(pool=Pool(gen_pool.root))
    first = compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores", progress=False)
    if damage == "truncated":
        first.path.write_bytes(first.path.read_bytes()[:100])
    else:  # a table for another key copied over this one (wrong rows and record)
        pq.write_table(pa.table({"uid": ["0" * 32], "score": [1.0]}), first.path)
    with caplog.at_level(logging.WARNING, logger="harness"):
        again = compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores", progress=False)
    assert not again.record["cached"]
    np.testing.assert_array_equal(again.terms["score"], first.terms["score"])
    assert any(str(first.path) in r.getMessage() and "recomput" in r.getMessage() for r in caplog.records)
    assert compute_terms(Pool(gen_pool.root), CountingColumn.name, ctx, tmp_path / "scores",
                         progress=False).record["cached"]  # the rewritten table is good again


# ------------------------------------------------------------------------------------------------
# run stages


class FakeStages:
    """train/evaluate stand-ins with the real modules' resume contracts; count their calls."""

    def __init__(self) -> None:
        self.train_calls = 0
        self.eval_calls = 0

    def train(self, shards_dir: Path, out_dir: Path, scale: str, seed: int = 0, gpus: int = 0, **kw) -> Path:
        self.train_calls += 1
        out_dir = Path(out_dir)
        ck = out_dir / "checkpoints" / "epoch_latest.pt"
        if (out_dir / "complete").exists():  # harness.training.train: a complete run is returned as is
            return ck
        h = hashlib.sha256()  # what training reads: member names and bytes (tar headers hold times)
        for tar in sorted(Path(shards_dir).glob("*.tar")):
            with tarfile.open(tar) as tf:
                for m in tf.getmembers():
                    h.update(m.name.encode() + tf.extractfile(m).read())
        ck.parent.mkdir(parents=True, exist_ok=True)
        ck.write_text(h.hexdigest())
        (out_dir / "complete").write_text("")
        return ck

    def evaluate(self, checkpoint: Path, suite: str, data_root: Path, out_dir: Path, device: str = "cpu",
                 partial: bool = False, num_workers: int = 0, compat: str | None = None) -> dict:
        self.eval_calls += 1
        results = Path(out_dir) / "eval_results.jsonl"
        done = {}
        if results.exists():  # harness.evaluation.evaluate skips tasks already in eval_results.jsonl
            done = {json.loads(x)["key"]: json.loads(x) for x in results.read_text().splitlines()}
        metric = int(Path(checkpoint).read_text()[:8], 16) / 16**8
        for key in ("task_a", "task_b"):
            if key not in done:
                line = {"key": key, "dataset": key, "metrics": {"main_metric": metric}}
                with results.open("a") as f:
                    f.write(json.dumps(line) + "\n")
                done[key] = line
        avg = float(np.mean([v["metrics"]["main_metric"] for v in done.values()]))
        return {"aggregates": {"Average": avg}, "tasks": {k: v["metrics"] for k, v in done.items()},
                "suite": suite, "partial": False, "missing_tasks": []}


@pytest.fixture
def fake_stages(monkeypatch) -> FakeStages:
    import harness.evaluation
    import harness.training

    fake = FakeStages()
    monkeypatch.setattr(harness.training, "train", fake.train)
    monkeypatch.setattr(harness.evaluation, "evaluate", fake.evaluate)
    return fake


def _run(pool: GenPool, runs: Path):
    from harness.run import RunConfig, run

    return run(RunConfig(filter="clip_l14_30", pool=pool.root, eval_data=pool.root, runs=runs, workers=1))


def test_run_stages_are_skipped_when_nothing_changed(gen_pool, tmp_path, fake_stages):
    first = _run(gen_pool, tmp_path / "runs")
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)
    again = _run(gen_pool, tmp_path / "runs")
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)
    assert again["aggregates"] == first["aggregates"] and again["samples"] == first["samples"] == 7  # floor(20*0.3)+1
    assert all(v == 0.0 for v in again["provenance"]["stage_seconds"].values())


def test_run_recomputes_every_stage_downstream_of_a_changed_pool_file(gen_pool, pool_factory, tmp_path,
                                                                      fake_stages):
    first = _run(gen_pool, tmp_path / "runs")
    subset_before = np.load(Path(first["provenance"]["run_dir"]) / "subset.npy")

    # reverse the clip_l14 scores of file 0: the top 30% (and so everything downstream) changes
    path = gen_pool.metadata_files[0]
    table = pq.read_table(path)
    col = table.schema.get_field_index("clip_l14_similarity_score")
    pq.write_table(table.set_column(col, "clip_l14_similarity_score",
                                    pa.array(table.column(col).to_numpy()[::-1] + np.float32(0.5))), path)
    _bump(path)
    changed = _run(gen_pool, tmp_path / "runs")
    subset_after = np.load(Path(changed["provenance"]["run_dir"]) / "subset.npy")
    assert subset_after.tolist() != subset_before.tolist()

    # the same inputs in an empty runs directory: what the changed run must equal
    clean = _run(gen_pool, tmp_path / "clean_runs")
    assert changed["aggregates"] == clean["aggregates"] != first["aggregates"]
    assert changed["tasks"] == clean["tasks"]
    assert subset_after.tolist() == np.load(Path(clean["provenance"]["run_dir"]) / "subset.npy").tolist()


def test_run_reevaluates_when_the_evaluation_data_changes(gen_pool, tmp_path, fake_stages):
    from harness.evaluation import load_suite
    from harness.run import RunConfig, run

    eval_root = tmp_path / "eval"
    task_dir = load_suite("datacomp").tasks[0].data_dir(eval_root)
    task_dir.mkdir(parents=True)
    (task_dir / "test.tar").write_bytes(b"version 1")
    cfg = RunConfig(filter="clip_l14_30", pool=gen_pool.root, eval_data=eval_root, runs=tmp_path / "runs",
                    workers=1)
    run(cfg)
    run(cfg)
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)
    (task_dir / "test.tar").write_bytes(b"version 2, longer")
    out = Path(run(cfg)["provenance"]["run_dir"])
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 2)  # training reused, evaluation redone
    assert len((out / "eval_results.jsonl").read_text().splitlines()) == 2  # old lines discarded, not kept
