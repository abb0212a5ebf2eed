"""The DataComp benchmark harness."""

# Before anything imports torch: pin the CPU kernels torch, MKL, oneDNN and NumPy will choose, so the
# same seed gives the same bits on every x86-64 machine with AVX2 (harness/numerics.py).
from harness import numerics as _numerics

_numerics.pin_environ()

from harness._open_clip_hook import install as _register_open_clip_configs  # noqa: E402

_register_open_clip_configs()  # open_clip.create_model("tiny-clip") works once harness is imported

from harness.layout import map_builtin_filters as _map_builtin_filters  # noqa: E402

_map_builtin_filters()  # harness.baselines is the checkout's baselines/ folder (harness/layout.py)
