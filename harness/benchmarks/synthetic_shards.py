"""Small DataComp-resharder-style webdataset shards of rendered shapes, for tests and the benchmark.

Captions name the colour and the shape ("a red circle"), so a model trained on them can be checked
for learning with a 32-way zero-shot probe. Not the generated world (harness.world): just enough
data to exercise the training path anywhere.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import webdataset as wds
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30),
          "purple": (140, 40, 170), "orange": (240, 140, 20), "black": (15, 15, 15), "white": (245, 245, 245)}
SHAPES = ("circle", "square", "triangle", "cross")


def render(color: str, shape: str, size: int, rng: random.Random) -> Image.Image:
    bg = tuple(rng.randint(90, 170) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = (rng.uniform(r, size - r) for _ in range(2))
    fill = COLORS[color]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        w = r / 3
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    return img


def write_shards(out: Path, n_samples: int, per_shard: int, image_size: int = 32, seed: int = 0) -> Path:
    """`out/{:08d}.tar` with <key>.jpg, <key>.txt, <key>.json (uid) + per-shard stats, like DataComp's resharder."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n_shards = (n_samples + per_shard - 1) // per_shard
    for s in range(n_shards):
        count = min(per_shard, n_samples - s * per_shard)
        with wds.TarWriter(str(out / f"{s:08d}.tar")) as sink:
            for j in range(count):
                color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
                buf = io.BytesIO()
                render(color, shape, image_size, rng).save(buf, format="JPEG", quality=90)
                key = f"{s:04d}{j:04d}"
                uid = f"{rng.getrandbits(128):032x}"
                sink.write({"__key__": key, "jpg": buf.getvalue(), "txt": f"a {color} {shape}",
                            "json": json.dumps({"uid": uid, "key": key}).encode()})
        (out / f"{s:08d}_stats.json").write_text(json.dumps({"count": count, "successes": count}))
    return out
