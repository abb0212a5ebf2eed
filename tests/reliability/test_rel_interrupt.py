"""Item 7: SIGKILL during score, reshard, train and evaluate, then a rerun; fault injection at random points.

Every interrupted run must end with the same summary (aggregates, per-task metrics, sample counts) and the
same subset as one uninterrupted run, which all tests here share. Runs are subprocesses (rel_runner.py, the
function `harness run` calls) with a test-only training length, killed with SIGKILL (the whole process
group, so no orphaned worker outlives the kill) once the stage's progress shows in the run directory.

Also here: SIGKILL of `python -m harness.cli score` part way through a shard-scoring pass, then a rerun.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FILTER = "clip_l14_30"
TRAIN_SAMPLES = 512  # 4 checkpoints of one 128-sample batch each: the whole flow in seconds
STAGES = ("score", "reshard", "train", "evaluate")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _run_dir(runs: Path, world: Path) -> Path:
    return runs / world.resolve().name / "tiny" / FILTER / "seed0"


def _start(world: Path, runs: Path, probe: Path, hold: tuple[str, float] | None = None) -> subprocess.Popen:
    args = [sys.executable, str(HERE / "rel_runner.py"), str(world), str(runs), FILTER, str(TRAIN_SAMPLES),
            str(probe)]
    if hold:
        args += [hold[0], str(hold[1])]
    log = open(probe.parent / f"{probe.name}.log", "ab")  # noqa: SIM115 (closed by the child's exit)
    return subprocess.Popen(args, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> bool:
    """Poll until ready() (True) or the process ends first (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return ready()
        time.sleep(0.02)
    raise TimeoutError("the stage never showed progress")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _finish(proc: subprocess.Popen, probe: Path) -> None:
    assert proc.wait(600) == 0, (probe.parent / f"{probe.name}.log").read_text()[-3000:]


def _progress(stage: str, out: Path, probe: Path) -> Callable[[], bool]:
    """True once `stage` has visibly started working (files of its own in the run directory)."""
    if stage == "score":  # a metadata column: no files; the runner holds the stage open after its mark
        return lambda: (probe / "score.started").exists()
    if stage == "reshard":
        return lambda: any((out / "shards").glob(".reshard-w*")) if (out / "shards").is_dir() else False
    if stage == "train":
        return lambda: any((out / "train").rglob("epoch_latest.pt")) if (out / "train").is_dir() else False
    return lambda: (out / "eval_results.jsonl").exists() and (out / "eval_results.jsonl").read_text().count("\n") >= 2


def _result(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    return {"aggregates": s["aggregates"], "tasks": s["tasks"], "samples": s["samples"],
            "unique_samples": s["unique_samples"], "subset": np.load(out / "subset.npy").tolist(),
            "shards": json.loads((out / "shards" / "meta.json").read_text())["output_count"]}


@pytest.fixture(scope="module")
def baseline(tiny_world, tmp_path_factory) -> tuple[dict, dict]:
    """One uninterrupted run: its result and its stage timings."""
    root = tmp_path_factory.mktemp("baseline")
    proc = _start(tiny_world, root / "runs", root / "probe")
    _finish(proc, root / "probe")
    out = _run_dir(root / "runs", tiny_world)
    seconds = json.loads((out / "summary.json").read_text())["provenance"]["stage_seconds"]
    return _result(out), seconds


def test_sigkill_in_each_stage_then_rerun_matches_an_uninterrupted_run(tiny_world, baseline, tmp_path):
    """One run directory, killed once inside each stage in turn; each rerun resumes where the last stopped."""
    runs, out = tmp_path / "runs", _run_dir(tmp_path / "runs", tiny_world)
    for i, stage in enumerate(STAGES):
        probe = tmp_path / f"probe{i}"
        proc = _start(tiny_world, runs, probe, hold=("score", 30.0) if stage == "score" else None)
        assert _wait_for(proc, _progress(stage, out, probe)), f"{stage} finished before it could be killed"
        _kill(proc)
        assert not (out / ".stages" / f"{'select' if stage == 'score' else stage}.json").exists(), stage
        assert not (out / "summary.json").exists()
    probe = tmp_path / "probe_final"
    _finish(_start(tiny_world, runs, probe), probe)
    assert _result(out) == baseline[0]
    assert not list((out / "shards").glob(".reshard-w*"))  # no temporary left behind
    assert not (probe / "score.started").exists()  # the finished selection was not redone


@pytest.mark.slow
def test_fault_injection_three_random_kills_per_stage(tiny_world, baseline, tmp_path):
    """Each stage killed at a random point three times (seeded), then a rerun: the same final summary."""
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "11")))
    runs, out = tmp_path / "runs", _run_dir(tmp_path / "runs", tiny_world)
    seconds = baseline[1]
    n = 0
    landed = dict.fromkeys(STAGES, 0)
    for stage in STAGES:
        record = out / ".stages" / f"{'select' if stage == 'score' else stage}.json"
        for _ in range(3):
            if record.exists():
                break  # the stage finished before a kill landed: nothing left to interrupt
            probe = tmp_path / f"probe{n}"
            n += 1
            hold = ("score", 2.0) if stage == "score" else None
            proc = _start(tiny_world, runs, probe, hold=hold)
            if not _wait_for(proc, lambda p=probe, s=stage: (p / f"{s}.started").exists()):
                continue
            time.sleep(rng.uniform(0, max(0.2, seconds.get("select" if stage == "score" else stage, 1.0))))
            landed[stage] += proc.poll() is None and not record.exists()
            _kill(proc)
    probe = tmp_path / "probe_final"
    _finish(_start(tiny_world, runs, probe), probe)
    assert _result(out) == baseline[0]
    assert all(landed[s] >= 1 for s in STAGES), landed  # every stage was really interrupted at least once


