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


def uid_uniform(uids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per u8,u8 uid, fixed by (seed, uid)."""
    s = np.uint64(seed % 2**64)
    with np.errstate(over="ignore"):
        h = _mix(uids["f0"] ^ _mix(np.full(len(uids), s, dtype=np.uint64) + _GOLDEN))
        h = _mix(h ^ uids["f1"])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


@register
class RandomScorer(Scorer):
    name = "random"
    description = "uniform random score per uid, seeded (random30 = a random 30% of the pool)"
    needs = Needs()
    terms = ("score",)
    cache = False  # cheaper to recompute than to read back

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=int(seed), **options)
        self.seed = int(seed)

    def score_metadata(self, batch: MetadataBatch, ctx: ScoringContext) -> dict[str, np.ndarray]:
        return {"score": uid_uniform(batch.uids(), self.seed)}
