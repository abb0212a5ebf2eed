"""A full disk (simulated ENOSPC) while the scoring engine, the selection and the resharder write.

Behaviour under test: the OSError reaches the caller; no half-written output and no temporary file is left;
an earlier finished output stays as it was; the next call, with space again, produces the full result.
(harness.stages' own writers are covered in test_stages.py.)
"""

from __future__ import annotations

import errno
import tarfile

import numpy as np
import pytest

from harness.plugins import ScoringContext
from harness.pool import Pool, uids_to_array
from harness.reshard import reshard
from harness.scoring import compute_terms
from harness.selection import save_subset, select


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _files(d):
    return sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_full_disk_while_writing_a_score_table(gen_pool, tmp_path, monkeypatch):
    import harness.scoring

    pool = Pool(gen_pool.root)
    ctx = ScoringContext(pool=pool)
    scores = tmp_path / "scores"
    monkeypatch.setattr(harness.scoring.pq, "write_table", _no_space)
    with pytest.raises(OSError, match="No space left"):
        compute_terms(pool, "basic", ctx, scores, progress=False)
    assert _files(scores) == []
    monkeypatch.undo()
    t = compute_terms(Pool(gen_pool.root), "basic", ctx, scores, progress=False)
    assert not t.record["cached"] and t.path.exists()


def test_full_disk_while_writing_a_subset_keeps_the_previous_one(gen_pool, tmp_path, monkeypatch):
    run = tmp_path / "run"
    previous = np.sort(uids_to_array(gen_pool.uids[:2]))
    save_subset(run / "subset.npy", previous)
    monkeypatch.setattr(np, "save", _no_space)
    pool = Pool(gen_pool.root)
    with pytest.raises(OSError, match="No space left"):
        select(pool, "clip_l14_30", run, ScoringContext(pool=pool), None, progress=False)
    monkeypatch.undo()
    assert _files(run) == ["subset.npy"]
    assert np.load(run / "subset.npy").tolist() == previous.tolist()


def test_full_disk_while_resharding_leaves_no_temporary_shards(gen_pool, tmp_path, monkeypatch):
    save_subset(tmp_path / "all.npy", uids_to_array(gen_pool.uids))
    out = tmp_path / "shards"
    real = tarfile.TarFile.addfile
    calls = {"n": 0}

    def fills_up(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            _no_space()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "addfile", fills_up)
    with pytest.raises(OSError, match="No space left"):
        reshard(Pool(gen_pool.root), tmp_path / "all.npy", out, workers=1)
    monkeypatch.undo()
    assert "meta.json" not in _files(out)  # the completion record of a reshard is written last
    assert not [n for n in _files(out) if n.startswith(".reshard")]
    meta = reshard(Pool(gen_pool.root), tmp_path / "all.npy", out, workers=1)
    assert meta["output_count"] == len(gen_pool.uids)
