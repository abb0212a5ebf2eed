"""Model fingerprints are content (issue 20 item 5), tested offline on a hand-built hub cache.

A hub model resolves to a commit and the sha256 of its files; `@REVISION` pins one and the revision
used is recorded in the score table and subset.json; a snapshot without weights, or weights that do
not fit, is an error naming the spec and the keys; the harness's own loads log no "initialized
randomly" warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from hub_cache import add_snapshot, commit_hash, open_clip_config, random_weights

from harness.models import (
    HUB_CONFIG_FILE,
    ModelLoadError,
    load_clip,
    parse_hub_spec,
    quiet_random_init,
    resolve_hub,
    spec_fingerprint,
)
from harness.plugins import PluginError, ScoringContext
from harness.pool import Pool
from harness.stages import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "filters"))  # the filter tests' small pool builder
from filters_fakepool import make_fake_pool  # noqa: E402

REPO = "acme/tiny-clip"
A, B = commit_hash("first"), commit_hash("second")
WEIGHTS = "open_clip_model.safetensors"
RANDOM_INIT = "initialized randomly"


@pytest.fixture()
def hub(tmp_path, monkeypatch) -> Path:
    """An empty offline hub cache; huggingface_hub (and any subprocess) resolves from it only."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="module")
def weights() -> dict[str, bytes]:
    return {"one": random_weights(1), "two": random_weights(2)}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Pool:
    root = tmp_path_factory.mktemp("pool")
    make_fake_pool(root, n_files=2, rows=12, n_shards=2, seed=5)
    return Pool(root)


def _snapshot(hub: Path, commit: str, data: bytes | None, refs=("main",), repo: str = REPO) -> Path:
    files = {HUB_CONFIG_FILE: open_clip_config()}
    if data is not None:
        files[WEIGHTS] = data
    return add_snapshot(hub, repo, commit, files, refs=refs)


def test_parse_hub_spec() -> None:
    assert parse_hub_spec("hf-hub:apple/DFN-public") == ("apple/DFN-public", None)
    assert parse_hub_spec(f"hf-hub:apple/DFN-public@{A}") == ("apple/DFN-public", A)
    assert parse_hub_spec("hf-hub:org/m@v1.0") == ("org/m", "v1.0")
    for bad in ("hf-hub:", "hf-hub:org/m@", "hf-hub:org/m@a@b", "org/m"):
        with pytest.raises(ValueError):
            parse_hub_spec(bad)


def test_hub_model_resolves_to_commit_and_file_hashes(hub, weights) -> None:
    _snapshot(hub, A, weights["one"])
    clip = load_clip(f"hf-hub:{REPO}")
    ident = clip.identity
    assert ident["source"] == "hf-hub" and ident["repo_id"] == REPO
    assert ident["revision"] == A and ident["requested_revision"] is None
    assert ident["sha256"] == {HUB_CONFIG_FILE: hashlib.sha256(open_clip_config()).hexdigest(),
                               WEIGHTS: hashlib.sha256(weights["one"]).hexdigest()}
    # the weights really are the snapshot's: the same tensors as the state dict written there
    from safetensors.torch import load

    sd = load(weights["one"])
    assert all(torch.equal(v, sd[k]) for k, v in clip.model.state_dict().items())
    assert load_clip(f"hf-hub:{REPO}").fingerprint == clip.fingerprint  # stable


def test_snapshot_without_weights_is_an_error(hub) -> None:
    _snapshot(hub, A, None)
    with pytest.raises(ModelLoadError, match=rf"'hf-hub:{REPO}'.*snapshot {A} has {HUB_CONFIG_FILE} but no weights"):
        load_clip(f"hf-hub:{REPO}")


def test_weights_that_do_not_fit_name_the_keys(hub, tmp_path) -> None:
    bad = random_weights(3, fmt="bin", drop=("text_projection", "ln_final.bias"),
                       extra={"visual.extra_head": torch.zeros(2)})
    add_snapshot(hub, REPO, A, {HUB_CONFIG_FILE: open_clip_config(), "open_clip_pytorch_model.bin": bad})
    with pytest.raises(ModelLoadError, match=r"missing keys: ln_final\.bias, text_projection; "
                                             r"unexpected keys: visual\.extra_head") as err:
        load_clip(f"hf-hub:{REPO}")
    assert f"hf-hub:{REPO}" in str(err.value)
    # a world model directory whose model.pt lacks a key: the same error, never a half-random model
    d = tmp_path / "dfn"
    d.mkdir()
    sd = torch.load(_as_file(tmp_path, random_weights(4, fmt="bin")), weights_only=True)
    del sd["visual.proj"]
    torch.save(sd, d / "model.pt")
    (d / "model.json").write_text(json.dumps({"model_name": "tiny-clip", "kind": "clip"}))
    with pytest.raises(ModelLoadError, match=r"missing keys: visual\.proj"):
        load_clip(d)


