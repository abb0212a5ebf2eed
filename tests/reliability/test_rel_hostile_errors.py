"""Issue 19, item 4: every error names the stage, the file and the cause, in one line, exits 2 from the
CLI, and leaves no temporary behind; the corrupt-shard summary line of scoring is printed.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.expressions import ExpressionError, parse
from harness.plugins import Needs, Scorer, ScoringContext
from harness.pool import Pool, PoolError, uids_to_array
from harness.reshard import reshard
from harness.scoring import compute_terms
from harness.selection import save_subset, select

TORCH_ENOSPC = ("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                "data/0: file write failed")

@pytest.fixture(autouse=True)
def _cli_log_handlers():
    """harness.cli.main adds a stderr handler per call; drop them so a later test's captured stderr
    does not receive a closed stream's logging errors."""
    import logging as _logging

    yield
    _logging.getLogger("harness").handlers.clear()



def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.is_file() and p.name != "epoch_latest.pt")


def _fake_open_clip_saving(ckpt_dir: Path, big: bool = False):
    """What open_clip_train's main does at the end of an epoch (main.py, "Saving checkpoints")."""
    def main(args):
        state = {"epoch": 2, "state_dict": {"w": torch.zeros(1 << 20 if big else 4)}}
        torch.save(state, os.path.join(ckpt_dir, "epoch_2.pt"))
        tmp = os.path.join(ckpt_dir, "tmp.pt")
        torch.save(state, tmp)
        os.replace(tmp, os.path.join(ckpt_dir, "epoch_latest.pt"))
    return main


def test_full_disk_while_training_saves_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    """torch.save on a full disk writes part of the file, then raises its `[enforce fail ...]` error."""
    from open_clip_train import main as oc_main

    from harness.training import driver

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save({"epoch": 1}, ckpt / "epoch_latest.pt")

    def fills_up(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError(TORCH_ENOSPC)

    monkeypatch.setattr(torch, "save", fills_up)
    monkeypatch.setattr(oc_main, "main", _fake_open_clip_saving(ckpt))
    with pytest.raises(driver.TrainingError) as err:
        driver.run_open_clip([], seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "enforce fail" not in msg
    assert msg.startswith(f"train: cannot write checkpoint {ckpt / 'epoch_2.pt'}: the write failed (")
    assert _leftovers(tmp_path) == []  # no epoch_2.pt fragment, no tmp.pt, no .partial
    assert torch.load(ckpt / "epoch_latest.pt", weights_only=True) == {"epoch": 1}  # the last good one
    assert torch.save is fills_up  # restored after the run


def test_training_checkpoints_are_still_written_normally(tmp_path, monkeypatch):
    from open_clip_train import main as oc_main

    from harness.training import driver

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    monkeypatch.setattr(oc_main, "main", _fake_open_clip_saving(ckpt))
    driver.run_open_clip([], seed=0)
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_2.pt", "epoch_latest.pt"]
    assert torch.load(ckpt / "epoch_latest.pt", weights_only=True)["epoch"] == 2


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 2 MB filesystem, when this process may mount one (root, not in a restricted container)."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", str(d)], check=False)


def test_really_full_disk_while_training_saves(tiny_tmpfs, monkeypatch):
    from open_clip_train import main as oc_main

    from harness.training import driver

    ckpt = tiny_tmpfs / "checkpoints"
    ckpt.mkdir()
    monkeypatch.setattr(oc_main, "main", _fake_open_clip_saving(ckpt, big=True))  # a 4 MB state dict
    with pytest.raises(driver.TrainingError, match=r"^train: cannot write checkpoint .*epoch_2\.pt: .* free there\)"):
        driver.run_open_clip([], seed=0)
    assert list(ckpt.iterdir()) == []


def test_full_disk_in_reshard_names_the_file(gen_pool, tmp_path, monkeypatch):
    save_subset(tmp_path / "all.npy", uids_to_array(gen_pool.uids))
    out = tmp_path / "shards"
    real = tarfile.TarFile.addfile
    calls = {"n": 0}

    def fills_up(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "addfile", fills_up)
    with pytest.raises(OSError) as err:
        reshard(Pool(gen_pool.root), tmp_path / "all.npy", out, workers=1)
    assert err.value.errno == errno.ENOSPC
    assert f"reshard: cannot write {out}/.reshard-w" in str(err.value) and "No space left" in str(err.value)
    assert not [p for p in out.iterdir() if p.name.startswith(".reshard")]


