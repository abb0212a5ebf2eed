"""``summary.json``: the typed, versioned record of one finished run.

``harness run`` writes it (harness.run) and ``harness report`` reads it (harness.report.runs); both go
through :class:`Summary`, so the fields are defined once and a malformed file fails with an error
naming the file and the field. The aggregate names are defined here too (:data:`AGGREGATES`): the
evaluation computes them, the summary stores them, the report prints them as its columns.

Versions: ``schema_version`` 1 added ``schema_version``, ``harness_version`` and ``git_commit``.
Summaries written before (run directories of older harness versions) have none of the three; they
load as ``schema_version`` 0 with the other two null. A file from a newer schema is refused with a
message saying so, rather than read wrongly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
FILE_NAME = "summary.json"


class SummaryError(ValueError):
    """A summary that does not follow the schema; the message names the file (or object) and the field."""


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of the zero-shot suite, as DataComp's aggregate_scores.py computes it."""

    key: str            # its name in summary.json
    header: str         # its column in the report's table
    group: str | None   # the suite group (tasks/*.yaml `group:`) it averages; None: every scored task


# In the seed table's column order (DataComp's aggregate_scores.py: ImageNet, ImageNet dist. shifts,
# VTAB, Retrieval, Average).
AGGREGATES: tuple[Aggregate, ...] = (
    Aggregate("ImageNet", "ImageNet", "ImageNet"),
    Aggregate("ImageNet dist. shifts", "ImageNet Dist. Shift", "IN dist. shifts"),
    Aggregate("VTAB", "VTAB", "VTAB"),
    Aggregate("Retrieval", "Retrieval", "Retrieval"),
    Aggregate("Average", "Average", None),
)
AGGREGATE_KEYS: tuple[str, ...] = tuple(a.key for a in AGGREGATES)


@dataclass(frozen=True)
class TaskResult:
    """One task's line in the summary."""

    name: str                   # display name (the suite's `name:`)
    main_metric: float | None   # None: the task reports no main metric (FairFace, UTKFace)
    scored: bool | None = None  # counts towards the Average; None: not recorded

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "main_metric": self.main_metric}
        if self.scored is not None:
            out["scored"] = self.scored
        return out


