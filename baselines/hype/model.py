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

Loading reports what does not fit instead of hiding it (HYPE's own loader uses ``strict=False``): a
missing weight that scoring uses, or a misshapen one, is a :class:`CheckpointError` naming the keys (a
half-loaded model would silently score with random weights); an unexpected key, or a missing
``logit_scale`` (only the training loss reads it), is a :class:`CheckpointWarning` naming them.

LayerNorm eps follows the model the weights come from: the official HYPE model normalises with
float32 machine epsilon, MERU with torch's default 1e-5, a world model with the eps it was trained
with (its open_clip config's, unless ``model.json`` records ``layernorm_eps``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import safeload
from harness.baselines.hype import geometry as G
from harness.stages import sha256_file

LOGIT_SCALE_MAX = math.log(100.0)  # MERU/open_clip cap the contrastive temperature at 100
ENTAIL_WEIGHT = 0.2
HYPE_EXTRA_KEYS = ("curvature", "alpha_img", "alpha_txt")
# The official HYPE model is OpenCLIP ViT-L/14 (naver-ai/hype model.py).
HYPE_OFFICIAL_CONFIG = "ViT-L-14"
# The official HYPE model's LayerNorm passes eps = torch.finfo(<input dtype>).eps (naver-ai/hype,
# model.py lines 30-34); the harness runs the towers in float32. open_clip's default is 1e-5.
HYPE_LAYERNORM_EPS = float(torch.finfo(torch.float32).eps)
# MERU builds plain nn.LayerNorm (eps 1e-5) in its text tower and passes nn.LayerNorm to its timm ViT
# instead of timm's 1e-6 (facebookresearch/meru, meru/encoders/text_encoders.py lines 32, 42, 106;
# meru/encoders/image_encoders.py lines 59-60).
MERU_LAYERNORM_EPS = 1e-5
# Weights that scoring never reads: a checkpoint without them still scores correctly.
SCORER_UNUSED_KEYS = frozenset({"logit_scale"})
# Bumped when loading changes what a checkpoint scores (2: layout-specific LayerNorm eps); scorers put
# it in their model fingerprint so tables made by an older loader are recomputed.
LOADER_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint that does not match the model it is loaded into."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads, with keys the model does not have or scoring does not need."""


def set_layernorm_eps(module: nn.Module, eps: float) -> int:
    """Set ``eps`` on every LayerNorm of ``module`` (open_clip's and timm's subclass nn.LayerNorm)."""
    norms = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    for m in norms:
        m.eps = float(eps)
    return len(norms)


def layernorm_eps_of(module: nn.Module) -> float | list[float] | None:
    """The eps of the module's LayerNorms: one value, the sorted values when they differ, None if none."""
    values = sorted({float(m.eps) for m in module.modules() if isinstance(m, nn.LayerNorm)})
    return None if not values else values[0] if len(values) == 1 else values


def _open_clip_model(model_name: str) -> nn.Module:
    import open_clip

    from harness.models import quiet_random_init, register_configs

    register_configs()
    if open_clip.get_model_config(model_name) is None:
        raise ValueError(f"unknown open_clip model config {model_name!r} (not in open_clip nor harness/model_configs)")
    # random towers on purpose: load_meru fills and checks every weight next, training starts from them
    with quiet_random_init():
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


def load_meru_state(model: MeruCLIP, obj: Any, source: str = "checkpoint",
                    report: dict[str, list[str]] | None = None) -> str:
    """Load a HYPE- or MERU-layout checkpoint into ``model``; returns the layout found.

    Every weight scoring uses must be there with its shape (else :class:`CheckpointError`); unexpected
    keys and missing unused ones are ignored with a :class:`CheckpointWarning` naming them, and listed
    in ``report`` ({"missing": [...], "unexpected": [...]}) when one is given.
    """
    sd, layout = _unwrap(obj, source)
    if layout == "meru":
        sd = meru_to_hype_layout(sd)
    expected = hype_state_dict(model)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    fatal = [k for k in missing if k not in SCORER_UNUSED_KEYS]
    if fatal:
        extra = f"; unexpected keys: {_describe(unexpected)}" if unexpected else ""
        raise CheckpointError(f"{source} ({layout} layout) does not fit this model: "
                              f"missing keys: {_describe(fatal)}{extra}")
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{source} ({layout} layout) has wrong shapes: {_describe(bad)}")
    if unexpected:
        warnings.warn(CheckpointWarning(f"{source} ({layout} layout): ignoring unexpected keys: "
                                        f"{_describe(unexpected)}"), stacklevel=2)
    if missing:
        warnings.warn(CheckpointWarning(f"{source} ({layout} layout): missing keys {_describe(missing)} "
                                        "(not used for scoring) keep their initial values"), stacklevel=2)
    clip_sd = {k: sd[k] for k in expected if k in sd and k not in HYPE_EXTRA_KEYS}
    result = model.clip.load_state_dict(clip_sd, strict=False)
    left = sorted(set(result.missing_keys) - set(missing))  # every key was checked above: none expected
    if left or result.unexpected_keys:
        raise CheckpointError(f"{source}: open_clip did not take keys {_describe(left + list(result.unexpected_keys))}")
    with torch.no_grad():
        for key in HYPE_EXTRA_KEYS:
            getattr(model, key).copy_(sd[key].reshape(()))
    if report is not None:
        report["missing"], report["unexpected"] = sorted(missing), sorted(unexpected)
    return layout


# --- loading for scoring -----------------------------------------------------------------------

def _fingerprint_file(path: Path) -> str:
    return sha256_file(path)[:16]


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


def preprocess_and_tokenizer(
    model_name: str, clip: nn.Module, pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
) -> tuple[Any, Any]:
    """open_clip's eval image transform for ``clip`` (its pixel mean/std replaced by ``pixel_stats`` when
    given) and the tokenizer of ``model_name``."""
    import open_clip

    pp_cfg = dict(open_clip.get_model_preprocess_cfg(clip))
    if pixel_stats is not None:
        pp_cfg["mean"], pp_cfg["std"] = pixel_stats
    preprocess = open_clip.image_transform(
        pp_cfg.get("size", 224), is_train=False, mean=pp_cfg.get("mean"), std=pp_cfg.get("std"),
        interpolation=pp_cfg.get("interpolation"), resize_mode=pp_cfg.get("resize_mode"),
    )
    return preprocess, open_clip.get_tokenizer(model_name)


def load_meru(spec: str | Path, model_name: str | None = None, device: str = "cpu",
              layernorm_eps: float | None = None) -> LoadedMeru:
    """Load a hyperbolic CLIP for scoring.

    ``spec`` is a world model directory (``model.json`` + ``model.pt``) or a checkpoint file: the
    official HYPE ``ckpt.pt`` (``model_name`` defaults to ``ViT-L-14``) or a MERU checkpoint (give
    ``model_name="hype-meru-vit-l-16"`` or ``"hype-meru-vit-b-16"``). ``layernorm_eps`` overrides the
    eps of the model the weights come from (see the module docstring); ``info`` records the eps used
    and the keys that were missing or unexpected.
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
    obj = safeload.torch_load(ckpt)
    report: dict[str, list[str]] = {}
    layout = load_meru_state(model, obj, source=str(ckpt), report=report)
    if layernorm_eps is None:
        if path.is_dir():  # the world trains with its config's eps unless model.json says otherwise
            layernorm_eps = info.get("layernorm_eps")
        else:
            layernorm_eps = HYPE_LAYERNORM_EPS if layout == "hype" else MERU_LAYERNORM_EPS
    if layernorm_eps is not None:
        set_layernorm_eps(model, float(layernorm_eps))
    model = model.to(device).eval()
    preprocess, tokenizer = preprocess_and_tokenizer(model_name, model.clip, _pixel_stats(obj))
    info = {**info, "layout": layout, "layernorm_eps": layernorm_eps_of(model),
            **{f"{k}_keys": v for k, v in report.items()}}
    return LoadedMeru(model, preprocess, tokenizer, name=str(model_name),
                      fingerprint=_fingerprint_file(ckpt), device=device, info=info)


def load_reference_set(path: str | Path, width: int | None = None) -> tuple[Tensor, Tensor]:
    """HYPE's reference set file ``{"img": [N, D], "txt": [M, D]}`` (tangent vectors) -> (img, txt)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"HYPE reference set not found: {path}")
    obj = safeload.torch_load(path)
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
