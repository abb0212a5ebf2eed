"""The DataComp benchmark harness."""

# Before anything imports torch: pin the CPU kernels torch, MKL, oneDNN and NumPy will choose, so the
# same seed gives the same bits on every x86-64 machine with AVX2 (harness/numerics.py).
from harness import numerics as _numerics

_numerics.pin_environ()
