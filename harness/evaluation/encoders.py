"""The model side of the evaluator: one object that preprocesses images and encodes both sides.

The evaluator talks to an *encoder* with three methods (duck-typed, so tests can pass a fake):

    preprocess(image: PIL.Image) -> item              # runs in loader workers
    encode_image_batch(items: list, amp: bool) -> np.ndarray [B, D] float32, L2-normalised
    encode_texts(texts: list[str], amp: bool) -> np.ndarray [N, D] float32, L2-normalised

``amp`` mirrors what DataComp's evaluation does per call (text side under autocast for
classification, both sides for retrieval and WinoGAViL, image side fp32 for classification); it
only takes effect on CUDA. On CPU everything runs in fp32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class ClipEncoder:
    def __init__(self, model: torch.nn.Module, preprocess: Any, tokenizer: Any, device: str = "cpu",
                 text_batch_size: int = 256, name: str = "", fingerprint: str = ""):
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.text_batch_size = text_batch_size
        self.name, self.fingerprint = name, fingerprint

    def _autocast(self, amp: bool):
        if amp and str(self.device).startswith("cuda"):
            return torch.autocast("cuda")
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_image_batch(self, items: list | torch.Tensor, amp: bool = False) -> np.ndarray:
        x = (items if isinstance(items, torch.Tensor) else torch.stack(list(items))).to(self.device)
        with self._autocast(amp):
            f = self.model.encode_image(x)
        return F.normalize(f.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], amp: bool = True) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.text_batch_size):
            tok = self.tokenizer(list(texts[i : i + self.text_batch_size])).to(self.device)
            with self._autocast(amp):
                f = self.model.encode_text(tok)
            out.append(F.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def is_encoder(obj: Any) -> bool:
    return all(hasattr(obj, m) for m in ("preprocess", "encode_image_batch", "encode_texts"))


def load_encoder(spec: Any, device: str = "cpu") -> Any:
    """An encoder from anything ``harness.models.load_clip`` accepts, a LoadedClip, or an encoder.

    Until harness.models exists, an open_clip id ("ViT-B-32:openai", "hf-hub:apple/DFN-public") or
    an ``(arch, checkpoint)`` pair is loaded with open_clip directly.
    """
    if is_encoder(spec):
        return spec
    if all(hasattr(spec, a) for a in ("model", "preprocess", "tokenizer")):
        return ClipEncoder(spec.model, spec.preprocess, spec.tokenizer, device,
                           name=getattr(spec, "name", ""), fingerprint=getattr(spec, "fingerprint", ""))
    try:
        from harness.models import load_clip  # type: ignore[attr-defined]
    except ImportError:
        load_clip = None
    if load_clip is not None and isinstance(spec, (str, Path)):
        return load_encoder(load_clip(spec, device=device), device)
    return _open_clip_fallback(spec, device)


def _open_clip_fallback(spec: Any, device: str) -> ClipEncoder:
    import open_clip

    if isinstance(spec, tuple):
        arch, pretrained = spec
    elif isinstance(spec, str) and spec.startswith("hf-hub:"):
        arch, pretrained = spec, None
    elif isinstance(spec, str) and ":" in spec:
        arch, pretrained = spec.split(":", 1)
    else:
        raise ValueError(f"cannot load a model from {spec!r} (harness.models is not available)")
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    tokenizer = open_clip.get_tokenizer(arch)
    return ClipEncoder(model, preprocess, tokenizer, device, name=str(spec), fingerprint=str(spec))
