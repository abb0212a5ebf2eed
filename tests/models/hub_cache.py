"""A Hugging Face hub cache built by hand, as huggingface_hub lays it out, for offline model tests.

<cache>/models--ORG--NAME/blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>,
refs/<branch> holding the commit hash. With HF_HUB_OFFLINE=1, hf_hub_download resolves a branch
through refs/ and returns the snapshot's file, exactly as for a cache filled by real downloads.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from harness.models import CONFIG_DIR, register_configs

TINY_CONFIG = "tiny-clip"


def open_clip_config(name: str = TINY_CONFIG) -> bytes:
    """open_clip_config.json for a project config: {"model_cfg": ..., "preprocess_cfg": ...}."""
    model_cfg = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    pre = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    return json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pre}).encode()


def random_weights(seed: int, name: str = TINY_CONFIG, fmt: str = "safetensors",
                   drop: tuple[str, ...] = (), extra: dict[str, torch.Tensor] | None = None) -> bytes:
    """The serialised state dict of a randomly initialised model (bytes of a .safetensors or .bin)."""
    import open_clip

    from harness.models import quiet_random_init

    register_configs()
    torch.manual_seed(seed)
    with quiet_random_init():
        model = open_clip.create_model(name)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k not in drop}
    sd.update(extra or {})
    if fmt == "safetensors":
        from safetensors.torch import save

        return save(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def commit_hash(tag: str) -> str:
    return hashlib.sha1(tag.encode()).hexdigest()


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes],
                 refs: tuple[str, ...] = ("main",)) -> Path:
    """Write one commit's files into the cache and point `refs` at it; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snap
