"""Atomic writes, completion records and the run lock (harness.stages)."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from harness.stages import (
    RunLockedError,
    Stage,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    fingerprint_files,
    run_lock,
)


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_full_disk_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.txt"
    atomic_write_text(target, "old")

    def no_space(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_stage_record_matches_only_same_inputs(tmp_path: Path) -> None:
    stage = Stage(tmp_path, "select", {"filter": "dfn", "pool": "abc"})
    assert not stage.done()
    stage.complete({"kept": 10}, seconds=1.5)
    assert Stage(tmp_path, "select", {"pool": "abc", "filter": "dfn"}).done()  # key order is irrelevant
    assert Stage(tmp_path, "select", {"filter": "dfn", "pool": "abc"}).outputs() == {"kept": 10}
    assert not Stage(tmp_path, "select", {"filter": "dfn", "pool": "changed"}).done()


def test_torn_record_counts_as_not_done(tmp_path: Path) -> None:
    stage = Stage(tmp_path, "train", {"x": 1})
    stage.complete({})
    stage.record_path.write_text('{"stage": "train", "ke')  # simulated crash mid-write by another tool
    assert not stage.done()


def test_file_fingerprint_changes_when_input_is_rewritten(tmp_path: Path) -> None:
    f = tmp_path / "a.parquet"
    f.write_bytes(b"1234")
    before = fingerprint_files([f])
    f.write_bytes(b"12345")
    assert fingerprint_files([f]) != before
    assert fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})


def _hold_lock(directory: str, ready, release) -> None:
    with run_lock(directory):
        ready.set()
        release.wait(10)


def test_second_run_on_same_directory_is_refused(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunLockedError, match=str(tmp_path)), run_lock(tmp_path):
            pass
    finally:
        release.set()
        holder.join(10)
    with run_lock(tmp_path):  # free again once the first run ends
        assert os.path.exists(tmp_path / ".lock")
