"""``evaluate``: run a suite with one model load, one DataComp result line per finished task."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.console import fmt_metric, progress
from harness.stages import atomic_write_text

from .aggregate import aggregate, read_results
from .encoders import load_encoder
from .loaders import DataError, SuiteStream
from .metrics import json_safe
from .runners import RunContext, run_task, wds_job
from .suites import Suite, load_suite

log = logging.getLogger(__name__)

RESULTS_FILE = "eval_results.jsonl"
SUMMARY_FILE = "eval_summary.json"


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


def result_line(task, metrics: dict) -> dict:
    """DataComp's line: main_metric = metrics[task.main_metric] (None for unscored tasks)."""
    metrics = json_safe(dict(metrics))
    metrics["main_metric"] = metrics.get(task.main_metric) if task.main_metric else None
    return {"key": task.key, "dataset": task.name, "metrics": metrics}


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
) -> dict:
    """Evaluate ``model_spec`` on every task of ``suite`` not yet in ``out_dir/eval_results.jsonl``.

    The model is loaded once (and not at all when every task is already done). With
    ``partial=True`` a task whose data is missing is skipped and the summary is marked partial;
    otherwise a missing task raises, naming it. Returns the summary (also written atomically to
    ``out_dir/eval_summary.json``): aggregates, tasks, partial, missing_tasks, suite, plus timings.
    """
    suite = load_suite(suite)
    out_dir, data_root = Path(out_dir), Path(data_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    done = read_results(results_path)
    todo = [t for t in suite.tasks if t.key not in done and (tasks is None or t.key in tasks)]
    timings: dict[str, float] = {}
    failed: dict[str, str] = {}
    t_load = 0.0
    if todo:
        t0 = time.perf_counter()
        encoder = load_encoder(model_spec, device=device)
        t_load = time.perf_counter() - t0
        stream, jobs = _suite_stream(todo, data_root, encoder, batch_size, num_workers)
        ctx = RunContext(encoder, batch_size=batch_size, num_workers=num_workers, stream=stream, jobs=jobs)
        try:
            _run_tasks(todo, data_root, ctx, results_path, done, timings, failed, partial)
        finally:
            if stream is not None:
                stream.close()
    summary = aggregate(done, suite, partial=partial)
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
        except DataError as e:
            if not partial:
                raise
            failed[task.key] = str(e)
            log.warning("skipping %s: %s", task.key, e)
            bar.update(1)
            continue
        line = result_line(task, metrics)
        append_line(results_path, line)
        done[task.key] = line
        timings[task.key] = time.perf_counter() - t0
        bar.update(1)
        # one line per task only with -v: the bar and the run's table say enough (38 tasks at DataComp scale)
        log.debug("%s: %s = %s (%.1f s)", task.name, task.main_metric, fmt_metric(line["metrics"]["main_metric"]),
                  timings[task.key])
