"""`harness submit`: the bundle DataComp's leaderboard takes, prepared and checked offline.

What DataComp's `evaluate.py --submit` sends (mlfoundations/datacomp, evaluate.py at 4a8df19):
- to the user's Hugging Face model repo, in one commit (push_files_to_hub, lines 118-162):
  `{scale}_scale/results.jsonl` (the eval_results.jsonl), `{scale}_scale/samples/<file>` for every
  `--samples` file (`::`-separated) and, with `--upload_checkpoint`, `{scale}_scale/checkpoint.pt`;
- to the leaderboard database (submit_to_firebase, lines 39-74): scale, model, dataset_size,
  checkpoint, batch_size, learning_rate, method_name, author, email, hf_username, hf_repo_name,
  timestamp ("%Y-%m-%d_%H:%M:%S", UTC), track, writeup, then each task's main metric keyed by its
  dataset name (tasks without one left out);
- `--submit` needs method_name, author, email, hf_username and hf_repo_name (lines 301-316);
  `--track` is "filtering" or "byod" (lines 172-177); the training info comes from `info.pkl`
  (train.py save_training_artifacts, lines 105-113: scale, checkpoint, scale_config, data_dir)
  and the results from `eval_results.jsonl` in the output directory (line 322); a task whose result
  is already there is not evaluated again (lines 330-345, 377-379).

The bundle written here is therefore a directory that evaluate.py accepts as `--train_output_dir`
with every task already evaluated (info.pkl + eval_results.jsonl), laid out as the upload will be
(`<scale>_scale/...`), plus `submission.json`, the database record. `validate_bundle` checks all of
it offline. Uploading needs the user's network and Hugging Face token: `submit_command` prints the
evaluate.py command that does it; nothing here touches the network.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.stages import atomic_write_json, replace_output_dir
from harness.summary import Summary, SummaryError

TRACKS = ("filtering", "byod")
DATACOMP_SCALES = ("small", "medium", "large", "xlarge")  # scale_configs.py SIMPLE_NAMES less "debug"
SUBSET_DTYPE = np.dtype("u8,u8")  # DataComp resharder.py line 378; load_subset asserts it (line 668)
TIMESTAMP_FORMAT = "%Y-%m-%d_%H:%M:%S"  # evaluate.py line 40
REQUIRED_TEXT = ("method_name", "author", "email", "hf_username", "hf_repo_name")
RECORD_FIELDS = ("scale", "model", "dataset_size", "checkpoint", "batch_size", "learning_rate", *REQUIRED_TEXT,
                 "timestamp", "track", "writeup")
HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # Hugging Face user/repo name characters
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SUBMISSION = "submission.json"
RESULTS = "eval_results.jsonl"
INFO = "info.pkl"


class SubmissionError(ValueError):
    """A run that cannot be submitted, or a bundle that would not be accepted; says what and where."""


def scale_config(scale: str) -> dict[str, Any]:
    """DataComp's scale_configs.py entry for a scale, from the harness recipe (same numbers)."""
    from harness.training import get_recipe

    recipe = get_recipe(scale)
    if not recipe.datacomp or scale not in DATACOMP_SCALES:
        raise SubmissionError(f"scale {scale!r} is not on DataComp's leaderboard (scales: {', '.join(DATACOMP_SCALES)})")
    return {"batch_size": recipe.global_batch, "learning_rate": recipe.lr, "train_num_samples": recipe.samples_seen,
            "warmup": recipe.warmup, "model": recipe.model, "beta2": recipe.beta2}


