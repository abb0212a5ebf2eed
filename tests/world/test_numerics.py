"""harness.numerics: the pins reach child processes, are in force inside `pinned`, and a process
that already runs other kernels is refused rather than silently used."""

from __future__ import annotations

import textwrap

import pytest
import torch
from reproducibility import run_python

from harness import numerics


def test_child_environment_carries_the_pins(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv(numerics.OPT_OUT_VAR, raising=False)
    env = numerics.child_environ(1)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    monkeypatch.setenv(numerics.OPT_OUT_VAR, "native")
    assert numerics.child_environ(1)["ATEN_CPU_CAPABILITY"] == "default"  # opted out: left alone
    monkeypatch.setenv(numerics.OPT_OUT_VAR, "fast")
    with pytest.raises(numerics.NumericsError, match="HARNESS_NUMERICS='fast'"):
        numerics.enabled()


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="needs AVX2")
def test_pinned_block_runs_pinned_kernels_and_restores_flags(monkeypatch):
    monkeypatch.delenv(numerics.OPT_OUT_VAR, raising=False)
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    with numerics.pinned(2) as state:
        assert state == {"mode": "pinned", "cpu_capability": "AVX2", "mkl_cbwr": numerics.MKL_CBWR_COMPATIBLE,
                         "gemm": f"MKL {numerics.MKL_BRANCH}", "mkldnn": False, "nnpack": False, "threads": 2}
        torch.backends.mkldnn.enabled = True
        with pytest.raises(numerics.NumericsError, match="oneDNN is enabled"):
            numerics.check()
        torch.backends.mkldnn.enabled = False
    assert torch.get_num_threads() == threads and torch.backends.mkldnn.enabled == mkldnn


def test_kernels_chosen_before_harness_are_refused():
    code = textwrap.dedent("""
        import json
        import torch
        torch.ones(64).exp().sum()      # ATen picks its kernels now, from ATEN_CPU_CAPABILITY=default
        torch.ones(8, 8) @ torch.ones(8, 8)  # and MKL its branch, without CNR
        from harness import numerics
        try:
            with numerics.pinned(1):
                result = "ran"
        except numerics.NumericsError as e:
            result = str(e)
        print(json.dumps({"result": result}))
    """)
    result = run_python(code, {"ATEN_CPU_CAPABILITY": "default"})["result"]
    assert "ATen runs its DEFAULT kernels, not AVX2" in result
    assert "MKL runs CNR branch 1, not COMPATIBLE" in result and "HARNESS_NUMERICS=native" in result
