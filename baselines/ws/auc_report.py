"""Per-noise-type AUCs of any set of scores against the tiny world's oracle.

For each noise type T in <world>/oracle.parquet, AUC(T) is the probability that a clean sample
scores above a sample carrying T (ties count one half): 1.0 = the score puts every clean pair above
every T pair, 0.5 = chance, below 0.5 = it prefers the noise. "any noise" pools all noisy samples.
A sample with a NaN score (the scorer could not read it, so no filter would select it) ranks lowest.

    python -m harness.baselines.ws.auc_report --world WORLD \
        --pool-column clip_b32_similarity_score --pool-column clip_l14_similarity_score \
        --table dfn=runs/WORLD/scores/dfn-<hash>.parquet:combined

prints a markdown table (rows: noise types with their counts, columns: scores) that pastes into
BENCHMARKS.md. The oracle is for reporting only: no filter reads it.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["auc", "format_auc_table", "noise_aucs"]

CLEAN = "clean"
ANY = "any noise"


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > a random negative) + 0.5 P(tie); NaN scores rank lowest."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    both = np.concatenate([pos, neg])
    both = np.where(np.isnan(both), -np.inf, both)
    ranks = pd.Series(both).rank(method="average").to_numpy()  # mid-ranks handle ties
    r_pos = ranks[: pos.size].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def noise_aucs(oracle: pd.DataFrame, scores: Mapping[str, pd.Series | np.ndarray],
               uids: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
    """AUC of clean vs each noise type (rows) for each score (columns), plus a count column `n`.

    scores: name -> a Series indexed by uid, or an array aligned with `uids` (or with the oracle rows
    when `uids` is None). Only samples that have an oracle label and a score entry count.
    """
    if not {"uid", "noise"} <= set(oracle.columns):
        raise ValueError(f"oracle needs uid and noise columns, has {list(oracle.columns)}")
    labels = pd.Series(oracle["noise"].astype(str).to_numpy(), index=oracle["uid"].astype(str))
    if CLEAN not in set(labels):
        raise ValueError("oracle has no clean samples; AUC against clean is undefined")
    types = sorted(t for t in labels.unique() if t != CLEAN)
    columns: dict[str, pd.Series] = {}
    for name, s in scores.items():
        if isinstance(s, pd.Series):
            series = pd.Series(s.to_numpy(np.float64), index=s.index.astype(str))
        else:
            index = labels.index if uids is None else pd.Index(np.asarray(uids).astype(str))
            arr = np.asarray(s, dtype=np.float64)
            if arr.shape != (len(index),):
                raise ValueError(f"score {name!r} has {arr.shape} values for {len(index)} uids")
            series = pd.Series(arr, index=index)
        columns[name] = series
    rows = []
    for t in [*types, ANY]:
        row: dict[str, float | int | str] = {"noise": t}
        neg_mask = (labels != CLEAN) if t == ANY else (labels == t)
        row["n"] = int(neg_mask.sum())
        for name, series in columns.items():
            common = labels.index.intersection(series.index)
            lab = labels.loc[common]
            val = series.loc[common].to_numpy()
            is_neg = (lab != CLEAN).to_numpy() if t == ANY else (lab == t).to_numpy()
            row[name] = auc(val[(lab == CLEAN).to_numpy()], val[is_neg])
        rows.append(row)
    return pd.DataFrame(rows).set_index("noise")


def format_auc_table(table: pd.DataFrame, n_clean: int | None = None) -> str:
    """Markdown: one row per noise type, one column per score, AUCs to 3 decimals."""
    head = ["noise (vs clean)", "n", *[c for c in table.columns if c != "n"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for noise, row in table.iterrows():
        vals = ["nan" if pd.isna(row[c]) else f"{row[c]:.3f}" for c in head[2:]]
        lines.append(f"| {noise} | {int(row['n'])} | " + " | ".join(vals) + " |")
    if n_clean is not None:
        lines.append(f"\nclean samples: {n_clean}; AUC = P(clean scores above noisy), 0.5 = chance")
    return "\n".join(lines)


def _combined_from_record(path: str) -> np.ndarray | None:
    """The combined score of a table written by harness.scoring, rebuilt from the filter and settings
    its record names; None for other tables."""
    from harness.plugins import Scorer, get_filter, load_plugins
    from harness.scoring import combine_terms, read_score_table

    table = read_score_table(path)
    record = table.attrs.get("record") or {}
    if "scorer" not in record:
        return None
    load_plugins([])
    cls = get_filter(record["scorer"])
    accepted = inspect.signature(cls.__init__).parameters  # settings may hold more than the options
    filt = cls(**{k: v for k, v in record.get("settings", {}).items() if k in accepted})
    if not isinstance(filt, Scorer):
        return None
    return combine_terms(filt, table[list(record["terms"])])


def _load_table_arg(arg: str) -> tuple[str, pd.Series]:
    name, sep, rest = arg.partition("=")
    if not sep:
        raise SystemExit(f"--table expects NAME=PATH[:COLUMN], got {arg!r}")
    path, column = rest, ""
    if not Path(rest).exists() and ":" in rest:
        path, column = rest.rsplit(":", 1)
    df = pd.read_parquet(path)
    if "uid" not in df.columns:
        raise SystemExit(f"{path}: no uid column")
    if not column:
        combined = _combined_from_record(path)
        if combined is not None:  # a harness score table: its filter's own combine() over the pool
            return name, pd.Series(combined, index=df["uid"].astype(str))
        from harness.baselines.ws.labeling_functions import combined_column

        column = combined_column(df, name)
    if column not in df.columns:
        raise SystemExit(f"{path}: no column {column!r} (has {', '.join(map(str, df.columns))})")
    return name, pd.Series(df[column].to_numpy(np.float64), index=df["uid"].astype(str))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.baselines.ws.auc_report", description=__doc__.split("\n")[0])
    p.add_argument("--world", type=Path, required=True, help="a tiny world (reads oracle.parquet, pool/metadata)")
    p.add_argument("--pool-column", action="append", default=[], help="a pool metadata column to score by")
    p.add_argument("--table", action="append", default=[], metavar="NAME=PATH[:COLUMN]",
                   help="a score table parquet (uid + columns); default column: the combined score")
    args = p.parse_args(argv)
    oracle = pd.read_parquet(args.world / "oracle.parquet")
    scores: dict[str, pd.Series] = {}
    if args.pool_column:
        files = sorted((args.world / "pool" / "metadata").glob("*.parquet"))
        meta = pd.concat([pd.read_parquet(f, columns=["uid", *args.pool_column]) for f in files])
        for col in args.pool_column:
            scores[col] = pd.Series(meta[col].to_numpy(np.float64), index=meta["uid"].astype(str))
    for arg in args.table:
        name, series = _load_table_arg(arg)
        scores[name] = series
    if not scores:
        p.error("give at least one --pool-column or --table")
    table = noise_aucs(oracle, scores)
    print(format_auc_table(table, int((oracle["noise"] == CLEAN).sum())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