def _suite_tasks() -> dict[str, str]:
    """DataComp's task keys -> dataset names (tasks/datacomp.yaml mirrors its tasklist.yml: 40 tasks)."""
    from harness.evaluation import load_suite

    return {t.key: t.name for t in load_suite("datacomp").tasks}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubmissionError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{path}: not valid JSON ({exc})") from None


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """eval_results.jsonl lines keyed by task key; a malformed or repeated line is an error."""
    if not path.is_file():
        raise SubmissionError(f"{path}: missing (evaluate the run on the datacomp suite first)")
    out: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key, metrics = rec["key"], rec["metrics"]
            rec["dataset"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SubmissionError(f"{path}:{lineno}: not a DataComp result line ({exc})") from None
        if not isinstance(metrics, dict) or "main_metric" not in metrics:
            raise SubmissionError(f"{path}:{lineno}: task {key!r} has no metrics.main_metric")
        if key in out:
            raise SubmissionError(f"{path}:{lineno}: task {key!r} appears twice")
        out[key] = rec
    return out


def load_subset(path: Path) -> np.ndarray:
    """A DataComp subset file: a 1-D .npy of dtype u8,u8 (high, low 64 bits of each uid)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{path}: not a readable .npy file ({exc})") from None
    if arr.dtype != SUBSET_DTYPE:
        raise SubmissionError(f"{path}: dtype {arr.dtype}, DataComp's resharder asserts {SUBSET_DTYPE} "
                              "(resharder.py load_subset)")
    if arr.ndim != 1 or len(arr) == 0:
        raise SubmissionError(f"{path}: expected a non-empty 1-D array of uids, got shape {arr.shape}")
    return arr


def _final_checkpoint(run: Path) -> Path:
    from harness.training import read_record

    record = read_record(run / "train")
    if record is None:
        raise SubmissionError(f"{run / 'train'}: no training record (recipe.json); train the run first")
    if not record.get("datacomp_scale"):
        raise SubmissionError(f"{run / 'train' / 'recipe.json'}: mode {record.get('mode')!r} at scale "
                              f"{record.get('scale')!r} is not a DataComp recipe run; only those can be submitted")
    ckpt = record.get("final_checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        raise SubmissionError(f"{run / 'train' / 'recipe.json'}: final checkpoint {ckpt!r} not found")
    return Path(ckpt)


def _restricted_unpickle(data: bytes, where: Path) -> Any:
    """info.pkl holds plain dicts/strings/numbers; refuse anything that would run code when loaded."""
    class Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise SubmissionError(f"{where}: holds a {module}.{name} object; expected plain data only")

    try:
        return Plain(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise SubmissionError(f"{where}: not a readable pickle ({exc})") from None


def build_bundle(run: Path, out: Path, *, method_name: str, author: str, email: str, hf_username: str,
                 hf_repo_name: str, track: str = "filtering", writeup: str | None = None,
                 include_checkpoint: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write the bundle for one finished run directory into `out`, validate it, return submission.json."""
    run, out = Path(run), Path(out)
    try:
        summary = Summary.read(run / "summary.json")
    except SummaryError as exc:
        raise SubmissionError(str(exc)) from None
    scale = summary.scale
    config = scale_config(scale)
    if summary.suite not in (None, "datacomp"):
        raise SubmissionError(f"{run / 'summary.json'}: evaluated on suite {summary.suite!r}; "
                              "the leaderboard needs the datacomp suite")
    if summary.partial or summary.missing_tasks:
        raise SubmissionError(f"{run / 'summary.json'}: partial evaluation (missing "
                              f"{', '.join(summary.missing_tasks) or 'tasks'}); evaluate every task first")
    results = read_results(run / RESULTS)
    subset_path = run / "subset.npy"
    subset = load_subset(subset_path)
    checkpoint = _final_checkpoint(run)
    replace_output_dir(out, overwrite, SUBMISSION)
    prefix = out / f"{scale}_scale"
    (prefix / "samples").mkdir(parents=True)
    shutil.copyfile(run / RESULTS, out / RESULTS)  # where evaluate.py reads it (its output dir)
    shutil.copyfile(run / RESULTS, prefix / "results.jsonl")
    sample_name = f"{_slug(method_name)}_{scale}.npy"
    shutil.copyfile(subset_path, prefix / "samples" / sample_name)
    if include_checkpoint:
        shutil.copyfile(checkpoint, prefix / "checkpoint.pt")
    info = {"scale": scale, "checkpoint": str(checkpoint.resolve()), "scale_config": config,
            "data_dir": str((run / "shards").resolve())}
    (out / INFO).write_bytes(pickle.dumps(info, protocol=4))
    record: dict[str, Any] = {
        "scale": scale, "model": config["model"], "dataset_size": int(len(subset)),
        "checkpoint": str(checkpoint.resolve()), "batch_size": config["batch_size"],
        "learning_rate": config["learning_rate"], "method_name": method_name, "author": author, "email": email,
        "hf_username": hf_username, "hf_repo_name": hf_repo_name,
        "timestamp": time.strftime(TIMESTAMP_FORMAT, time.gmtime()), "track": track, "writeup": writeup,
    }
    for rec in results.values():
        if rec["metrics"]["main_metric"] is not None:
            record[rec["dataset"]] = rec["metrics"]["main_metric"]
    atomic_write_json(out / SUBMISSION, record)
    validate_bundle(out)
    return record


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "subset"


def validate_bundle(bundle: Path) -> dict[str, Any]:
    """Check a bundle offline as the leaderboard would need it; raises SubmissionError listing every
    problem found. Returns a summary (scale, tasks, samples, files)."""
    bundle = Path(bundle)
    problems: list[str] = []
    record = _read_json(bundle / SUBMISSION)
    if not isinstance(record, dict):
        raise SubmissionError(f"{bundle / SUBMISSION}: expected a JSON object")
    where = bundle / SUBMISSION
    for name in RECORD_FIELDS:
        if name not in record:
            problems.append(f"{where}: missing field {name!r}")
    for name in REQUIRED_TEXT:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: {name} must be a non-empty string (evaluate.py refuses --submit without it)")
    for name in ("hf_username", "hf_repo_name"):
        value = record.get(name)
        if isinstance(value, str) and value and not HF_NAME.match(value):
            problems.append(f"{where}: {name} {value!r} is not a valid Hugging Face name")
    if isinstance(record.get("email"), str) and record["email"] and not EMAIL.match(record["email"]):
        problems.append(f"{where}: email {record['email']!r} is not an email address")
    if record.get("track") not in TRACKS:
        problems.append(f"{where}: track {record.get('track')!r} is not one of {', '.join(TRACKS)}")
    if record.get("writeup") is not None and not isinstance(record.get("writeup"), str):
        problems.append(f"{where}: writeup must be a string (a link) or null")
    try:
        time.strptime(str(record.get("timestamp")), TIMESTAMP_FORMAT)
    except ValueError:
        problems.append(f"{where}: timestamp {record.get('timestamp')!r} does not match {TIMESTAMP_FORMAT}")

    scale = str(record.get("scale"))
    config: dict[str, Any] | None = None
    try:
        config = scale_config(scale)
    except (SubmissionError, ValueError) as exc:
        problems.append(f"{where}: {exc}")
    if config is not None:
        for name, key in (("model", "model"), ("batch_size", "batch_size"), ("learning_rate", "learning_rate")):
            if record.get(name) != config[key]:
                problems.append(f"{where}: {name} {record.get(name)!r} is not the {scale} recipe's {config[key]!r}")

    info_path = bundle / INFO
    if not info_path.is_file():
        problems.append(f"{info_path}: missing (evaluate.py reads the training info from it)")
    else:
        try:
            info = _restricted_unpickle(info_path.read_bytes(), info_path)
        except SubmissionError as exc:
            problems.append(str(exc))
            info = None
        if info is None:
            pass
        elif not isinstance(info, dict) or not {"scale", "checkpoint", "scale_config"} <= set(info):
            problems.append(f"{info_path}: expected a dict with scale, checkpoint, scale_config")
        else:
            if info["scale"] != record.get("scale"):
                problems.append(f"{info_path}: scale {info['scale']!r} != submission scale {record.get('scale')!r}")
            if config is not None and info["scale_config"] != config:
                problems.append(f"{info_path}: scale_config is not DataComp's {scale} config")
            if str(info["checkpoint"]) != str(record.get("checkpoint")):
                problems.append(f"{info_path}: checkpoint differs from {SUBMISSION}'s")

    # Results: the whole suite, once each, both copies identical, metrics as submission.json says.
    tasks = _suite_tasks()
    prefix = bundle / f"{scale}_scale"
    results: dict[str, dict[str, Any]] = {}
    try:
        results = read_results(prefix / "results.jsonl")
        if (bundle / RESULTS).read_bytes() != (prefix / "results.jsonl").read_bytes():
            problems.append(f"{bundle / RESULTS}: differs from {prefix / 'results.jsonl'}")
    except (SubmissionError, OSError) as exc:
        problems.append(str(exc))
    if results:
        missing = [k for k in tasks if k not in results]
        unknown = [k for k in results if k not in tasks]
        if missing:
            problems.append(f"{prefix / 'results.jsonl'}: {len(results)} tasks, DataComp's suite has {len(tasks)}; "
                            f"missing: {', '.join(missing)}")
        if unknown:
            problems.append(f"{prefix / 'results.jsonl'}: tasks not in DataComp's suite: {', '.join(unknown)}")
        for key, rec in results.items():
            main = rec["metrics"]["main_metric"]
            if key in tasks and rec["dataset"] != tasks[key]:
                problems.append(f"{prefix / 'results.jsonl'}: task {key!r} named {rec['dataset']!r}, "
                                f"DataComp names it {tasks[key]!r}")
            if main is None:
                continue
            if isinstance(main, bool) or not isinstance(main, int | float) or not 0.0 <= float(main) <= 1.0:
                problems.append(f"{prefix / 'results.jsonl'}: task {key!r} main_metric {main!r} is not in [0, 1]")
            elif record.get(rec["dataset"]) != main:
                problems.append(f"{where}: {rec['dataset']!r} is {record.get(rec['dataset'])!r}, "
                                f"results.jsonl says {main!r}")

    samples = sorted((prefix / "samples").glob("*")) if (prefix / "samples").is_dir() else []
    n_samples = 0
    if not samples:
        problems.append(f"{prefix / 'samples'}: no subset file (DataComp asks for the uids trained on)")
    for path in samples:
        try:
            n_samples += len(load_subset(path))
        except SubmissionError as exc:
            problems.append(str(exc))
    if samples and n_samples and record.get("dataset_size") != n_samples:
        problems.append(f"{where}: dataset_size {record.get('dataset_size')!r} != {n_samples} uids in the subset file(s)")
    if problems:
        raise SubmissionError("submission bundle is not valid:\n  " + "\n  ".join(problems))
    return {"scale": scale, "tasks": len(results), "samples": n_samples,
            "files": sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())}


def submit_command(bundle: Path, datacomp_repo: str = "path/to/datacomp") -> str:
    """The DataComp command that uploads the bundle (run from a DataComp checkout, after
    `huggingface-cli login` and creating the model repo; it needs the network)."""
    bundle = Path(bundle)
    record = _read_json(bundle / SUBMISSION)
    prefix = bundle / f"{record['scale']}_scale"
    samples = "::".join(str(p.resolve()) for p in sorted((prefix / "samples").glob("*")))
    args = ["python", f"{datacomp_repo}/evaluate.py", f"--track={record['track']}",
            f"--train_output_dir={bundle.resolve()}", f"--samples={samples}",
            f"--dataset-size={record['dataset_size']}", "--submit", f"--method_name={record['method_name']}",
            f"--author={record['author']}", f"--email={record['email']}",
            f"--hf_username={record['hf_username']}", f"--hf_repo_name={record['hf_repo_name']}"]
    if record.get("writeup"):
        args.append(f"--writeup={record['writeup']}")
    if (prefix / "checkpoint.pt").is_file():
        args.append("--upload_checkpoint")
    return " ".join(shlex.quote(a) for a in args)
