"""The pinned matrix products (harness/pinned_gemm.py): right values for every layout aten hands over,
the same bits for any OpenBLAS thread count, routing inside numerics.pinned(), and autograd through it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from harness import numerics, pinned_gemm

pytestmark = pytest.mark.skipif(not numerics.enabled(), reason="HARNESS_NUMERICS=native: no pinned products")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(got: torch.Tensor, want64: torch.Tensor) -> None:
    assert got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got.double(), want64, rtol=1e-5, atol=1e-4)


# every layout of an operand: contiguous, a transposed view, a slice with a leading dimension wider
# than its columns, and a non-contiguous copy case (every second column)
LAYOUTS = {
    "contiguous": lambda t: t.contiguous(),
    "transposed": lambda t: t.t().contiguous().t(),
    "padded": lambda t: torch.cat([t, torch.zeros(t.shape[0], 3)], dim=1)[:, : t.shape[1]],
    "strided": lambda t: torch.stack([t, t], dim=2).reshape(t.shape[0], -1)[:, ::2],
}


@pytest.mark.parametrize("la", LAYOUTS)
@pytest.mark.parametrize("lb", LAYOUTS)
def test_mm_every_layout(la: str, lb: str) -> None:
    a, b = _rand(37, 21, seed=1), _rand(21, 13, seed=2)
    a_view, b_view = LAYOUTS[la](a), LAYOUTS[lb](b)
    assert torch.equal(a_view, a) and torch.equal(b_view, b)
    _close(pinned_gemm.mm(a_view, b_view), a.double() @ b.double())


@pytest.mark.parametrize("bias_shape", [(13,), (1, 13), (37, 13), (37, 1)])
@pytest.mark.parametrize("beta,alpha", [(1, 1), (0.5, 2.0), (0, 1)])
def test_addmm_broadcast_and_scaling(bias_shape: tuple[int, ...], beta: float, alpha: float) -> None:
    a, b, bias = _rand(37, 21, seed=1), _rand(13, 21, seed=2).t(), _rand(*bias_shape, seed=3)
    if beta == 0:
        bias = bias.fill_(float("nan"))  # aten ignores the input when beta is 0, NaN included
    want = (0 if beta == 0 else beta * bias.double()) + alpha * (a.double() @ b.double())
    _close(pinned_gemm.addmm(bias, a, b, beta=beta, alpha=alpha), want)


def test_bmm_and_baddbmm() -> None:
    a, b = _rand(6, 9, 5, seed=1), _rand(6, 7, 5, seed=2).transpose(1, 2)  # b: a transposed view
    _close(pinned_gemm.bmm(a, b), a.double() @ b.double())
    shared = _rand(1, 5, 7, seed=3).expand(6, 5, 7)  # batch stride 0
    _close(pinned_gemm.bmm(a, shared), a.double() @ shared.double())
    bias = _rand(9, 7, seed=4)
    _close(pinned_gemm.baddbmm(bias, a, b, beta=0.25, alpha=-1.5),
           0.25 * bias.double() + -1.5 * (a.double() @ b.double()))


def test_thread_count_is_part_of_the_pin() -> None:
    """OpenBLAS's threads split the result's rows and columns, and a split moves elements between its
    full and edge micro-kernels, which round differently: 1 and 2 threads give other bits. So
    numerics.pinned(threads) fixes OpenBLAS's count as well, and a given count gives the same bits
    every time. (numerics.pinned uses OpenBLAS for one-thread blocks only.)"""
    a, b = _rand(128, 64, seed=5), _rand(64, 128, seed=6)
    out = {}
    for threads in (1, 2, 1, 2):
        with numerics.pinned(1), pinned_gemm.mode(threads):
            out.setdefault(threads, []).append(a @ b)
    assert torch.equal(out[1][0], out[1][1]) and torch.equal(out[2][0], out[2][1])
    assert not torch.equal(out[1][0], out[2][0])
    torch.testing.assert_close(out[1][0], out[2][0])


def test_pinned_routes_products_and_autograd_through_openblas() -> None:
    """Inside numerics.pinned(1), nn.Linear's forward and backward give OpenBLAS's bits; with 2 threads
    the block keeps MKL's products."""
    lin = torch.nn.Linear(160, 96)
    x = _rand(300, 160, seed=8)
    with numerics.pinned(1) as state:
        assert state["gemm"] == pinned_gemm.identity()
        xg = x.clone().requires_grad_()
        y = lin(xg)
        (y * y).sum().backward()
        inside = (y.detach().clone(), xg.grad.clone(), lin.weight.grad.clone())
    w = lin.weight.detach()
    assert torch.equal(inside[0], pinned_gemm.addmm(lin.bias.detach(), x, w.t()))
    assert torch.equal(inside[1], pinned_gemm.mm(2 * inside[0], w))  # dL/dx = dL/dy @ W
    assert torch.equal(inside[2], pinned_gemm.mm((2 * inside[0]).t(), x))  # dL/dW = dL/dy^T @ x
    _close(inside[2], (2 * inside[0].double()).t() @ x.double())
    with numerics.pinned(2) as state:
        assert state["gemm"] == f"MKL {numerics.MKL_BRANCH}"
        assert not torch.equal(lin(x), inside[0])  # MKL's SSE2 products round otherwise


def test_other_dtypes_fall_through() -> None:
    with numerics.pinned(1):
        a = torch.arange(12, dtype=torch.int64).reshape(3, 4)
        assert torch.equal(a @ a.t(), torch.tensor([[14, 38, 62], [38, 126, 214], [62, 214, 366]]))
        d = _rand(5, 4, seed=9).double()
        got = d @ d.t()
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, torch.from_numpy(d.numpy() @ d.numpy().T), rtol=1e-12, atol=1e-12)


def test_coretype_is_pinned_whatever_the_environment_says() -> None:
    """A user's OPENBLAS_CORETYPE (here the AVX-without-FMA kernels) does not reach the pinned products."""
    code = ("import harness, torch; from harness import numerics, pinned_gemm;\n"
            "with numerics.pinned(1): print(pinned_gemm.corename())")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == pinned_gemm.CORETYPE.lower()



def test_library_does_not_set_the_coretype_itself() -> None:
    """Only harness.numerics decides the kernel set (it leaves it out on CPUs without AVX2/FMA): with
    pinning off, a library loaded under another OPENBLAS_CORETYPE is refused, naming both."""
    code = ("import harness; from harness import pinned_gemm\n"
            "try:\n    pinned_gemm.library()\nexcept pinned_gemm.GemmLibraryError as e:\n    print('refused:', e)")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge", "HARNESS_NUMERICS": "native"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("refused:")
    assert "'Sandybridge'" in out.stdout and "'Haswell'" in out.stdout
