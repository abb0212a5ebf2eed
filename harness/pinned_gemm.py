"""Float32 matrix products of pinned numerics, through OpenBLAS's Haswell kernels.

MKL's COMPATIBLE branch (harness/numerics.py) is the one MKL code path that gives the same bits on
Intel and AMD CPUs, but it is MKL's SSE2 GEMM, without FMA: pinned, a world model's training step
took 1.98x the CPU time of the native kernels (BENCHMARKS.md). OpenBLAS lets the caller choose its kernel
set: with `OPENBLAS_CORETYPE=Haswell` every x86-64 CPU with AVX2 runs the same AVX2/FMA
micro-kernels, and for that core type OpenBLAS blocks the loops with compile-time constants
(`init_parameter` in OpenBLAS's driver/others/parameter.c reads the L2 size only for pre-2008 cores),
so a product is summed in the same order on every such machine. Its threads split the result's
rows and columns by a fixed rule of the shape and the thread count, and the split decides which
elements the edge micro-kernels compute (they round differently), so the thread count is pinned
too: `mode(threads)` sets OpenBLAS's count (tests/test_pinned_gemm.py). harness/numerics.py uses
it for one-thread work only: with 2 threads, OpenBLAS's spinning threads and torch's took the cores
from each other, and the real training loop ran slower than on MKL (BENCHMARKS.md).

Inside `numerics.pinned(1)` (one-thread work: the world's worker processes, tiny-scale training),
`PinnedGemm` (a torch dispatch mode) sends aten's `mm`, `addmm`, `bmm` and `baddbmm` on CPU float32 tensors to OpenBLAS's `cblas_sgemm` / `cblas_sgemm_batch_strided`
(the `scipy-openblas32` wheel, which the project pins). Every other op, and the GEMMs inside fused
kernels (im2col convolutions, fused attention), stays on MKL's COMPATIBLE branch: pinned as well,
only slower. (Convolutions as aten's im2col around OpenBLAS products were tried: MERU's ResNet step
took the same time, the im2col copies costing what the faster products saved.)
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

CORETYPE = "Haswell"  # OPENBLAS_CORETYPE: the kernel set every target machine (x86-64 with AVX2) can run
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # cblas.h's enum values
_INT_MAX = 2**31 - 1  # scipy-openblas32: 32-bit BLAS integers


class GemmLibraryError(RuntimeError):
    """OpenBLAS is missing or does not run the pinned kernel set."""


@functools.cache
def library() -> ctypes.CDLL:
    """The scipy-openblas32 library, loaded once. Its kernel set is the OPENBLAS_CORETYPE that
    harness.numerics put into the environment (OpenBLAS reads it at load time); this function does
    not set it, so a CPU without AVX2/FMA (where numerics leaves it out) gets an error, not SIGILL."""
    try:
        import scipy_openblas32
    except ImportError as exc:
        raise GemmLibraryError("pinned numerics need the scipy-openblas32 package (a dependency of harness: "
                               "reinstall with `pip install -e .`)") from exc
    path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
    lib = ctypes.CDLL(path)
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    corename = lib.scipy_openblas_get_corename().decode()
    if corename.lower() != CORETYPE.lower():
        raise GemmLibraryError(f"{path} runs its {corename!r} kernels, not {CORETYPE!r} (was it loaded before "
                               "harness set OPENBLAS_CORETYPE, or does this CPU lack AVX2?)")
    c_int, c_float, c_void = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.scipy_cblas_sgemm.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_float, c_void, c_int,
                                      c_void, c_int, c_float, c_void, c_int]
    lib.scipy_cblas_sgemm.restype = None
    lib.scipy_cblas_sgemm_batch_strided.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_float,
                                                    c_void, c_int, c_int, c_void, c_int, c_int, c_float,
                                                    c_void, c_int, c_int, c_int]
    lib.scipy_cblas_sgemm_batch_strided.restype = None
    lib.scipy_openblas_set_num_threads.argtypes = [c_int]
    return lib


def identity() -> str:
    """What a cache key records about the GEMM (the package version fixes OpenBLAS's code)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"scipy-openblas32=={version('scipy-openblas32')} {CORETYPE}"
    except PackageNotFoundError:
        return f"scipy-openblas32 (not installed) {CORETYPE}"


def corename() -> str:
    return library().scipy_openblas_get_corename().decode()


def set_threads(threads: int) -> None:
    library().scipy_openblas_set_num_threads(int(threads))


def _operand(t: Any) -> tuple[Any, int, int]:
    """(tensor, cblas transpose flag, leading dimension) of the matrix in t's last two dims."""
    rows, cols = t.shape[-2], t.shape[-1]
    s_row, s_col = t.stride()[-2], t.stride()[-1]
    if s_col == 1 and s_row >= max(1, cols):
        return t, _NO_TRANS, s_row
    if s_row == 1 and s_col >= max(1, rows):
        return t, _TRANS, s_col
    t = t.contiguous()
    return t, _NO_TRANS, max(1, cols)


def _fits(*tensors: Any) -> bool:
    """Plain float32 CPU tensors whose sizes and strides fit OpenBLAS's 32-bit integers."""
    import torch

    for t in tensors:
        if (not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.device.type != "cpu"
                or t.is_neg() or t.numel() == 0 or max(t.shape) > _INT_MAX or max(t.stride(), default=0) > _INT_MAX):
            return False
    return True


def _gemm(a: Any, b: Any, out: Any, alpha: float, beta: float) -> None:
    """out[m, n] = alpha * a[m, k] @ b[k, n] + beta * out (out contiguous)."""
    (m, k), n = a.shape, b.shape[1]
    a, trans_a, lda = _operand(a)
    b, trans_b, ldb = _operand(b)
    library().scipy_cblas_sgemm(_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a.data_ptr(), lda,
                                b.data_ptr(), ldb, beta, out.data_ptr(), n)


def _gemm_batch(a: Any, b: Any, out: Any, alpha: float, beta: float) -> None:
    """out[i] = alpha * a[i] @ b[i] + beta * out[i] for every i (out contiguous)."""
    batch, m, k = a.shape
    n = b.shape[2]
    a, trans_a, lda = _operand(a)
    b, trans_b, ldb = _operand(b)
    library().scipy_cblas_sgemm_batch_strided(_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a.data_ptr(), lda,
                                              a.stride(0), b.data_ptr(), ldb, b.stride(0), beta, out.data_ptr(),
                                              n, m * n, batch)


def _start_from(bias: Any, shape: tuple[int, ...], beta: float) -> Any:
    """beta * bias broadcast to shape, as a new contiguous tensor (beta == 0 ignores bias, as aten does)."""
    import torch

    out = torch.empty(shape, dtype=torch.float32)
    if beta == 0:
        return out.zero_()
    out.copy_(bias.expand(shape))
    return out if beta == 1 else out.mul_(beta)


def mm(a: Any, b: Any) -> Any:
    import torch

    out = torch.empty((a.shape[0], b.shape[1]), dtype=torch.float32)
    _gemm(a, b, out, 1.0, 0.0)
    return out


def addmm(bias: Any, a: Any, b: Any, *, beta: float = 1, alpha: float = 1) -> Any:
    out = _start_from(bias, (a.shape[0], b.shape[1]), beta)
    _gemm(a, b, out, float(alpha), 1.0)
    return out


def bmm(a: Any, b: Any) -> Any:
    import torch

    out = torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=torch.float32)
    _gemm_batch(a, b, out, 1.0, 0.0)
    return out


def baddbmm(bias: Any, a: Any, b: Any, *, beta: float = 1, alpha: float = 1) -> Any:
    out = _start_from(bias, (a.shape[0], a.shape[1], b.shape[2]), beta)
    _gemm_batch(a, b, out, float(alpha), 1.0)
    return out


@functools.cache
def mode_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = __import__("torch").ops.aten
    kernels = {aten.mm.default: (mm, 2), aten.addmm.default: (addmm, 3),
               aten.bmm.default: (bmm, 2), aten.baddbmm.default: (baddbmm, 3)}

    class PinnedGemm(TorchDispatchMode):
        """Routes float32 CPU mm/addmm/bmm/baddbmm to OpenBLAS's pinned kernels; everything else as usual."""

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            entry = kernels.get(func)
            if entry is not None and len(args) == entry[1] and _fits(*args):
                return entry[0](*args, **kwargs)
            return func(*args, **kwargs)

    return PinnedGemm


def mode(threads: int) -> Any:
    """A new dispatch mode (enter it with `with`) after pinning OpenBLAS's kernels and thread count."""
    set_threads(threads)
    return mode_class()()
