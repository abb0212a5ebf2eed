"""HYPE: Lorentz geometry (geometry.py), the MERU-style hyperbolic CLIP (model.py), the tiny world's
MERU model (world_model.py); the scorer plugins are in plugin.py, the specificity benchmark in
harness/benchmarks/hype.py. See README.md here."""

# Block size of the specificity computation (memory bound, not part of the result). Here, not in
# geometry.py, so the plugin can read it without importing torch.
DEFAULT_CHUNK = 1024