def test_nan_in_npz_features_names_the_npz_array_and_row(gen_pool, tmp_path):
    npz = gen_pool.root / "metadata" / "00000001.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["l14_img"][3, 2] = np.nan
    np.savez(npz, **arrays)
    with pytest.raises(PoolError) as err:
        list(Pool(gen_pool.root).iter_metadata(["text"], ["l14_img"]))
    assert str(err.value) == f"{npz}: array 'l14_img' holds NaN or inf at row 3 (uid {gen_pool.uids[13]})"
    # the case: image_based's k-means met it and printed scikit-learn's text naming the parquet
    pool = Pool(gen_pool.root)
    with pytest.raises(PoolError, match=rf"^{npz}: array 'l14_img' holds NaN or inf at row 3 "):
        select(pool, "image_based", tmp_path / "run", ScoringContext(pool=pool), tmp_path / "s", progress=False)


def test_deep_nesting_is_refused_with_a_position():
    expr = "(" * 500 + "dfn" + ")" * 500
    with pytest.raises(ExpressionError, match=r"nested more than 50 deep \(at position 50\)") as err:
        parse(expr)
    assert err.value.pos == 50
    with pytest.raises(ExpressionError, match=r"more than 256 terms \(at position 1024\)"):
        parse("+".join(["dfn"] * 2000))


def _cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    from harness.cli import main

    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_option_value_names_filter_and_option(gen_pool, tmp_path, capsys):
    code, err = _cli(["select", "--pool", str(gen_pool.root), "--filter", "random30", "--out", str(tmp_path / "o"),
                      "--runs", str(tmp_path / "r"), "--set", "random.seed=abc"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("harness: error: select: filter 'random': bad value for option 'seed'='abc': ")


def test_select_with_a_mistyped_world_checks_the_expression_first(tmp_path, capsys):
    world = tmp_path / "wrold-seed0"
    code, err = _cli(["select", "--world", str(world), "--filter", "dfn + bogus_filter", "--out", str(tmp_path / "o"),
                      "--runs", str(tmp_path / "r")], capsys)
    assert code == 2 and err[0].startswith("harness: error: select: unknown filter 'bogus_filter'")
    assert not world.exists()  # no world was started


class _ImageScorer(Scorer):
    name = "rel_image_size"
    terms = ("w",)
    needs = Needs(images=True)
    default_percent = 50.0

    def score_samples(self, samples, ctx):
        return {"w": np.array([float(s.image.width) for s in samples])}


def test_score_prints_the_corrupt_shard_summary_even_when_no_row_is_lost(gen_pool, tmp_path, registered, caplog):
    """Junk after a shard's end-of-archive marker: every sample reads, the shard is corrupt; the README
    promises one summary line."""
    with open(gen_pool.shards[1], "ab") as f:
        f.write(b"\x00" * 1024 + b"junk that is not a tar header" + b"\x00" * 483)
    registered(_ImageScorer)
    pool = Pool(gen_pool.root)
    with caplog.at_level(logging.WARNING, logger="harness.scoring"):
        t = compute_terms(pool, "rel_image_size", ScoringContext(pool=pool), tmp_path / "s", progress=False)
    assert not np.isnan(t.terms["w"]).any()
    lines = [r.getMessage() for r in caplog.records if r.name == "harness.scoring"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("score rel_image_size: skipped 1 corrupt shard in 2 shard(s); first: ")
    assert "00000001.tar" in lines[0]


def test_harness_run_names_the_stage_that_failed(gen_pool, tmp_path, capsys):
    code, err = _cli(["run", "--pool", str(gen_pool.root), "--filter", "random30", "--runs", str(tmp_path / "r"),
                      "--eval-data", str(tmp_path), "--set", "random.seed=abc"], capsys)
    errors = [line for line in err if " INFO " not in line]  # progress lines ("select: running") aside
    assert code == 2 and len(errors) == 1, err
    assert errors[0].startswith("harness: error: select: filter 'random': bad value for option 'seed'='abc'")
