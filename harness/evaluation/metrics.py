"""Metrics of the DataComp suite, as pure functions on arrays.

Each follows the code DataComp scores with (clip_benchmark for classification and retrieval,
WILDS' metric classes for the WILDS and fairness tasks, DataComp's own WinoGAViL loop); the
docstrings say where a choice (ties, empty groups, key names) comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, jaccard_score, recall_score

# ---------------------------------------------------------------- zero-shot classification


def class_weights(text_features: np.ndarray) -> np.ndarray:
    """[C, T, D] L2-normalised template embeddings -> [D, C] classifier.

    clip_benchmark's zero_shot_classifier: mean of the normalised template embeddings, renormalised.
    """
    feats = torch.from_numpy(np.ascontiguousarray(text_features, dtype=np.float32))
    mean = feats.mean(dim=1)
    mean = mean / mean.norm(dim=-1, keepdim=True)
    return mean.t().contiguous().numpy()


def zeroshot_logits(image_features: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """logits = 100 * image_features @ class_weights, in float32 (image side in fp32 as DataComp)."""
    return 100.0 * torch.from_numpy(np.asarray(image_features, np.float32)) @ torch.from_numpy(weights)


def topk_predictions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k class indices, sorted, with torch.topk's tie order (what clip_benchmark's accuracy uses)."""
    return logits.topk(min(k, logits.shape[1]), dim=1, largest=True, sorted=True)[1]


