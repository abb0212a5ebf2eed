"""`harness run` as `make eval` runs it, read as a person reads it: on one screen (under 60 lines),
no line twice, no open_clip_train dump, no false warnings, metrics rounded, the run directory last.

A fresh process on the test world, with the test-only training length so it takes seconds; the full
open_clip_train log must still be in the run's train/ folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")
LONG_FLOAT = re.compile(r"\d\.\d{5,}")
FILTER = "dfn"  # scored by a model over the pool's images, so the first run shows a scoring bar


def _harness(*argv: str, cwd: Path, stderr: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the command; its stdout, with stderr merged in (what a terminal shows) unless `stderr=False`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL, timeout=1800)
    # decoded by hand: text mode's universal newlines would turn a bar's "\r" updates into lines
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"))


def _screen_lines(text: str) -> list[str]:
    """What a terminal keeps: one line per newline, a progress bar's carriage-return updates collapsed."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.rstrip("\n").split("\n")]


@pytest.fixture(scope="module")
def first_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    runs = tmp_path_factory.mktemp("budget-runs")
    proc = _harness("run", "--filter", FILTER, "--world", str(tiny_world), "--runs", str(runs),
                    "--test-train-samples", "256", cwd=runs)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return runs, _screen_lines(proc.stdout)


def test_a_first_run_fits_on_one_screen(first_run) -> None:
    _, lines = first_run
    assert len(lines) < 60, "\n".join(lines)
    # every stage reported, each with one bar where it takes time
    text = "\n".join(lines)
    for stage in ("select", "reshard", "train", "evaluate"):
        assert f"{stage}: done in" in text
    assert re.search(r"score dfn: 100%.*sample/s", text)
    assert re.search(r"^train: 100%.*sample", text, re.M)
    assert re.search(r"^evaluate: 100%.*task", text, re.M)


def test_no_line_twice_and_no_open_clip_dump(first_run) -> None:
    _, lines = first_run
    messages = [TIMESTAMP.sub("", line) for line in lines if line.strip()]
    repeated = [m for m, n in Counter(messages).items() if n > 1 and set(m) != {"-", " "}]
    assert not repeated, repeated
    text = "\n".join(lines)
    for noise in ("INFO:root", "Model:", "Params:", "initialized randomly", "Train Epoch", "Start epoch"):
        assert noise not in text
    assert not LONG_FLOAT.search(text), [line for line in lines if LONG_FLOAT.search(line)]


def test_one_log_format(first_run) -> None:
    """Before the table every line is a log line in the one format or a progress bar."""
    _, lines = first_run
    table = next(i for i, line in enumerate(lines) if line.startswith("Method"))
    before = [line for line in lines[:table] if line.strip()]
    logged = [line for line in before if TIMESTAMP.match(line)]
    bars = [line for line in before if re.match(r"^[\w ]+: +\d+%\|", line)]
    assert len(logged) + len(bars) == len(before), [x for x in before if x not in logged + bars]
    assert all(re.match(r"^\d\d:\d\d:\d\d (INFO|WARNING) +[\w.]+: ", line) for line in logged), logged


def test_run_directory_is_printed_last_and_keeps_the_full_training_log(first_run) -> None:
    _, lines = first_run
    assert lines[-1].startswith("run directory: ")
    out = Path(lines[-1].split(": ", 1)[1])
    assert (out / "summary.json").is_file()
    logs = list((out / "train").rglob("out.log"))
    assert len(logs) == 1
    full = logs[0].read_text()
    assert "Train Epoch" in full and "Params:" in full  # what the console left out is all in the file


def test_quiet_prints_the_table_only_and_a_cached_rerun_is_shorter(first_run, tiny_world: Path) -> None:
    runs, normal = first_run
    common = ("run", "--filter", FILTER, "--world", str(tiny_world), "--runs", str(runs),
              "--test-train-samples", "256")
    quiet = _harness(*common, "-q", cwd=runs)
    assert quiet.returncode == 0
    q = _screen_lines(quiet.stdout)
    assert not any(TIMESTAMP.match(line) or "%|" in line for line in q), q  # no log lines, no bars
    assert q[0].startswith("Method") and q[-1].startswith("run directory: ")
    cached = _harness(*common, cwd=runs)
    assert cached.returncode == 0 and "up to date, skipped" in cached.stdout
    assert len(_screen_lines(cached.stdout)) < len(normal)


def test_json_output_has_full_precision_for_run_and_report(first_run, tiny_world: Path) -> None:
    import json

    runs, lines = first_run
    out = Path(lines[-1].split(": ", 1)[1])
    saved = json.loads((out / "summary.json").read_text())
    cached = _harness("run", "--filter", FILTER, "--world", str(tiny_world), "--runs", str(runs),
                      "--test-train-samples", "256", "--json", cwd=runs, stderr=False)
    assert cached.returncode == 0
    assert json.loads(cached.stdout)["aggregates"] == saved["aggregates"]  # not rounded
    report = _harness("report", str(runs), "--out", str(runs / "report"), "--json", cwd=runs, stderr=False)
    assert report.returncode == 0, report.stdout[-2000:]
    [row] = json.loads(report.stdout)
    assert row["aggregates"] == saved["aggregates"] and Path(row["run_dir"]) == out


def _world_build_output(out: Path, verbosity: int) -> str:
    """What a world build prints (the micro world of tests/world/test_build.py, two worker processes)."""
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests' / 'world')!r})\n"
            "from harness import console; from harness.world import build_world\n"
            "from test_build import MICRO, MODELS\n"
            f"console.setup({verbosity})\n"
            f"build_world({str(out)!r}, seed=5, profile='test', models=MODELS, knobs=MICRO, workers=2)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=900)
    text = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def test_a_world_build_logs_each_step_once_in_the_one_format_under_one_bar(tmp_path: Path) -> None:
    """The workers' detail stays off the console (-v shows it); the parent logs each step once and
    draws one bar, whose note is what the workers report."""
    text = _world_build_output(tmp_path / "w", 0)
    lines = [line for line in _screen_lines(text) if line.strip()]
    assert all(re.match(r"^\d\d:\d\d:\d\d INFO +harness\.world: world ", line) for line in lines), lines
    done = [line for line in lines if re.search(r"world (ref_b32|ref_l14|dfn|pool|eval): done in \d+ s", line)]
    assert len(done) == 5 and len(lines) == 7, lines  # start, 3 models, pool, eval suite, the content fingerprint
    assert "content fingerprint" in lines[-1]
    updates = text.split("\r")
    assert any(re.search(r"ref_l14 2/2 steps loss \d\.\d{3}", u) for u in updates), updates[-20:]
    assert any("pool 3/3 shards" in u for u in updates)
    shown = [int(m.group(1)) for u in updates if (m := re.match(r"world: +(\d+)%\|", u))]
    assert shown and shown == sorted(shown) and shown[-1] > 50, shown  # it only moves forward
    assert not (tmp_path / "w" / ".build" / "progress").exists()  # the workers' report files are gone


def test_a_quiet_world_build_prints_nothing(tmp_path: Path) -> None:
    assert not _world_build_output(tmp_path / "w", -1).strip()
