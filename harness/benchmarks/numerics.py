"""Benchmark: the cost of pinned numerics (harness/numerics.py), pinned against native, side by side.

`python -m harness.benchmarks.numerics [--profile test|default] [--what world,train|step] [--repeat N]`

Each measurement is a fresh process (`HARNESS_NUMERICS=pinned` or `native`; everything else the
same: one thread per world worker, `numerics.TRAIN_THREADS` for training), alternating pinned and
native so machine load hits both alike. Reports wall and CPU seconds (the process and its
children) and the pinned/native ratios, as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_WORLD = """
from harness.world import build_world
w = build_world({out!r}, seed=0, profile={profile!r})
print("RESULT", w["content_fingerprint"])
"""
_TRAIN = """
import hashlib, torch
from pathlib import Path
from harness.training import train
from harness.benchmarks.synthetic_shards import write_shards
shards = write_shards(Path({out!r}) / "shards", n_samples=512, per_shard=128, image_size=64)
ckpt = train(shards, {out!r} + "/run", "tiny", seed=0, num_samples={samples})
sd = torch.load(ckpt, weights_only=True)["state_dict"]
print("RESULT", hashlib.sha256(b"".join(sd[k].numpy().tobytes() for k in sorted(sd))).hexdigest()[:16])
"""


_STEP = """
import contextlib, time, torch
import torch.nn.functional as F
from harness import numerics
if {mode!r}.startswith("pinned"):
    numerics.init_worker(1)
else:
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = {mode!r} != "native-no-onednn"
import open_clip
from harness.models import register_configs
register_configs()
torch.manual_seed(0)
model = open_clip.create_model({config!r})
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x = torch.randn(128, 3, 64, 64)
tokens = open_clip.get_tokenizer({config!r})(["two small red circles on a striped background"] * 128)
labels = torch.arange(128)
def step():
    img, txt, scale = model(x, tokens)[:3]
    logits = scale * img @ txt.T
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
# "pinned": products through OpenBLAS inside numerics.pinned; "pinned-mkl": the same kernels and flags
# without it, so every product runs MKL's COMPATIBLE branch (world v3)
with numerics.pinned(1) if {mode!r} == "pinned" else contextlib.nullcontext():
    step()
    t0 = time.process_time()
    for _ in range({steps}):
        step()
print("RESULT", round((time.process_time() - t0) / {steps}, 3))
"""
# settings of the step measurement: (label, HARNESS_NUMERICS, extra environment)
_STEP_MODES = [("pinned (products on OpenBLAS Haswell)", "pinned", {}),
               ("pinned, products on MKL COMPATIBLE (world v3)", "pinned-mkl", {}), ("native", "native", {}),
               ("native + MKL_CBWR=COMPATIBLE only", "native", {"MKL_CBWR": "COMPATIBLE"}),
               ("native + oneDNN off only", "native-no-onednn", {})]


def _measure(code: str, mode: str, extra: dict[str, str] | None = None) -> tuple[float, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    env["HARNESS_NUMERICS"] = "native" if mode.startswith("native") else "pinned"
    env.update(extra or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    result = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="test", choices=["test", "default"], help="world profile (default test)")
    p.add_argument("--what", default="world,train",
                   help="comma-separated: world, train (default both); or step: per-step cost of each pin")
    p.add_argument("--repeat", type=int, default=1, help="pinned/native pairs per measurement (default 1)")
    p.add_argument("--train-samples", type=int, default=16 * 128, help="samples seen by the tiny run (default 2048)")
    p.add_argument("--steps", type=int, default=5, help="training steps timed per setting by --what step")
    p.add_argument("--config", default="ref-b32-tiny", help="model of --what step (default ref-b32-tiny)")
    args = p.parse_args(argv)
    if "step" in args.what.split(","):
        return _steps(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="numerics-bench-") as tmp:
        for what in [w for w in args.what.split(",") if w]:
            times: dict[str, list[tuple[float, float, str]]] = {"pinned": [], "native": []}
            for i in range(args.repeat):
                for mode in ("pinned", "native"):
                    out = str(Path(tmp) / f"{what}-{mode}-{i}")
                    template = _WORLD if what == "world" else _TRAIN
                    code = textwrap.dedent(template.format(out=out, profile=args.profile, samples=args.train_samples))
                    times[mode].append(_measure(code, mode))
                    print(f"{what} {mode} #{i}: {times[mode][-1]}", file=sys.stderr, flush=True)
            rows.append((what, times))
    load = os.getloadavg()
    print(f"Pinned vs native numerics (`python -m harness.benchmarks.numerics --profile {args.profile} "
          f"--what {args.what} --repeat {args.repeat}`); load average at the end {load[0]:.1f}\n")
    print("| what | pinned wall / CPU s | native wall / CPU s | ratio wall / CPU | results |\n|---|---|---|---|---|")
    for what, times in rows:
        pw, pc = min(t[0] for t in times["pinned"]), min(t[1] for t in times["pinned"])
        nw, nc = min(t[0] for t in times["native"]), min(t[1] for t in times["native"])
        label = f"world ({args.profile} profile, first build)" if what == "world" else \
            f"tiny-recipe training ({args.train_samples} samples seen)"
        results = json.dumps({m: sorted({t[2] for t in ts}) for m, ts in times.items()})
        print(f"| {label} | {pw:.0f} / {pc:.0f} | {nw:.0f} / {nc:.0f} | {pw / nw:.2f} / {pc / nc:.2f} | {results} |")
    return 0


def _steps(args: argparse.Namespace) -> int:
    """CPU seconds per training step (batch 128, one thread) under each setting, best of --repeat."""
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for label, mode, extra in _STEP_MODES:
            code = textwrap.dedent(_STEP.format(mode=mode, config=args.config, steps=args.steps))
            sec = float(_measure(code, mode, extra)[2])
            best[label] = min(best.get(label, sec), sec)
            print(f"{label}: {sec}", file=sys.stderr, flush=True)
    print(f"CPU seconds per {args.config} training step, batch 128, one thread (`python -m "
          f"harness.benchmarks.numerics --what step --repeat {args.repeat}`; load average at the end "
          f"{os.getloadavg()[0]:.1f})\n")
    print("| setting | CPU s / step | vs native |\n|---|---|---|")
    for label, sec in best.items():
        print(f"| {label} | {sec:.3f} | {sec / best['native']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
