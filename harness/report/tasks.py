"""The per-task table shown beside the heatmap: every task's main metric per row, with its chance level.

Chance is the suite's `random` field (tasks/tiny.yaml, tasks/datacomp.yaml: DataComp's tasklist.yml
`random_score`, or the computed values its header explains); a task the suite gives none for (the
fairness tasks, which have no main metric) is left blank. Values at or below chance are marked.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.runs import RunResult
from harness.report.table import MISSING, Row, Stat

BELOW = "*"  # marks a value at or below the task's chance level


def _suite_random(name: str) -> dict[str, float | None]:
    from harness.evaluation import load_suite

    try:
        return {t.key: t.random for t in load_suite(name).tasks}
    except (OSError, ValueError):  # a suite file that moved or does not parse: no chance levels from it
        return {}


def chance_levels(runs: Sequence[RunResult], keys: Sequence[str]) -> dict[str, float | None]:
    """Chance of each task key: from the suites the runs name first, then the built-in suites."""
    names = list(dict.fromkeys([*(r.suite for r in runs if r.suite), "datacomp", "tiny"]))
    out: dict[str, float | None] = {}
    for name in names:
        for key, value in _suite_random(name).items():
            if key in keys and out.get(key) is None:
                out[key] = value
    return {k: out.get(k) for k in keys}


def row_label(row: Row, with_scale: bool) -> str:
    return f"{row.method} [{row.scale}]" if with_scale else row.method


def task_rows(rows: Sequence[Row]) -> tuple[list[Row], dict[str, str]]:
    """The user rows that have per-task results, and task key -> display name in first-seen order
    (the heatmap's order)."""
    users = [r for r in rows if not r.published and any(run.tasks for run in r.runs)]
    names: dict[str, str] = {}
    for r in users:
        for run in r.runs:
            for key, (name, _) in run.tasks.items():
                names.setdefault(key, name)
    return users, names


def task_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, body, notes): Task, Chance, then one column per user row (mean over seeds, ± std)."""
    users, names = task_rows(rows)
    if not users:
        return [], [], []
    with_scale = len({r.scale for r in users}) > 1
    chance = chance_levels([run for r in users for run in r.runs], list(names))
    header = ["Task", "Chance", *(row_label(r, with_scale) for r in users)]
    body, below = [], False
    for key, name in names.items():
        line = [name, "" if chance[key] is None else f"{chance[key]:.4g}"]
        for r in users:
            stat = Stat.of(run.tasks[key][1] for run in r.runs if key in run.tasks)
            if stat is None:
                line.append(MISSING)
                continue
            text = f"{stat.mean:.3f}" + (f" ± {stat.std:.3f}" if stat.n > 1 else "")
            if chance[key] is not None and stat.mean <= chance[key]:
                text += BELOW
                below = True
            line.append(text)
        body.append(line)
    notes = ["Main metric of each task, mean over seeds (± population std when a row has several); "
             "Chance: a random model's expected score (blank where the suite gives none)."]
    if below:
        notes.append(f"{BELOW} at or below chance.")
    return header, body, notes
