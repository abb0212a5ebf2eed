"""Model loading: the project's open_clip configs and one loader for every kind of CLIP spec.

`load_clip(spec)` accepts
- a world model directory (`<world>/models/<name>/` holding `model.json` + `model.pt`),
- a checkpoint file written by open_clip_train (`.../checkpoints/epoch_N.pt`; the architecture is
  read from the run's `params.txt`), or `"<config>:<path/to/checkpoint.pt>"`,
- an open_clip id: `"ViT-B-32:openai"` (architecture:pretrained tag) or `"hf-hub:apple/DFN-public"`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import safeload

CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


def register_configs() -> None:
    """Add harness/model_configs/*.json to open_clip's model registry (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _registered = True


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    name: str
    fingerprint: str
    device: str = "cpu"
    config: str = ""  # the open_clip config name (or hf-hub:/local-dir: id) the model was built from

    def _run(self, fn, batches) -> np.ndarray:
        import torch

        outs = []
        with torch.inference_mode():
            for b in batches:
                f = fn(b.to(self.device)).float()
                outs.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        dim = int(getattr(self.model, "embed_dim", 0) or 0) if not outs else outs[0].shape[1]
        return np.concatenate(outs, 0).astype(np.float32) if outs else np.zeros((0, dim), np.float32)

    def encode_images(self, images: list, batch_size: int = 256) -> np.ndarray:
        """float32 [N, D], L2-normalised."""
        import torch

        def batches():
            for i in range(0, len(images), batch_size):
                yield torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + batch_size]])

        return self._run(self.model.encode_image, batches())

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """float32 [N, D], L2-normalised."""

        def batches():
            for i in range(0, len(texts), batch_size):
                yield self.tokenizer(list(texts[i:i + batch_size]))

        return self._run(self.model.encode_text, batches())


def _read_model_json(d: Path) -> dict:
    path = d / "model.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{d} is not a world model directory: {path} is missing") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "model_name" not in meta:
        raise ValueError(f"{path}: no 'model_name' (the open_clip config the weights belong to)")
    return meta


def _config_from_params(ckpt: Path) -> str | None:
    """open_clip_train writes <run>/params.txt beside <run>/checkpoints/; it names the model."""
    for params in (ckpt.parent.parent / "params.txt", ckpt.parent / "params.txt"):
        if params.is_file():
            for line in params.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model":
                    return value.strip()
    return None


def load_clip(spec: str | Path, device: str = "cpu") -> LoadedClip:
    """Load a CLIP model (see the module docstring for the accepted specs); eval mode, on `device`."""
    import open_clip

    register_configs()
    path = Path(spec)
    if path.is_dir():
        meta = _read_model_json(path)
        if meta.get("kind", "clip") != "clip":
            raise ValueError(f"{path}: model kind {meta.get('kind')!r} is not a CLIP model "
                             "(hyperbolic MERU models are loaded by harness.hype)")
        weights = path / meta.get("weights", "model.pt")
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: weights file {weights.name} is missing")
        model, _, preprocess = open_clip.create_model_and_transforms(meta["model_name"], device=device)
        state = safeload.torch_load(weights, map_location=device)  # weights only: never runs code
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        name, fingerprint, config = meta.get("name", path.name), file_fingerprint(weights), meta["model_name"]
    elif path.is_file():
        config = _config_from_params(path)
        if config is None:
            raise ValueError(f"{path}: cannot tell the architecture of this checkpoint (no params.txt "
                             "beside its checkpoints folder); pass '<open_clip config>:<checkpoint path>'")
        with safeload.refusing(path):  # open_clip loads with weights_only=True; say which file it refused
            model, _, preprocess = open_clip.create_model_and_transforms(config, pretrained=str(path), device=device)
        name, fingerprint = path.stem, file_fingerprint(path)
    else:
        text = str(spec)
        arch, sep, tag = text.partition(":")
        if text.startswith(("hf-hub:", "local-dir:")):
            model, _, preprocess = open_clip.create_model_and_transforms(text, device=device)
            config, name, fingerprint = text, text, text
        elif sep and Path(tag).is_file():
            with safeload.refusing(tag):
                model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag, device=device)
            config, name, fingerprint = arch, f"{arch}:{Path(tag).name}", file_fingerprint(tag)
        elif sep and arch in open_clip.list_models():
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag, device=device)
            config, name, fingerprint = arch, text, text
        else:
            raise ValueError(f"cannot load CLIP model {text!r}: not a model directory, a checkpoint file, "
                             "'<arch>:<pretrained tag or file>' or 'hf-hub:<repo>'")
    model.eval()
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer(config),
                      name=name, fingerprint=fingerprint, device=device, config=config)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (rows are L2-normalised by LoadedClip)."""
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
