"""Evaluation suites as data: ``tasks/<name>.yaml`` -> :class:`Suite`.

Schema (one YAML file per suite)::

    suite: datacomp
    tasks:
      - key: imagenet1k                 # DataComp's task key (the ``key`` of a result line)
        name: ImageNet 1k               # display name (the ``dataset`` of a result line)
        source: {format: wds, path: wds_imagenet1k_test, hub: djghosh/wds_imagenet1k_test}
        task: zeroshot_classification   # which runner evaluates it (see TASK_KINDS)
        main_metric: acc1               # null: reported, not scored
        group: ImageNet                 # ImageNet | IN dist. shifts | VTAB | Retrieval | null
        size: 50000
        random: 0.001                   # chance score of the main metric (null when undefined)
        scored: true                    # counts towards the Average

``source.path`` is relative to the data root given to the evaluator; ``source.hub`` is where
``download_eval`` fetches it from.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError
from harness.layout import shipped_folder
from harness.registry import Registry
from harness.summary import AGGREGATES

# The aggregate groups DataComp reports, in its table order (ImageNet is a single task): the groups of
# harness.summary.AGGREGATES (the Average has none).
GROUPS: tuple[str, ...] = tuple(a.group for a in AGGREGATES if a.group is not None)
FORMATS = ("wds", "hf")
TASKS_DIR = shipped_folder("tasks")


class SuiteError(UsageError):
    """A suite file that does not follow the schema."""


def _load_runners() -> None:
    importlib.import_module("harness.evaluation.runners")  # registers every kind with its runner


# Task kind (a task's ``task:``) -> its runner, ``fn(task, data_dir, ctx) -> metrics``. The runners
# register themselves in harness.evaluation.runners, imported (with torch) on the first lookup.
TASK_KINDS: Registry[Callable[..., dict]] = Registry("task kind", SuiteError, load=_load_runners)


@dataclass(frozen=True)
class Source:
    format: str
    path: str | None = None
    hub: str | None = None


@dataclass(frozen=True)
class Task:
    key: str
    name: str
    source: Source
    task: str
    main_metric: str | None
    group: str | None = None
    size: int | None = None
    random: float | None = None
    scored: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def data_dir(self, data_root: Path) -> Path:
        """Where this task's local copy lives under ``data_root``."""
        rel = self.source.path or self.key.replace("/", "-")
        return Path(data_root) / rel


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    path: Path | None = None

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def task(self, key: str) -> Task:
        for t in self.tasks:
            if t.key == key:
                return t
        raise KeyError(f"suite {self.name!r} has no task {key!r}")

    @property
    def scored(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.scored)

    def group_members(self) -> dict[str, list[str]]:
        """Group name -> keys of its scored members, in suite order."""
        out: dict[str, list[str]] = {}
        for t in self.tasks:
            if t.scored and t.group:
                out.setdefault(t.group, []).append(t.key)
        return out


_KNOWN = {"key", "name", "source", "task", "main_metric", "group", "size", "random", "scored"}


def _parse_task(raw: Any, where: str) -> Task:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a task must be a mapping, got {type(raw).__name__}")
    for req in ("key", "name", "source", "task"):
        if req not in raw:
            raise SuiteError(f"{where}: task is missing {req!r}")
    src = raw["source"]
    if not isinstance(src, dict) or src.get("format") not in FORMATS:
        raise SuiteError(f"{where} ({raw['key']}): source.format must be one of {FORMATS}, got {src!r}")
    if not (src.get("path") or src.get("hub")):
        raise SuiteError(f"{where} ({raw['key']}): source needs a path or a hub id")
    if not isinstance(raw["task"], str) or raw["task"] not in TASK_KINDS:
        raise SuiteError(f"{where} ({raw['key']}): {TASK_KINDS.unknown_message(raw['task'])}")
    group = raw.get("group")
    if group is not None and group not in GROUPS:
        raise SuiteError(f"{where} ({raw['key']}): unknown group {group!r}; known: {GROUPS}")
    main = raw.get("main_metric")
    scored = bool(raw.get("scored", main is not None))
    if scored and main is None:
        raise SuiteError(f"{where} ({raw['key']}): a scored task needs a main_metric")
    return Task(
        key=str(raw["key"]),
        name=str(raw["name"]),
        source=Source(format=src["format"], path=src.get("path"), hub=src.get("hub")),
        task=raw["task"],
        main_metric=main,
        group=group,
        size=raw.get("size"),
        random=raw.get("random"),
        scored=scored,
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
    )


def parse_suite(data: Any, where: str = "<suite>", path: Path | None = None) -> Suite:
    if not isinstance(data, dict) or "tasks" not in data:
        raise SuiteError(f"{where}: expected a mapping with 'suite' and 'tasks'")
    tasks = tuple(_parse_task(t, f"{where} task #{i}") for i, t in enumerate(data["tasks"] or []))
    if not tasks:
        raise SuiteError(f"{where}: suite has no tasks")
    seen: set[str] = set()
    for t in tasks:
        for ident in (t.key, "name:" + t.name):
            if ident in seen:
                raise SuiteError(f"{where}: duplicate task {ident!r}")
            seen.add(ident)
    return Suite(name=str(data.get("suite") or (path.stem if path else "suite")), tasks=tasks, path=path)


def load_suite(name_or_path: str | Path | Suite) -> Suite:
    """A suite by name (``tasks/<name>.yaml``) or by path to a YAML file."""
    if isinstance(name_or_path, Suite):
        return name_or_path
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") and p.exists()):
        p = TASKS_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(x.stem for x in TASKS_DIR.glob("*.yaml")) if TASKS_DIR.exists() else []
        raise FileNotFoundError(f"no suite {str(name_or_path)!r} (looked for {p}); known suites: {known}")
    with open(p) as f:
        data = yaml.safe_load(f)
    return parse_suite(data, where=str(p), path=p)