def _as_file(tmp: Path, data: bytes) -> Path:
    path = tmp / f"w-{hashlib.sha1(data).hexdigest()[:8]}.bin"
    path.write_bytes(data)
    return path


def test_revision_pin_branch_and_missing_revision(hub, weights) -> None:
    _snapshot(hub, A, weights["one"], refs=("v1",))
    _snapshot(hub, B, weights["two"], refs=("main",))
    latest, pinned = load_clip(f"hf-hub:{REPO}"), load_clip(f"hf-hub:{REPO}@{A}")
    assert latest.identity["revision"] == B
    assert pinned.identity["revision"] == A and pinned.identity["requested_revision"] == A
    assert load_clip(f"hf-hub:{REPO}@v1").identity["revision"] == A  # a branch or tag resolves via refs/
    assert pinned.fingerprint != latest.fingerprint
    texts = ["a red circle"]
    assert not np.allclose(pinned.encode_texts(texts), latest.encode_texts(texts))
    with pytest.raises(ModelLoadError, match=r"cannot resolve open_clip_config\.json in the local cache"):
        load_clip(f"hf-hub:{REPO}@{commit_hash('never')}")
    assert resolve_hub(f"hf-hub:{REPO}@{A}").spec == f"hf-hub:{REPO}@{A}"


def _dfn_ctx(pool: Pool, spec: str) -> ScoringContext:
    return ScoringContext(pool=pool, options={"models": {"dfn": spec}}, batch_size=8)


def test_changed_snapshot_is_rescored_not_served_stale(hub, weights, pool, tmp_path) -> None:
    from harness.scoring import compute_terms

    cache = tmp_path / "scores"
    _snapshot(hub, A, weights["one"])
    first = compute_terms(pool, "dfn", _dfn_ctx(pool, f"hf-hub:{REPO}"), cache, progress=False)
    assert first.record["cached"] is False and first.record["model"]["revision"] == A
    again = compute_terms(pool, "dfn", _dfn_ctx(pool, f"hf-hub:{REPO}"), cache, progress=False)
    assert again.record["cached"] is True and again.path == first.path
    # a new commit with other weights, refs/main moved to it: a new key, scores computed again
    _snapshot(hub, B, weights["two"])
    moved = compute_terms(pool, "dfn", _dfn_ctx(pool, f"hf-hub:{REPO}"), cache, progress=False)
    assert moved.record["cached"] is False and moved.path != first.path
    assert moved.record["model"]["revision"] == B
    assert moved.record["model_fingerprint"] != first.record["model_fingerprint"]
    assert not np.allclose(moved.terms["cos"], first.terms["cos"])
    # the table on disk records the revision that made it
    import pyarrow.parquet as pq

    stored = json.loads(pq.read_schema(moved.path).metadata[b"harness"])
    assert stored["model"]["revision"] == B and stored["model"]["sha256"][WEIGHTS] == hashlib.sha256(
        weights["two"]).hexdigest()
    # pinning the first commit again serves its table from the cache
    pinned = compute_terms(pool, "dfn", _dfn_ctx(pool, f"hf-hub:{REPO}@{A}"), cache, progress=False)
    assert pinned.record["cached"] is True and pinned.path == first.path
    np.testing.assert_array_equal(pinned.terms["cos"], first.terms["cos"])


def test_revision_recorded_in_subset_json(hub, weights, pool, tmp_path) -> None:
    from harness.selection import select

    _snapshot(hub, A, weights["one"], refs=("v1",))
    _snapshot(hub, B, weights["two"])
    info = select(pool, "dfn", tmp_path / "sel", _dfn_ctx(pool, f"hf-hub:{REPO}@v1"), tmp_path / "scores")
    on_disk = json.loads((tmp_path / "sel" / "subset.json").read_text())
    for rec in (info, on_disk):
        model = rec["scores"]["dfn"]["model"]
        assert model["revision"] == A and model["requested_revision"] == "v1" and model["repo_id"] == REPO


