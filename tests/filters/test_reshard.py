"""The resharder writes exactly the subset's samples, with multiplicity, in DataComp's format."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import numpy as np
import pytest
from filters_fakepool import datacomp_uids, make_fake_pool

from harness.pool import Pool
from harness.reshard import reshard


def _read_out(out):
    members = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                members[m.name] = (tar.name, tf.extractfile(m).read())
    return members


def _input_members(root):
    by_uid = {}
    for tar in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        for name, data in files.items():
            if name.endswith(".json"):
                key = name[:-5]
                uid = json.loads(data)["uid"]
                by_uid[uid] = {n.split(".", 1)[1]: d for n, d in files.items() if n.split(".", 1)[0] == key}
    return by_uid


@pytest.mark.parametrize("workers", [1, 2])
def test_reshard_multiplicity_and_format(tmp_path, workers):
    df = make_fake_pool(tmp_path / "pool", n_files=2, rows=20, n_shards=3)
    rng = np.random.default_rng(0)
    counts = {u: int(k) for u, k in zip(df.uid, rng.integers(0, 4, len(df)), strict=True) if k}
    listed = [u for u, k in counts.items() for _ in range(k)]
    subset = datacomp_uids(listed + ["ab" * 16])  # one uid not in the pool
    subset.sort()
    np.save(tmp_path / "subset.npy", subset)
    out = tmp_path / "shards"
    meta = reshard(Pool(tmp_path / "pool"), tmp_path / "subset.npy", out, workers=workers, shard_size=7)

    members = _read_out(out)
    keys = Counter(name.rsplit(".", 1)[0] for name in members)
    assert all(v == 3 for v in keys.values())  # jpg, txt, json for every written sample
    written = Counter(k.rsplit("-", 1)[0] for k in keys)
    assert dict(written) == counts
    for uid, k in counts.items():
        assert {f"{uid}-{j}" for j in range(k)} <= set(keys)
    source = _input_members(tmp_path / "pool")
    for name, (_, data) in members.items():
        key, ext = name.rsplit(".", 1)
        assert data == source[key.rsplit("-", 1)[0]][ext]  # bytes copied as they were
    # shards of at most 7 samples, numbered {:08d}.tar with matching stats
    tars = sorted(out.glob("*.tar"))
    assert [t.name for t in tars] == [f"{i:08d}.tar" for i in range(len(tars))]
    per_shard = Counter(tar for tar, _ in members.values())
    for t in tars:
        stats = json.loads((out / t.name.replace(".tar", "_stats.json")).read_text())
        assert stats == {"successes": per_shard[t.name] // 3}
        assert stats["successes"] <= 7
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["output_count"] == meta["output_count"] == len(listed)
    assert on_disk["processed_count"] == len(df)
    assert on_disk["output_shard_count"] == len(tars)
    assert on_disk["missing_from_input"] == 1
    np.testing.assert_array_equal(np.load(out / "sample_ids.npy"), subset)


def test_reshard_skips_and_counts_corrupt_samples_and_reruns_clean(tmp_path):
    df = make_fake_pool(tmp_path / "pool", n_files=1, rows=8, n_shards=2)
    shard = tmp_path / "pool" / "shards" / "00000000.tar"
    import io

    with tarfile.open(shard, "a") as tf:
        data = b'{"uid": "not-a-uid"}'
        info = tarfile.TarInfo("bad.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    subset = datacomp_uids(df.uid)
    subset.sort()
    np.save(tmp_path / "s.npy", subset)
    out = tmp_path / "out"
    (out / "stale").mkdir(parents=True)
    (out / "00000099.tar").write_bytes(b"old")
    meta = reshard(Pool(tmp_path / "pool"), tmp_path / "s.npy", out, workers=2)
    assert meta["corrupt_samples"] == 1 and meta["output_count"] == 8
    assert not (out / "00000099.tar").exists() and (out / "stale").is_dir()  # only our own outputs cleared
    assert sorted(p.name for p in out.glob("*.tar")) == ["00000000.tar", "00000001.tar"]


def test_reshard_refuses_bad_subset(tmp_path):
    make_fake_pool(tmp_path / "pool", n_files=1, rows=4, n_shards=1)
    np.save(tmp_path / "bad.npy", np.zeros(3, dtype=np.uint64))
    with pytest.raises(ValueError, match=r"bad\.npy: dtype uint64"):
        reshard(Pool(tmp_path / "pool"), tmp_path / "bad.npy", tmp_path / "out")
