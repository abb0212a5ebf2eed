"""The run-wide compatibility mode: DataComp's pinned pipeline as it computed, or corrected.

``datacomp`` (the default) reproduces what DataComp's scripts compute in their pinned environment
(mlfoundations/datacomp ``environment.yml``: numpy 1.23, pandas 1.5, clip-benchmark 1.4.0, wilds
2.0.0), including behaviours that differ from what the code means to do; ``corrected`` computes what
was meant. One setting for the whole flow (``--compat`` on select, evaluate, run and compare),
recorded in ``subset.json``, every result line, ``summary.json`` and the report's tables.

Selection (harness.expressions, harness.selection):

- explicit thresholds on a metadata score (``clip_b32>=0.35``): DataComp compares the float32 column
  with the threshold cast to float32 (pandas ``df[key] >= threshold``, baselines/apply_filter.py);
  ``corrected`` compares in float64.

Evaluation (harness.evaluation):

- FMoW ``acc_worst_region``: DataComp's ``FMoWEvaluator.eval`` (eval_utils/wilds_eval.py, lines
  206-226) skips a region when ``"Other" in group_str``, but its ``CombinatorialGrouper`` is built
  without a metadata map, so the group string is ``"region:5"`` and the Other region (WILDS' region
  index 5) is counted. ``datacomp``: counted; ``corrected``: skipped.
- Blank lines in ``classnames.txt`` / ``zeroshot_classification_templates.txt``: clip-benchmark 1.4.0
  (clip_benchmark/datasets/builder.py, ``build_wds_dataset``, lines 630 and 637 at tag v1.4.0) drops
  them; CLIP_benchmark commit 832e17d (issue #111, released in 1.6.0) keeps them, because CLEVR
  Distance's classnames hold an intentional blank class (index 3). Dropping it shifts every later
  class name one label down, so DataComp scored CLEVR Distance with misaligned prompts.
  ``datacomp``: dropped; ``corrected``: kept.

"""

from __future__ import annotations

COMPAT_MODES: tuple[str, ...] = ("datacomp", "corrected")
DEFAULT_COMPAT = "datacomp"


def check_compat(compat: str) -> str:
    """``compat`` itself when it names a mode, else a ValueError naming the choices."""
    if compat not in COMPAT_MODES:
        raise ValueError(f"unknown compat mode {compat!r}; choose one of {', '.join(COMPAT_MODES)}")
    return compat


def resolve_compat(compat: str | None) -> str:
    """The mode to use: ``compat`` checked, or the default (``datacomp``) when None."""
    return DEFAULT_COMPAT if compat is None else check_compat(compat)
