"""``download_eval``: fetch a suite's tasks from the Hugging Face hub into one data directory.

Layout written (what the suite's ``source.path`` entries expect):
- ``<dir>/wds_<key>_test/``: a snapshot of ``djghosh/wds_<key>_test`` (clip_benchmark webdataset).
- ``<dir>/hf/<name>/``: the hub's parquet conversion (revision ``refs/convert/parquet``) of
  ``nlphuji/<name>``: those repos are loading-script datasets that current ``datasets`` releases
  no longer run, and the parquet export is what ``open_hf`` reads offline.

Resumable: ``snapshot_download`` keeps finished files and resumes partial ones; a task that passed
verification gets a ``.complete.json`` marker and is not fetched again. Verification checks what
arrived: ``test/nshards.txt`` and every shard it promises (a readable tar with at least one member),
classnames/templates for classification sets, parquet files (or a save_to_disk copy) for HF sets.
"""

from __future__ import annotations

import argparse
import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .evaluator import write_json_atomic
from .suites import Suite, Task, load_suite

log = logging.getLogger(__name__)

MARKER = ".complete.json"
PARQUET_REVISION = "refs/convert/parquet"

Fetch = Callable[[str, "str | None", Path], None]


@dataclass(frozen=True)
class PlannedFetch:
    key: str
    repo_id: str
    revision: str | None
    local_dir: Path


def plan(suite: Suite, out_dir: Path, tasks: list[str] | None = None) -> list[PlannedFetch]:
    """What to fetch for each task (tasks without a hub id are local-only and skipped)."""
    out = []
    for t in suite.tasks:
        if tasks is not None and t.key not in tasks:
            continue
        if not t.source.hub:
            continue
        rev = PARQUET_REVISION if t.source.format == "hf" else None
        out.append(PlannedFetch(t.key, t.source.hub, rev, t.data_dir(out_dir)))
    return out


def hub_fetch(repo_id: str, revision: str | None, local_dir: Path) -> None:
    """The real network call (not run in tests: there is no network there)."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, local_dir=str(local_dir))


def verify_task(task: Task, root: Path) -> list[str]:
    """Problems with a task's local copy (empty list: complete)."""
    root = Path(root)
    if not root.exists():
        return [f"{root} does not exist"]
    if task.source.format == "wds":
        return _verify_wds(task, root)
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return []
    if not any(root.rglob("*.parquet")):
        return [f"{root}: no parquet files (nor a save_to_disk dataset)"]
    return []


def _verify_wds(task: Task, root: Path) -> list[str]:
    problems = []
    nfile = root / "test" / "nshards.txt"
    if not nfile.exists():
        return [f"{nfile} missing"]
    try:
        n = int(nfile.read_text().strip())
    except ValueError:
        return [f"{nfile}: not an integer"]
    retrieval = (root / "dataset_type.txt").exists() and \
        (root / "dataset_type.txt").read_text().strip().lower() == "retrieval"
    if not retrieval:
        for f in ("classnames.txt", "zeroshot_classification_templates.txt"):
            if not (root / f).exists() or not (root / f).read_text().strip():
                problems.append(f"{root / f} missing or empty")
    for i in range(n):
        shard = root / "test" / f"{i}.tar"
        if not shard.exists():
            problems.append(f"{shard} missing")
            continue
        try:
            with tarfile.open(shard, "r|*") as tar:
                if next(iter(tar), None) is None:
                    problems.append(f"{shard}: empty tar")
        except (tarfile.TarError, OSError) as e:
            problems.append(f"{shard}: unreadable ({e})")
    return problems


def _files_record(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER and ".cache" not in p.parts}


def download_eval(suite: str | Path | Suite, out_dir: Path, tasks: list[str] | None = None,
                  fetch: Fetch | None = None, retries: int = 2) -> dict[str, dict]:
    """Fetch and verify every task; returns key -> {"status", "problems"} and writes
    ``<out_dir>/download_report.json``. Raises RuntimeError naming the tasks that did not verify."""
    suite = load_suite(suite)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fetch = fetch or hub_fetch
    report: dict[str, dict] = {}
    for p in plan(suite, out_dir, tasks):
        task = suite.task(p.key)
        marker = p.local_dir / MARKER
        if marker.exists() and not verify_task(task, p.local_dir):
            report[p.key] = {"status": "cached", "problems": []}
            continue
        problems: list[str] = []
        for attempt in range(retries + 1):
            try:
                p.local_dir.mkdir(parents=True, exist_ok=True)
                fetch(p.repo_id, p.revision, p.local_dir)
            except Exception as e:  # network errors: retry, then report
                problems = [f"fetch {p.repo_id} failed: {type(e).__name__}: {e}"]
                log.warning("%s (attempt %d)", problems[0], attempt + 1)
                continue
            problems = verify_task(task, p.local_dir)
            if not problems:
                break
        if problems:
            report[p.key] = {"status": "failed", "problems": problems}
        else:
            write_json_atomic(marker, {"repo_id": p.repo_id, "revision": p.revision,
                                       "files": _files_record(p.local_dir)})
            report[p.key] = {"status": "ok", "problems": []}
    write_json_atomic(out_dir / "download_report.json", report)
    failed = [k for k, r in report.items() if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} task(s) did not download completely: {failed}; "
                           f"see {out_dir / 'download_report.json'} and rerun to resume")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fetch a suite's evaluation data from the Hugging Face hub")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--suite", default="datacomp")
    ap.add_argument("--tasks", nargs="*")
    args = ap.parse_args(argv)
    report = download_eval(args.suite, args.dir, tasks=args.tasks)
    print(f"{len(report)} task(s) ready under {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
