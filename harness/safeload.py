"""Loading array/tensor files that a user or a pool supplies, without ever unpickling code.

A ``.pt`` file is a pickle: ``torch.load(..., weights_only=False)`` runs whatever callable the file
names (``os.system`` included). Every ``.pt`` the harness reads goes through ``torch.load`` with
``weights_only=True``, whose restricted unpickler only rebuilds tensors, containers and primitive
types; here numpy arrays of plain numeric dtypes are allowed on top (DataComp's centroid and
ImageNet-feature ``.pt`` files hold numpy arrays). ``.npy``/``.npz`` are read with
``allow_pickle=False``. A refused file is a :class:`UnsafeFileError` (a ValueError) naming it.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class UnsafeFileError(ValueError):
    """A data file that would need unpickling arbitrary objects (refused, never executed)."""


def _numpy_globals() -> list[Any]:
    """The numpy reconstructors and dtype classes a plain numeric array pickle names (both the numpy 2
    ``numpy._core`` and the numpy 1 ``numpy.core`` spelling, as older DataComp files were written)."""
    from numpy._core.multiarray import _reconstruct, scalar

    allowed: list[Any] = [np.ndarray, np.dtype]
    for fn in (_reconstruct, scalar):
        allowed += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}")]
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
                 "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
        allowed.append(getattr(np.dtypes, name))
    return allowed


def torch_load(path: str | Path, map_location: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with numeric numpy arrays allowed; never runs code."""
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(f"{path}: refused: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """torch's refusal is several paragraphs; the line naming the refused global is the useful one."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1] if lines else "")
    return (f"it holds pickled objects other than tensors/arrays, which are never unpickled "
            f"(torch.load weights_only=True): {detail}")


def np_load(path: str | Path) -> Any:
    """``np.load`` with pickles refused (an object array is an UnsafeFileError naming the file)."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UnsafeFileError(f"{path}: refused: holds a pickled object array (never unpickled)") from None
        raise ValueError(f"{path}: unreadable array file ({exc})") from exc


@contextlib.contextmanager
def refusing(path: str | Path) -> Iterator[None]:
    """Around a library call that torch.loads ``path`` with weights_only=True (open_clip's loader):
    a refused pickle becomes an UnsafeFileError naming the file, not torch's multi-paragraph text."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(f"{path}: refused: {_why(exc)}") from None
