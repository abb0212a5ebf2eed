"""What the labeling functions did: coverage, overlaps, conflicts and learned accuracy per function.

Definitions (those of Snorkel's LFAnalysis), over n items:
  votes_good / votes_bad  how many +1 / -1 votes the function cast
  coverage     fraction of items the function votes on
  overlaps     fraction of items it votes on where at least one other function also votes
  conflicts    fraction of items it votes on where another function votes the opposite way
  learned_accuracy  the label model's a_j = P(vote is right | it votes)
  empirical_accuracy  (only with gold labels) fraction of its votes that match the gold label
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.baselines.ws.label_model import LabelModel, check_votes

__all__ = ["analysis_for_pool", "format_lf_table", "lf_table"]


def lf_table(votes: np.ndarray, names: Sequence[str], label_model: LabelModel | None = None,
             gold: np.ndarray | None = None) -> pd.DataFrame:
    """One row per labeling function; `gold` (+1 good / -1 bad per item) adds empirical accuracy."""
    L = check_votes(votes, list(names))
    n, m = L.shape
    voted = L != 0
    n_voting = voted.sum(axis=1)
    n_pos, n_neg = (L == 1).sum(axis=1), (L == -1).sum(axis=1)
    denom = max(n, 1)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        vj = voted[:, j]
        others = n_voting - vj  # other functions voting on the item
        # another function voting the opposite way of function j
        opposite = np.where(L[:, j] == 1, n_neg, np.where(L[:, j] == -1, n_pos, 0))
        row: dict[str, Any] = {
            "lf": name,
            "votes_good": int((L[:, j] == 1).sum()),
            "votes_bad": int((L[:, j] == -1).sum()),
            "coverage": vj.sum() / denom,
            "overlaps": (vj & (others > 0)).sum() / denom,
            "conflicts": (vj & (opposite > 0)).sum() / denom,
        }
        if label_model is not None:
            if label_model.accuracies_ is None or len(label_model.accuracies_) != m:
                raise ValueError("label_model must be fitted on a vote matrix with the same functions")
            row["learned_accuracy"] = float(label_model.accuracies_[j])
        if gold is not None:
            g = np.asarray(gold)
            if g.shape != (n,):
                raise ValueError(f"gold labels have shape {g.shape}, expected ({n},)")
            row["empirical_accuracy"] = float((L[vj, j] == g[vj]).mean()) if vj.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def format_lf_table(table: pd.DataFrame, label_model: LabelModel | None = None) -> str:
    """A fixed-width text table (markdown pipe syntax, so it pastes into docs as is)."""
    cols = list(table.columns)
    cells = [[_fmt(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells:
        lines.append("| " + " | ".join(v.rjust(w) if i else v.ljust(w)
                                         for i, (v, w) in enumerate(zip(r, widths, strict=True))) + " |")
    if label_model is not None and label_model.class_balance_ is not None:
        lines.append("")
        grouped = [g for g in (label_model.groups or []) if len(g) > 1]
        lines.append(f"label model: {label_model.model}"
                     + (f" with dependent groups {grouped}" if grouped else "")
                     + f", EM {label_model.n_iter_} iterations"
                     f"{'' if label_model.converged_ else ' (not converged)'}, "
                     f"learned P(good) = {label_model.class_balance_:.3f}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def analysis_for_pool(ctx: Any, cache_dir: str | Path | None) -> str:
    """`harness ws-analysis`: score the pool with `ws` (cached) and tabulate its labeling functions."""
    from harness.plugins import get_filter
    from harness.scoring import score

    options = dict((getattr(ctx, "options", None) or {}).get("ws", {}))
    plugin = get_filter("ws")(**options)
    table = score(ctx.pool, "ws", ctx, cache_dir)
    votes, names, model = plugin.fit_table(table)
    return format_lf_table(lf_table(votes, names, model), model)
