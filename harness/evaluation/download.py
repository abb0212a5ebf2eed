"""``download_eval``: fetch a suite's tasks from the Hugging Face hub into one data directory.

The directory is DataComp's own evaluation layout (mlfoundations/datacomp download_evalsets.py), so
DataComp's evaluate.py and the harness read the same copy:
- ``<dir>/wds_<key>_test/``: a snapshot of ``djghosh/wds_<key>_test`` (clip_benchmark webdataset),
  the folder names of download_evalsets.py lines 49-60.
- ``<dir>/hf_cache/``: a Hugging Face ``datasets`` cache holding ``nlphuji/<name>`` (split "test") for
  Flickr, MSCOCO and WinoGAViL, what download_evalsets.py lines 36-41 leave with
  ``load_dataset("nlphuji/<name>", split="test", cache_dir=<dir>/hf_cache)``. We first make that very
  call; when the installed ``datasets`` cannot (the nlphuji repositories are loading-script datasets,
  which datasets >= 4 no longer runs), we fetch the hub's parquet export (revision
  ``refs/convert/parquet``) and prepare the same cache entry from it with ``datasets`` itself:
  ``hf_cache/nlphuji___<name>/default/0.0.0/<hash>/<name>-test.arrow``, which
  ``load_dataset("nlphuji/<name>", split="test", cache_dir=...)`` then reads offline.

Resumable: ``snapshot_download`` keeps finished files and resumes partial ones; a task that passed
verification gets a ``.complete.json`` marker and is not fetched again. Verification checks what
arrived: ``test/nshards.txt`` and every shard it promises (a readable tar with at least one member),
classnames/templates for classification sets, a prepared test split for HF sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .evaluator import write_json_atomic
from .loaders import HF_CACHE_DIR, DataError, open_hf
from .runners import task_data_path
from .suites import Suite, Task, load_suite

log = logging.getLogger(__name__)

MARKER = ".complete.json"
PARQUET_REVISION = "refs/convert/parquet"

Fetch = Callable[[str, "str | None", Path], None]
Load = Callable[[str, Path], None]


@dataclass(frozen=True)
class PlannedFetch:
    key: str
    repo_id: str
    revision: str | None
    local_dir: Path  # the webdataset folder; for a Hugging Face set, where its parquet export is staged
    cache_dir: Path | None = None  # Hugging Face sets: the datasets cache (<dir>/hf_cache)

    @property
    def entry(self) -> Path:
        """Where the finished task lives (its marker goes there)."""
        return self.local_dir if self.cache_dir is None else cache_entry_path(self.cache_dir, self.repo_id)


def cache_entry_path(cache_dir: Path, repo_id: str) -> Path:
    from datasets.naming import camelcase_to_snakecase

    namespace, name = repo_id.split("/")
    return Path(cache_dir) / f"{namespace}___{camelcase_to_snakecase(name)}"


def plan(suite: Suite, out_dir: Path, tasks: list[str] | None = None) -> list[PlannedFetch]:
    """What to fetch for each task (tasks without a hub id are local-only and skipped)."""
    out = []
    for t in suite.tasks:
        if tasks is not None and t.key not in tasks:
            continue
        if not t.source.hub:
            continue
        if t.source.format == "hf":
            cache = Path(out_dir) / HF_CACHE_DIR
            staging = cache / "harness_parquet" / t.source.hub.replace("/", "___")
            out.append(PlannedFetch(t.key, t.source.hub, PARQUET_REVISION, staging, cache))
        else:
            out.append(PlannedFetch(t.key, t.source.hub, None, t.data_dir(out_dir)))
    return out


def hub_load(repo_id: str, cache_dir: Path) -> None:
    """DataComp's own call (download_evalsets.py lines 36-41); raises when this ``datasets`` cannot."""
    import datasets

    datasets.load_dataset(repo_id, split="test", cache_dir=str(cache_dir))


