"""The report's provenance block: when and with what it was made, and what the runs were made from."""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Sequence
from pathlib import Path

from harness import versions
from harness.report.runs import RunResult
from harness.versions import CHECKOUT, harness_version

LIBRARIES = ("torch", "open_clip_torch", "clip-benchmark", "numpy", "pandas", "pyarrow", "matplotlib")


def git_commit(repo: Path = CHECKOUT) -> str:
    """HEAD of the checkout the harness runs from, '+ local changes' when tracked files differ."""
    if not (repo / ".git").exists():
        return "unknown (not a git checkout)"
    head = versions.git_commit(repo)
    if head is None:
        return "unknown (git not available)"
    return head + (" + local changes" if versions.has_local_changes(repo) else "")


def library_versions() -> str:
    from harness.versions import ABSENT, package_versions

    found = {k: v for k, v in package_versions(*LIBRARIES).items() if v != ABSENT}
    return ", ".join(f"{k} {v}" for k, v in found.items()) + f"; Python {platform.python_version()}"


def _distinct(values: Sequence[object]) -> list[str]:
    out = []
    for v in values:
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        if text not in out:
            out.append(text)
    return out


def _recipe(scales: Sequence[str]) -> list[str]:
    from harness.training import SCALES

    lines = []
    for scale in scales:
        recipe = SCALES.get(scale)
        if recipe is None:
            continue
        lines.append(f"{scale}: {recipe.model}, {recipe.samples_seen:,} samples seen, global batch "
                     f"{recipe.global_batch}, lr {recipe.lr:g}, warm-up {recipe.warmup} steps, {recipe.precision}")
    return lines


def provenance(runs: Sequence[RunResult], now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """(field, value) lines, in display order. Fields with nothing to say are left out, except the
    world fingerprint, which says when the runs did not record one."""
    now = now or dt.datetime.now(dt.UTC)
    lines = [
        ("Generated", now.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Harness", f"{harness_version()}, commit {git_commit()}"),
        ("Libraries", library_versions()),
    ]
    own = [r for r in runs if not r.label]
    worlds = _distinct([r.provenance["world_fingerprint"] for r in own if r.provenance.get("world_fingerprint")])
    unrecorded = sum(1 for r in own if r.provenance.get("world") and not r.provenance.get("world_fingerprint"))
    if worlds:
        lines.append(("World fingerprint", ", ".join(worlds)
                      + (f" ({unrecorded} run(s) recorded none)" if unrecorded else "")))
    elif unrecorded:
        lines.append(("World fingerprint", f"not recorded by the {unrecorded} run(s) on a generated world"))
    else:
        lines.append(("World fingerprint", "none: no run used a generated world"))
    compat = _distinct([r.compat for r in runs if r.compat is not None])
    if compat:
        lines.append(("Compatibility mode", "; ".join(compat)))
    scales = list(dict.fromkeys(r.scale for r in own))
    recipe = _recipe(scales)
    if recipe:
        lines.append(("Recipe", "; ".join(recipe)))
    test_only = sum(1 for r in own if r.provenance.get("train_num_samples"))
    if test_only:
        lines.append(("Test-only runs", f"{test_only} run(s) trained on fewer samples than the recipe "
                                        "(harness run --test-train-samples); not recipe results"))
    external = [f"{r.label} ({r.path})" for r in runs if r.label]
    if external:
        lines.append(("Evaluated elsewhere", "; ".join(external)))
    return lines
