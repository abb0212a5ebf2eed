"""Issue 19, item 1: no file the user or a pool supplies is ever unpickled.

Each test plants a crafted ``.pt`` whose pickle calls ``os.system("touch MARKER")`` at one load site --
an option (``--set image_based.reference=`` / ``centroids=``), the file the image-based plugin finds by
itself next to the pool, a model checkpoint (world model dir, ``arch:file``, ``harness evaluate``),
HYPE's checkpoint and reference set, and open_clip_train's resume checkpoint -- and asserts the load is
refused with an error naming the file, and that the marker was never written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.plugins import ScoringContext
from harness.pool import Pool
from harness.safeload import UnsafeFileError
from harness.selection import select


@pytest.fixture(autouse=True)
def _cli_log_handlers():
    """harness.cli.main adds a stderr handler per call; drop them so a later test's captured stderr
    does not receive a closed stream's logging errors."""
    import logging as _logging

    yield
    _logging.getLogger("harness").handlers.clear()



class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, wrap: str | None = "image_features") -> Path:
    """A torch.save'd file whose unpickling would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = _Payload(marker)
    torch.save({wrap: obj} if wrap else obj, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a planted pickle ran code"


def _select_image_based(pool_root: Path, tmp_path: Path, **options: str) -> None:
    pool = Pool(pool_root)
    ctx = ScoringContext(pool=pool, options={"image_based": options} if options else {})
    select(pool, "image_based", tmp_path / "run", ctx, tmp_path / "scores", progress=False)


def test_the_planted_pickle_does_run_code_when_unpickled(tmp_path):
    """The crafted input is real: torch.load(weights_only=False) on it creates the marker."""
    m = tmp_path / "ran"
    torch.load(plant(tmp_path / "evil.pt", m), weights_only=False)
    assert m.exists()


@pytest.mark.parametrize("option", ["reference", "centroids"])
def test_image_based_option_files_are_never_unpickled(option, gen_pool, tmp_path, marker):
    evil = plant(tmp_path / "given" / f"{option}.pt", marker)
    # the plugin's error wraps the refusal (a PluginError, also a ValueError) and names the file
    with pytest.raises(ValueError, match=rf"{evil}: refused.*GLOBAL posix\.system"):
        _select_image_based(gen_pool.root, tmp_path, **{option: str(evil)})
    assert not (tmp_path / "run" / "subset.npy").exists()


def test_image_based_auto_discovered_reference_is_never_unpickled(gen_pool, tmp_path, marker):
    """No option given: the plugin finds <pool>/../imagenet_like/in1k_clip_vit_l14_*.pt by itself."""
    evil = plant(gen_pool.root.parent / "imagenet_like" / "in1k_clip_vit_l14_0.pt", marker)
    with pytest.raises(ValueError, match=rf"{evil}: refused"):
        _select_image_based(gen_pool.root, tmp_path)


def test_image_based_still_loads_datacomp_style_numpy_pt_files(tmp_path):
    """weights_only is not over-eager: DataComp's .pt of a numpy array (centroids) or of
    {"image_features": array} loads as before."""
    from harness.baselines.image_based import _load_array

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    torch.save(arr, tmp_path / "centroids.pt")
    torch.save({"image_features": arr.astype(np.float16)}, tmp_path / "in1k_clip_vit_l14_0.pt")
    np.testing.assert_array_equal(_load_array(tmp_path / "centroids.pt"), arr)
    np.testing.assert_array_equal(_load_array(tmp_path / "in1k_clip_vit_l14_0.pt"), arr)


def test_pickled_npy_reference_is_refused(tmp_path, marker):
    from harness.baselines.image_based import _load_array

    path = tmp_path / "features.npy"
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=str(path)):
        _load_array(path)


def test_world_model_checkpoint_is_never_unpickled(tmp_path, marker):
    from harness.models import load_clip

    model_dir = tmp_path / "ref_b32"
    plant(model_dir / "model.pt", marker, wrap="state_dict")
    (model_dir / "model.json").write_text(json.dumps({"kind": "clip", "model_name": "tiny-clip"}))
    with pytest.raises(UnsafeFileError, match=str(model_dir / "model.pt")):
        load_clip(model_dir)


def test_arch_colon_checkpoint_is_never_unpickled(tmp_path, marker):
    from harness.models import load_clip

    evil = plant(tmp_path / "epoch_1.pt", marker, wrap="state_dict")
    with pytest.raises(UnsafeFileError, match=str(evil)):
        load_clip(f"tiny-clip:{evil}")


def test_harness_evaluate_on_a_refused_pickle_is_one_line(tmp_path, marker, capsys, tiny_world):
    from harness.cli import main

    run = tmp_path / "train" / "run"
    evil = plant(run / "checkpoints" / "epoch_1.pt", marker, wrap="state_dict")
    (run / "params.txt").write_text("model: tiny-clip\n")
    # the world's suite: every task's data is there, so the model is loaded (and refused) first
    code = main(["evaluate", "--model", str(evil), "--data", str(tiny_world), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 1  # a data file at fault, not the command line (harness.errors)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: evaluate: {evil}: refused: "), err
    assert "Traceback" not in err


def test_hype_checkpoint_and_reference_set_are_never_unpickled(tmp_path, marker):
    from harness.baselines.hype.model import load_reference_set

    evil = plant(tmp_path / "reference_set.pt", marker, wrap="img")
    with pytest.raises(UnsafeFileError, match=str(evil)):
        load_reference_set(evil)


def test_training_resume_checkpoint_is_never_unpickled(tmp_path, marker, monkeypatch):
    """open_clip_train's main loads --resume with its pt_load; inside run_open_clip that is the
    weights-only loader, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says."""
    from open_clip_train import main as oc_main

    from harness.training import driver

    evil = plant(tmp_path / "checkpoints" / "epoch_latest.pt", marker, wrap="state_dict")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    def fake_main(args):  # what open_clip_train does with --resume
        oc_main.pt_load(str(evil), map_location="cpu")

    monkeypatch.setattr(oc_main, "main", fake_main)
    with pytest.raises(UnsafeFileError, match=str(evil)):
        driver.run_open_clip([], seed=0)
    assert oc_main.pt_load.__module__ == "open_clip_train.file_utils"  # restored afterwards


def test_cli_set_option_pointing_at_a_pickle_is_one_line(gen_pool, tmp_path, marker, capsys):
    from harness.cli import main

    evil = plant(tmp_path / "centroids.pt", marker)
    code = main(["select", "--pool", str(gen_pool.root), "--filter", "image_based", "--out", str(tmp_path / "o"),
                 "--runs", str(tmp_path / "runs"), "--set", f"image_based.centroids={evil}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(evil) in err[0] and "refused" in err[0]  # a bad --set value
