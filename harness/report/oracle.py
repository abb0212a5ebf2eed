"""How well each filter separates clean samples from each kind of noise, on the tiny world.

The world's oracle.parquet labels every sample (clean or one noise type); no filter reads it, so
the report can: precision = fraction of the selected samples that are clean; recall = fraction of
the pool's clean samples that were selected; and per noise type the fraction of that type's samples
that the filter removed. Selections are compared as sets of uids (an upsampled uid counts once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness.report.runs import ReportError, RunResult
from harness.report.table import Row, Stat

CLEAN = "clean"
# The world's noise labels in the order the report shows them; unknown labels follow, sorted.
NOISE_ORDER = ("underspecified", "mismatched", "text_in_image", "non_english", "bad_image", "near_duplicate")
SUBSET_DTYPE = np.dtype("u8,u8")


def subset_uids(path: Path) -> np.ndarray:
    """The distinct uids of a DataComp subset file as 32-hex strings."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable .npy subset ({exc})") from exc
    if arr.dtype.fields is None or len(arr.dtype.fields) != 2 or any(
        arr.dtype[i] != np.dtype("u8") for i in range(2)
    ):
        raise ReportError(f"{path}: expected dtype {SUBSET_DTYPE} (high, low 64 bits of each uid), got {arr.dtype}")
    pairs = np.unique(arr.astype(SUBSET_DTYPE).ravel())
    return np.array([f"{hi:016x}{lo:016x}" for hi, lo in pairs.tolist()], dtype=object)


class OracleLabels:
    """The oracle labels of one world, restricted to the uids its pool actually holds."""

    def __init__(self, world: Path):
        oracle_path = world / "oracle.parquet"
        try:
            oracle = pq.read_table(oracle_path, columns=["uid", "noise"]).to_pandas()
        except (OSError, KeyError, ValueError) as exc:
            raise ReportError(f"{oracle_path}: cannot read columns uid, noise ({exc})") from exc
        metadata = sorted((world / "pool" / "metadata").glob("*.parquet"))
        if not metadata:
            raise ReportError(f"{world / 'pool' / 'metadata'}: no metadata parquet files")
        pool_uids = pd.Index(np.concatenate(
            [pq.read_table(p, columns=["uid"]).column("uid").to_numpy(zero_copy_only=False) for p in metadata]
        ).astype(str)).str.lower()
        labels = oracle.assign(uid=oracle["uid"].astype(str).str.lower()).drop_duplicates("uid").set_index("uid")["noise"]
        self.labels: pd.Series = labels.reindex(pool_uids.unique()).astype(object)
        self.unlabelled = int(self.labels.isna().sum())  # pool samples the oracle does not know
        self.labels = self.labels.dropna().astype(str)
        self.totals = self.labels.value_counts()
        extra = sorted(set(self.totals.index) - {CLEAN, *NOISE_ORDER})
        self.noise_types = [t for t in NOISE_ORDER if t in self.totals.index] + extra

    def score(self, uids: np.ndarray) -> dict[str, float]:
        """precision, recall, removed:<type> and counts for one selection."""
        selected = self.labels.reindex(pd.Index(uids)).dropna()
        counts = selected.value_counts()
        n_clean_pool = int(self.totals.get(CLEAN, 0))
        n_sel = len(selected)
        out = {
            "selected": float(len(uids)),
            "outside_pool": float(len(uids) - n_sel),
            "precision": counts.get(CLEAN, 0) / n_sel if n_sel else float("nan"),
            "recall": counts.get(CLEAN, 0) / n_clean_pool if n_clean_pool else float("nan"),
        }
        for t in self.noise_types:
            out[f"removed:{t}"] = 1.0 - counts.get(t, 0) / self.totals[t]
        return out


@dataclass
class OracleRow:
    method: str
    scale: str
    n: int
    metrics: dict[str, Stat | None]  # precision, recall, selected, removed:<type>


def oracle_rows(rows: Sequence[Row]) -> tuple[list[OracleRow], list[str]]:
    """Oracle scores of every user row whose runs come from a world with oracle labels, seeds
    pooled like the table; also the noise types in display order. Runs without a world (real
    pools) or without subset.npy are left out."""
    worlds: dict[Path, OracleLabels] = {}
    result: list[OracleRow] = []
    noise_types: list[str] = []
    for row in rows:
        if row.published:
            continue
        scores: list[dict[str, float]] = []
        for run in row.runs:
            labels = _labels_for(run, worlds)
            if labels is None or not (run.path / "subset.npy").is_file():
                continue
            scores.append(labels.score(subset_uids(run.path / "subset.npy")))
            noise_types += [t for t in labels.noise_types if t not in noise_types]
        if scores:
            keys = sorted({k for s in scores for k in s})
            metrics = {k: Stat.of(s.get(k) for s in scores if not _isnan(s.get(k))) for k in keys}
            result.append(OracleRow(row.method, row.scale, len(scores), metrics))
    return result, noise_types


def _isnan(x: float | None) -> bool:
    return x is None or x != x


def _labels_for(run: RunResult, cache: dict[Path, OracleLabels]) -> OracleLabels | None:
    world = run.world
    if world is None or not (world / "oracle.parquet").is_file():
        return None
    key = world.resolve()
    if key not in cache:
        cache[key] = OracleLabels(world)
    return cache[key]


def oracle_table(orows: Sequence[OracleRow], noise_types: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the oracle table (mean ± std over seeds where several)."""
    header = ["Method", "Scale", "Selected", "Precision", "Clean recall",
              *(f"Removed: {t.replace('_', ' ')}" for t in noise_types)]
    body = []
    for r in orows:
        def cell(key: str, digits: int = 3, r: OracleRow = r) -> str:
            s = r.metrics.get(key)
            if s is None:
                return "–"
            return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}" if s.n > 1 else f"{s.mean:.{digits}f}"
        method = r.method + (f" (n={r.n})" if r.n > 1 else "")
        body.append([method, r.scale.capitalize(), cell("selected", 0), cell("precision"), cell("recall"),
                     *(cell(f"removed:{t}") for t in noise_types)])
    return header, body
