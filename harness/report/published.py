"""Published results (baselines/published.csv) as table rows beside the user's runs."""

from __future__ import annotations

import csv
from pathlib import Path

from harness.layout import shipped_folder
from harness.report.runs import ReportError
from harness.report.table import METRIC_COLUMNS, Row, Stat

FIELDS = ("method", "scale", "samples", "uniform", "imagenet", "in_shift", "vtab", "retrieval", "average", "source")
# CSV field -> the table's metric column, in the seed table's order.
METRIC_FIELDS = dict(zip(("imagenet", "in_shift", "vtab", "retrieval", "average"), METRIC_COLUMNS, strict=True))


def default_published_csv() -> Path:
    """baselines/published.csv of this checkout or installation."""
    return shipped_folder("baselines") / "published.csv"


def _float(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ReportError(f"{where}: not a number: {text!r}") from exc


def load_published(path: Path | None = None) -> list[Row]:
    """Rows of published.csv in file order; an empty metric cell means the paper did not report it."""
    path = Path(path) if path is not None else default_published_csv()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: published results file not found") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise ReportError(f"{path}: missing columns {', '.join(missing)}")
    rows = []
    for lineno, rec in enumerate(reader, 2):
        where = f"{path}:{lineno}"
        if not rec["method"].strip() or not rec["scale"].strip():
            raise ReportError(f"{where}: method and scale are required")
        uniform = rec["uniform"].strip().lower()
        if uniform not in ("yes", "no", ""):
            raise ReportError(f"{where}: uniform must be yes, no or empty, got {rec['uniform']!r}")
        samples = _float(rec["samples"], f"{where} samples")
        rows.append(Row(
            method=rec["method"].strip(),
            scale=rec["scale"].strip().lower(),
            samples=Stat(samples) if samples is not None else None,
            uniform={"yes": True, "no": False}.get(uniform),
            values={col: (Stat(v) if (v := _float(rec[f], f"{where} {f}")) is not None else None)
                    for f, col in METRIC_FIELDS.items()},
            published=True,
            source=rec["source"].strip(),
        ))
    return rows
