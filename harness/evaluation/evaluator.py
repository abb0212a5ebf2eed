"""``evaluate``: run a suite with one model load, one DataComp result line per finished task."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness import numerics
from harness.compat import resolve_compat
from harness.console import fmt_metric, progress
from harness.stages import atomic_write_text

from .aggregate import aggregate, read_results
from .encoders import load_encoder
from .loaders import DataError, SuiteStream
from .metrics import json_safe
from .runners import RunContext, missing_data, run_task, wds_job
from .suites import Suite, load_suite

log = logging.getLogger(__name__)

RESULTS_FILE = "eval_results.jsonl"
SUMMARY_FILE = "eval_summary.json"


class TaskDataError(DataError):
    """Tasks whose data is missing or unreadable, every one named (not only the first met)."""

    def __init__(self, suite: str, data_root: Path, failures: dict[str, str], hint: str):
        self.failures = dict(failures)
        listed = "; ".join(failures.values())
        super().__init__(f"suite {suite!r} under {data_root}: {len(failures)} task(s) cannot run: {listed}. {hint}")


class NothingEvaluatedError(DataError):
    """--partial with not one scored task evaluated: every aggregate would be null."""


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line and make it durable before the next task starts."""
    line = json.dumps(record, allow_nan=False) + "\n"
    path = Path(path)
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):  # a truncated line from an interrupted run: drop it
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    # allow_nan=False: a NaN metric is a bug to report, not a value to publish
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def result_line(task, metrics: dict, compat: str = "datacomp") -> dict:
    """DataComp's line: main_metric = metrics[task.main_metric] (None for unscored tasks), plus the
    compatibility mode that made it (an extra top-level field: DataComp's aggregate_scores.py reads
    the lines with pandas and keeps only ``dataset`` and ``metrics``)."""
    metrics = json_safe(dict(metrics))
    metrics["main_metric"] = metrics.get(task.main_metric) if task.main_metric else None
    return {"key": task.key, "dataset": task.name, "metrics": metrics, "compat": compat}


def _drop_other_modes(results_path: Path, done: dict[str, dict], compat: str) -> dict[str, dict]:
    """Keep the finished lines made in ``compat``; lines of the other mode (or of no recorded mode)
    are removed from the file, so their tasks rerun and the file never mixes modes."""
    stale = [k for k, rec in done.items() if rec.get("compat") != compat]
    if not stale:
        return done
    log.warning("%s: %d result line(s) were not made with --compat %s; re-evaluating %s",
                results_path, len(stale), compat, ", ".join(stale))
    keep = {k: rec for k, rec in done.items() if k not in stale}
    atomic_write_text(results_path, "".join(json.dumps(rec, allow_nan=False) + "\n" for rec in keep.values()))
    return keep


