"""Lorentz-model hyperbolic geometry for MERU-style embeddings and HYPE's specificity scores.

Conventions (as in MERU, facebookresearch/meru meru/lorentz.py, and HYPE): the hyperboloid has curvature
-c (``curv`` = c > 0); a point is stored by its space part ``x``; its time part is
``x_t = sqrt(1/c + |x|^2)``. Encoders produce tangent vectors at the origin ``v``; ``exp_map0`` lifts
them onto the hyperboloid.

Every function computes in float32 (inputs are cast) so that results do not depend on autocast or
half-precision inputs. Pairwise functions return ``[B1, B2]`` matrices; the specificity functions
walk the reference set (and the pool) in blocks so peak memory is bounded by the block sizes, not by
the pool or reference-set size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-8
# Largest sinh argument MERU allows in the exp map (keeps sinh finite in fp32).
SINH_MAX = math.asinh(2**15)
# Radius of the neighbourhood of the origin where cones are left undefined (MERU's min_radius).
APERTURE_K = 0.1
from harness.baselines.hype import DEFAULT_CHUNK  # noqa: E402  (re-exported: G.DEFAULT_CHUNK)


def _f32(t: Tensor) -> Tensor:
    return t.float() if t.dtype != torch.float32 else t


def _curv(curv: float | Tensor, like: Tensor) -> Tensor:
    """The curvature as a float32 scalar tensor on ``like``'s device (kept differentiable)."""
    c = curv if isinstance(curv, Tensor) else torch.tensor(float(curv))
    c = c.to(device=like.device, dtype=torch.float32)
    if bool((c <= 0).any()):
        raise ValueError(f"curvature must be positive (the space has curvature -c), got {c}")
    return c


