"""Evaluation benchmark: the whole suite with the model loaded once (ours) against clip_benchmark's
own entry point run task by task with the model reloaded for each task (what DataComp's
evaluate.py does).

    python -m harness.benchmarks.evaluation --model <world>/models/ref_b32 --suite tiny --data <world>/eval
    python -m harness.benchmarks.evaluation            # the default world's suite and ref_b32 when the world
                                                  # exists (make bench builds it first), else a synthetic
                                                  # suite + a small random CLIP

Both sides run in this process, on the same device, batch size and data; clip_benchmark is driven
through ``clip_benchmark.cli.main`` with its usual arguments (``eval --dataset wds/<task>
--dataset_root ... --model <config> --pretrained <checkpoint>``). Only tasks clip_benchmark can
run from a webdataset are timed on its side; the same set is timed on ours. Prints a Markdown
section with both times, the ratio and the largest main-metric difference between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.evaluation.evaluator import RESULTS_FILE, evaluate
from harness.evaluation.suites import Suite, load_suite

CB_TASK = {"zeroshot_classification": "zeroshot_classification", "zeroshot_retrieval": "zeroshot_retrieval"}

BENCH_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2},
}


def arch_and_checkpoint(model: str) -> tuple[str, str]:
    """(open_clip config, checkpoint file) for a world model dir or "<config>:<checkpoint>"."""
    p = Path(model)
    if p.is_dir():
        meta = json.loads((p / "model.json").read_text())
        return meta["model_name"], str(p / meta.get("weights", "model.pt"))
    arch, _, ckpt = model.partition(":")
    return arch, ckpt


def _comparable(suite: Suite, data: Path) -> Suite:
    tasks = tuple(t for t in suite.tasks if t.source.format == "wds" and t.task in CB_TASK
                  and (t.data_dir(data) / "test" / "nshards.txt").exists())
    return Suite(name=suite.name, tasks=tasks, path=suite.path)


def truncated_copy(suite: Suite, data: Path, out: Path, n: int) -> Path:
    """The first ``n`` samples of every task, member bytes unchanged, in one shard (for slow models)."""
    import shutil
    import tarfile

    from harness.evaluation.loaders import iter_wds_raw, open_wds

    for t in suite.tasks:
        src, dst = t.data_dir(data), t.data_dir(out)
        (dst / "test").mkdir(parents=True, exist_ok=True)
        for f in ("classnames.txt", "zeroshot_classification_templates.txt", "dataset_type.txt"):
            if (src / f).exists():
                shutil.copy(src / f, dst / f)
        with tarfile.open(dst / "test" / "0.tar", "w") as tar:
            for i, (_, key, raw) in enumerate(iter_wds_raw(open_wds(src).shards)):
                if i == n:
                    break
                for ext, payload in raw.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        (dst / "test" / "nshards.txt").write_text("1\n")
    return out


def run_clip_benchmark_per_task(suite: Suite, data: Path, arch: str, ckpt: str, out: Path, device: str,
                                batch_size: int, num_workers: int = 0) -> dict[str, float]:
    """DataComp-style: one clip_benchmark eval per task, each loading the model again."""
    from clip_benchmark import cli

    mains = {}
    for t in suite.tasks:
        dataset_type = (t.data_dir(data) / "dataset_type.txt")
        retrieval = dataset_type.exists() and dataset_type.read_text().strip() == "retrieval"
        task = "zeroshot_retrieval" if retrieval else "zeroshot_classification"
        result = out / f"{t.key.replace('/', '-')}.json"
        argv = ["clip_benchmark", "eval", "--dataset", f"wds/{t.key}", "--dataset_root", str(t.data_dir(data)),
                "--task", task, "--model", arch, "--pretrained", ckpt, "--output", str(result),
                "--batch_size", str(batch_size), "--num_workers", str(num_workers), "--recall_k", "1", "5", "10"]
        if device == "cpu":
            argv.append("--no_amp")
        old = sys.argv
        sys.argv = argv
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cli.main()
        finally:
            sys.argv = old
        m = json.loads(result.read_text())["metrics"]
        if retrieval:
            m["mean_recall@1"] = 0.5 * (m["image_retrieval_recall@1"] + m["text_retrieval_recall@1"])
        mains[t.key] = m.get(t.main_metric) if t.main_metric else None
    return mains


def _write_wds(root: Path, images, labels, classnames, templates, per_shard: int = 100) -> None:
    import tarfile

    (root / "test").mkdir(parents=True, exist_ok=True)
    (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    n_shards = 0
    for start in range(0, len(images), per_shard):
        with tarfile.open(root / "test" / f"{n_shards}.tar", "w") as tar:
            for i in range(start, min(start + per_shard, len(images))):
                for name, data in ((f"s{i:07d}.webp", images[i]), (f"s{i:07d}.cls", str(labels[i]).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        n_shards += 1
    (root / "test" / "nshards.txt").write_text(f"{n_shards}\n")


def make_synthetic(root: Path, n_tasks: int = 6, n_images: int = 256, seed: int = 0) -> tuple[Path, str, Suite]:
    import open_clip
    import torch
    import yaml
    from PIL import Image

    cfg = root / "bench-eval-clip.json"
    cfg.write_text(json.dumps(BENCH_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model("bench-eval-clip", pretrained=None)
    ckpt = root / "bench-eval-clip.pt"
    torch.save(model.state_dict(), ckpt)
    rng = np.random.default_rng(seed)
    classes = [f"object {i}" for i in range(10)]
    tasks = []
    for k in range(n_tasks):
        imgs = []
        for _ in range(n_images):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, "WEBP", quality=80)
            imgs.append(buf.getvalue())
        _write_wds(root / "data" / f"task{k}", imgs, [i % 10 for i in range(n_images)], classes,
                   ["a photo of a {c}.", "a picture of the {c}.", "{c}"])
        tasks.append({"key": f"task{k}", "name": f"Task {k}", "source": {"format": "wds", "path": f"task{k}"},
                      "task": "zeroshot_classification", "main_metric": "acc1",
                      "group": "ImageNet" if k == 0 else "VTAB"})
    (root / "suite.yaml").write_text(yaml.safe_dump({"suite": "bench-synthetic", "tasks": tasks}))
    return root / "data", f"bench-eval-clip:{ckpt}", load_suite(root / "suite.yaml")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="world model dir or <open_clip config>:<checkpoint>")
    ap.add_argument("--suite", default="tiny")
    ap.add_argument("--data", type=Path, help="data root of the suite (the world's eval/ dir)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2,
                    help="DataLoader worker processes, the same on both sides (DataComp and clip_benchmark's "
                         "CLI default to 4; 2 = this project's development machine's cores)")
    ap.add_argument("--world", type=Path, default=Path(".cache/world-seed0"),
                    help="used when --model/--data are not given and this world exists")
    ap.add_argument("--max-per-task", type=int, default=0,
                    help="time on the first N samples of each task only (for models too slow for the whole suite)")
    ap.add_argument("--repeats", type=int, default=2, help="alternate the two runners; report each one's best")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not (args.model and args.data) and (args.world / "models" / "ref_b32" / "model.json").is_file():
            args.model, args.data = str(args.world / "models" / "ref_b32"), args.world
        if args.model and args.data:
            data, spec, suite = args.data, args.model, load_suite(args.suite)
            from harness.models import register_configs

            register_configs()
        else:
            data, spec, suite = make_synthetic(tmp)
        arch, ckpt = arch_and_checkpoint(spec)
        suite = _comparable(suite, data)
        if not suite.tasks:
            print(f"no webdataset tasks of suite {args.suite!r} under {data}")
            return 1
        if args.max_per_task:
            data = truncated_copy(suite, data, tmp / "truncated", args.max_per_task)

        ours_s = cb_s = float("inf")
        for r in range(args.repeats):
            t0 = time.perf_counter()
            evaluate(spec, suite, data, tmp / f"ours{r}", device=args.device, batch_size=args.batch_size,
                     num_workers=args.num_workers)
            ours_s = min(ours_s, time.perf_counter() - t0)
            (tmp / f"cb{r}").mkdir()
            t0 = time.perf_counter()
            theirs = run_clip_benchmark_per_task(suite, data, arch, ckpt, tmp / f"cb{r}", args.device,
                                                 args.batch_size, args.num_workers)
            cb_s = min(cb_s, time.perf_counter() - t0)
        ours = {json.loads(x)["key"]: json.loads(x)["metrics"]["main_metric"]
                for x in (tmp / "ours0" / RESULTS_FILE).read_text().splitlines()}

    diff = max(abs(ours[k] - v) for k, v in theirs.items() if v is not None and ours.get(k) is not None)
    n_img = sum(min(t.size or 0, args.max_per_task or t.size or 0) for t in suite.tasks)
    print(f"Whole-suite zero-shot evaluation, {len(suite.tasks)} webdataset tasks of suite `{suite.name}`"
          f" ({'given model' if args.model else 'synthetic data, random CLIP'}; device {args.device}, "
          f"batch {args.batch_size}, {args.num_workers} DataLoader workers on both sides"
          f"{f', {n_img} images' if n_img else ''}).\n")
    print(f"| runner | wall time (s), best of {args.repeats} |\n|---|---|")
    print(f"| harness evaluate (model loaded once) | {ours_s:.2f} |")
    print(f"| clip_benchmark per task, model reloaded each time (DataComp's way) | {cb_s:.2f} |")
    print(f"\nSpeed-up: {cb_s / ours_s:.2f}x. Largest main-metric difference between the two: {diff:.2e}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
