"""The suite-wide decode pool (SuiteStream) serves each task the batches the per-task loop makes."""

from __future__ import annotations

import io
import re
import tarfile

import numpy as np
import pytest
import torch

from harness.evaluation.loaders import DataError, ReadStats, StreamJob, SuiteStream, iter_batches, open_wds

from .fabricate import TEMPLATES, classnames, ranking_image, write_wds


def to_tensor(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32).copy())


def _task(root, n, first, per_shard):
    write_wds(root, [{"image": ranking_image([(first + i) % 5, (first + i + 1) % 5]), "cls": first + i}
                     for i in range(n)], classnames(5), TEMPLATES, per_shard=per_shard)
    return StreamJob(tuple(open_wds(root).shards), ("cls",))


def _corrupt(shard):
    with tarfile.open(shard, "a") as tar:
        for name, data in (("s0000900.webp", b"not an image"), ("s0000900.cls", b"1"), ("s0000901.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _no_address(reason):
    return re.sub(r"0x[0-9a-f]+", "", reason)  # PIL names the BytesIO object it could not read


def _view(batches):
    return [[(s["__key__"], s["cls"], s["image"].numpy().tobytes()) for s in b] for b in batches]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    out = [_task(root / "a", 11, 0, 4), _task(root / "b", 3, 100, 5), _task(root / "c", 9, 200, 9)]
    _corrupt(out[2].shards[0])
    return out


@pytest.mark.parametrize("workers", [1, 3])
def test_same_batches_and_skips_as_the_per_task_loop(jobs, workers):
    with SuiteStream(jobs, to_tensor, batch_size=4, num_workers=workers) as stream:
        for j, job in enumerate(jobs):
            serial_stats, stream_stats = ReadStats(), ReadStats()
            serial = _view(iter_batches(list(job.shards), job.need, to_tensor, 4, 0, serial_stats))
            assert _view(stream.batches(j, stream_stats)) == serial, j
            assert (stream_stats.samples, stream_stats.skipped) == (serial_stats.samples, serial_stats.skipped)
            assert [_no_address(r) for r in stream_stats.reasons] == [_no_address(r) for r in serial_stats.reasons]
    # batches of 4 consecutive samples: 11 -> 4+4+3; the corrupt pair in job c is skipped and counted
    assert [len(b) for b in _view(iter_batches(list(jobs[0].shards), ("cls",), to_tensor, 4, 0))] == [4, 4, 3]
    assert serial_stats.skipped == 2


def test_skipped_job_is_discarded_and_not_served_again(jobs):
    with SuiteStream(jobs, to_tensor, batch_size=4, num_workers=2) as stream:
        got = _view(stream.batches(1))  # job 0 never asked for: its batches are dropped
        assert [k for b in got for k, _, _ in b] == [f"s{i:07d}" for i in range(3)]
        assert not stream.can_serve(0) and not stream.can_serve(1) and stream.can_serve(2)
        with pytest.raises(ValueError, match="already passed"):
            next(stream.batches(0))
        assert sum(len(b) for b in stream.batches(2)) == 9
        assert list(stream.batches(5)) == []  # past the end: nothing, no hang


def test_unreadable_tar_fails_its_job_only(tmp_path, jobs):
    bad = tmp_path / "bad"
    bad_job = _task(bad, 6, 0, 3)
    bad_job.shards[1].write_bytes(bad_job.shards[1].read_bytes()[:700])  # cut inside a member
    with SuiteStream([bad_job, jobs[1]], to_tensor, batch_size=2, num_workers=2) as stream:
        first = []
        with pytest.raises(DataError, match="1.tar"):
            for b in stream.batches(0):
                first.append(b)
        serial = []
        with pytest.raises(DataError, match="1.tar"):
            for b in iter_batches(list(bad_job.shards), ("cls",), to_tensor, 2, 0):
                serial.append(b)
        # the full batches before the break, as in the per-task loop (the half-read one is lost)
        assert [len(b) for b in first] == [len(b) for b in serial] == [2]
        assert sum(len(b) for b in stream.batches(1)) == 3  # the next task is unaffected


def test_non_tensor_items_pass_through(jobs):
    def as_array(image):
        return np.asarray(image, dtype=np.float32)

    with SuiteStream(jobs[:1], as_array, batch_size=4, num_workers=2) as stream:
        batches = list(stream.batches(0))
    assert [len(b) for b in batches] == [4, 4, 3]
    assert all(isinstance(s["image"], np.ndarray) for b in batches for s in b)