def exp_map0(v: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Exponential map at the origin: tangent vectors ``[..., D]`` -> space parts on the hyperboloid.

    x = sinh(sqrt(c)|v|) v / (sqrt(c)|v|); the sinh argument is clamped to [eps, asinh(2^15)] so
    that v = 0 maps to 0 (not NaN) and huge vectors stay finite.
    """
    v = _f32(v)
    c = _curv(curv, v)
    rc_norm = c.sqrt() * v.norm(dim=-1, keepdim=True)
    arg = rc_norm.clamp(min=eps, max=SINH_MAX)
    return torch.sinh(arg) * v / rc_norm.clamp(min=eps)


def log_map0(x: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Inverse of :func:`exp_map0` (space parts -> tangent vectors at the origin)."""
    x = _f32(x)
    c = _curv(curv, x)
    rc_norm = c.sqrt() * x.norm(dim=-1, keepdim=True)
    # d(O, x) * sqrt(c) = asinh(sqrt(c)|x|): asinh is exact near 0 where acosh(x_t) is not.
    return torch.asinh(rc_norm) * x / rc_norm.clamp(min=eps)


def time_part(x: Tensor, curv: float | Tensor = 1.0) -> Tensor:
    """Time component ``sqrt(1/c + |x|^2)`` of space parts ``[..., D]`` -> ``[...]``."""
    x = _f32(x)
    c = _curv(curv, x)
    return torch.sqrt(1.0 / c + (x * x).sum(dim=-1))


def lorentz_inner(x: Tensor, y: Tensor, curv: float | Tensor = 1.0) -> Tensor:
    """Pairwise Lorentz inner product <x, y> = x.y - x_t y_t: ``[B1, D] x [B2, D] -> [B1, B2]``."""
    x, y = _f32(x), _f32(y)
    return x @ y.T - time_part(x, curv)[:, None] * time_part(y, curv)[None, :]


def pairwise_dist(x: Tensor, y: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Pairwise geodesic distance ``[B1, B2]``: arccosh(-c<x,y>) / sqrt(c), argument clamped >= 1 + eps."""
    c = _curv(curv, _f32(x))
    arg = (-c * lorentz_inner(x, y, c)).clamp(min=1 + eps)
    return torch.acosh(arg) / c.sqrt()


def paired_dist(x: Tensor, y: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Distance between matching rows, ``[B, D] x [B, D] -> [B]`` (a pool's own image-caption pairs).

    Uses -c<x,y> = 1 + c (|x - y|^2 - (x_t - y_t)^2) / 2, which avoids the cancellation of
    x_t y_t - x.y for nearby points (so d(x, x) is exactly 0), with MERU's 1 + eps clamp.
    """
    x, y = _f32(x), _f32(y)
    c = _curv(curv, x)
    xt, yt = time_part(x, c), time_part(y, c)
    # x_t - y_t = (|x|^2 - |y|^2) / (x_t + y_t): no cancellation when the norms are close.
    dt = ((x * x).sum(-1) - (y * y).sum(-1)) / (xt + yt)
    diff = x - y
    arg = 1 + c * ((diff * diff).sum(-1) - dt * dt) / 2
    return torch.acosh(arg.clamp(min=1 + eps)) / c.sqrt()


def half_aperture(x: Tensor, curv: float | Tensor = 1.0, k: float = APERTURE_K, eps: float = EPS) -> Tensor:
    """Half-aperture of x's entailment cone, arcsin(2K / (sqrt(c)|x|)), in (0, pi/2): ``[B, D] -> [B]``.

    Points closer to the origin than the cone boundary (sqrt(c)|x| < 2K) get the widest cone.
    """
    x = _f32(x)
    c = _curv(curv, x)
    arg = 2 * k / (c.sqrt() * x.norm(dim=-1) + eps)
    return torch.asin(arg.clamp(min=-1 + eps, max=1 - eps))


def exterior_angle(x: Tensor, y: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Pairwise exterior angle at x of the triangle O-x-y, in [0, pi]: ``[B1, D] x [B2, D] -> [B1, B2]``.

    ext(x, y) = arccos((y_t + x_t c<x,y>) / (|x| sqrt((c<x,y>)^2 - 1))), with MERU's clamps.
    """
    x, y = _f32(x), _f32(y)
    c = _curv(curv, x)
    xt, yt = time_part(x, c), time_part(y, c)
    c_inner = c * (x @ y.T - xt[:, None] * yt[None, :])
    numer = yt[None, :] + c_inner * xt[:, None]
    denom = torch.sqrt((c_inner * c_inner - 1).clamp(min=eps))
    cos_angle = numer / (x.norm(dim=-1)[:, None] * denom + eps)
    return torch.acos(cos_angle.clamp(min=-1 + eps, max=1 - eps))


def paired_exterior_angle(x: Tensor, y: Tensor, curv: float | Tensor = 1.0, eps: float = EPS) -> Tensor:
    """Exterior angle at x of O-x-y for matching rows, ``[B, D] x [B, D] -> [B]`` (MERU's oxy_angle)."""
    x, y = _f32(x), _f32(y)
    c = _curv(curv, x)
    xt, yt = time_part(x, c), time_part(y, c)
    c_inner = c * ((x * y).sum(-1) - xt * yt)
    numer = yt + c_inner * xt
    denom = torch.sqrt((c_inner * c_inner - 1).clamp(min=eps))
    cos_angle = numer / (x.norm(dim=-1) * denom + eps)
    return torch.acos(cos_angle.clamp(min=-1 + eps, max=1 - eps))


def entailment_energy(x: Tensor, y: Tensor, curv: float | Tensor = 1.0, k: float = APERTURE_K) -> Tensor:
    """Pairwise E(x, y) = ext(x, y) - aper(x), ``[B1, B2]``: y lies in x's cone exactly when E <= 0."""
    return exterior_angle(x, y, curv) - half_aperture(x, curv, k)[:, None]


def _blocks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _check_pair(points: Tensor, reference: Tensor, what: str) -> None:
    if points.ndim != 2 or reference.ndim != 2:
        raise ValueError(f"{what}: expected 2-D [N, D] tensors, got {tuple(points.shape)} and {tuple(reference.shape)}")
    if points.shape[1] != reference.shape[1]:
        raise ValueError(
            f"{what}: embedding width {points.shape[1]} does not match the reference set's {reference.shape[1]}"
        )
    if reference.shape[0] == 0:
        raise ValueError(f"{what}: the reference set is empty")


@torch.no_grad()
def image_specificity(
    images: Tensor,
    ref_texts: Tensor,
    curv: float | Tensor = 1.0,
    chunk: int = DEFAULT_CHUNK,
    k: float = APERTURE_K,
) -> Tensor:
    """eps_i(image) = mean over reference texts t of E(t, image); ``[N, D]`` space parts -> ``[N]``.

    Both arguments are points on the hyperboloid (space parts, i.e. after :func:`exp_map0`).
    Memory: one ``chunk x chunk`` block at a time, whatever N and the reference size.
    """
    _check_pair(images, ref_texts, "image_specificity")
    out = torch.empty(images.shape[0], dtype=torch.float32, device=images.device)
    m = ref_texts.shape[0]
    # Mean aperture of the reference texts: E's second term does not depend on the image.
    mean_aper = sum(half_aperture(ref_texts[a:b], curv, k).sum() for a, b in _blocks(m, chunk)) / m
    for i0, i1 in _blocks(images.shape[0], chunk):
        img = _f32(images[i0:i1])
        acc = torch.zeros(i1 - i0, dtype=torch.float32, device=images.device)
        for t0, t1 in _blocks(m, chunk):
            acc += exterior_angle(ref_texts[t0:t1], img, curv).sum(dim=0)
        out[i0:i1] = acc / m - mean_aper
    return out


@torch.no_grad()
def text_specificity(
    texts: Tensor,
    ref_images: Tensor,
    curv: float | Tensor = 1.0,
    chunk: int = DEFAULT_CHUNK,
    k: float = APERTURE_K,
) -> Tensor:
    """eps_t(text) = mean over reference images i of E(text, i); ``[N, D]`` space parts -> ``[N]``."""
    _check_pair(texts, ref_images, "text_specificity")
    out = torch.empty(texts.shape[0], dtype=torch.float32, device=texts.device)
    m = ref_images.shape[0]
    for i0, i1 in _blocks(texts.shape[0], chunk):
        txt = _f32(texts[i0:i1])
        acc = torch.zeros(i1 - i0, dtype=torch.float32, device=texts.device)
        for r0, r1 in _blocks(m, chunk):
            acc += exterior_angle(txt, ref_images[r0:r1], curv).sum(dim=1)
        out[i0:i1] = acc / m - half_aperture(txt, curv, k)
    return out
