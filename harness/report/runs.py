"""Reading run directories for the report: summary.json, per-task results, the subset and its world.

A run directory is what `harness run` leaves in runs/<pool>/<scale>/<filter-slug>/seed<k>/ (see
docs/architecture.md). The report needs only the summary, the per-task lines and, for the oracle
plot on the tiny world, the subset file; everything else is ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

# The summary's aggregate keys, in the seed table's column order, with the table's headers.
AGGREGATES: tuple[tuple[str, str], ...] = (
    ("ImageNet", "ImageNet"),
    ("ImageNet dist. shifts", "ImageNet Dist. Shift"),
    ("VTAB", "VTAB"),
    ("Retrieval", "Retrieval"),
    ("Average", "Average"),
)


class ReportError(UsageError):
    """Bad input to the report (a missing or malformed file); the message names the file at fault."""


@dataclass
class RunResult:
    """One seed of one filter at one scale, as read from its run directory."""

    path: Path
    filter: str
    scale: str
    seed: int | None
    pool: str
    samples: int | None
    unique_samples: int | None
    uniform: bool | None
    aggregates: dict[str, float | None]  # keyed by the summary's aggregate names
    partial: bool
    missing_tasks: list[str]
    tasks: dict[str, tuple[str, float]]  # key -> (display name, main metric)
    provenance: dict[str, Any] = field(default_factory=dict)
    suite: str | None = None          # the evaluation suite the summary names (tiny, datacomp, a YAML path)
    compat: str | None = None         # the evaluation's compatibility mode; None: not recorded (older runs)
    label: str | None = None          # shown as the method name as written (runs evaluated elsewhere)

    @property
    def world(self) -> Path | None:
        """The tiny world this run's pool came from, when the run recorded one that still exists."""
        raw = self.provenance.get("world")
        if not raw:
            return None
        candidates = [Path(raw)] if Path(raw).is_absolute() else [Path.cwd() / raw, self.path / raw]
        return next((c for c in candidates if c.is_dir()), None)


def discover_runs(paths: list[Path]) -> list[Path]:
    """Run directories named by `paths`: a directory holding summary.json is a run; any other
    directory is searched below for runs (so `harness report runs/` works). Order is kept, then
    sorted within a searched directory; duplicates are dropped."""
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ReportError(f"{p}: no such run directory")
        if p.is_file():
            p = p.parent if p.name == "summary.json" else p
        if (p / "summary.json").is_file():
            hits = [p]
        else:
            hits = sorted(s.parent for s in p.rglob("summary.json"))
            if not hits:
                raise ReportError(f"{p}: no summary.json in or below it (evaluate the run first)")
        for h in hits:
            key = h.resolve()
            if key not in seen:
                seen.add(key)
                found.append(h)
    return found


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where}: expected a number or null, got {value!r}")
    value = float(value)
    return None if math.isnan(value) else value


def read_eval_results(path: Path) -> dict[str, tuple[str, float]]:
    """Per-task main metrics from DataComp's eval_results.jsonl; a later line for a key wins
    (an evaluation that resumed may append a task twice). Unreadable lines are an error."""
    tasks: dict[str, tuple[str, float]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key = rec["key"]
            metric = rec["metrics"]["main_metric"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ReportError(f"{path}:{lineno}: not a DataComp result line ({exc})") from exc
        value = _number(metric, f"{path}:{lineno} main_metric")
        if value is not None:  # FairFace/UTKFace report no main metric
            tasks[key] = (str(rec.get("dataset") or key), value)
    return tasks


def load_run(path: Path) -> RunResult:
    """Read one run directory; a missing or malformed summary is a ReportError naming the file."""
    path = Path(path)
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"{summary_path}: missing (evaluate the run first)") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{summary_path}: not valid JSON ({exc})") from exc
    return run_from_summary(summary, path, str(summary_path))


def run_from_summary(summary: Any, path: Path, where: str = "summary") -> RunResult:
    """A RunResult from a summary.json object (see "Summary contract" in docs/architecture.md).
    Per-task results come from the summary, else from path/eval_results.jsonl."""
    if not isinstance(summary, dict):
        raise ReportError(f"{where}: expected a JSON object")
    for name in ("filter", "scale", "aggregates"):
        if name not in summary:
            raise ReportError(f"{where}: missing field {name!r}")
    raw_aggs = summary["aggregates"]
    if not isinstance(raw_aggs, dict):
        raise ReportError(f"{where}: 'aggregates' must be an object")
    aggregates = {k: _number(raw_aggs.get(k), f"{where} aggregates[{k!r}]") for k, _ in AGGREGATES}

    tasks: dict[str, tuple[str, float]] = {}
    raw_tasks = summary.get("tasks")
    if isinstance(raw_tasks, dict) and raw_tasks:
        for key, rec in raw_tasks.items():
            if not isinstance(rec, dict):
                raise ReportError(f"{where}: tasks[{key!r}] must be an object")
            value = _number(rec.get("main_metric"), f"{where} tasks[{key!r}].main_metric")
            if value is not None:  # unscored tasks (FairFace, UTKFace) have no main metric
                tasks[key] = (str(rec.get("name") or key), value)
    elif (path / "eval_results.jsonl").is_file():
        tasks = read_eval_results(path / "eval_results.jsonl")

    samples = summary.get("samples")
    unique = summary.get("unique_samples")
    uniform = summary.get("uniform")
    if uniform is None and samples is not None and unique is not None:
        uniform = samples == unique  # no repeated uid = no upsampling
    seed = summary.get("seed")
    return RunResult(
        path=path,
        filter=str(summary["filter"]),
        scale=str(summary["scale"]),
        seed=int(seed) if seed is not None else None,
        pool=str(summary.get("pool") or ""),
        samples=int(samples) if samples is not None else None,
        unique_samples=int(unique) if unique is not None else None,
        uniform=bool(uniform) if uniform is not None else None,
        aggregates=aggregates,
        partial=bool(summary.get("partial", False)),
        missing_tasks=[str(t) for t in summary.get("missing_tasks") or []],
        tasks=tasks,
        provenance=dict(summary.get("provenance") or {}),
        suite=str(summary["suite"]) if summary.get("suite") is not None else None,
        compat=str(summary["compat"]) if summary.get("compat") else None,
    )
