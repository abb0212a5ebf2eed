"""Helpers of the reproducibility tests: run code in a fresh interpreter under chosen kernel settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a caller's environment may ask for instead of the pinned kernels: ATen's portable kernels,
# MKL's AVX2 branch (the AUTO branch on a non-Intel CPU), oneDNN capped at SSE4.1, OpenBLAS's
# AVX-without-FMA kernels on one thread.
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "OPENBLAS_CORETYPE": "Sandybridge", "OPENBLAS_NUM_THREADS": "1"}
_CLEARED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES",
            "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "HARNESS_NUMERICS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "HARNESS_WORLD_WORKERS")


def run_python(code: str, env: dict[str, str], timeout: float = 600) -> dict:
    """Run `code` in a fresh interpreter whose environment is this one without any kernel setting,
    plus `env`; the code prints one JSON object as its last line, which is returned."""
    full = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