# ------------------------------------------------------------------------------------------------
# SIGKILL in the middle of a shard-scoring pass (`harness score`, a slow test plugin on the generated pool)

SLOW_PLUGIN = '''
import time
import numpy as np
from harness.plugins import Needs, Scorer, register


@register
class SlowCaptions(Scorer):
    name = "rel_slow_captions"
    needs = Needs(captions=True)
    default_percent = 50.0

    def score_samples(self, samples, ctx):
        time.sleep(0.3)
        return {"score": np.array([len(s.caption) + 0.5 * (s.uid[0] in "0123456") for s in samples], float)}
'''


def test_sigkill_during_shard_scoring_resumes_to_the_same_table(pool_factory, tmp_path):
    gp = pool_factory(n_files=2, rows=20, n_shards=4)
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(SLOW_PLUGIN)

    def cli(runs: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "score", "--filter", "rel_slow_captions", "--pool", str(gp.root),
             "--plugins", str(plugin), "--runs", str(runs)],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def tables(runs: Path) -> list[Path]:
        return sorted(runs.rglob("rel_slow_captions-*.parquet"))

    ref = cli(tmp_path / "ref")
    assert ref.wait(300) == 0, ref.stderr.read().decode()[-2000:]

    runs = tmp_path / "runs"
    proc = cli(runs)
    assert _wait_for(proc, lambda: len(list(runs.rglob("*.work/*.parquet"))) >= 1)  # first shard done
    _kill(proc)
    assert not [p for p in tables(runs) if ".work" not in str(p)]  # no table yet: only resume points
    done_before = {p.name for p in runs.rglob("*.work/*.parquet")}
    assert 1 <= len(done_before) < 4
    again = cli(runs)
    assert again.wait(300) == 0, again.stderr.read().decode()[-2000:]

    import pyarrow.parquet as pq

    (got,), (want,) = [p for p in tables(runs) if ".work" not in str(p)], tables(tmp_path / "ref")
    assert got.name == want.name
    assert pq.read_table(got).equals(pq.read_table(want))
    assert not list(runs.rglob("*.work"))  # resume points removed once the table is written
