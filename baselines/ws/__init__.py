"""Weak supervision for data filtering (the `ws` filter, after Huang et al. 2024).

label_model.py         LabelModel: one-coin Dawid-Skene fitted by EM, votes -> P(good)
labeling_functions.py  the labeling functions (other filters as good/bad/abstain votes)
analysis.py            lf_table: coverage, overlaps, conflicts, learned accuracy per function
auc_report.py          per-noise-type AUCs of any scores against the tiny world's oracle
"""

from harness.baselines.ws.label_model import LabelModel, majority_vote

__all__ = ["LabelModel", "majority_vote"]
