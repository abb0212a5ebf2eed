"""Fabricated run directories and a fabricated tiny world for the report tests (helpers; the
fixtures that use them are in conftest.py).

Nothing here trains or evaluates: each run directory is written the way `harness run` leaves it
(summary.json per docs/architecture.md, DataComp eval_results.jsonl, subset.npy/.json), with
fixed numbers so the tables can be compared with golden files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# key -> (display name, group); a miniature suite with DataComp's groups.
TASKS = {
    "imagenet1k": ("ImageNet 1k", "ImageNet"),
    "imagenetv2": ("ImageNet v2", "ImageNet dist. shifts"),
    "imagenet-r": ("ImageNet-R", "ImageNet dist. shifts"),
    "vtab/cifar100": ("CIFAR-100", "VTAB"),
    "vtab/dtd": ("Describable Textures", "VTAB"),
    "retrieval/flickr_1k_test_image_text_retrieval": ("Flickr", "Retrieval"),
    "cifar10": ("CIFAR-10", None),
}


def aggregate(tasks: dict[str, float]) -> dict[str, float | None]:
    """DataComp's aggregation over the miniature suite; a group or the Average with a missing task is None."""
    out: dict[str, float | None] = {}
    for group in ("ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval"):
        keys = [k for k, (_, g) in TASKS.items() if g == group]
        out[group] = sum(tasks[k] for k in keys) / len(keys) if all(k in tasks for k in keys) else None
    out["Average"] = sum(tasks.values()) / len(tasks) if len(tasks) == len(TASKS) else None
    return out


def uid_of(i: int) -> str:
    return f"{(i * 2654435761) % 2**64:016x}{i:016x}"


def write_run(
    root: Path, filter: str, scale: str, seed: int, samples: int, tasks: dict[str, float],
    unique: int | None = None, world: Path | None = None, subset: list[str] | None = None,
    pool: str = "tiny-seed0", tasks_in_summary: bool = True, compat: str | None = None,
) -> Path:
    """One run directory laid out as docs/architecture.md says."""
    slug = filter.replace("+", "_plus_").replace("&", "_and_")
    run = root / pool / scale / slug / f"seed{seed}"
    run.mkdir(parents=True)
    missing = [k for k in TASKS if k not in tasks]
    with open(run / "eval_results.jsonl", "w") as f:
        for key, value in tasks.items():
            f.write(json.dumps({"key": key, "dataset": TASKS[key][0],
                                "metrics": {"acc1": value, "main_metric": value}}) + "\n")
    summary = {
        "filter": filter, "scale": scale, "seed": seed, "pool": pool, "samples": samples,
        "unique_samples": samples if unique is None else unique, "uniform": unique is None or unique == samples,
        "aggregates": aggregate(tasks), "partial": bool(missing), "missing_tasks": missing,
        "tasks": {k: {"name": TASKS[k][0], "main_metric": v} for k, v in tasks.items()} if tasks_in_summary else {},
        "suite": "tiny", "provenance": {"world": str(world)} if world else {},
    }
    if compat is not None:  # the evaluation's mode; runs made before it existed have none
        summary["compat"] = compat
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    if subset is not None:
        pairs = sorted((int(u[:16], 16), int(u[16:], 16)) for u in subset)
        np.save(run / "subset.npy", np.array(pairs, dtype=np.dtype("u8,u8")))
    (run / "subset.json").write_text(json.dumps({"expression": filter, "counts": {"selected": samples}}))
    return run


def tasks_for(base: float, seed_shift: float, drop: tuple[str, ...] = ()) -> dict[str, float]:
    # distinct, fixed per-task values: base plus a per-task offset plus the seed's shift
    return {k: round(base + 0.01 * i + seed_shift, 4) for i, k in enumerate(TASKS) if k not in drop}


# The world: 40 pool samples with known noise, one oracle-only uid, one pool uid without a label.
WORLD_LABELS = ["clean"] * 20 + ["mismatched"] * 10 + ["underspecified"] * 5 + ["bad_image"] * 4


def hype_selection() -> list[str]:
    """12 clean, 2 mismatched, 1 bad image, and one clean uid twice (upsampled)."""
    return [uid_of(i) for i in [*range(12), 20, 21, 35, 0]]
