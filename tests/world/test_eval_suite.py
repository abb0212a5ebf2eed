"""Every tiny eval task loads through clip_benchmark, and tasks/tiny.yaml describes exactly these tasks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness.world.eval_suite import TASKS, chance, suite_yaml, task_sizes
from harness.world.profiles import profile_knobs

REPO = Path(__file__).resolve().parents[2]


def test_tiny_yaml_matches_the_generator():
    text = (REPO / "tasks" / "tiny.yaml").read_text()
    assert text == suite_yaml(task_sizes(profile_knobs("default")))
    suite = yaml.safe_load(text)
    assert suite["suite"] == "tiny"
    groups = Counter(t["group"] for t in suite["tasks"])
    assert groups["ImageNet"] == 1 and groups["IN dist. shifts"] >= 3 and groups["VTAB"] >= 4
    assert groups["Retrieval"] >= 1 and groups[None] >= 2
    for t in suite["tasks"]:
        assert set(t) == {"key", "name", "source", "task", "main_metric", "group", "size", "random", "scored"}
        assert t["source"] == {"format": "wds", "path": f"eval/{t['key']}"}
        assert t["main_metric"] in {"acc1", "mean_per_class_recall", "mean_recall@1"}
        assert 0 < t["random"] < 1


@pytest.mark.parametrize("spec", TASKS, ids=[t.key for t in TASKS])
def test_task_loads_with_clip_benchmark(tiny_world, spec):
    from clip_benchmark.datasets.builder import build_dataset

    root = tiny_world / "eval" / spec.key
    ds = build_dataset(f"wds/{spec.key}", root=str(root), download=False, task=spec.task)
    items = list(ds)
    size = json.loads((tiny_world / "world.json").read_text())["eval"]["tasks"][spec.key]
    assert len(items) == size
    if spec.task == "zeroshot_retrieval":
        assert all(isinstance(caps, list) and len(caps) == 3 and all(caps) for _, caps in items)
        assert chance(spec, size) == 1 / size
    else:
        assert ds.classes == list(spec.classnames) and ds.templates == list(spec.templates)
        assert all("{c}" in t for t in ds.templates)
        labels = Counter(int(label) for _, label in items)
        assert set(labels) <= set(range(len(spec.classnames)))
        # balanced labels: chance = 1 / classes
        assert max(labels.values()) - min(labels.values()) <= 1
    img = items[0][0]
    assert img.size == (128, 128)
