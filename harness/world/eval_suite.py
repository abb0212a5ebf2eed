"""The tiny zero-shot suite, written in clip_benchmark's webdataset layout.

```
eval/<key>/classnames.txt, zeroshot_classification_templates.txt   (classification)
eval/<key>/dataset_type.txt = "retrieval"                           (retrieval)
eval/<key>/test/nshards.txt, test/0.tar ... test/<N-1>.tar           s0000000.jpg + .cls | .txt
```
Groups mirror DataComp's: an ImageNet-like task (80 colour+shape classes), five distribution shifts
of it, a VTAB-like set, image-caption retrieval, and two others.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from harness.stages import atomic_path, atomic_write_text

from . import vocab as V
from .captions import detailed_caption
from .data import STREAM_EVAL
from .io import LOG, add_tar_member
from .samples import encode_jpeg
from .scenes import draw_text_block, render_scene, sample_scene

TINYNET_CLASSES = tuple(f"{c} {s}" for s in V.SHAPES for c in V.COLOUR_NAMES)
_TN = ("a photo of a {c}.", "a drawing of a {c}.", "a picture of a {c}.", "a {c}.", "an image of a {c}.")


@dataclass(frozen=True)
class TaskSpec:
    key: str
    name: str
    group: str | None
    task: str                     # zeroshot_classification | zeroshot_retrieval
    main_metric: str
    size_kind: str                # which eval_size knob sets its size
    classnames: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    nshards: int = 1
    # make(rng, label) -> (image, label or captions)
    make: Callable[[np.random.Generator, int], tuple[Image.Image, int | list[str]]] | None = None


def _tinynet(variant: str):
    def make(rng: np.random.Generator, label: int):
        colour, shape = V.COLOUR_NAMES[label % 8], V.SHAPES[label // 8]
        textures = V.SHIFT_TEXTURES if variant == "background" else V.TEXTURES
        scene = sample_scene(rng, shape=shape, colour=colour, textures=textures)
        if variant == "sketch":
            scene = replace(scene, style="outline", background="plain", bg_rgb=(246, 246, 246), bg_rgb2=(246, 246, 246))
        elif variant == "rotated":
            scene = replace(scene, rotations=tuple(float(rng.uniform(60, 300)) for _ in scene.rotations))
        elif variant == "lowcontrast":
            scene = replace(scene, contrast=float(rng.uniform(0.25, 0.4)))
        return render_scene(scene), label
    return make


def _attribute(field: str, values: tuple):
    def make(rng: np.random.Generator, label: int):
        scene = sample_scene(rng, **{field: values[label]})
        return render_scene(scene), label
    return make


def _shapes10(rng: np.random.Generator, label: int):
    scene = sample_scene(rng, shape=V.SHAPES[label], count=1, size="large")
    return render_scene(scene), label


def _rendered_words(rng: np.random.Generator, label: int):
    scene = sample_scene(rng, background="plain")
    img = render_scene(scene, draw_objects=False)
    word = V.SHAPES[label]
    draw_text_block(img, [word.upper() if rng.random() < 0.3 else word], rng, size_range=(20, 28))
    return img, label


def _retrieval(rng: np.random.Generator, label: int):
    del label
    scene = sample_scene(rng)
    return render_scene(scene), [detailed_caption(scene, rng) for _ in range(3)]


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("tinynet", "TinyNet (ImageNet-like)", "ImageNet", "zeroshot_classification", "acc1", "imagenet",
             TINYNET_CLASSES, _TN, nshards=2, make=_tinynet("plain")),
    TaskSpec("tinynet_v2", "TinyNet v2 (fresh draw)", "IN dist. shifts", "zeroshot_classification", "acc1", "shift",
             TINYNET_CLASSES, _TN, make=_tinynet("v2")),
    TaskSpec("tinynet_sketch", "TinyNet Sketch (outlines)", "IN dist. shifts", "zeroshot_classification", "acc1",
             "shift", TINYNET_CLASSES, _TN, make=_tinynet("sketch")),
    TaskSpec("tinynet_rotated", "TinyNet Rotated", "IN dist. shifts", "zeroshot_classification", "acc1", "shift",
             TINYNET_CLASSES, _TN, make=_tinynet("rotated")),
    TaskSpec("tinynet_background", "TinyNet New Backgrounds", "IN dist. shifts", "zeroshot_classification", "acc1",
             "shift", TINYNET_CLASSES, _TN, make=_tinynet("background")),
    TaskSpec("tinynet_lowcontrast", "TinyNet Low Contrast", "IN dist. shifts", "zeroshot_classification", "acc1",
             "shift", TINYNET_CLASSES, _TN, make=_tinynet("lowcontrast")),
    TaskSpec("vtab_count", "Counts (CLEVR-like)", "VTAB", "zeroshot_classification", "acc1", "vtab",
             tuple(V.COUNT_WORDS[k] for k in V.COUNTS),
             ("a picture of {c} objects.", "{c} shapes.", "a photo of {c} shapes."),
             make=_attribute("count", V.COUNTS)),
    TaskSpec("vtab_position", "Position (CLEVR-distance-like)", "VTAB", "zeroshot_classification", "acc1", "vtab",
             V.POSITION_NAMES, ("shapes in the {c}.", "a picture of objects in the {c}.", "something in the {c}."),
             make=_attribute("position", V.POSITION_NAMES)),
    TaskSpec("vtab_texture", "Background textures (DTD-like)", "VTAB", "zeroshot_classification", "acc1", "vtab",
             V.TEXTURES, ("a {c} background.", "shapes on a {c} background.", "a picture with a {c} background."),
             make=_attribute("background", V.TEXTURES)),
    TaskSpec("vtab_colour", "Colours", "VTAB", "zeroshot_classification", "mean_per_class_recall", "vtab",
             V.COLOUR_NAMES, ("a {c} shape.", "a picture of {c} objects.", "something {c}."),
             make=_attribute("colour", V.COLOUR_NAMES)),
    TaskSpec("vtab_size", "Object size", "VTAB", "zeroshot_classification", "acc1", "vtab",
             V.SIZES, ("a {c} shape.", "{c} objects.", "a picture of {c} shapes."),
             make=_attribute("size", V.SIZES)),
    TaskSpec("retrieval_scenes", "Scene captions (Flickr-like)", "Retrieval", "zeroshot_retrieval", "mean_recall@1",
             "retrieval", make=_retrieval),
    TaskSpec("shapes10", "Shapes-10 (CIFAR-10-like)", None, "zeroshot_classification", "acc1", "other",
             V.SHAPES, ("a photo of a {c}.", "a drawing of a {c}.", "a {c}."), make=_shapes10),
    TaskSpec("rendered_words", "Rendered words (Rendered-SST2-like)", None, "zeroshot_classification", "acc1",
             "other", V.SHAPES, ("a picture of a {c}.", "a {c}."), make=_rendered_words),
)


def chance(spec: TaskSpec, size: int) -> float:
    """Expected score of a random model: 1/classes (balanced labels), or 1/images for recall@1."""
    if spec.task == "zeroshot_retrieval":
        return 1.0 / size
    return 1.0 / len(spec.classnames)


def task_sizes(knobs: dict) -> dict[str, int]:
    return {t.key: int(knobs["eval_size"][t.size_kind]) for t in TASKS}


def write_task(root: Path, spec: TaskSpec, index: int, size: int, seed: int) -> None:
    """Write one task; labels are balanced (label = i mod classes, in shuffled order)."""
    assert spec.make is not None
    root.mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(exist_ok=True)
    stream = STREAM_EVAL + index
    order_rng = np.random.default_rng([seed, stream, 2**40])
    n_classes = max(1, len(spec.classnames))
    labels = order_rng.permutation(np.arange(size) % n_classes)
    per_shard = (size + spec.nshards - 1) // spec.nshards
    for shard in range(spec.nshards):
        with atomic_path(root / "test" / f"{shard}.tar") as tmp, \
                tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(shard * per_shard, min(size, (shard + 1) * per_shard)):
                img, target = spec.make(np.random.default_rng([seed, stream, i]), int(labels[i]))
                add_tar_member(tar, f"s{i:07d}.jpg", encode_jpeg(img, 92))
                if isinstance(target, list):
                    add_tar_member(tar, f"s{i:07d}.txt", "\n".join(target).encode("utf-8"))
                else:
                    add_tar_member(tar, f"s{i:07d}.cls", str(target).encode())
    atomic_write_text(root / "test" / "nshards.txt", f"{spec.nshards}\n")
    if spec.task == "zeroshot_retrieval":
        atomic_write_text(root / "dataset_type.txt", "retrieval\n")
    else:
        atomic_write_text(root / "classnames.txt", "\n".join(spec.classnames) + "\n")
        atomic_write_text(root / "zeroshot_classification_templates.txt", "\n".join(spec.templates) + "\n")


def write_suite(world_dir: Path, seed: int, knobs: dict) -> dict[str, int]:
    sizes = task_sizes(knobs)
    for index, spec in enumerate(TASKS):
        write_task(Path(world_dir) / "eval" / spec.key, spec, index, sizes[spec.key], seed)
        LOG.debug("eval task %s: %d samples", spec.key, sizes[spec.key])
    return sizes


def suite_yaml(sizes: dict[str, int]) -> str:
    """tasks/tiny.yaml for the given task sizes (the committed file uses the default profile's)."""
    lines = [
        "# The tiny zero-shot suite of the generated world (harness/world/eval_suite.py writes the data).",
        "# Paths are relative to the world directory; sizes are the default profile's (the test profile's",
        "# are smaller; world.json records the actual ones). random = a random model's expected score.",
        "suite: tiny",
        "tasks:",
    ]
    for spec in TASKS:
        size = sizes[spec.key]
        group = "null" if spec.group is None else f'"{spec.group}"'
        lines += [
            f"  - key: {spec.key}",
            f'    name: "{spec.name}"',
            "    source: {format: wds, path: eval/" + spec.key + "}",
            f"    task: {spec.task}",
            f'    main_metric: "{spec.main_metric}"',
            f"    group: {group}",
            f"    size: {size}",
            f"    random: {chance(spec, size):.6g}",
            "    scored: true",
        ]
    return "\n".join(lines) + "\n"
