"""Our per-task metrics equal clip_benchmark's own evaluate() on the same model and data."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
import yaml
from PIL import Image

from harness.evaluation import evaluate
from harness.evaluation.encoders import ClipEncoder

from .fabricate import write_wds

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "eval-test-tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("eval-test-tiny", pretrained=None)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer("eval-test-tiny")


def _noise_images(n, seed):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def small_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("faithful")
    classes = ["cat", "dog", "car", "tree", "house", "boat", "bird"]
    imgs = _noise_images(30, 1)
    write_wds(root / "cls", [{"image": im, "cls": i % 7} for i, im in enumerate(imgs)], classes,
              ["a photo of a {c}.", "a drawing of a {c}.", "{c}"], per_shard=12)
    caps = [f"caption number {i} about {classes[i % 7]}\nanother caption {i}" for i in range(14)]
    write_wds(root / "ret", [{"image": im, "txt": c} for im, c in zip(_noise_images(14, 2), caps, strict=True)],
              None, None, dataset_type="retrieval", per_shard=5)
    suite = {"suite": "faithful", "tasks": [
        {"key": "cls", "name": "Small classification", "source": {"format": "wds", "path": "cls"},
         "task": "zeroshot_classification", "main_metric": "acc1", "group": "ImageNet"},
        {"key": "ret", "name": "Small retrieval", "source": {"format": "wds", "path": "ret"},
         "task": "zeroshot_retrieval", "main_metric": "mean_recall@1", "group": "Retrieval"},
    ]}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    return root


def test_metrics_equal_clip_benchmark(tmp_path, tiny_clip, small_tasks):
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from clip_benchmark.metrics import zeroshot_retrieval as zsr

    model, preprocess, tokenizer = tiny_clip
    enc = ClipEncoder(model, preprocess, tokenizer, "cpu")
    summary = evaluate(enc, small_tasks / "suite.yaml", small_tasks, tmp_path, batch_size=8)
    ours = {json.loads(x)["key"]: json.loads(x)["metrics"] for x in (tmp_path / "eval_results.jsonl").open()}

    ds = build_dataset("wds/cls", root=str(small_tasks / "cls"), transform=preprocess, split="test", download=False)
    loader = torch.utils.data.DataLoader(ds.batched(8), batch_size=None, shuffle=False, num_workers=0)
    ref = zsc.evaluate(model, loader, tokenizer, ds.classes, ds.templates, "cpu", amp=False)
    for k in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours["cls"][k] == pytest.approx(ref[k], abs=1e-6), k
    assert 0 < ours["cls"]["acc5"] < 1  # a non-degenerate case

    rds = build_dataset("wds/ret", root=str(small_tasks / "ret"), transform=preprocess, split="test", download=False,
                        task="zeroshot_retrieval")
    rloader = torch.utils.data.DataLoader(rds.batched(4), batch_size=None, shuffle=False, num_workers=0)
    # clip_benchmark's retrieval expects (images, list of caption lists) batches
    rloader = [(imgs, list(texts)) for imgs, texts in rloader]
    rref = zsr.evaluate(model, rloader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
    for k, v in rref.items():
        assert ours["ret"][k] == pytest.approx(v, abs=1e-6), k
    assert 0 < ours["ret"]["image_retrieval_recall@5"] < 1
    assert ours["ret"]["mean_recall@1"] == pytest.approx(
        0.5 * (rref["image_retrieval_recall@1"] + rref["text_retrieval_recall@1"]), abs=1e-6)
    assert summary["aggregates"]["ImageNet"] == pytest.approx(ours["cls"]["acc1"])


def test_worker_processes_give_same_metrics(tmp_path, tiny_clip, small_tasks):
    model, preprocess, tokenizer = tiny_clip
    enc = ClipEncoder(model, preprocess, tokenizer, "cpu")
    a = evaluate(enc, small_tasks / "suite.yaml", small_tasks, tmp_path / "a", batch_size=8, tasks=["cls"],
                 partial=True)
    b = evaluate(enc, small_tasks / "suite.yaml", small_tasks, tmp_path / "b", batch_size=8, tasks=["cls"],
                 partial=True, num_workers=2)
    assert a["tasks"]["cls"]["main_metric"] == pytest.approx(b["tasks"]["cls"]["main_metric"], abs=1e-9)


def test_model_spec_through_harness_models(tmp_path, tiny_clip, small_tasks):
    """A world-style model dir goes through harness.models.load_clip and scores like the live model."""
    pytest.importorskip("harness.models")
    model, preprocess, tokenizer = tiny_clip
    d = tmp_path / "models" / "m"
    d.mkdir(parents=True)
    torch.save(model.state_dict(), d / "model.pt")
    (d / "model.json").write_text(json.dumps({"model_name": "eval-test-tiny", "kind": "clip"}))
    a = evaluate(str(d), small_tasks / "suite.yaml", small_tasks, tmp_path / "a", batch_size=8)
    b = evaluate(ClipEncoder(model, preprocess, tokenizer), small_tasks / "suite.yaml", small_tasks,
                 tmp_path / "b", batch_size=8)
    assert a["aggregates"] == pytest.approx(b["aggregates"], abs=1e-9)
