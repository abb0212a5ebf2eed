"""build_world: deterministic for a seed, cached, incremental per model, clear errors."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import types
from pathlib import Path

import pytest

from harness.world import MissingBuilderError, WorldMismatchError, build_world
from harness.world import reference_models as RM

MODELS = ("ref_b32", "ref_l14", "dfn")
# A micro world: every step runs, in seconds.
MICRO = {
    "pool_size": 60, "shard_size": 25, "metadata_files": 2, "imagenet_like_per_class": 1,
    "eval_size": {"imagenet": 8, "shift": 4, "vtab": 4, "retrieval": 4, "other": 4},
    "train": {
        "ref_b32": {"config": "ref-b32-tiny", "data": "web", "n": 48, "steps": 2, "batch": 16, "lr": 1e-3},
        "ref_l14": {"config": "ref-l14-tiny", "data": "web", "n": 48, "steps": 2, "batch": 16, "lr": 1e-3},
        "dfn": {"config": "ref-b32-tiny", "data": "clean", "n": 32, "steps": 2, "batch": 16, "lr": 1e-3},
    },
}


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every data file (world.json and the per-model records hold timings, so they are left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".build") and p.name not in ("world.json", "complete.json", "model.json"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def micro_worlds(tmp_path_factory):
    a = tmp_path_factory.mktemp("world_a")
    b = tmp_path_factory.mktemp("world_b")
    t0 = time.time()
    world = build_world(a, seed=5, profile="test", models=MODELS, knobs=MICRO)
    print(f"\nmicro world built in {time.time() - t0:.1f}s")
    build_world(b, seed=5, profile="test", models=MODELS, knobs=MICRO)
    return a, b, world


def test_same_seed_gives_identical_files(micro_worlds):
    a, b, world = micro_worlds
    da, db = _digests(a), _digests(b)
    assert any(k.startswith("pool/metadata/") and k.endswith(".npz") for k in da)
    assert "oracle.parquet" in da and "models/ref_l14/model.pt" in da and "eval/tinynet/test/1.tar" in da
    assert da == db
    assert world["pool"]["samples"] == 60 and world["pool"]["shards"] == 3
    assert sorted(world["models"]) == sorted(MODELS)


def test_other_seed_differs(micro_worlds, tmp_path):
    a, _, _ = micro_worlds
    c = tmp_path / "c"
    knobs = dict(MICRO, train={k: dict(v, steps=1) for k, v in MICRO["train"].items()})
    build_world(c, seed=6, profile="test", models=("ref_b32", "ref_l14"), knobs=knobs)
    assert (c / "oracle.parquet").read_bytes() != (a / "oracle.parquet").read_bytes()


def test_second_call_is_cached(micro_worlds):
    a, _, world = micro_worlds
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    t0 = time.time()
    again = build_world(a, seed=5, profile="test", models=MODELS, knobs=MICRO)
    elapsed = time.time() - t0
    print(f"\ncached call: {elapsed:.3f}s")
    assert again == world
    assert before == {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}


def test_other_settings_in_the_same_dir_are_refused(micro_worlds):
    a, _, _ = micro_worlds
    with pytest.raises(WorldMismatchError, match="seed 5"):
        build_world(a, seed=7, profile="test", models=MODELS, knobs=MICRO)


def test_a_world_from_another_generator_version_is_refused(micro_worlds, monkeypatch):
    from harness.world import build as world_build

    a, _, world = micro_worlds
    monkeypatch.setattr(world_build, "WORLD_VERSION", world["version"] + 1)
    with pytest.raises(WorldMismatchError, match=rf"generator version {world['version']},.*asked for version {world['version'] + 1}"):
        build_world(a, seed=5, profile="test", models=MODELS, knobs=MICRO)


def test_models_are_added_incrementally(micro_worlds, monkeypatch):
    a, _, _ = micro_worlds
    calls = []

    def build(world_dir: Path, seed: int, profile: str) -> None:
        calls.append((seed, profile))
        d = world_dir / "models" / "extra"
        d.mkdir(parents=True)
        (d / "model.json").write_text(json.dumps({"model_name": "ref-b32-tiny", "kind": "clip"}))

    module = types.ModuleType("_fake_world_builder")
    module.build = build
    monkeypatch.setitem(sys.modules, "_fake_world_builder", module)
    monkeypatch.setitem(RM.MODEL_BUILDERS, "extra", "_fake_world_builder:build")
    pool_files = {p: p.stat().st_mtime_ns for p in (a / "pool").rglob("*") if p.is_file()}
    weights = (a / "models" / "ref_b32" / "model.pt").stat().st_mtime_ns
    world = build_world(a, seed=5, profile="test", models=(*MODELS, "extra"), knobs=MICRO)
    assert calls == [(5, "test")]
    assert "extra" in world["models"] and set(MODELS) <= set(world["models"])
    assert pool_files == {p: p.stat().st_mtime_ns for p in (a / "pool").rglob("*") if p.is_file()}
    assert weights == (a / "models" / "ref_b32" / "model.pt").stat().st_mtime_ns
    assert json.loads((a / "world.json").read_text())["models"]["extra"]["kind"] == "clip"


def test_a_changed_builder_package_rebuilds_that_model_only(micro_worlds, monkeypatch, tmp_path):
    """Completion records carry the code's fingerprint: editing any file of a builder's package (here
    a helper the builder imports) rebuilds that model, and only it, under unchanged settings."""
    from harness.world import build as world_build

    a, _, _ = micro_worlds
    pkg = tmp_path / "coded_builder_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("SCALE = 1\n")
    calls = tmp_path / "calls.txt"
    (pkg / "builder.py").write_text(
        "import json\n"
        "from coded_builder_pkg.helper import SCALE\n"
        "def build(world_dir, seed, profile):\n"
        f"    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write(f'{SCALE}\\n')\n"
        "    d = world_dir / 'models' / 'coded'\n"
        "    d.mkdir(parents=True)\n"
        "    (d / 'model.json').write_text(json.dumps({'model_name': 'ref-b32-tiny', 'kind': 'clip'}))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(RM.MODEL_BUILDERS, "coded", "coded_builder_pkg.builder:build")
    world_build.code_fingerprint.cache_clear()
    build_world(a, seed=5, profile="test", models=(*MODELS, "coded"), knobs=MICRO)
    build_world(a, seed=5, profile="test", models=(*MODELS, "coded"), knobs=MICRO)
    assert calls.read_text().split() == ["1"]
    weights = (a / "models" / "ref_b32" / "model.pt").stat().st_mtime_ns
    (pkg / "helper.py").write_text("SCALE = 2\n")
    world_build.code_fingerprint.cache_clear()
    try:
        build_world(a, seed=5, profile="test", models=(*MODELS, "coded"), knobs=MICRO)
    finally:
        world_build.code_fingerprint.cache_clear()
    assert calls.read_text().split() == ["1", "2"]
    assert weights == (a / "models" / "ref_b32" / "model.pt").stat().st_mtime_ns


def test_missing_builder_is_a_clear_error_only_when_requested(tmp_path, monkeypatch):
    monkeypatch.setitem(RM.MODEL_BUILDERS, "ghost", "harness.no_such_module:build")
    with pytest.raises(MissingBuilderError, match="ghost.*harness.no_such_module"):
        build_world(tmp_path / "w", seed=0, profile="test", models=("ghost",), knobs=MICRO)
    assert not (tmp_path / "w").exists(), "fails before any work"
    with pytest.raises(ValueError, match="unknown world model"):
        build_world(tmp_path / "w", models=("nonesuch",))
