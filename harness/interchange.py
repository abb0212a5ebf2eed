"""`harness export`: a CLIP trained or built here as an open_clip hub-style folder.

The folder holds what open_clip 3.3's `local-dir:` / `hf-hub:` loader reads (open_clip/factory.py,
`create_model` with schema 'local-dir', and push_to_hf_hub.py `save_for_hf`):

- `open_clip_config.json`: {"model_cfg": <the architecture config>, "preprocess_cfg": <image preprocessing>}
- `open_clip_model.safetensors`: the model's state dict (open_clip's HF_SAFE_WEIGHTS_NAME)

plus `harness_export.json` (where the weights came from, their hashes). So plain open_clip, without
importing harness, loads it: `open_clip.create_model_and_transforms("local-dir:DIR")`, and so does
`clip_benchmark eval --model_type open_clip --model local-dir:DIR` (its loader passes --model to
open_clip as the model name; --pretrained is then ignored). Uploading the folder to a Hugging Face
model repo makes it loadable as `hf-hub:<user>/<repo>`.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from harness.models import load_clip
from harness.stages import atomic_write_json, replace_output_dir, sha256_file

CONFIG_NAME = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME
WEIGHTS_NAME = "open_clip_model.safetensors"  # open_clip.constants.HF_SAFE_WEIGHTS_NAME
RECORD_NAME = "harness_export.json"


class ExportError(ValueError):
    """A checkpoint that cannot be exported, or an export that does not load back identically."""


def _preprocess_cfg(model: Any) -> dict[str, Any]:
    """The image preprocessing the model was built with (open_clip stores it on model.visual)."""
    cfg = getattr(model.visual, "preprocess_cfg", None)
    if cfg is None:
        raise ExportError("the model has no visual.preprocess_cfg (open_clip >= 2.24 sets it)")
    cfg = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def export_open_clip(spec: str | Path, out: Path, overwrite: bool = False, verify: bool = True) -> dict[str, Any]:
    """Write `out` as an open_clip hub-style folder from `spec` (anything `harness.models.load_clip`
    accepts that has an open_clip config: an open_clip_train checkpoint, a world model directory,
    '<config>:<checkpoint>'). With `verify`, the folder is loaded back through `local-dir:` and every
    tensor compared with the source model. Returns the record also written to harness_export.json."""
    import open_clip
    import safetensors.torch

    spec_text = str(spec)
    if spec_text.startswith(("hf-hub:", "local-dir:")):
        raise ExportError(f"{spec_text} is already an open_clip hub-style model; nothing to export")
    out = Path(out)
    replace_output_dir(out, overwrite, CONFIG_NAME)
    clip = load_clip(spec, device="cpu")
    model_cfg = open_clip.get_model_config(clip.config)
    if model_cfg is None:
        raise ExportError(f"{spec_text}: open_clip has no config named {clip.config!r}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in clip.model.state_dict().items()}
    config = {"model_cfg": copy.deepcopy(model_cfg), "preprocess_cfg": _preprocess_cfg(clip.model)}

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    safetensors.torch.save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    record = {
        "source": spec_text,
        "source_sha256": clip.fingerprint if len(clip.fingerprint) == 64 else None,
        "source_kind": "world model directory" if Path(spec_text).is_dir() else "checkpoint",
        "open_clip_config": clip.config,
        "weights_sha256": sha256_file(tmp / WEIGHTS_NAME),
        "tensors": len(state),
        "parameters": int(sum(v.numel() for v in state.values())),
        "open_clip_version": open_clip.__version__,
        "load_with": {
            "open_clip": f'open_clip.create_model_and_transforms("local-dir:{out}")',
            "clip_benchmark": f"clip_benchmark eval --model_type open_clip --model local-dir:{out} ...",
        },
    }
    atomic_write_json(tmp / RECORD_NAME, record)
    if verify:
        _verify(tmp, state, config)
    tmp.rename(out)
    return record


def _verify(folder: Path, state: dict[str, Any], config: dict[str, Any]) -> None:
    """Load the folder the way a user will (`local-dir:`) and compare every tensor and the preprocessing."""
    import open_clip
    import torch

    model = open_clip.create_model(f"local-dir:{folder}", device="cpu")
    loaded = model.state_dict()
    if loaded.keys() != state.keys():
        extra, missing = sorted(loaded.keys() - state.keys()), sorted(state.keys() - loaded.keys())
        raise ExportError(f"{folder}: open_clip builds a model with different tensors "
                          f"(only in the export: {missing[:5]}, only in the built model: {extra[:5]})")
    bad = [k for k, v in state.items() if loaded[k].dtype != v.dtype or not torch.equal(loaded[k], v)]
    if bad:
        raise ExportError(f"{folder}: tensors differ after loading back through local-dir: {bad[:5]}")
    if _preprocess_cfg(model) != config["preprocess_cfg"]:
        raise ExportError(f"{folder}: preprocessing differs after loading back: "
                          f"{_preprocess_cfg(model)} != {config['preprocess_cfg']}")
