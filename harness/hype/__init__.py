"""HYPE: Lorentz geometry (geometry.py), the MERU-style hyperbolic CLIP (model.py), the tiny world's
MERU model (world_model.py) and the specificity benchmark (bench.py). The scorer plugin is
baselines/hype.py; see README.md here."""

# Block size of the specificity computation (memory bound, not part of the result). Here, not in
# geometry.py, so the plugin can read it without importing torch.
DEFAULT_CHUNK = 1024
