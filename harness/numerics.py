"""Pinned CPU numerics: the same bits from the same seed on every x86-64 machine with AVX2.

A float32 result on CPU depends on more than the seed: on which kernels the libraries pick for the
machine they run on. Left alone, torch picks ATen's widest vector kernels (AVX2 or AVX-512), Intel
MKL picks its GEMM code path from the CPU vendor and model (and on a non-Intel CPU an undocumented
one), oneDNN JIT-compiles convolutions for the CPU's ISA and cache sizes, and every reduction split
across threads depends on the thread count. Each of these changes the rounding, and a few hundred
training steps turn one-ulp differences into different models (so different pool scores and
different subsets). Pinning fixes each choice:

- ATen: `ATEN_CPU_CAPABILITY=avx2`. The AVX2 kernels are the widest every target machine has; an
  AVX-512 machine runs the same AVX2 code. ATen's float kernels use no approximate instructions
  (rcpps/rsqrtps), whose results differ between CPU vendors.
- Matrix products of one-thread work (the world's worker processes, tiny-scale training): aten's
  float32 `mm`, `addmm`, `bmm` and `baddbmm` run OpenBLAS's Haswell kernels
  (`OPENBLAS_CORETYPE=Haswell`: AVX2/FMA with constant blocking; harness/pinned_gemm.py), 1.8x
  faster per world training step than MKL's COMPATIBLE branch. Training runs one such thread while
  its dataloader worker decodes on the second core: 26% faster than two threads on MKL
  (BENCHMARKS.md). Scoring and evaluation keep 2 threads on MKL, which beat one OpenBLAS thread.
- MKL (torch's BLAS, for every other product, e.g. inside convolutions and fused attention):
  conditional numerical reproducibility `MKL_CBWR=COMPATIBLE`, MKL's SSE2 path without
  rcpps/rsqrtps. It is the one branch MKL runs unchanged on Intel and non-Intel CPUs:
  `MKL_CBWR=AVX2` silently falls back to the AUTO branch on non-Intel CPUs (oneMKL Developer Guide,
  "Getting Started with Conditional Numerical Reproducibility"; on this project's AMD EPYC machine
  `mkl_cbwr_get` reports AUTO (2) for `MKL_CBWR=AVX2`, and for SSE4_2 and AVX too). It is slow
  (SSE2, no FMA), which is why the bulk of the products go to OpenBLAS.
- oneDNN: off (`torch.backends.mkldnn.enabled = False`); convolutions then run as ATen im2col + MKL
  GEMM. oneDNN sizes its blocking from the cache sizes it detects, which no ISA cap pins.
  `ONEDNN_MAX_CPU_ISA=AVX2` is set as well, for any path that still reaches it. NNPACK: off.
- NumPy: its AVX-512 dispatch targets are disabled (`NPY_DISABLE_CPU_FEATURES`), so its SIMD math
  runs the AVX2 code on every target machine.
- Threads: a fixed count per use (world models: 1 per worker process; tiny-scale training:
  `TRAIN_THREADS`; model scoring and evaluation on CPU: `INFERENCE_THREADS`), never the machine's
  core count.

`HARNESS_NUMERICS=native` turns all of this off (each library picks for the machine again; faster
on AVX-512, not reproducible across machines). The environment variables take effect only before
the library first reads them (ATen: its first vectorised kernel; MKL: its first call, or at any
time through `mkl_cbwr_set`; NumPy: its import), so `import harness` sets them at once, and code
that must be pinned calls `pinned(...)`, which checks what is in force and refuses to run otherwise.
Worker processes get `child_environ(...)`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

PINNED_CAPABILITY = "AVX2"  # as torch.backends.cpu.get_cpu_capability() spells it
MKL_BRANCH = "COMPATIBLE"
MKL_CBWR_COMPATIBLE = 3  # oneMKL's MKL_CBWR_COMPATIBLE constant (mkl_cbwr.h)
TRAIN_THREADS = 1        # intra-op threads of pinned tiny-scale training (the same on every machine)
WORLD_THREADS = 1        # per world-model worker process
INFERENCE_THREADS = 2    # model scoring and evaluation on CPU (local engine; each Ray scoring actor)
OPENBLAS_GEMM_THREADS = 1  # pinned blocks with this many threads send their products to OpenBLAS

# NumPy's AVX-512 dispatch targets (numpy._core._multiarray_umath.__cpu_dispatch__ on x86-64)
_NPY_AVX512 = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"

PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": PINNED_CAPABILITY.lower(),
    "MKL_CBWR": MKL_BRANCH,
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": _NPY_AVX512,
    "OPENBLAS_CORETYPE": "Haswell",  # pinned_gemm.CORETYPE (and NumPy's own OpenBLAS, loaded after harness)
}
OPT_OUT_VAR = "HARNESS_NUMERICS"


@functools.cache  # read once: check() runs at every pinned block (each Ray scoring batch)
def _environ_settings() -> dict[str, str]:
    """PINNED_ENV as this process may apply it: without OPENBLAS_CORETYPE on a CPU that lacks AVX2/FMA
    (where NumPy's OpenBLAS would die on the first forced Haswell instruction, instead of `check()`
    saying what is wrong)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None or {"avx2", "fma"} <= set(flags):
        return dict(PINNED_ENV)
    return {k: v for k, v in PINNED_ENV.items() if k != "OPENBLAS_CORETYPE"}


class NumericsError(RuntimeError):
    """Pinned numerics were asked for but this process already runs other kernels."""


