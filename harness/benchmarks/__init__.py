"""Benchmarks: every speed and memory figure in BENCHMARKS.md comes from a module here.

``python -m harness.benchmarks`` (``make bench``) runs them all in fresh processes; each module also runs
alone (``python -m harness.benchmarks.<name>``). ``synthetic_shards`` and ``text_images`` make their
inputs (also used by tests); ``gpu_check`` is ``make gpu-check``. Nothing in the flow imports this package.
"""
