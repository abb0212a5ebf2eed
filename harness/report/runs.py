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
from harness.summary import Summary, SummaryError


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
    try:
        summary = Summary.read(path / "summary.json")
    except SummaryError as exc:
        raise ReportError(str(exc)) from exc
    return run_from(summary, path)


def run_from_summary(summary: Any, path: Path, where: str = "summary") -> RunResult:
    """A RunResult from a summary.json object (harness.summary.Summary validates it; ``where`` names it
    in errors). Per-task results come from the summary, else from path/eval_results.jsonl."""
    try:
        parsed = Summary.from_json(summary, where)
    except SummaryError as exc:
        raise ReportError(str(exc)) from exc
    return run_from(parsed, path)


def run_from(summary: Summary, path: Path) -> RunResult:
    """The report's view of one run's summary (``path``: its run directory)."""
    if summary.tasks:
        tasks = {key: (t.name, t.main_metric) for key, t in summary.tasks.items()
                 if t.main_metric is not None}  # unscored tasks (FairFace, UTKFace) have no main metric
    elif (path / "eval_results.jsonl").is_file():
        tasks = read_eval_results(path / "eval_results.jsonl")
    else:
        tasks = {}
    samples, unique, uniform = summary.samples, summary.unique_samples, summary.uniform
    if uniform is None and samples is not None and unique is not None:
        uniform = samples == unique  # no repeated uid = no upsampling
    return RunResult(
        path=path,
        filter=summary.filter,
        scale=summary.scale,
        seed=summary.seed,
        pool=summary.pool or "",
        samples=samples,
        unique_samples=unique,
        uniform=uniform,
        aggregates=dict(summary.aggregates),
        partial=summary.partial,
        missing_tasks=list(summary.missing_tasks),
        tasks=tasks,
        provenance=dict(summary.provenance),
        suite=summary.suite,
        compat=summary.compat,
    )