def enabled() -> bool:
    """False when the user opted out with HARNESS_NUMERICS=native."""
    value = os.environ.get(OPT_OUT_VAR, "pinned").strip().lower()
    if value not in ("pinned", "native", ""):
        raise NumericsError(f"{OPT_OUT_VAR}={value!r}: expected 'pinned' (default) or 'native'")
    return value != "native"


def pin_environ() -> None:
    """Put the pinned settings into os.environ (overriding the caller's); no-op when opted out.

    Called by `import harness` before anything imports torch, so every later kernel choice in this
    process, and every child process, is pinned.
    """
    if enabled():
        os.environ.update(_environ_settings())


def child_environ(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process that must compute pinned bits with `threads` threads."""
    env = dict(os.environ if base is None else base)
    if enabled():
        env.update(_environ_settings())
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return env


def _mkl() -> Any:
    """libtorch_cpu, where torch's statically linked MKL exports its CNR service calls; None if absent."""
    import ctypes

    import torch

    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    try:
        lib = ctypes.CDLL(os.path.join(lib_dir, "libtorch_cpu.so"))
        lib.mkl_serv_cbwr_get.restype = ctypes.c_int
        lib.mkl_serv_cbwr_set.restype = ctypes.c_int
        return lib
    except (OSError, AttributeError):
        return None


def mkl_branch() -> int | None:
    """The MKL CNR branch in force (1 = CNR off, 2 = AUTO, 3 = COMPATIBLE, 10 = AVX2; None: no MKL)."""
    lib = _mkl()
    return None if lib is None else int(lib.mkl_serv_cbwr_get(-1)) & 0xFFFF


def _gemm(threads: int) -> str:
    """Who computes the float32 matrix products of a block with `threads` threads."""
    if not enabled():
        return "aten"
    if threads == OPENBLAS_GEMM_THREADS:
        from . import pinned_gemm

        return pinned_gemm.identity()
    return f"MKL {MKL_BRANCH}"


def state() -> dict[str, Any]:
    """What is in force in this process (for run records and error messages)."""
    import torch

    return {"mode": "pinned" if enabled() else "native",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": mkl_branch(), "gemm": _gemm(torch.get_num_threads()),
            "mkldnn": bool(torch.backends.mkldnn.enabled),
            "nnpack": bool(torch._C._get_nnpack_enabled()), "threads": torch.get_num_threads()}


def _apply_torch(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if not enabled():
        return
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    lib = _mkl()
    # MKL reads MKL_CBWR at its first call; before that, this call sets the branch too (afterwards
    # MKL refuses it, and check() reports the branch in force)
    if lib is not None and int(lib.mkl_serv_cbwr_get(-1)) & 0xFFFF != MKL_CBWR_COMPATIBLE:
        lib.mkl_serv_cbwr_set(MKL_CBWR_COMPATIBLE)


def check() -> None:
    """Raise NumericsError unless this process runs the pinned kernels (or the user opted out)."""
    if not enabled():
        return
    import torch

    os.environ.update(_environ_settings())  # in case ATen has not read its variable yet
    capability = torch.backends.cpu.get_cpu_capability()
    problems = []
    if capability != PINNED_CAPABILITY:
        problems.append(f"ATen runs its {capability} kernels, not {PINNED_CAPABILITY} (it chose them before "
                        "harness set ATEN_CPU_CAPABILITY: torch ran a kernel before `import harness`, or "
                        "this CPU lacks AVX2)")
    branch = mkl_branch()
    if branch is not None and branch != MKL_CBWR_COMPATIBLE:
        problems.append(f"MKL runs CNR branch {branch}, not COMPATIBLE ({MKL_CBWR_COMPATIBLE}): it was called "
                        "before harness set MKL_CBWR")
    if torch.backends.mkldnn.enabled:
        problems.append("oneDNN is enabled")
    if problems:
        raise NumericsError("pinned CPU numerics are not in force: " + "; ".join(problems) + ". Import harness "
                            f"before torch runs anything, or set {OPT_OUT_VAR}=native to accept results that "
                            "may differ from other machines'.")


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[dict[str, Any]]:
    """Run the block with pinned kernels and `threads` intra-op threads; restore flags afterwards.

    Yields `state()`. Raises NumericsError when the kernels cannot be pinned in this process.
    """
    import torch

    saved = (torch.get_num_threads(), torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled())
    try:
        _apply_torch(threads)
        check()
        if enabled() and threads == OPENBLAS_GEMM_THREADS:
            from . import pinned_gemm

            with pinned_gemm.mode(threads):
                yield state()
        else:
            yield state()
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.mkldnn.enabled = saved[1]
        torch.backends.nnpack.set_flags(saved[2])


def init_worker(threads: int = WORLD_THREADS) -> None:
    """Initializer of a pinned worker process: settings for the whole life of the process. Its
    computing code still runs inside `pinned(...)` (or `inference(...)`), whose dispatch mode sends
    the matrix products to the pinned OpenBLAS kernels on the thread that entered it."""
    pin_environ()
    _apply_torch(threads)
    check()


def torch_imported() -> bool:
    return "torch" in sys.modules


def inference(device: Any) -> contextlib.AbstractContextManager[Any]:
    """The context of model inference (pool scoring, evaluation): pinned kernels and
    `INFERENCE_THREADS` threads on CPU, so scores and metrics are the same bits on every machine;
    nothing on an accelerator, whose kernels this module does not choose."""
    if str(device).split(":")[0] != "cpu":
        return contextlib.nullcontext()
    return pinned(INFERENCE_THREADS)


def mode(threads: int) -> dict[str, str] | str:
    """What a cache key records about the numerics of work run with `threads` threads: the pinned
    settings and who computes the matrix products, or "native"."""
    if not enabled():
        return "native"
    return {**PINNED_ENV, "gemm": _gemm(threads)}
