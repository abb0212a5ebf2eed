"""Stage keys hold the content of what produced an output (issue: trust): an edited plugin re-selects, a
`uids:` file with new content re-selects, a metadata file rewritten with its old size and mtime
(`cp -p`) re-selects, an edited suite definition re-evaluates, and one run reached by a relative and an
absolute path is one cached run whose summary records absolute paths.

Training and evaluation are the stand-ins of test_rel_cache (same resume contracts, counted calls).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rel_stand_ins import CountingColumn, FakeStages

from harness.run import RunConfig, run
from harness.selection import save_subset

PLUGIN = '''
from harness.plugins import Needs, Scorer, register


@register
class KeyProbe(Scorer):
    name = "rel_key_probe"
    needs = Needs(columns=("clip_l14_similarity_score",))
    default_percent = 30.0

    def score_metadata(self, batch, ctx):
        return {{"score": {sign} batch.column("clip_l14_similarity_score").astype(float)}}
'''


def _forget_plugin(path: Path) -> None:
    """What a new process sees: the plugin file not yet loaded, its filter not registered. (Python's
    bytecode cache trusts a source file's size and whole-second mtime, so the edit changes the size.)"""
    from harness import plugins

    plugins._LOADED_FILES.discard(str(path.resolve()))
    plugins.unregister("rel_key_probe")


def _subset(summary: dict) -> list:
    return np.load(Path(summary["provenance"]["run_dir"]) / "subset.npy").tolist()


def test_an_edited_plugin_file_reselects(gen_pool, tmp_path, fake_stages: FakeStages):
    plugin = tmp_path / "probe_plugin.py"
    plugin.write_text(PLUGIN.format(sign="+"))
    cfg = RunConfig(filter="rel_key_probe", pool=gen_pool.root, eval_data=gen_pool.root, runs=tmp_path / "runs",
                    workers=1, plugins=[str(plugin)])
    try:
        first = _subset(run(cfg))
        _forget_plugin(plugin)
        assert _subset(run(cfg)) == first
        assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)  # nothing changed: all skipped

        plugin.write_text(PLUGIN.format(sign="-1.0 *"))  # the bottom 30% now (another size: see below)
        _forget_plugin(plugin)
        edited = run(cfg)
        assert edited["provenance"]["stage_seconds"]["select"] > 0
        assert set(map(tuple, _subset(edited))).isdisjoint(map(tuple, first))
        assert (fake_stages.train_calls, fake_stages.eval_calls) == (2, 2)
    finally:
        _forget_plugin(plugin)


def test_a_uids_file_with_new_content_reselects(gen_pool, tmp_path, fake_stages: FakeStages):
    from harness.pool import Pool

    uids = Pool(gen_pool.root).uids()
    listed = tmp_path / "published.npy"
    save_subset(listed, uids[:3])
    cfg = RunConfig(filter=f"uids:{listed}", pool=gen_pool.root, eval_data=gen_pool.root, runs=tmp_path / "runs",
                    workers=1)
    assert run(cfg)["samples"] == 3
    save_subset(listed, uids[:11])  # same path, other content
    again = run(cfg)
    assert again["samples"] == 11 and again["provenance"]["stage_seconds"]["select"] > 0


def test_a_metadata_file_rewritten_with_its_old_size_and_mtime_reselects(gen_pool, tmp_path,
                                                                       fake_stages: FakeStages):
    cfg = RunConfig(filter="clip_l14_30", pool=gen_pool.root, eval_data=gen_pool.root, runs=tmp_path / "runs",
                    workers=1)
    first = _subset(run(cfg))
    path = gen_pool.metadata_files[1]  # holds the top 30%: reversed, other rows hold those scores
    st = path.stat()
    table = pq.read_table(path)
    col = table.schema.get_field_index("clip_l14_similarity_score")
    reversed_scores = pa.array(np.ascontiguousarray(table.column(col).to_numpy()[::-1]))
    pq.write_table(table.set_column(col, "clip_l14_similarity_score", reversed_scores), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `cp -p` leaves
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    changed = run(cfg)
    assert changed["provenance"]["stage_seconds"]["select"] > 0
    assert _subset(changed) != first


def _one_task_suite(tmp_path: Path, main_metric: str) -> Path:
    """A copy of the datacomp suite's first task as a suite file of its own."""
    import yaml

    from harness.evaluation.suites import TASKS_DIR

    data = yaml.safe_load((TASKS_DIR / "datacomp.yaml").read_text())
    data["suite"] = "one_task"
    data["tasks"] = data["tasks"][:1]
    data["tasks"][0]["main_metric"] = main_metric
    path = tmp_path / "one_task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_edited_suite_definition_reevaluates(gen_pool, tmp_path, fake_stages: FakeStages):
    suite = _one_task_suite(tmp_path, "acc1")
    cfg = RunConfig(filter="clip_l14_30", pool=gen_pool.root, eval_data=gen_pool.root, runs=tmp_path / "runs",
                    workers=1, suite=str(suite))
    run(cfg)
    run(cfg)
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)
    _one_task_suite(tmp_path, "mean_per_class_recall")
    run(cfg)
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 2)  # training reused, evaluation redone


def test_relative_and_absolute_paths_are_one_cached_run(gen_pool, tmp_path, monkeypatch,
                                                        fake_stages: FakeStages):
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(gen_pool.root, tmp_path))
    first = run(RunConfig(filter="clip_l14_30", pool=relative, eval_data=relative, runs=Path("runs"), workers=1))
    again = run(RunConfig(filter="clip_l14_30", pool=gen_pool.root.resolve(), eval_data=gen_pool.root.resolve(),
                          runs=(tmp_path / "runs").resolve(), workers=1))
    assert (fake_stages.train_calls, fake_stages.eval_calls) == (1, 1)
    assert all(v == 0.0 for v in again["provenance"]["stage_seconds"].values())
    for summary in (first, again):  # paths that mean the same from any working directory
        assert summary["pool"] == str(gen_pool.root.resolve())
        assert Path(summary["provenance"]["run_dir"]).is_absolute()


def test_a_copied_pool_keeps_its_cached_scores(gen_pool, tmp_path, counting):
    """Score tables are keyed by content: the same pool at another path (an rsync) is not rescored."""
    from harness.plugins import ScoringContext
    from harness.pool import Pool
    from harness.scoring import compute_terms

    copy = tmp_path / "copy"
    shutil.copytree(gen_pool.root, copy)
    name = CountingColumn.name
    first = compute_terms(Pool(gen_pool.root), name, ScoringContext(pool=Pool(gen_pool.root)),
                          tmp_path / "scores", progress=False)
    again = compute_terms(Pool(copy), name, ScoringContext(pool=Pool(copy)), tmp_path / "scores",
                          progress=False)
    assert again.record["cached"] and again.path == first.path and CountingColumn.calls == 2  # 2 files, once


@pytest.fixture(autouse=True)
def _private_digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DIGEST_CACHE", str(tmp_path / "digests.sqlite"))
