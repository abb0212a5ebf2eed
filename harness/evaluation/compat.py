"""The evaluation's compatibility mode: DataComp's pinned pipeline as it computes, or corrected.

``datacomp`` (the default) reproduces what DataComp's evaluator computes in its pinned environment
(mlfoundations/datacomp ``environment.yml``: clip-benchmark 1.4.0, wilds 2.0.0), including two
behaviours that differ from what the code means to do; ``corrected`` computes what was meant:

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

The mode is recorded in every result line (``"compat"``) and in ``eval_summary.json``.
"""

from __future__ import annotations

COMPAT_MODES: tuple[str, ...] = ("datacomp", "corrected")
DEFAULT_COMPAT = "datacomp"


def resolve_compat(compat: str | None) -> str:
    """The mode to use: ``compat`` checked, or the default (``datacomp``) when None."""
    if compat is None:
        return DEFAULT_COMPAT
    if compat not in COMPAT_MODES:
        raise ValueError(f"unknown compat mode {compat!r}; choose one of {', '.join(COMPAT_MODES)}")
    return compat
