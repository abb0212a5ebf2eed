"""The world is the same bytes whatever kernels the caller's environment asks for, and whether its
steps run in parallel worker processes or serially in the calling process (harness/numerics.py)."""

from __future__ import annotations

import json
import textwrap

import pytest
from reproducibility import OTHER_KERNELS, run_python

from harness import pinned_gemm
from harness.world import build as world_build
from harness.world.fingerprint import world_fingerprint

_TRAIN = {"n": 192, "steps": 6, "batch": 32, "lr": 2e-3}
KNOBS = {
    "pool_size": 80, "shard_size": 40, "metadata_files": 2, "imagenet_like_per_class": 1,
    "eval_size": {"imagenet": 80, "shift": 8, "vtab": 16, "retrieval": 8, "other": 20},
    "train": {"ref_b32": {"config": "ref-b32-tiny", "data": "web", **_TRAIN},
              "ref_l14": {"config": "ref-l14-tiny", "data": "web", **_TRAIN}},
}


def _build(out, workers: int, env: dict[str, str]) -> dict:
    code = textwrap.dedent(f"""
        import json
        import torch
        from harness.world import build_world
        from harness.world.fingerprint import world_fingerprint
        world = build_world({str(out)!r}, seed=3, profile="test", models=("ref_b32", "ref_l14"),
                            knobs={KNOBS!r}, workers={workers})
        print(json.dumps({{"fingerprint": world_fingerprint({str(out)!r}), "recorded": world["content_fingerprint"],
                          "capability": torch.backends.cpu.get_cpu_capability()}}))
    """)
    return run_python(code, env)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_worlds")
    # serially in a process whose environment asks for other kernels ...
    serial = _build(root / "serial_other_kernels", 0, OTHER_KERNELS)
    # ... and in two parallel worker processes started from the machine's defaults
    parallel = _build(root / "parallel_machine_best", 2, {})
    return root, serial, parallel


def test_world_bytes_do_not_depend_on_kernel_settings_or_parallelism(two_builds):
    root, serial, parallel = two_builds
    # the pins overrode the caller's ATEN_CPU_CAPABILITY=default
    assert serial["capability"] == "AVX2"
    assert serial["fingerprint"] == parallel["fingerprint"]
    # the fingerprint covers the model weights and the features computed with them
    files = {p.relative_to(root / "serial_other_kernels").as_posix()
             for p in (root / "serial_other_kernels").rglob("*") if p.is_file()}
    for rel in ("models/ref_b32/model.pt", "models/ref_l14/model.pt", "oracle.parquet", "imagenet_like/l14_img.npy"):
        assert rel in files
        a = (root / "serial_other_kernels" / rel).read_bytes()
        assert a == (root / "parallel_machine_best" / rel).read_bytes(), rel


def test_world_json_records_the_content_fingerprint_and_numerics(two_builds):
    root, serial, _ = two_builds
    world = json.loads((root / "serial_other_kernels" / "world.json").read_text())
    assert world["content_fingerprint"] == serial["recorded"] == serial["fingerprint"]
    assert world["content_fingerprint"] == world_fingerprint(root / "serial_other_kernels", use_cache=False)
    assert world["numerics"] == {"mode": "pinned", "cpu_capability": "AVX2", "mkl_cbwr": "COMPATIBLE",
                                 "gemm": pinned_gemm.identity(), "onednn": False, "threads": 1}
    assert world["version"] == world_build.WORLD_VERSION == 5
