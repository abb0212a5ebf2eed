"""Pool scores and evaluation metrics are the same bits whatever kernels and thread count the caller's
environment asks for: model inference on CPU runs inside harness.numerics.inference()."""

from __future__ import annotations

import textwrap

from reproducibility import OTHER_KERNELS, run_python

TASKS = ["tinynet", "retrieval_scenes"]


def _infer(world, out, env: dict[str, str]) -> dict:
    code = textwrap.dedent(f"""
        import hashlib, json
        from pathlib import Path
        import torch
        from harness.evaluation import evaluate
        from harness.plugins import ScoringContext
        from harness.pool import Pool
        from harness.scoring import compute_terms
        threads = torch.get_num_threads()  # the caller's setting, before harness pins its own
        world, out = Path({str(world)!r}), Path({str(out)!r})
        pool = Pool(world / "pool")
        ctx = ScoringContext(pool=pool, models_dir=world / "models", device="cpu")
        terms = compute_terms(pool, "dfn", ctx, cache_dir=None, progress=False).terms
        scores = hashlib.sha256(b"".join(terms[k].tobytes() for k in sorted(terms))).hexdigest()
        evaluate(world / "models" / "ref_b32", "tiny", world, out, device="cpu", tasks={TASKS!r}, partial=True)
        lines = [json.loads(line) for line in (out / "eval_results.jsonl").read_text().splitlines()]
        print(json.dumps({{"scores": scores, "tasks": {{r["key"]: r["metrics"] for r in lines}},
                          "threads_outside": threads,
                          "capability": torch.backends.cpu.get_cpu_capability()}}))
    """)
    return run_python(code, env)


def test_scores_and_metrics_do_not_depend_on_kernel_settings_or_threads(tiny_world, tmp_path):
    other = _infer(tiny_world, tmp_path / "other", {**OTHER_KERNELS, "OMP_NUM_THREADS": "1"})
    machine = _infer(tiny_world, tmp_path / "machine", {})
    assert other["threads_outside"] == 1  # the caller's own setting, which inference() overrides
    assert other["scores"] == machine["scores"]
    assert other["tasks"] == machine["tasks"] and set(other["tasks"]) == set(TASKS)