def prepare_hf_cache(parquet_dir: Path, repo_id: str, cache_dir: Path) -> Path:
    """Prepare ``repo_id``'s test split in the datasets cache ``cache_dir`` from parquet files, with
    datasets' own builder machinery (so its naming, arrow format and dataset_info.json are datasets'
    own). Returns the prepared version folder."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(Path(parquet_dir).rglob("*.parquet"))
    chosen = [f for f in files if "test" in f.relative_to(parquet_dir).parts[:-1] or f.name.startswith("test")]
    chosen = chosen or files
    if not chosen:
        raise DataError(f"{parquet_dir}: no parquet files to prepare {repo_id} from")
    features = datasets.Features.from_arrow_schema(pq.read_schema(chosen[0]))
    digest = hashlib.sha256(json.dumps([[f.name, f.stat().st_size] for f in chosen]).encode()).hexdigest()[:16]

    class _FromParquet(datasets.ArrowBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=features)

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name="test")]

        def _generate_tables(self):
            for i, f in enumerate(chosen):
                for j, batch in enumerate(pq.ParquetFile(f).iter_batches(batch_size=256)):
                    yield (i, j), pa.Table.from_batches([batch])

    builder = _FromParquet(cache_dir=str(cache_dir), dataset_name=repo_id.split("/")[1], repo_id=repo_id,
                           hash=digest)
    builder.download_and_prepare()
    return Path(builder.cache_dir)


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
    try:
        open_hf(root)  # a save_to_disk copy, parquet files or a prepared datasets cache entry
    except DataError as e:
        return [str(e)]
    except Exception as e:  # a corrupt copy: report it, fetch again
        return [f"{root}: unreadable ({type(e).__name__}: {e})"]
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


def _fetch_hf(p: PlannedFetch, fetch: Fetch, load: Load | None) -> str:
    """DataComp's load_dataset call into the cache; failing that, the parquet export prepared into the
    same cache entry. Returns how it was obtained."""
    assert p.cache_dir is not None
    if load is not None:
        try:
            load(p.repo_id, p.cache_dir)
            return "load_dataset"
        except Exception as e:  # e.g. "Dataset scripts are no longer supported": use the parquet export
            log.info("load_dataset(%r) did not work here (%s: %s); preparing it from the parquet export",
                     p.repo_id, type(e).__name__, e)
    p.local_dir.mkdir(parents=True, exist_ok=True)
    fetch(p.repo_id, p.revision, p.local_dir)
    prepare_hf_cache(p.local_dir, p.repo_id, p.cache_dir)
    shutil.rmtree(p.local_dir, ignore_errors=True)  # the cache holds it now; the staging copy would double the disk
    if p.local_dir.parent.is_dir() and not any(p.local_dir.parent.iterdir()):
        p.local_dir.parent.rmdir()
    return f"parquet export ({p.revision})"


def download_eval(suite: str | Path | Suite, out_dir: Path, tasks: list[str] | None = None,
                  fetch: Fetch | None = None, retries: int = 2, load: Load | None = hub_load) -> dict[str, dict]:
    """Fetch and verify every task; returns key -> {"status", "problems"} and writes
    ``<out_dir>/download_report.json``. Raises RuntimeError naming the tasks that did not verify.

    ``fetch`` snapshots a hub repository (default: huggingface_hub); ``load`` is DataComp's
    ``load_dataset`` call for the Hugging Face sets (None: go straight to the parquet export)."""
    suite = load_suite(suite)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fetch = fetch or hub_fetch
    report: dict[str, dict] = {}
    for p in plan(suite, out_dir, tasks):
        task = suite.task(p.key)
        marker = p.entry / MARKER
        if marker.exists() and not verify_task(task, p.entry):
            report[p.key] = {"status": "cached", "problems": []}
            continue
        problems: list[str] = []
        how = "snapshot"
        for attempt in range(retries + 1):
            try:
                if p.cache_dir is not None:
                    how = _fetch_hf(p, fetch, load)
                else:
                    p.local_dir.mkdir(parents=True, exist_ok=True)
                    fetch(p.repo_id, p.revision, p.local_dir)
            except Exception as e:  # network errors: retry, then report
                problems = [f"fetch {p.repo_id} failed: {type(e).__name__}: {e}"]
                log.warning("%s (attempt %d)", problems[0], attempt + 1)
                continue
            problems = verify_task(task, task_data_path(task, out_dir))
            if not problems:
                break
        if problems:
            report[p.key] = {"status": "failed", "problems": problems}
        else:
            write_json_atomic(marker, {"repo_id": p.repo_id, "revision": p.revision, "via": how,
                                       "files": _files_record(p.entry)})
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
