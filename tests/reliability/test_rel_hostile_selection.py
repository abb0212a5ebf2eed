"""Issue 19, item 3: no silent wrong result from the selection and the resharder.

- the same uid in two shards (with different images) is written once, from the first shard in name
  order, and reported with both shard names (DataComp's resharder writes it twice; output_count then
  exceeds the subset and its "missing" count goes negative, as the issue saw: -10);
- a ``uids:`` term takes only a valid .npy of u8,u8: 16- or 32-byte text files, /dev/zero are refused;
- foreign uids in a ``uids:`` file are counted on the console;
- an expression that keeps nothing fails at select, naming the expression and the per-term counts;
- fewer samples than one global batch: training warns.
"""

from __future__ import annotations

import json
import logging
import tarfile

import pytest
from hostile_inputs import add_sample, jpeg

from harness.plugins import ScoringContext
from harness.pool import Pool, uids_to_array
from harness.reshard import reshard
from harness.selection import EmptySelectionError, save_subset, select


@pytest.fixture(autouse=True)
def _cli_log_handlers():
    """harness.cli.main adds a stderr handler per call; drop them so a later test's captured stderr
    does not receive a closed stream's logging errors."""
    import logging as _logging

    yield
    _logging.getLogger("harness").handlers.clear()



def _written(out) -> dict[str, bytes]:
    """key -> image bytes over every output shard."""
    got: dict[str, bytes] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf:
                if m.name.endswith(".jpg"):
                    assert m.name[:-4] not in got, f"{m.name} written twice"
                    got[m.name[:-4]] = tf.extractfile(m).read()
    return got


@pytest.mark.parametrize("workers", [1, 2])
def test_uid_in_two_shards_is_written_once_and_reported(workers, gen_pool, tmp_path, caplog):
    # the first sample of shard 0 appears again, with another image, at the end of shard 1
    dup = gen_pool.uids[0]
    add_sample(gen_pool.shards[1], "0001dupli", dup, "another caption", jpeg(32, 32))
    subset = tmp_path / "all.npy"
    save_subset(subset, uids_to_array(gen_pool.uids + [dup]))  # listed twice: upsampled x2
    with caplog.at_level(logging.WARNING, logger="harness.reshard"):
        meta = reshard(Pool(gen_pool.root), subset, tmp_path / "out", workers=workers)
    got = _written(tmp_path / "out")
    assert meta["output_count"] == len(gen_pool.uids) + 1 == len(got)
    assert meta["missing_from_input"] == 0
    assert meta["duplicate_uids"] == 1
    assert meta["duplicates"] == [{"uid": dup, "kept_from": "00000000.tar", "skipped_from": "00000001.tar"}]
    # the first occurrence (shard 0's image) is what trains, twice as the subset asks
    assert got[f"{dup}-0"] == got[f"{dup}-1"] == gen_pool.images[dup]
    msg = [r.getMessage() for r in caplog.records if "more than one" in r.getMessage()]
    assert len(msg) == 1 and dup in msg[0] and "00000000.tar" in msg[0] and "00000001.tar" in msg[0]
    stats = [json.loads(p.read_text())["successes"] for p in sorted((tmp_path / "out").glob("*_stats.json"))]
    assert sum(stats) == len(got)


def test_uid_twice_in_one_shard_is_written_once(gen_pool, tmp_path):
    dup = gen_pool.uids[1]
    add_sample(gen_pool.shards[0], "0000dupli", dup, "again", jpeg(16, 16))
    subset = tmp_path / "one.npy"
    save_subset(subset, uids_to_array([dup]))
    meta = reshard(Pool(gen_pool.root), subset, tmp_path / "out", workers=1)
    assert meta["output_count"] == 1 and meta["missing_from_input"] == 0
    assert meta["duplicates"] == [{"uid": dup, "kept_from": "00000000.tar", "skipped_from": "00000000.tar"}]
    assert _written(tmp_path / "out") == {f"{dup}-0": gen_pool.images[dup]}


def _select(gen_pool, tmp_path, expr: str):
    pool = Pool(gen_pool.root)
    return select(pool, expr, tmp_path / "run", ScoringContext(pool=pool), tmp_path / "scores", progress=False)


@pytest.mark.parametrize("size", [16, 32])
def test_uids_term_refuses_a_text_file_that_is_a_multiple_of_16_bytes(size, gen_pool, tmp_path):
    path = tmp_path / "uids.txt"
    path.write_bytes((b"0123456789abcdef" * 2)[:size])
    with pytest.raises(ValueError, match=rf"{path}: not a \.npy file"):
        _select(gen_pool, tmp_path, f"uids:{path}")
    assert not (tmp_path / "run" / "subset.npy").exists()


def test_uids_term_refuses_a_device(gen_pool, tmp_path):
    with pytest.raises(ValueError, match="subset file /dev/zero is not a regular file"):
        _select(gen_pool, tmp_path, "uids:/dev/zero")


def test_foreign_uids_are_counted_on_the_console(gen_pool, tmp_path, caplog):
    path = tmp_path / "mixed.npy"
    foreign = [f"{i:032x}" for i in range(1, 4)]
    save_subset(path, uids_to_array(gen_pool.uids[:5] + foreign))
    with caplog.at_level(logging.WARNING, logger="harness.selection"):
        info = _select(gen_pool, tmp_path, f"uids:{path}")
    assert info["kept"] == 5
    msg = [r.getMessage() for r in caplog.records if r.name == "harness.selection"]
    assert msg == [f"select: uids:{path}: 3 of its uids are not in the pool {gen_pool.root} (ignored)"]


def test_empty_selection_is_an_error_at_select_with_per_term_counts(gen_pool, tmp_path):
    # l14 scores are 0.01..0.20: the first term keeps 10 rows (0.11..0.20), the second none, the intersection none
    expr = "clip_l14>=0.105 & clip_b32>=5"
    with pytest.raises(EmptySelectionError) as err:
        _select(gen_pool, tmp_path, expr)
    msg = str(err.value)
    assert msg == (f"select: expression {expr!r} keeps no sample of the 20 in {gen_pool.root} "
                   "(kept per term: clip_l14>=0.105: 10, clip_b32>=5: 0)")
    assert not (tmp_path / "run" / "subset.npy").exists()


def test_empty_selection_through_the_cli_is_one_line_exit_2(gen_pool, tmp_path, capsys):
    from harness.cli import main

    code = main(["select", "--pool", str(gen_pool.root), "--filter", "clip_l14>=5", "--out", str(tmp_path / "o"),
                 "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("harness: error: select: expression 'clip_l14>=5' keeps")
    assert "(kept per term: clip_l14>=5: 0)" in err[0]


def test_selection_smaller_than_a_global_batch_warns_at_train(gen_pool, tmp_path, caplog, monkeypatch):
    from harness.training import driver

    subset = tmp_path / "one.npy"
    save_subset(subset, uids_to_array(gen_pool.uids[5:6]))
    reshard(Pool(gen_pool.root), subset, tmp_path / "shards", workers=1)
    ran = []
    monkeypatch.setattr(driver, "execute", lambda plan, rank=0: ran.append(plan) or plan.final_checkpoint)
    with caplog.at_level(logging.WARNING, logger="harness.training.driver"):
        driver.train(tmp_path / "shards", tmp_path / "train", scale="tiny", num_samples=8)
    batch = driver.get_recipe("tiny").global_batch
    msg = [r.getMessage() for r in caplog.records if "global batch" in r.getMessage()]
    assert ran and msg == [f"train: {tmp_path / 'shards'} holds 1 sample(s), fewer than one global batch "
                           f"({batch}): each batch repeats them about {batch} times"]
