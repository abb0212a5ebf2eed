"""Aggregates exactly as DataComp's aggregate_scores.py, with groups read from the suite YAML.

ImageNet = the ImageNet task's main metric; "ImageNet dist. shifts", "VTAB", "Retrieval" =
unweighted means of their members' main metrics; Average = unweighted mean over every scored task.
DataComp refuses to aggregate unless every scored task has a main metric; so do we, naming the
missing ones, unless ``partial=True`` (then the summary says ``"partial": true``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.summary import AGGREGATES

from .suites import Suite


class MissingTasksError(RuntimeError):
    def __init__(self, suite: str, missing: list[tuple[str, str]]):
        self.missing = missing
        names = ", ".join(f"{name} ({key})" for key, name in missing)
        super().__init__(
            f"suite {suite!r}: {len(missing)} scored task(s) have no result, so no Average is published: "
            f"{names}. Evaluate them, or pass partial=True (--partial) to mark the row partial."
        )


def read_results(path: Path) -> dict[str, dict]:
    """key -> result line of a DataComp eval_results.jsonl (the last line of a key wins, as in DataComp)."""
    out: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            # an interrupted append leaves a truncated last line: ignore it (the task reruns)
            if n == len(lines):
                continue
            raise ValueError(f"{path}:{n}: not a JSON line ({e})") from e
        if "key" not in rec or "metrics" not in rec:
            raise ValueError(f"{path}:{n}: a result line needs 'key' and 'metrics'")
        out[rec["key"]] = rec
    return out


def _main(rec: dict | None) -> float | None:
    if rec is None:
        return None
    v = rec.get("metrics", {}).get("main_metric")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def _mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def aggregate(results: dict[str, dict], suite: Suite, partial: bool = False) -> dict[str, Any]:
    """The summary fields an evaluation owns: aggregates, tasks, partial, missing_tasks, suite."""
    mains = {t.key: _main(results.get(t.key)) for t in suite.tasks}
    missing = [(t.key, t.name) for t in suite.scored if mains[t.key] is None]
    if missing and not partial:
        raise MissingTasksError(suite.name, missing)
    aggregates: dict[str, float | None] = {}
    members = suite.group_members()
    for agg in AGGREGATES:  # a group's members, or (the Average) every scored task
        keys = members.get(agg.group, []) if agg.group is not None else [t.key for t in suite.scored]
        vals = [mains[k] for k in keys if mains[k] is not None]
        aggregates[agg.key] = _mean(vals) if vals else None
    tasks = {t.key: {"name": t.name, "main_metric": mains[t.key], "scored": t.scored} for t in suite.tasks
             if t.key in results}
    return {
        "aggregates": aggregates,
        "partial": bool(missing),
        "missing_tasks": [k for k, _ in missing],
        "tasks": tasks,
        "suite": suite.name,
    }


def aggregate_file(path: Path, suite: Suite, partial: bool = False) -> dict[str, Any]:
    return aggregate(read_results(path), suite, partial=partial)
