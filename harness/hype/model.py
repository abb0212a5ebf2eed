"""A MERU-style hyperbolic CLIP on open_clip towers, and loading of HYPE / MERU checkpoints.

The model is an open_clip CLIP (image and text towers from a config name) plus three learnable
scalars, exactly as in HYPE's released model: ``curvature`` (log c), ``alpha_img`` and ``alpha_txt``
(log scales applied to the raw projected features). A feature ``f`` becomes the tangent vector
``exp(alpha) * f`` at the origin, and ``exp_map0`` lifts it onto the hyperboloid.

Checkpoint layouts understood by :func:`load_meru_state`:

* HYPE layout (official HYPE ``ckpt.pt`` and what this harness writes for the tiny world): the
  open_clip CLIP state dict (``visual.*``, ``transformer.*``, ``token_embedding.weight``,
  ``positional_embedding``, ``ln_final.*``, ``text_projection``, ``logit_scale``) plus ``curvature``,
  ``alpha_img``, ``alpha_txt``; optionally wrapped in ``{"state_dict": ...}`` and/or prefixed with
  ``module.``.
* MERU layout (facebookresearch/meru checkpoints, ``{"model": ...}``): ``visual.*`` (a timm ViT),
  ``textual.*``, ``visual_proj``, ``textual_proj``, ``curv``, ``visual_alpha``, ``textual_alpha``,
  ``logit_scale``; translated to the HYPE layout of an open_clip model whose vision tower is the
  same timm ViT (configs ``hype-meru-vit-b-16`` / ``hype-meru-vit-l-16``).

A missing or unexpected key is a :class:`CheckpointError` naming the keys: a half-loaded model would
silently score with random weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.hype import geometry as G

LOGIT_SCALE_MAX = math.log(100.0)  # MERU/open_clip cap the contrastive temperature at 100
ENTAIL_WEIGHT = 0.2
HYPE_EXTRA_KEYS = ("curvature", "alpha_img", "alpha_txt")
# The official HYPE model is OpenCLIP ViT-L/14 (REFERENCE.md section 5, naver-ai/hype model.py).
HYPE_OFFICIAL_CONFIG = "ViT-L-14"
MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


class CheckpointError(ValueError):
    """A checkpoint that does not match the model it is loaded into."""


def register_configs() -> None:
    """Make harness/model_configs/*.json known to open_clip (via harness.models when it exists)."""
    try:
        from harness.models import register_configs as _register
    except ImportError:  # harness.models not there yet: register the folder ourselves
        import open_clip

        if MODEL_CONFIG_DIR.is_dir():
            open_clip.add_model_config(MODEL_CONFIG_DIR)
        return
    _register()


def _open_clip_model(model_name: str) -> nn.Module:
    import open_clip

    register_configs()
    if open_clip.get_model_config(model_name) is None:
        raise ValueError(f"unknown open_clip model config {model_name!r} (not in open_clip nor harness/model_configs)")
    return open_clip.create_model(model_name, pretrained=None, device="cpu")


class MeruCLIP(nn.Module):
    """Hyperbolic CLIP: open_clip towers + learnable curvature, feature scales and temperature."""

    def __init__(
        self,
        clip: nn.Module,
        embed_dim: int,
        curv_init: float = 1.0,
        learn_curv: bool = True,
        entail_weight: float = ENTAIL_WEIGHT,
    ):
        super().__init__()
        if curv_init <= 0:
            raise ValueError(f"curv_init must be positive, got {curv_init}")
        self.clip = clip
        self.embed_dim = int(embed_dim)
        self.curv_init = float(curv_init)
        self.entail_weight = float(entail_weight)
        # Stored as logs, like MERU and HYPE: exp() keeps them positive.
        self.curvature = nn.Parameter(torch.tensor(math.log(curv_init)), requires_grad=learn_curv)
        alpha0 = math.log(self.embed_dim**-0.5)
        self.alpha_img = nn.Parameter(torch.tensor(alpha0))
        self.alpha_txt = nn.Parameter(torch.tensor(alpha0))
        self._curv_bounds = (math.log(curv_init / 10), math.log(curv_init * 10))

    @classmethod
    def from_config(cls, model_name: str, **kwargs: Any) -> MeruCLIP:
        import open_clip

        clip = _open_clip_model(model_name)
        embed_dim = open_clip.get_model_config(model_name)["embed_dim"]
        return cls(clip, embed_dim, **kwargs)

    @property
    def curv(self) -> Tensor:
        return self.curvature.exp()

    @property
    def logit_scale(self) -> Tensor:
        return self.clip.logit_scale

    @torch.no_grad()
    def clamp_parameters_(self) -> None:
        """MERU's in-place clamps, applied before every forward pass."""
        self.curvature.clamp_(*self._curv_bounds)
        self.alpha_img.clamp_(max=0.0)
        self.alpha_txt.clamp_(max=0.0)
        self.clip.logit_scale.clamp_(max=LOGIT_SCALE_MAX)

    # --- encoders: tangent vectors at the origin (HYPE's format) and hyperboloid points ---------
    def image_tangent(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images, normalize=False).float() * self.alpha_img.exp()

    def text_tangent(self, tokens: Tensor) -> Tensor:
        return self.clip.encode_text(tokens, normalize=False).float() * self.alpha_txt.exp()

    def encode_image(self, images: Tensor) -> Tensor:
        return G.exp_map0(self.image_tangent(images), self.curv)

    def encode_text(self, tokens: Tensor) -> Tensor:
        return G.exp_map0(self.text_tangent(tokens), self.curv)

    def forward(self, images: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """MERU's training objective on one batch of matching pairs."""
        self.clamp_parameters_()
        curv = self.curv
        img = self.encode_image(images)
        txt = self.encode_text(tokens)
        scale = self.clip.logit_scale.exp()
        logits = -G.pairwise_dist(img, txt, curv) * scale  # image -> text
        targets = torch.arange(img.shape[0], device=img.device)
        contrastive = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
        # Text entails its image: the image should lie inside the caption's cone.
        angle = G.paired_exterior_angle(txt, img, curv)
        entailment = (angle - G.half_aperture(txt, curv)).clamp(min=0).mean()
        loss = contrastive + self.entail_weight * entailment
        return {"loss": loss, "contrastive": contrastive.detach(), "entailment": entailment.detach(),
                "curv": curv.detach(), "logit_scale": scale.detach()}


# --- checkpoint layouts ------------------------------------------------------------------------

def hype_state_dict(model: MeruCLIP) -> dict[str, Tensor]:
    """The model's weights in HYPE's layout (open_clip keys + curvature, alpha_img, alpha_txt)."""
    sd = {k: v.detach().clone() for k, v in model.clip.state_dict().items()}
    for key in HYPE_EXTRA_KEYS:
        sd[key] = getattr(model, key).detach().clone()
    return sd


def _unwrap(obj: Any, source: str) -> tuple[dict[str, Tensor], str]:
    """(state dict, layout) from what torch.load returned: layout is "hype" or "meru"."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a state dict, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], dict):  # MERU's CheckpointManager
        sd, layout = obj["model"], "meru"
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):  # open_clip_train
        sd, layout = obj["state_dict"], "hype"
    else:
        sd, layout = obj, "hype"
    if sd and all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if layout == "hype" and "curv" in sd and "curvature" not in sd:
        layout = "meru"  # a bare MERU state dict
    return sd, layout


_MERU_TEXT_RENAMES = (
    (re.compile(r"^textual\.token_embed\.weight$"), "token_embedding.weight"),
    (re.compile(r"^textual\.posit_embed$"), "positional_embedding"),
    (re.compile(r"^textual\.resblocks\.(.*)$"), r"transformer.resblocks.\1"),
    (re.compile(r"^textual\.ln_final\.(.*)$"), r"ln_final.\1"),
)
# MERU keeps these as buffers; they carry no learned weights (the preprocess config supplies the
# pixel normalisation, the text tower builds its own causal mask).
_MERU_DROPPED = {"textual.attn_mask", "pixel_mean", "pixel_std"}


def meru_to_hype_layout(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a MERU state dict into the HYPE layout of an open_clip model with a timm vision tower."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key in _MERU_DROPPED:
            continue
        if key == "curv":
            out["curvature"] = value
        elif key == "visual_alpha":
            out["alpha_img"] = value
        elif key == "textual_alpha":
            out["alpha_txt"] = value
        elif key == "logit_scale":
            out["logit_scale"] = value
        elif key == "visual_proj.weight":
            out["visual.head.proj.weight"] = value
        elif key == "textual_proj.weight":
            # nn.Linear stores [embed, width]; open_clip multiplies by a [width, embed] matrix.
            out["text_projection"] = value.T.contiguous()
        elif key.startswith("visual."):
            out["visual.trunk." + key[len("visual."):]] = value
        else:
            for pattern, repl in _MERU_TEXT_RENAMES:
                if pattern.match(key):
                    out[pattern.sub(repl, key)] = value
                    break
            else:
                out[key] = value  # left as is: reported as unexpected by load_meru_state
    return out


def _describe(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_meru_state(model: MeruCLIP, obj: Any, source: str = "checkpoint") -> str:
    """Load a HYPE- or MERU-layout checkpoint into ``model`` strictly; returns the layout found."""
    sd, layout = _unwrap(obj, source)
    if layout == "meru":
        sd = meru_to_hype_layout(sd)
    expected = hype_state_dict(model)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        raise CheckpointError(f"{source} ({layout} layout) does not fit this model: " + "; ".join(parts))
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{source} ({layout} layout) has wrong shapes: {_describe(bad)}")
    clip_sd = {k: v for k, v in sd.items() if k not in HYPE_EXTRA_KEYS}
    model.clip.load_state_dict(clip_sd, strict=True)
    with torch.no_grad():
        for key in HYPE_EXTRA_KEYS:
            getattr(model, key).copy_(sd[key].reshape(()))
    return layout


# --- loading for scoring -----------------------------------------------------------------------

def _fingerprint_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass
class LoadedMeru:
    """A hyperbolic CLIP ready to embed a pool, with its preprocessing and tokenizer."""

    model: MeruCLIP
    preprocess: Any
    tokenizer: Any
    name: str
    fingerprint: str
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def curv(self) -> float:
        return float(self.model.curv.detach())

    @torch.no_grad()
    def encode_images(self, images: list, batch_size: int = 256) -> np.ndarray:
        """Tangent vectors (alpha-scaled features, before the exp map), float32 ``[N, D]``."""
        out = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + batch_size]])
            out.append(self.model.image_tangent(batch.to(self.device)).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.embed_dim), np.float32)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Tangent vectors of captions, float32 ``[N, D]``."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)
            out.append(self.model.text_tangent(tokens).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.embed_dim), np.float32)


def _pixel_stats(obj: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """MERU stores its pixel normalisation (ImageNet mean/std) as buffers; HYPE uses open_clip's."""
    sd = obj.get("model", obj) if isinstance(obj, dict) else {}
    if isinstance(sd, dict) and "pixel_mean" in sd and "pixel_std" in sd:
        return (tuple(float(v) for v in sd["pixel_mean"].flatten()),
                tuple(float(v) for v in sd["pixel_std"].flatten()))
    return None


def _preprocess_and_tokenizer(
    model_name: str, clip: nn.Module, pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
) -> tuple[Any, Any]:
    import open_clip

    pp_cfg = dict(open_clip.get_model_preprocess_cfg(clip))
    if pixel_stats is not None:
        pp_cfg["mean"], pp_cfg["std"] = pixel_stats
    preprocess = open_clip.image_transform(
        pp_cfg.get("size", 224), is_train=False, mean=pp_cfg.get("mean"), std=pp_cfg.get("std"),
        interpolation=pp_cfg.get("interpolation"), resize_mode=pp_cfg.get("resize_mode"),
    )
    return preprocess, open_clip.get_tokenizer(model_name)


def load_meru(spec: str | Path, model_name: str | None = None, device: str = "cpu") -> LoadedMeru:
    """Load a hyperbolic CLIP for scoring.

    ``spec`` is a world model directory (``model.json`` + ``model.pt``) or a checkpoint file: the
    official HYPE ``ckpt.pt`` (``model_name`` defaults to ``ViT-L-14``) or a MERU checkpoint (give
    ``model_name="hype-meru-vit-l-16"`` or ``"hype-meru-vit-b-16"``).
    """
    path = Path(spec)
    info: dict[str, Any] = {}
    if path.is_dir():
        meta_path = path / "model.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{path}: not a model directory (no model.json)")
        info = json.loads(meta_path.read_text())
        if info.get("kind") != "meru":
            raise ValueError(f"{meta_path}: kind is {info.get('kind')!r}, HYPE needs a 'meru' model")
        model_name = model_name or info["model_name"]
        ckpt = path / "model.pt"
    else:
        if not path.exists():
            raise FileNotFoundError(f"HYPE model checkpoint not found: {path}")
        ckpt = path
        model_name = model_name or HYPE_OFFICIAL_CONFIG
    model = MeruCLIP.from_config(model_name, curv_init=float(info.get("curv_init", 1.0)))
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    layout = load_meru_state(model, obj, source=str(ckpt))
    model = model.to(device).eval()
    preprocess, tokenizer = _preprocess_and_tokenizer(model_name, model.clip, _pixel_stats(obj))
    info = {**info, "layout": layout}
    return LoadedMeru(model, preprocess, tokenizer, name=str(model_name),
                      fingerprint=_fingerprint_file(ckpt), device=device, info=info)


def load_reference_set(path: str | Path, width: int | None = None) -> tuple[Tensor, Tensor]:
    """HYPE's reference set file ``{"img": [N, D], "txt": [M, D]}`` (tangent vectors) -> (img, txt)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"HYPE reference set not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not {"img", "txt"} <= set(obj):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: a reference set needs keys 'img' and 'txt', found {keys}")
    img, txt = torch.as_tensor(obj["img"]).float(), torch.as_tensor(obj["txt"]).float()
    for key, t in (("img", img), ("txt", txt)):
        if t.ndim != 2 or t.shape[0] == 0:
            raise CheckpointError(f"{path}: {key!r} must be a non-empty [N, D] array, got {tuple(t.shape)}")
        if width is not None and t.shape[1] != width:
            raise CheckpointError(f"{path}: {key!r} has width {t.shape[1]}, the model embeds in {width}")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: {key!r} contains NaN or infinite values")
    return img, txt
