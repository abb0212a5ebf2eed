"""Runs evaluated elsewhere: a directory holding DataComp's `eval_results.jsonl` (what its evaluate.py
writes), optionally the subset `.npy` it trained on and evaluate.py's `info.pkl`, enters the report
under a label (`harness report RUNS --external DIR=LABEL`).

Aggregates are computed from the per-task lines with the suite's groups (harness.evaluation.aggregate,
DataComp's aggregate_scores.py rules); the suite is the one whose task keys the file uses (datacomp,
else tiny). The scale comes from `DIR=LABEL@SCALE`, else from `info.pkl` (evaluate.py copies the
training info there: scale, checkpoint, scale_config), else it is shown as "unknown".
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.runs import ReportError, RunResult, read_eval_results, run_from_summary

RESULTS = "eval_results.jsonl"
UNKNOWN_SCALE = "unknown"
SUBSET_DTYPE = np.dtype("u8,u8")


def parse_external(text: str) -> tuple[Path, str, str | None]:
    """'DIR=LABEL' or 'DIR=LABEL@SCALE' -> (DIR, LABEL, SCALE or None)."""
    path, sep, rest = str(text).rpartition("=")
    if not sep or not path or not rest.strip():
        raise ReportError(f"--external expects DIR=LABEL (or DIR=LABEL@SCALE), got {text!r}")
    label, at, scale = rest.partition("@")
    if not label.strip() or (at and not scale.strip()):
        raise ReportError(f"--external {text!r}: empty label or scale")
    return Path(path), label.strip(), scale.strip() if at else None


def _info_scale(path: Path) -> str | None:
    """The scale recorded in DataComp's info.pkl (plain data and pathlib paths only: nothing else is
    unpickled, so a hostile file cannot run code)."""
    class Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "pathlib" and name in ("Path", "PosixPath", "WindowsPath", "PurePosixPath"):
                import pathlib

                return getattr(pathlib, name)
            raise ReportError(f"{path}: holds a {module}.{name} object; expected DataComp's plain training info")

    try:
        info = Plain(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, OSError) as exc:
        raise ReportError(f"{path}: not a readable info.pkl ({exc})") from exc
    scale = info.get("scale") if isinstance(info, dict) else None
    return str(scale) if scale else None


def _subset(directory: Path) -> np.ndarray | None:
    files = sorted(directory.glob("*.npy"))
    if len(files) > 1:
        raise ReportError(f"{directory}: {len(files)} .npy files ({', '.join(f.name for f in files)}); "
                          "keep only the subset the model was trained on")
    if not files:
        return None
    try:
        arr = np.load(files[0], allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{files[0]}: not a readable .npy subset ({exc})") from exc
    if arr.dtype != SUBSET_DTYPE or arr.ndim != 1:
        raise ReportError(f"{files[0]}: expected a 1-D DataComp subset of dtype {SUBSET_DTYPE}, got {arr.dtype} "
                          f"shape {arr.shape}")
    return arr


def _suite_for(keys: set[str], where: Path):
    from harness.evaluation import load_suite

    best, best_hits = None, 0
    for name in ("datacomp", "tiny"):
        suite = load_suite(name)
        hits = len(keys & {t.key for t in suite.tasks})
        if hits > best_hits:
            best, best_hits = suite, hits
    if best is None:
        raise ReportError(f"{where}: none of its task keys belong to the datacomp or tiny suite")
    return best


def load_external(directory: Path, label: str, scale: str | None = None) -> RunResult:
    """One run evaluated elsewhere, as a report row source."""
    from harness.evaluation.aggregate import aggregate_file

    directory = Path(directory)
    results = directory / RESULTS
    if not results.is_file():
        raise ReportError(f"{directory}: no {RESULTS} (DataComp's evaluate.py writes it in its output directory)")
    keys = set(read_eval_results(results))  # validates every line, naming the one at fault
    suite = _suite_for(keys, results)
    if scale is None and (directory / "info.pkl").is_file():
        scale = _info_scale(directory / "info.pkl")
    subset = _subset(directory)
    summary = {
        **aggregate_file(results, suite, partial=True),
        "filter": label,
        "scale": scale or UNKNOWN_SCALE,
        "samples": None if subset is None else int(len(subset)),
        "unique_samples": None if subset is None else int(len(np.unique(subset))),
        "provenance": {"external": str(directory), "evaluated_elsewhere": True},
    }
    run = run_from_summary(summary, directory, str(results))
    run.label = label
    return run
