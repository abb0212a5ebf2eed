"""world_fingerprint: a content hash of what a world generated, cached without trusting mtimes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.world import fingerprint as F
from harness.world import world_fingerprint


def _fake_world(root: Path) -> Path:
    (root / "pool" / "metadata").mkdir(parents=True)
    (root / "pool" / "shards").mkdir()
    (root / "models" / "ref_b32").mkdir(parents=True)
    (root / ".build").mkdir()
    (root / "pool" / "metadata" / "a.parquet").write_bytes(b"PAR1 rows PAR1")
    (root / "pool" / "metadata" / "a.npz").write_bytes(b"npz features")
    (root / "pool" / "shards" / "00000000.tar").write_bytes(bytes(range(256)) * 8)
    (root / "oracle.parquet").write_bytes(b"oracle")
    (root / "models" / "ref_b32" / "model.pt").write_bytes(b"weights")
    (root / "models" / "ref_b32" / "model.json").write_text(json.dumps({"name": "ref_b32", "steps": 4}))
    (root / "models" / "ref_b32" / "complete.json").write_text(json.dumps({"seconds": 1.0}))
    (root / ".build" / "pool.json").write_text(json.dumps({"seconds": 3.0}))
    (root / "world.json").write_text(json.dumps({"seconds": {"pool": 3.0}}))
    return root


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """Replace the content with the same size and mtime (what `cp -p` of another file does)."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_same_content_same_fingerprint_anywhere(tmp_path):
    a = _fake_world(tmp_path / "a")
    fp = world_fingerprint(a)
    assert len(fp) == 16 and int(fp, 16) >= 0
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / ".build")  # no cache, other inodes and times
    assert world_fingerprint(b) == fp
    assert world_fingerprint(a, use_cache=False) == fp


@pytest.mark.parametrize("rel", ["pool/metadata/a.parquet", "pool/metadata/a.npz", "pool/shards/00000000.tar",
                                 "oracle.parquet", "models/ref_b32/model.pt"])
def test_one_changed_byte_changes_it_even_with_size_and_mtime_kept(tmp_path, rel):
    world = _fake_world(tmp_path / "w")
    before = world_fingerprint(world)  # also fills the cache
    path = world / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    _rewrite_keeping_stat(path, bytes(data))
    assert world_fingerprint(world) != before
    assert world_fingerprint(world) == world_fingerprint(world, use_cache=False)


def test_a_new_or_removed_file_changes_it(tmp_path):
    world = _fake_world(tmp_path / "w")
    before = world_fingerprint(world)
    (world / "pool" / "shards" / "00000001.tar").write_bytes(b"more")
    added = world_fingerprint(world)
    assert added != before
    (world / "pool" / "shards" / "00000001.tar").unlink()
    assert world_fingerprint(world) == before
    (world / "pool" / "shards" / "00000000.tar").rename(world / "pool" / "shards" / "00000009.tar")
    assert world_fingerprint(world) != before  # names count, not only bytes


def test_build_records_and_timings_do_not_count(tmp_path):
    world = _fake_world(tmp_path / "w")
    before = world_fingerprint(world)
    (world / "world.json").write_text(json.dumps({"seconds": {"pool": 99.0}, "created": "later"}))
    (world / "models" / "ref_b32" / "complete.json").write_text(json.dumps({"seconds": 42.0}))
    (world / ".build" / "pool.json").write_text("{}")
    (world / "pool" / "shards" / ".00000000.tar.abc123.tmp").write_bytes(b"interrupted write")
    meta = world / "models" / "ref_b32" / "model.json"
    meta.write_text(json.dumps({"steps": 4, "name": "ref_b32", "train_seconds": 12.5}, indent=2))
    assert world_fingerprint(world) == before  # same JSON content, key order and timings aside
    meta.write_text(json.dumps({"steps": 5, "name": "ref_b32"}))
    assert world_fingerprint(world) != before


def test_cache_spares_rehashing_and_survives_a_read_only_world(tmp_path, monkeypatch):
    world = _fake_world(tmp_path / "w")
    fp = world_fingerprint(world)
    record = json.loads((world / F.CACHE_FILE).read_text())
    assert record["fingerprint"] == fp and "pool/shards/00000000.tar" in record["files"]
    hashed: list[Path] = []
    real = F._file_digest
    monkeypatch.setattr(F, "_file_digest", lambda p: hashed.append(p) or real(p))
    assert world_fingerprint(world) == fp and hashed == []
    (world / "oracle.parquet").touch()  # new mtime and ctime, same bytes: hashed again, same result
    assert world_fingerprint(world) == fp and hashed == [world / "oracle.parquet"]
    (world / F.CACHE_FILE).unlink()

    def refuse(*_args):
        raise PermissionError("read-only world")

    monkeypatch.setattr(F.os, "replace", refuse)  # the cache cannot be written: still an answer
    assert world_fingerprint(world) == fp and not (world / F.CACHE_FILE).exists()


def test_a_directory_without_world_json_is_refused(tmp_path):
    world = _fake_world(tmp_path / "w")
    (world / "world.json").unlink()
    with pytest.raises(FileNotFoundError, match="no world.json"):
        world_fingerprint(world)
    assert len(world_fingerprint(world, finished=False)) == 16
