"""The world's MERU files are the same bytes whichever process writes them (the world's content
fingerprint hashes them): torch.save must not see the process-specific temporary file name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from harness.baselines.hype.world_model import _atomic_save

_CODE = """
import sys, torch
from pathlib import Path
from harness.baselines.hype.world_model import _atomic_save
_atomic_save({"img": torch.arange(12.0).reshape(3, 4), "txt": torch.ones(2, 4)}, Path(sys.argv[1]))
"""


def test_saved_bytes_do_not_depend_on_the_writing_process(tmp_path: Path) -> None:
    here, there = tmp_path / "a" / "reference_set.pt", tmp_path / "b" / "reference_set.pt"
    here.parent.mkdir()
    there.parent.mkdir()
    _atomic_save({"img": torch.arange(12.0).reshape(3, 4), "txt": torch.ones(2, 4)}, here)
    subprocess.run([sys.executable, "-c", _CODE, str(there)], check=True)
    assert here.read_bytes() == there.read_bytes()
