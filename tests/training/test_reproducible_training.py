"""A tiny-recipe CPU run gives the same weights whatever kernels the caller's environment asks for
(harness/numerics.py); without the pins (HARNESS_NUMERICS=native) the same two settings differ,
which shows the comparison can see a difference. TEST-ONLY PATH: num_samples = 4 steps; the
control runs use the micro model of the other training tests (research_overrides)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from training_micro import MICRO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world"))
from reproducibility import OTHER_KERNELS, run_python  # noqa: E402


def _train(shards, out, env: dict[str, str], config_dir=None) -> dict:
    # the tiny recipe itself, or (control runs) the micro model of the other training tests
    overrides = {"model": MICRO, "global_batch": 8} if config_dir else None
    code = textwrap.dedent(f"""
        import hashlib, json, os
        import open_clip, torch
        from harness import numerics
        from harness.training import train
        if {str(config_dir)!r} != "None":
            open_clip.add_model_config({str(config_dir)!r})
        ckpt = train({str(shards)!r}, {str(out)!r}, "tiny", seed=0, num_samples={64 if config_dir else 4 * 128},
                     research_overrides={overrides!r})
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        h = hashlib.sha256()
        for name in sorted(state):
            h.update(name.encode())
            h.update(state[name].contiguous().numpy().tobytes())
        print(json.dumps({{"weights": h.hexdigest(), "capability": torch.backends.cpu.get_cpu_capability(),
                          "mkl": numerics.mkl_branch(),
                          "gemm": numerics.mode(numerics.TRAIN_THREADS),
                          "coretype": os.environ.get("OPENBLAS_CORETYPE")}}))
    """)
    return run_python(code, env)


def test_tiny_run_is_bit_identical_under_other_kernel_settings(train_shards, tmp_path, model_config_dir):
    other = _train(train_shards, tmp_path / "other", OTHER_KERNELS)
    best = _train(train_shards, tmp_path / "best", {})
    assert other["capability"] == best["capability"] == "AVX2"
    assert other["mkl"] == best["mkl"] == 3  # MKL_CBWR_COMPATIBLE
    # the products of a TRAIN_THREADS run (what the train key records): OpenBLAS's pinned Haswell
    # kernels in both environments, whatever the caller's MKL_CBWR and OPENBLAS_CORETYPE said
    assert other["gemm"] == best["gemm"]
    assert other["gemm"]["gemm"].startswith("scipy-openblas32==") and other["gemm"]["gemm"].endswith(" Haswell")
    assert other["coretype"] == best["coretype"] == "Haswell"  # the caller's Sandybridge is overridden
    assert other["weights"] == best["weights"]
    # control: unpinned, the same two environments train different weights
    native_other = _train(train_shards, tmp_path / "native_other", {**OTHER_KERNELS, "HARNESS_NUMERICS": "native"},
                          model_config_dir)
    native_best = _train(train_shards, tmp_path / "native_best", {"HARNESS_NUMERICS": "native"}, model_config_dir)
    assert native_other["capability"] == "DEFAULT"
    assert native_other["weights"] != native_best["weights"]