def evaluate(
    model_spec: Any,
    suite: str | Path | Suite,
    data_root: Path,
    out_dir: Path,
    device: str = "cpu",
    batch_size: int = 64,
    partial: bool = False,
    num_workers: int = 0,
    tasks: list[str] | None = None,
    compat: str | None = None,
) -> dict:
    """Evaluate ``model_spec`` on every task of ``suite`` not yet in ``out_dir/eval_results.jsonl``.

    The model is loaded once (and not at all when every task is already done). With
    ``partial=True`` a task whose data is missing is skipped and the summary is marked partial, but a
    run after which no task of the suite has a result is a :class:`NothingEvaluatedError`. Without it, tasks
    whose data folder is absent are a :class:`TaskDataError` naming every one, before the model is
    loaded; a task whose data turns out unreadable does not stop the others, and the error afterwards
    names all of them. Returns the summary (also written atomically to ``out_dir/eval_summary.json``):
    aggregates, tasks, partial, missing_tasks, suite, compat, plus timings. ``compat`` is ``"datacomp"``
    (default: DataComp's pinned evaluator as it computes) or ``"corrected"``; see harness/compat.py.
    """
    compat = resolve_compat(compat)
    suite = load_suite(suite)
    out_dir, data_root = Path(out_dir), Path(data_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    done = _drop_other_modes(results_path, read_results(results_path), compat)
    todo = [t for t in suite.tasks if t.key not in done and (tasks is None or t.key in tasks)]
    timings: dict[str, float] = {}
    # absent data folders are known before any work: all of them named at once, no model loaded
    failed: dict[str, str] = {t.key: why for t in todo if (why := missing_data(t, data_root)) is not None}
    if failed and not partial:
        raise TaskDataError(suite.name, data_root, failed, "Fetch them (harness download-eval), "
                            "or pass --partial to publish a partial row without them.")
    todo = [t for t in todo if t.key not in failed]
    t_load = 0.0
    if todo:
        # pinned kernels and threads on CPU: the same metrics on every machine (harness/numerics.py)
        with numerics.inference(device):
            t0 = time.perf_counter()
            encoder = load_encoder(model_spec, device=device)
            t_load = time.perf_counter() - t0
            stream, jobs = _suite_stream(todo, data_root, encoder, batch_size, num_workers)
            ctx = RunContext(encoder, batch_size=batch_size, num_workers=num_workers, stream=stream, jobs=jobs,
                             compat=compat)
            try:
                _run_tasks(todo, data_root, ctx, results_path, done, timings, failed, partial)
            finally:
                if stream is not None:
                    stream.close()
    if failed and not partial:
        raise TaskDataError(suite.name, data_root, failed, "The other tasks' results are kept; fix "
                            "these and run again, or pass --partial to publish a partial row without them.")
    if partial and not any(t.key in done for t in suite.tasks):
        why = "; ".join(list(failed.values())[:5]) + (f" (+{len(failed) - 5} more)" if len(failed) > 5 else "")
        raise NothingEvaluatedError(
            f"suite {suite.name!r} under {data_root}: no task was evaluated, so every aggregate would be "
            f"null ({why or 'no task selected'}); --partial publishes a row only when some task ran")
    summary = aggregate(done, suite, partial=partial)
    summary["compat"] = compat
    summary["eval_seconds"] = {"model_load": t_load, **timings}
    if failed:
        summary["errors"] = failed
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _suite_stream(todo, data_root: Path, encoder, batch_size: int, num_workers: int):
    """With worker processes: one decode pool for every webdataset task still to run, in run order."""
    if num_workers <= 0:
        return None, {}
    jobs: dict[str, int] = {}
    plan = []
    for task in todo:
        job = wds_job(task, data_root)
        if job is not None:
            jobs[task.key] = len(plan)
            plan.append(job)
    if not plan:
        return None, {}
    return SuiteStream(plan, encoder.preprocess, batch_size, num_workers), jobs


def _run_tasks(todo, data_root, ctx, results_path, done, timings, failed, partial) -> None:
    bar = progress(total=len(todo), desc="evaluate", unit="task")
    try:
        _run_each(todo, data_root, ctx, results_path, done, timings, failed, partial, bar)
    finally:
        bar.close()


def _run_each(todo, data_root, ctx, results_path, done, timings, failed, partial, bar) -> None:
    for task in todo:
        bar.set_postfix_str(task.key)
        t0 = time.perf_counter()
        try:
            metrics = run_task(task, data_root, ctx)
        except DataError as e:  # the others still run; evaluate() names every failure afterwards
            msg = str(e)
            failed[task.key] = msg if msg.startswith(f"task {task.key} ") else f"task {task.key} ({task.name}): {msg}"
            log.warning("%s %s: %s", "skipping" if partial else "failed:", task.key, e)
            bar.update(1)
            continue
        line = result_line(task, metrics, ctx.compat)
        append_line(results_path, line)
        done[task.key] = line
        timings[task.key] = time.perf_counter() - t0
        bar.update(1)
        # one line per task only with -v: the bar and the run's table say enough (38 tasks at DataComp scale)
        log.debug("%s: %s = %s (%.1f s)", task.name, task.main_metric, fmt_metric(line["metrics"]["main_metric"]),
                  timings[task.key])
