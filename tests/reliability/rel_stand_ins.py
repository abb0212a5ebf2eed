"""Stand-ins shared by the cache and key tests: two counting scorers, and train/evaluate stand-ins
with the real modules' resume contracts (fixtures `counting` and `fake_stages` in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np

from harness.plugins import Needs, Scorer


class CountingColumn(Scorer):
    """A cached metadata scorer over clip_l14_similarity_score that counts its calls."""

    name = "rel_counting_column"
    needs = Needs(columns=("clip_l14_similarity_score",))
    default_percent = 30.0
    calls = 0

    def score_metadata(self, batch, ctx):
        CountingColumn.calls += 1
        return {"score": batch.column("clip_l14_similarity_score").astype(float)}


class CaptionLength(Scorer):
    """A shard scorer: caption length; its model file is part of its fingerprint."""

    name = "rel_counting_captions"
    needs = Needs(captions=True, models=("probe",))
    default_percent = 30.0
    calls = 0

    def fingerprint(self, ctx):
        return hashlib.sha256(Path(ctx.model_path("probe")).read_bytes()).hexdigest()[:16]

    def score_samples(self, samples, ctx):
        CaptionLength.calls += 1
        scale = float(Path(ctx.model_path("probe")).read_text())
        return {"score": np.array([scale * len(s.caption) for s in samples])}


class FakeStages:
    """train/evaluate stand-ins with the real modules' resume contracts; count their calls."""

    def __init__(self) -> None:
        self.train_calls = 0
        self.eval_calls = 0

    def train(self, shards_dir: Path, out_dir: Path, scale: str, seed: int = 0, gpus: int = 0, **kw) -> Path:
        self.train_calls += 1
        out_dir = Path(out_dir)
        ck = out_dir / "checkpoints" / "epoch_latest.pt"
        if (out_dir / "complete").exists():  # harness.training.train: a complete run is returned as is
            return ck
        h = hashlib.sha256()  # what training reads: member names and bytes (tar headers hold times)
        for tar in sorted(Path(shards_dir).glob("*.tar")):
            with tarfile.open(tar) as tf:
                for m in tf.getmembers():
                    h.update(m.name.encode() + tf.extractfile(m).read())
        ck.parent.mkdir(parents=True, exist_ok=True)
        ck.write_text(h.hexdigest())
        (out_dir / "complete").write_text("")
        return ck

    def evaluate(self, checkpoint: Path, suite: str, data_root: Path, out_dir: Path, device: str = "cpu",
                 partial: bool = False, num_workers: int = 0, compat: str | None = None) -> dict:
        self.eval_calls += 1
        results = Path(out_dir) / "eval_results.jsonl"
        done = {}
        if results.exists():  # harness.evaluation.evaluate skips tasks already in eval_results.jsonl
            done = {json.loads(x)["key"]: json.loads(x) for x in results.read_text().splitlines()}
        metric = int(Path(checkpoint).read_text()[:8], 16) / 16**8
        for key in ("task_a", "task_b"):
            if key not in done:
                line = {"key": key, "dataset": key, "metrics": {"main_metric": metric}}
                with results.open("a") as f:
                    f.write(json.dumps(line) + "\n")
                done[key] = line
        avg = float(np.mean([v["metrics"]["main_metric"] for v in done.values()]))
        return {"aggregates": {"Average": avg}, "tasks": {k: v["metrics"] for k, v in done.items()},
                "suite": suite, "partial": False, "missing_tasks": []}
