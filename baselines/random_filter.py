"""Random subsets: ``random30`` keeps a seeded 30% of the pool.

Each uid gets a uniform score in [0, 1) from a hash of (seed, uid), so the choice does not depend on
file order or on how the pool is split, and a different ``seed`` gives an independent subset.
"""

from __future__ import annotations

import numpy as np

from harness.plugins import MetadataBatch, Needs, Scorer, ScoringContext, register

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps, which is what we want)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _mix_inplace(x: np.ndarray, tmp: np.ndarray) -> None:
    """``x[:] = _mix(x)`` with one scratch array instead of six temporaries."""
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        np.right_shift(x, np.uint64(shift), out=tmp)
        x ^= tmp
        if mult is not None:
            x *= mult


def uid_uniform(uids: np.ndarray, seed: int, scratch: list[np.ndarray] | None = None) -> np.ndarray:
    """A uniform [0, 1) number per u8,u8 uid, fixed by (seed, uid):
    ``mix(mix(f0 ^ mix(seed + golden)) ^ f1) >> 11``, scaled by 2**-53 (``mix``: splitmix64's finaliser).

    ``scratch`` (a list, filled here) keeps two work arrays between calls: on a large pool, fresh
    memory for every file costs more than the hashing.
    """
    n = len(uids)
    if scratch is not None and scratch and len(scratch[0]) >= n:
        h, tmp = scratch[0][:n], scratch[1][:n]
    else:
        h, tmp = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
        if scratch is not None:
            scratch[:] = [h, tmp]
    with np.errstate(over="ignore"):
        key = _mix(np.array([np.uint64(seed % 2**64) + _GOLDEN], dtype=np.uint64))[0]  # the same for every uid
        np.bitwise_xor(uids["f0"], key, out=h)
        _mix_inplace(h, tmp)
        h ^= uids["f1"]
        _mix_inplace(h, tmp)
    h >>= np.uint64(11)
    out = h.astype(np.float64)
    out *= 1.0 / 2**53
    return out


@register
class RandomScorer(Scorer):
    name = "random"
    label = "Random"
    description = "uniform random score per uid, seeded (random30 = a random 30% of the pool)"
    needs = Needs()
    terms = ("score",)
    cache = False  # cheaper to recompute than to read back

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=int(seed), **options)
        self.seed = int(seed)
        self._scratch: list[np.ndarray] = []  # work arrays reused from file to file

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        return {"score": uid_uniform(batch.uids(), self.seed, self._scratch)}