def test_cli_refuses_a_snapshot_without_weights_and_caches_nothing(hub, pool, tmp_path) -> None:
    """The issue's case end to end: `harness select --model dfn=hf-hub:...` used to exit 0 with a
    randomly initialised network and a cached table."""
    _snapshot(hub, A, None)
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "select", "--pool", str(pool.root), "--filter", "dfn",
         "--model", f"dfn=hf-hub:{REPO}", "--out", str(tmp_path / "sel"), "--runs", str(runs)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert res.returncode == 2, res.stderr  # the --model named is unusable: a usage error (harness.errors)
    assert f"hf-hub:{REPO}" in res.stderr and "no weights file" in res.stderr
    assert RANDOM_INIT not in res.stderr
    assert not list(runs.rglob("*.parquet")) and not (tmp_path / "sel" / "subset.json").exists()


def test_harness_loads_log_no_random_init_warning(hub, weights, tmp_path, caplog) -> None:
    import open_clip

    from harness.baselines.hype.model import MeruCLIP

    _snapshot(hub, A, weights["one"])
    ckpt = _as_file(tmp_path, random_weights(5, fmt="bin"))
    d = tmp_path / "world_model"
    d.mkdir()
    (d / "model.pt").write_bytes(ckpt.read_bytes())
    (d / "model.json").write_text(json.dumps({"model_name": "tiny-clip", "kind": "clip"}))
    with caplog.at_level(logging.WARNING):
        load_clip(f"hf-hub:{REPO}")
        load_clip(d)
        load_clip(f"tiny-clip:{ckpt}")
        MeruCLIP.from_config("hype-tiny")
        with quiet_random_init():
            open_clip.create_model("tiny-clip")
    assert not [r for r in caplog.records if RANDOM_INIT in r.getMessage()]
    # the check can fail: open_clip does warn for a model created without weights
    with caplog.at_level(logging.WARNING):
        open_clip.create_model("tiny-clip")
    assert [r for r in caplog.records if RANDOM_INIT in r.getMessage()]


def test_local_fingerprint_is_content_even_with_size_and_mtime_restored(tmp_path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"a" * 64)
    first = sha256_file(path)
    st = path.stat()
    path.write_bytes(b"b" * 64)  # what `cp -p` of another file leaves: same size, same mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path) == hashlib.sha256(b"b" * 64).hexdigest() != first


def test_dfn_plugin_error_names_the_spec(hub, pool) -> None:
    from harness.plugins import instantiate

    _snapshot(hub, A, None)
    dfn = instantiate("dfn", _dfn_ctx(pool, f"hf-hub:{REPO}"))
    with pytest.raises(PluginError, match=rf"dfn: cannot load the filtering network 'hf-hub:{REPO}'.*no weights"):
        dfn.setup(_dfn_ctx(pool, f"hf-hub:{REPO}"))


def test_spec_fingerprint_follows_content_without_loading(hub, weights, tmp_path) -> None:
    """What `harness run` keys its select stage with for each --model: a moved ref selects again."""
    _snapshot(hub, A, weights["one"])
    before = spec_fingerprint(f"hf-hub:{REPO}")
    assert spec_fingerprint(f"hf-hub:{REPO}@{A}") == before
    _snapshot(hub, B, weights["two"])
    assert spec_fingerprint(f"hf-hub:{REPO}") != before
    assert spec_fingerprint(f"hf-hub:{REPO}@{A}") == before
    # a folder (world model directory, local-dir:) is every file's content
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.pt").write_bytes(b"x" * 8)
    (d / "model.json").write_text("{}")
    fp = spec_fingerprint(d)
    assert spec_fingerprint(f"local-dir:{d}") == fp
    (d / "model.pt").write_bytes(b"y" * 8)
    assert spec_fingerprint(d) != fp
    assert spec_fingerprint(d / "model.pt") == hashlib.sha256(b"y" * 8).hexdigest()
    with pytest.raises(ModelLoadError, match="no weights"):
        _snapshot(hub, A, None, repo="acme/empty")
        spec_fingerprint("hf-hub:acme/empty")
    with pytest.raises(ModelLoadError, match="not a file, a folder"):
        spec_fingerprint(str(tmp_path / "nowhere"))