@dataclass(frozen=True)
class Summary:
    """What one run of one filter expression at one scale and seed produced."""

    filter: str                                 # the expression, as given
    scale: str                                  # tiny, small, medium, ...
    aggregates: dict[str, float | None]         # keyed by AGGREGATE_KEYS (None: not computable)
    seed: int | None = None
    pool: str | None = None                     # the pool directory, resolved
    samples: int | None = None                  # entries of subset.npy
    unique_samples: int | None = None
    uniform: bool | None = None                 # no uid repeated (no upsampling)
    partial: bool = False                       # aggregates cover only the tasks present
    missing_tasks: list[str] = field(default_factory=list)
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    suite: str | None = None                    # the evaluation suite (tiny, datacomp, a YAML path)
    compat: str | None = None                   # the evaluation's mode (datacomp / corrected); None: not recorded
    provenance: dict[str, Any] = field(default_factory=dict)  # world, stage outputs and timings, run_dir, ...
    schema_version: int = SCHEMA_VERSION
    harness_version: str | None = None
    git_commit: str | None = None               # HEAD of the harness checkout; None for an installed package

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to summary.json (aggregates in the table's order)."""
        return {
            "schema_version": self.schema_version,
            "harness_version": self.harness_version,
            "git_commit": self.git_commit,
            "filter": self.filter,
            "scale": self.scale,
            "seed": self.seed,
            "pool": self.pool,
            "samples": self.samples,
            "unique_samples": self.unique_samples,
            "uniform": self.uniform,
            "aggregates": {key: self.aggregates.get(key) for key in AGGREGATE_KEYS},
            "partial": self.partial,
            "missing_tasks": list(self.missing_tasks),
            "tasks": {key: t.to_json() for key, t in self.tasks.items()},
            "suite": self.suite,
            "compat": self.compat,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str = "summary") -> Summary:
        """Validate and read a summary object; ``where`` (the file) starts every error message."""
        return _Reader(where).summary(obj)

    @classmethod
    def read(cls, path: Path) -> Summary:
        """Read ``path`` (a summary.json); a missing, unparsable or malformed file is a SummaryError naming it."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SummaryError(f"{path}: missing (evaluate the run first)") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SummaryError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_json(obj, str(path))


_FIELDS = {"schema_version", "harness_version", "git_commit", "filter", "scale", "seed", "pool", "samples",
           "unique_samples", "uniform", "aggregates", "partial", "missing_tasks", "tasks", "suite", "compat",
           "provenance"}


class _Reader:
    """Checks one summary object field by field; errors read "<where>: field '<name>': <what is wrong>"."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, name: str, what: str) -> SummaryError:
        return SummaryError(f"{self.where}: field {name!r}: {what}")

    def text(self, obj: dict, name: str, required: bool = False) -> str | None:
        if name not in obj:
            if required:
                raise SummaryError(f"{self.where}: missing field {name!r}")
            return None
        value = obj[name]
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string{'' if required else ' or null'}, got {value!r}")
        return value

    def integer(self, obj: dict, name: str) -> int | None:
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(name, f"expected an integer or null, got {value!r}")
        return value

    def flag(self, obj: dict, name: str, default: bool | None) -> bool | None:
        value = obj.get(name, default)
        if value is not None and not isinstance(value, bool):
            raise self.fail(name, f"expected true, false or null, got {value!r}")
        return value

    def number(self, value: Any, name: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"expected a number or null, got {value!r}")
        return None if math.isnan(value) else float(value)  # NaN (json allows it) means "no value"

    def summary(self, obj: Any) -> Summary:
        if not isinstance(obj, dict):
            raise SummaryError(f"{self.where}: expected a JSON object, got {type(obj).__name__}")
        version = obj.get("schema_version", 0)  # absent: written before the schema had a version
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise self.fail("schema_version", f"expected a non-negative integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise self.fail("schema_version", f"{version} is newer than this harness reads ({SCHEMA_VERSION}); "
                            "upgrade the harness to read this run")
        if version >= 1:  # older files are read leniently: nothing but the harness wrote them either
            unknown = sorted(set(obj) - _FIELDS)
            if unknown:
                raise SummaryError(f"{self.where}: unknown field(s) {', '.join(map(repr, unknown))} "
                                   f"in a schema_version {version} summary")
        filt = self.text(obj, "filter", required=True)
        scale = self.text(obj, "scale", required=True)
        if "aggregates" not in obj:
            raise SummaryError(f"{self.where}: missing field 'aggregates'")
        provenance = obj.get("provenance")
        if provenance is not None and not isinstance(provenance, dict):
            raise self.fail("provenance", f"expected an object or null, got {provenance!r}")
        missing = obj.get("missing_tasks")
        if missing is not None and not (isinstance(missing, list) and all(isinstance(t, str) for t in missing)):
            raise self.fail("missing_tasks", f"expected a list of task keys, got {missing!r}")
        assert filt is not None and scale is not None
        return Summary(
            filter=filt,
            scale=scale,
            aggregates=self.aggregates(obj["aggregates"]),
            seed=self.integer(obj, "seed"),
            pool=self.text(obj, "pool"),
            samples=self.integer(obj, "samples"),
            unique_samples=self.integer(obj, "unique_samples"),
            uniform=self.flag(obj, "uniform", None),
            partial=bool(self.flag(obj, "partial", False)),
            missing_tasks=list(missing or []),
            tasks=self.tasks(obj.get("tasks")),
            suite=self.text(obj, "suite"),
            compat=self.text(obj, "compat") or None,  # "" reads as not recorded
            provenance=dict(provenance or {}),
            schema_version=version,
            harness_version=self.text(obj, "harness_version"),
            git_commit=self.text(obj, "git_commit"),
        )

    def aggregates(self, raw: Any) -> dict[str, float | None]:
        if not isinstance(raw, dict):
            raise self.fail("aggregates", f"expected an object, got {raw!r}")
        unknown = sorted(set(raw) - set(AGGREGATE_KEYS))
        if unknown:
            raise self.fail("aggregates", f"unknown aggregate(s) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(AGGREGATE_KEYS)}")
        # an aggregate the file lacks reads as null (not computable), as the table shows it
        return {key: self.number(raw.get(key), f"aggregates.{key}") for key in AGGREGATE_KEYS}

    def tasks(self, raw: Any) -> dict[str, TaskResult]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail("tasks", f"expected an object, got {raw!r}")
        out = {}
        for key, rec in raw.items():
            if not isinstance(rec, dict):
                raise self.fail(f"tasks.{key}", f"expected an object, got {rec!r}")
            name = rec.get("name")
            if name is not None and not isinstance(name, str):
                raise self.fail(f"tasks.{key}.name", f"expected a string, got {name!r}")
            scored = rec.get("scored")
            if scored is not None and not isinstance(scored, bool):
                raise self.fail(f"tasks.{key}.scored", f"expected true, false or null, got {scored!r}")
            out[key] = TaskResult(name=name or key, main_metric=self.number(rec.get("main_metric"),
                                                                            f"tasks.{key}.main_metric"),
                                  scored=scored)
        return out
