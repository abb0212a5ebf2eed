"""Lorentz geometry: closed forms, an independent float64 implementation, invariants, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.baselines.hype import geometry as G

# --- an independent float64 reference: full (D+1)-dim Minkowski coordinates, and the exterior
# angle from the hyperbolic law of cosines on distances (not MERU's closed form).


def np_lift(v: np.ndarray, c: float) -> np.ndarray:
    """Tangent vectors -> points (time, space) on {<x,x>_L = -1/c}."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    r = math.sqrt(c) * n
    with np.errstate(invalid="ignore", divide="ignore"):
        space = np.where(n > 0, np.sinh(r) / (math.sqrt(c) * n) * v, 0.0)
    time = np.cosh(r) / math.sqrt(c)
    return np.concatenate([time, space], axis=-1)


def np_minkowski(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.outer(a[:, 0], b[:, 0]) + a[:, 1:] @ b[:, 1:].T


def np_dist(a: np.ndarray, b: np.ndarray, c: float) -> np.ndarray:
    return np.arccosh(np.maximum(-c * np_minkowski(a, b), 1.0)) / math.sqrt(c)


def np_ext_angle(a: np.ndarray, b: np.ndarray, c: float) -> np.ndarray:
    origin = np.zeros((1, a.shape[1]))
    origin[0, 0] = 1 / math.sqrt(c)
    k = math.sqrt(c)  # work in curvature -1 units: lengths scale by sqrt(c)
    d_oa = np_dist(a, origin, c)[:, 0][:, None] * k
    d_ob = np_dist(b, origin, c)[:, 0][None, :] * k
    d_ab = np_dist(a, b, c) * k
    # cosh(d_ob) = cosh(d_oa) cosh(d_ab) - sinh(d_oa) sinh(d_ab) cos(interior angle at a)
    cos_int = (np.cosh(d_oa) * np.cosh(d_ab) - np.cosh(d_ob)) / (np.sinh(d_oa) * np.sinh(d_ab))
    return math.pi - np.arccos(np.clip(cos_int, -1, 1))


def np_aperture(a: np.ndarray, c: float, k: float = 0.1) -> np.ndarray:
    return np.arcsin(np.minimum(2 * k / (math.sqrt(c) * np.linalg.norm(a[:, 1:], axis=1)), 1.0))


def _random_tangents(rng: np.random.Generator, n: int, d: int, lo: float, hi: float) -> np.ndarray:
    v = rng.normal(size=(n, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * rng.uniform(lo, hi, size=(n, 1))


def t32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


# --- closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_distances_along_geodesics_through_the_origin(c):
    u = torch.tensor([[0.6, 0.8, 0.0]])
    origin = torch.zeros(1, 3)
    for a, b in [(0.0, 1.3), (0.4, 1.7), (1.0, -1.0), (-0.5, 2.0)]:
        x, y = G.exp_map0(a * u, c), G.exp_map0(b * u, c)
        # exp_map0 is an isometry on each line through the origin: d = |a - b|
        assert G.pairwise_dist(x, y, c).item() == pytest.approx(abs(a - b), abs=2e-4)
        assert G.paired_dist(x, y, c).item() == pytest.approx(abs(a - b), abs=1e-5)
    assert G.paired_dist(origin, G.exp_map0(0.9 * u, c), c).item() == pytest.approx(0.9, abs=1e-6)


def test_distance_of_perpendicular_points_matches_the_hyperbolic_pythagoras():
    # curvature -1: cosh d = cosh a cosh b for a right angle at the origin
    x = G.exp_map0(torch.tensor([[1.2, 0.0]]), 1.0)
    y = G.exp_map0(torch.tensor([[0.0, 0.7]]), 1.0)
    expected = math.acosh(math.cosh(1.2) * math.cosh(0.7))
    assert G.pairwise_dist(x, y).item() == pytest.approx(expected, abs=1e-5)
    assert G.paired_dist(x, y).item() == pytest.approx(expected, abs=1e-5)


def test_exp_map_space_norm_and_time_part():
    v = torch.tensor([[3.0, 4.0]])  # |v| = 5
    for c in (0.25, 1.0, 4.0):
        x = G.exp_map0(v, c)
        assert x.norm().item() == pytest.approx(math.sinh(math.sqrt(c) * 5) / math.sqrt(c), rel=1e-5)
        assert G.time_part(x, c).item() == pytest.approx(math.cosh(math.sqrt(c) * 5) / math.sqrt(c), rel=1e-5)
    assert torch.equal(G.exp_map0(torch.zeros(2, 3)), torch.zeros(2, 3))  # no NaN at the origin
    assert torch.isfinite(G.exp_map0(torch.full((1, 4), 1e4))).all()  # sinh argument is clamped
    v = t32(_random_tangents(np.random.default_rng(0), 8, 5, 0.1, 3.0))
    assert torch.allclose(G.log_map0(G.exp_map0(v, 1.5), 1.5), v, atol=1e-5)


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_half_aperture_at_known_norms(c):
    rc = math.sqrt(c)
    x = torch.tensor([[0.4 / rc, 0.0], [0.0, 0.2 * math.sqrt(2) / rc], [2.0 / rc, 0.0], [0.05 / rc, 0.0]])
    aper = G.half_aperture(x, c)
    assert aper[0].item() == pytest.approx(math.pi / 6, abs=1e-6)  # arcsin(2K / 0.4) = arcsin(1/2)
    assert aper[1].item() == pytest.approx(math.pi / 4, abs=1e-6)
    assert aper[2].item() == pytest.approx(math.asin(0.1), abs=1e-6)
    assert aper[3].item() == pytest.approx(math.pi / 2, abs=1e-3)  # inside the K-ball: clamped to the widest cone


def test_entailment_energy_sign_inside_and_outside_a_cone():
    c = 1.0
    u = torch.tensor([1.0, 0.0, 0.0])
    w = torch.tensor([0.0, 1.0, 0.0])
    x = G.exp_map0((1.0 * u)[None], c)
    aper = G.half_aperture(x, c).item()
    further = G.exp_map0((2.5 * u)[None], c)  # same ray, beyond x: exterior angle 0
    slightly_off = G.exp_map0((3.0 * u + 0.05 * w)[None], c)
    nearer = G.exp_map0((0.3 * u)[None], c)  # between the origin and x: angle pi
    sideways = G.exp_map0((1.0 * u + 2.0 * w)[None], c)
    e = G.entailment_energy(x, torch.cat([further, slightly_off, nearer, sideways]), c)[0]
    assert e[0].item() == pytest.approx(-aper, abs=1e-3)
    assert e[1].item() < 0
    assert e[2].item() == pytest.approx(math.pi - aper, abs=1e-3)
    assert e[3].item() > 0
    # paired form agrees with the pairwise diagonal
    ext_pairs = G.paired_exterior_angle(x.expand(4, -1), torch.cat([further, slightly_off, nearer, sideways]), c)
    assert torch.allclose(ext_pairs - aper, e, atol=1e-5)


# --- against the float64 reference ------------------------------------------------------------


@pytest.mark.parametrize("c", [0.3, 1.0, 2.5])
def test_matches_independent_float64_implementation(c):
    rng = np.random.default_rng(int(c * 10))
    a = _random_tangents(rng, 40, 16, 0.3, 2.5)
    b = _random_tangents(rng, 50, 16, 0.3, 2.5)
    pa, pb = np_lift(a, c), np_lift(b, c)
    xa, xb = G.exp_map0(t32(a), c), G.exp_map0(t32(b), c)
    assert np.abs(xa.numpy() - pa[:, 1:]).max() < 1e-5
    assert np.abs(G.time_part(xa, c).numpy() - pa[:, 0]).max() < 1e-5
    checks = {
        "lorentz_inner": (G.lorentz_inner(xa, xb, c), np_minkowski(pa, pb)),
        "pairwise_dist": (G.pairwise_dist(xa, xb, c), np_dist(pa, pb, c)),
        "paired_dist": (G.paired_dist(xa, xb[:40], c), np.diag(np_dist(pa, pb[:40], c))),
        "half_aperture": (G.half_aperture(xa, c), np_aperture(pa, c)),
        "exterior_angle": (G.exterior_angle(xa, xb, c), np_ext_angle(pa, pb, c)),
        "entailment": (G.entailment_energy(xa, xb, c), np_ext_angle(pa, pb, c) - np_aperture(pa, c)[:, None]),
    }
    for name, (ours, ref) in checks.items():
        # the inner product grows like cosh^2 of the norms: compare it relatively
        scale = np.abs(ref).max() if name == "lorentz_inner" else 1.0
        err = np.abs(ours.numpy().astype(np.float64) - ref).max() / scale
        assert err < 1e-5, f"{name}: max abs diff {err:.2e}"
    eps_t = np.mean(np_ext_angle(pa, pb, c) - np_aperture(pa, c)[:, None], axis=1)
    eps_i = np.mean(np_ext_angle(pb, pa, c) - np_aperture(pb, c)[:, None], axis=0)
    assert np.abs(G.text_specificity(xa, xb, c, chunk=7).numpy() - eps_t).max() < 1e-5
    assert np.abs(G.image_specificity(xa, xb, c, chunk=7).numpy() - eps_i).max() < 1e-5


# --- invariants -------------------------------------------------------------------------------


def test_distance_invariants():
    rng = np.random.default_rng(1)
    c = 1.3
    x = G.exp_map0(t32(_random_tangents(rng, 60, 8, 0.1, 2.0)), c)
    d = G.pairwise_dist(x, x, c)
    assert torch.equal(G.paired_dist(x, x, c), torch.zeros(60))  # exactly 0 in the stable form
    assert d.diagonal().abs().max().item() < 2e-3  # fp32 cancellation near arccosh(1)
    assert torch.allclose(d, d.T, atol=1e-5)
    assert (d >= 0).all()
    # sampled triangle inequality d(a, c) <= d(a, b) + d(b, c)
    idx = torch.from_numpy(rng.integers(0, 60, size=(2000, 3)))
    lhs = d[idx[:, 0], idx[:, 2]]
    rhs = d[idx[:, 0], idx[:, 1]] + d[idx[:, 1], idx[:, 2]]
    assert (lhs <= rhs + 2e-3).all()


def test_exterior_angle_range_and_energy_dtype():
    rng = np.random.default_rng(2)
    x = G.exp_map0(t32(_random_tangents(rng, 30, 6, 0.05, 4.0)), 0.7)
    y = G.exp_map0(t32(_random_tangents(rng, 20, 6, 0.05, 4.0)), 0.7)
    ang = G.exterior_angle(x, y, 0.7)
    assert ang.shape == (30, 20) and (ang >= 0).all() and (ang <= math.pi).all()
    half = G.entailment_energy(x.half(), y.half(), 0.7)  # computed in fp32 whatever comes in
    assert half.dtype == torch.float32


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(3)
    c = torch.tensor(0.8)
    pool = G.exp_map0(t32(_random_tangents(rng, 37, 12, 0.2, 2.0)), c)
    ref = G.exp_map0(t32(_random_tangents(rng, 53, 12, 0.2, 2.0)), c)
    full_t = G.entailment_energy(pool, ref, c).mean(dim=1)
    full_i = G.entailment_energy(ref, pool, c).mean(dim=0)
    for chunk in (1, 5, 16, 53, 10_000):
        assert torch.allclose(G.text_specificity(pool, ref, c, chunk=chunk), full_t, atol=1e-6)
        assert torch.allclose(G.image_specificity(pool, ref, c, chunk=chunk), full_i, atol=1e-6)


def test_bad_inputs_are_refused():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="width"):
        G.text_specificity(x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="empty"):
        G.image_specificity(x, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="positive"):
        G.exp_map0(x, -1.0)