def topk_accuracy(topk: np.ndarray | torch.Tensor, target: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the first k columns of ``topk``.

    Same counting as clip_benchmark.metrics.zeroshot_classification.accuracy (sum of hits / n),
    without its float(array) call that numpy >= 2.4 rejects.
    """
    topk = torch.as_tensor(np.asarray(topk))
    target = torch.as_tensor(np.asarray(target)).long()
    hits = (topk[:, :k] == target.view(-1, 1)).any(dim=1)
    return float(hits.float().sum().item()) / len(target)


def classification_metrics(topk: np.ndarray, target: np.ndarray, n_classes: int) -> dict[str, float | None]:
    """acc1, acc5 (None under 5 classes, as DataComp writes it) and mean per-class recall.

    ``topk``: [N, min(5, C)] sorted top class indices; its first column is the argmax.
    mean_per_class_recall = sklearn's balanced accuracy of (target, argmax), as clip_benchmark.
    """
    target = np.asarray(target, dtype=np.int64)
    acc1 = topk_accuracy(topk, target, 1)
    acc5 = topk_accuracy(topk, target, 5) if n_classes >= 5 else None
    mpcr = float(balanced_accuracy_score(target, np.asarray(topk)[:, 0]))
    return {"acc1": acc1, "acc5": acc5, "mean_per_class_recall": mpcr}


# ---------------------------------------------------------------- retrieval


def retrieval_metrics(
    image_features: np.ndarray, text_features: np.ndarray, text_image_index: Sequence[int],
    recall_k: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """clip_benchmark's zeroshot_retrieval: a query is a hit when any positive is in its top k.

    ``image_retrieval_recall@k``: text queries ranking images; ``text_retrieval_recall@k``: image
    queries ranking texts. DataComp adds mean_recall@1 = mean of the two recall@1. A k larger than
    the number of candidates is clamped (clip_benchmark would raise).
    """
    img = torch.from_numpy(np.asarray(image_features, np.float32))
    txt = torch.from_numpy(np.asarray(text_features, np.float32))
    scores = txt @ img.t()  # [n_texts, n_images]
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), torch.as_tensor(list(text_image_index))] = True
    out: dict[str, float] = {}
    for k in recall_k:
        out[f"image_retrieval_recall@{k}"] = _any_hit_at_k(scores, positive, k)
        out[f"text_retrieval_recall@{k}"] = _any_hit_at_k(scores.t(), positive.t(), k)
    if 1 in recall_k:
        out["mean_recall@1"] = 0.5 * (out["text_retrieval_recall@1"] + out["image_retrieval_recall@1"])
    return out


def _any_hit_at_k(scores: torch.Tensor, positive: torch.Tensor, k: int) -> float:
    idx = scores.topk(min(k, scores.shape[1]), dim=1)[1]
    hit = positive.gather(1, idx).any(dim=1)
    return hit.float().mean().item()


# ---------------------------------------------------------------- WinoGAViL


def winogavil_prompt(cue: str) -> str:
    """DataComp's prompt: lower-cased cue after "A " or "An " (first letter a vowel)."""
    cue = cue.lower()
    return f"An {cue}" if cue[:1] in ("a", "e", "i", "o", "u") else f"A {cue}"


def winogavil_instance(similarities: np.ndarray, y_true: np.ndarray) -> float:
    """Jaccard of the top-n candidates (n = number of true associations) with the true set.

    Ranking by numpy argsort of the cosine similarities, as DataComp's wino_eval.
    """
    y_true = np.asarray(y_true, dtype=bool)
    n_assoc = int(y_true.sum())
    top = np.argsort(similarities)[-n_assoc:]
    y_pred = np.isin(np.arange(len(similarities)), top)
    return float(jaccard_score(y_true, y_pred))


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def winogavil_metrics(scores: Sequence[float], n_candidates: Sequence[int]) -> dict[str, float | None]:
    """Mean Jaccard overall and by candidate count, DataComp's keys; main: jaccard_score_10-12.

    A bucket with no instances is None (DataComp writes NaN, which is not valid JSON).
    """
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(n_candidates)
    return {
        "avg_jaccard_score": _mean_or_none(s),
        "jaccard_score_5": _mean_or_none(s[g == 5]),
        "jaccard_score_6": _mean_or_none(s[g == 6]),
        "jaccard_score_10": _mean_or_none(s[g == 10]),
        "jaccard_score_12": _mean_or_none(s[g == 12]),
        "jaccard_score_5-6": _mean_or_none(s[g <= 6]),
        "jaccard_score_10-12": _mean_or_none(s[g >= 10]),
    }


# ---------------------------------------------------------------- WILDS-style group metrics


def group_ids(metadata: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """WILDS' CombinatorialGrouper: each field's cardinality is max + 1 over the data; the group id
    mixes fields with the first (lowest column) varying fastest. Returns ids and cardinalities."""
    cols = sorted(columns)
    vals = np.asarray(metadata)[:, cols].astype(np.int64)
    if vals.size and vals.min() < 0:
        raise ValueError(f"group metadata cannot be negative (columns {cols})")
    card = [int(vals[:, i].max()) + 1 if len(vals) else 1 for i in range(len(cols))]
    factors = np.concatenate([[1], np.cumprod(card)[:-1]]).astype(np.int64)
    return vals @ factors, card


def group_label(group: int, fields: Sequence[str], card: Sequence[int]) -> str:
    """WILDS' group_field_str without a metadata map: "f2:v2_f1:v1" (last field first)."""
    parts, rest = [], group
    vals = []
    for c in card:
        vals.append(rest % c)
        rest //= c
    for f, v in reversed(list(zip(fields, vals, strict=True))):
        parts.append(f"{f}:{v}")
    return "_".join(parts)


def group_eval(
    name: str, correct: np.ndarray, metadata: np.ndarray, fields: Sequence[str], all_fields: Sequence[str]
) -> dict[str, float]:
    """WILDS' standard_group_eval for an element-wise metric (accuracy-like).

    ``{name}_avg``, ``{name}_{group}``, ``count_{group}`` for every group (empty ones 0.0) and
    ``{name}_wg`` = the minimum over non-empty groups.
    """
    correct = np.asarray(correct, dtype=np.float64)
    cols = [list(all_fields).index(f) for f in fields]
    order = sorted(range(len(cols)), key=lambda i: cols[i])
    sorted_fields = [fields[i] for i in order]
    g, card = group_ids(metadata, cols)
    n_groups = int(np.prod(card))
    counts = np.bincount(g, minlength=n_groups)
    sums = np.bincount(g, weights=correct, minlength=n_groups)
    out: dict[str, float] = {f"{name}_avg": float(correct.mean()) if len(correct) else 0.0}
    per_group = np.zeros(n_groups)
    for i in range(n_groups):
        label = group_label(i, sorted_fields, card)
        per_group[i] = sums[i] / counts[i] if counts[i] else 0.0
        out[f"{name}_{label}"] = float(per_group[i])
        out[f"count_{label}"] = float(counts[i])
    nonempty = per_group[counts > 0]
    out[f"{name}_wg"] = float(nonempty.min()) if len(nonempty) else 0.0
    return out


def iwildcam_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """WILDS' iWildCam metrics: accuracy, macro recall and macro F1 over the labels present in y_true."""
    pred, target = np.asarray(pred), np.asarray(target)
    labels = np.unique(target)
    return {
        "acc_avg": float((pred == target).mean()),
        "recall-macro_all": float(recall_score(target, pred, average="macro", labels=labels, zero_division=0)),
        "F1-macro_all": float(f1_score(target, pred, average="macro", labels=labels, zero_division=0)),
    }


CAMELYON_FIELDS = ("hospital", "slide", "y")
IWILDCAM_FIELDS = ("location", "sequence", "year", "month", "day", "hour", "minute", "second", "y")
FMOW_FIELDS = ("region", "year", "y")
# WILDS' FMoW region map (fmow_dataset.py metadata_map["region"]); index 5 is "Other".
FMOW_REGIONS = ("Asia", "Europe", "Africa", "Americas", "Oceania", "Other")
DOLLAR_STREET_FIELDS = ("income_ds", "income_meta", "region")
GEODE_FIELDS = ("region", "country")
FAIRFACE_FIELDS = ("age", "gender", "race", "race_binary")
FAIRFACE_HEADS = ("race", "gender", "age", "toxic")


def camelyon17_metrics(pred: np.ndarray, target: np.ndarray, metadata: np.ndarray) -> dict[str, float]:
    return group_eval("acc", np.asarray(pred) == np.asarray(target), metadata, ["slide"], CAMELYON_FIELDS)


def fmow_metrics(pred: np.ndarray, target: np.ndarray, metadata: np.ndarray,
                 compat: str = "datacomp") -> dict[str, float]:
    """Accuracy by year (worst year) and by region; acc_worst_region = the worst non-empty region.

    Which regions count depends on ``compat`` (see compat.py). DataComp's FMoWEvaluator
    (mlfoundations/datacomp eval_utils/wilds_eval.py lines 206-226) skips a region when ``"Other" in
    group_str``, but its grouper has no metadata map, so the string is "region:5" and the Other region
    counts: ``datacomp`` reproduces that. ``corrected`` maps the index through WILDS' region list and
    skips "Other", as the code means to. Every per-region accuracy and count is reported either way.
    """
    correct = np.asarray(pred) == np.asarray(target)
    out = group_eval("acc", correct, metadata, ["year"], FMOW_FIELDS)
    out["acc_worst_year"] = out.pop("acc_wg")
    region = group_eval("acc", correct, metadata, ["region"], FMOW_FIELDS)
    worst = []
    region_col = np.asarray(metadata)[:, 0].astype(np.int64)
    n_regions = int(region_col.max()) + 1 if len(region_col) else 0
    for r in range(n_regions):
        acc, count = region[f"acc_region:{r}"], region[f"count_region:{r}"]
        out[f"acc_region:{r}"], out[f"count_region:{r}"] = acc, count
        name = FMOW_REGIONS[r] if r < len(FMOW_REGIONS) else str(r)
        if count == 0 or (compat == "corrected" and name == "Other"):
            continue
        worst.append(acc)
    out["acc_worst_region"] = float(min(worst)) if worst else 0.0
    return out


def dollar_street_metrics(top5: np.ndarray, target: np.ndarray, metadata: np.ndarray) -> dict[str, float]:
    """Top-5 accuracy grouped by income bucket (income_ds); main metric acc_top5_wg."""
    hit = (np.asarray(top5)[:, :5] == np.asarray(target).reshape(-1, 1)).any(axis=1)
    return group_eval("acc_top5", hit, metadata, ["income_ds"], DOLLAR_STREET_FIELDS)


def geode_metrics(pred: np.ndarray, target: np.ndarray, metadata: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy grouped by region; main metric acc_wg."""
    return group_eval("acc", np.asarray(pred) == np.asarray(target), metadata, ["region"], GEODE_FIELDS)


def fairface_metrics(head_preds: dict[str, np.ndarray], metadata: np.ndarray) -> dict[str, float]:
    """DataComp's FairFace/UTKFace bias tables (reported, not scored).

    race: predicted "non-white" (class index != 1) against race_binary, by race_binary; gender and
    age accuracy by race_binary; gender accuracy by race x gender; toxic head: share of faces given a
    crime-related class (index >= 18) and a non-human class (14..17), by race.
    """
    md = np.asarray(metadata)
    col = {f: i for i, f in enumerate(FAIRFACE_FIELDS)}
    out: dict[str, float] = {}
    race_nonwhite = (np.asarray(head_preds["race"]) != 1).astype(np.int64)
    out.update(group_eval("acc_race", race_nonwhite == md[:, col["race_binary"]], md, ["race_binary"], FAIRFACE_FIELDS))
    for label in ("gender", "age"):
        ok = np.asarray(head_preds[label]) == md[:, col[label]]
        out.update(group_eval(f"acc_{label}", ok, md, ["race_binary"], FAIRFACE_FIELDS))
    ok = np.asarray(head_preds["gender"]) == md[:, col["gender"]]
    out.update(group_eval("acc_gender_x", ok, md, ["gender", "race"], FAIRFACE_FIELDS))
    toxic = np.asarray(head_preds["toxic"])
    out.update(group_eval("toxicity_crime", toxic >= 18, md, ["race"], FAIRFACE_FIELDS))
    out.update(group_eval("toxicity_nonhuman", (toxic >= 14) & (toxic < 18), md, ["race"], FAIRFACE_FIELDS))
    return out


def json_safe(metrics: dict) -> dict:
    """NaN/inf -> None so result lines stay valid JSON (DataComp reads them with pandas)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
