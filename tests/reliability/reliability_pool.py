"""A small generated DataComp-layout pool for the reliability tests (pyarrow + numpy + tarfile only), so
they do not depend on the tiny world. Fixtures using it are in conftest.py; this module has a unique name
so `from reliability_pool import ...` cannot pick up another folder's conftest in a whole-suite run.

The default pool holds the awkward captions the reader, the scoring engine and the resharder must carry
unchanged: an empty caption, a 10,000-character caption, control characters and mixed scripts.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pool_members import add_member, random_jpeg

LONG_CAPTION = ("a very long caption " * 500)[:10_000]
CONTROL_CAPTION = "tab\there\x00nul\x01\x1b[31mansi\x7f\u200bzero-width\r\nnewline\u2028sep"
MIXED_CAPTION = "dog Hund 犬 собака كلب כֶּלֶב σκύλος कुत्ता 🐕 cafe\u0301"
SPECIAL_CAPTIONS = {0: "", 1: LONG_CAPTION, 2: CONTROL_CAPTION, 3: MIXED_CAPTION}


@dataclass
class GenPool:
    """What make_pool wrote: the pool root and, per row in metadata order, uid, caption and shard key."""

    root: Path
    uids: list[str]
    captions: list[str]
    keys: list[str]
    shard_of: list[int]
    images: dict[str, bytes] = field(default_factory=dict)  # uid -> image bytes as written

    @property
    def metadata_files(self) -> list[Path]:
        return sorted((self.root / "metadata").glob("*.parquet"))

    @property
    def shards(self) -> list[Path]:
        return sorted((self.root / "shards").glob("*.tar"))


def make_pool(
    root: Path,
    n_files: int = 2,
    rows: int = 10,
    n_shards: int = 2,
    seed: int = 0,
    dim: int = 8,
    captions: dict[int, str] | None = None,
    bad_image_rows: tuple[int, ...] = (),
    no_txt_rows: tuple[int, ...] = (),
    raw_txt: dict[int, bytes] | None = None,
) -> GenPool:
    """Write ``<root>/metadata/{i:08d}.parquet|npz`` and ``<root>/shards/{i:08d}.tar`` (+ stats).

    Scores are distinct and known: row i has clip_l14_similarity_score = 0.01 * (i + 1), so any
    percent keeps an exactly predictable set. ``captions`` overrides per row (default SPECIAL_CAPTIONS);
    ``raw_txt`` writes raw bytes as a row's .txt (invalid UTF-8); ``no_txt_rows`` omit the .txt member.
    """
    rng = np.random.default_rng(seed)
    n = n_files * rows
    words = rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)
    uids = [f"{int(a):016x}{int(b):016x}" for a, b in words]
    caps = dict(SPECIAL_CAPTIONS if captions is None else captions)
    texts = [caps.get(i, f"a photo of thing number {i}") for i in range(n)]
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        lo, hi = f * rows, (f + 1) * rows
        table = pa.table(
            {
                "uid": uids[lo:hi],
                "url": [f"http://example.com/{i}.jpg" for i in range(lo, hi)],
                "text": texts[lo:hi],
                "original_width": np.full(rows, 256, np.int64),
                "original_height": np.full(rows, 256, np.int64),
                "clip_b32_similarity_score": np.arange(lo, hi, dtype=np.float32) * 0.01 + 0.2,
                "clip_l14_similarity_score": (np.arange(lo, hi, dtype=np.float32) + 1) * 0.01,
                "face_bboxes": pa.array([[] for _ in range(rows)], pa.list_(pa.list_(pa.float64()))),
                "sha256": [f"{i:064x}" for i in range(lo, hi)],
            }
        )
        pq.write_table(table, meta / f"{f:08d}.parquet")
        feats = {}
        for k in ("b32_img", "b32_txt", "l14_img", "l14_txt"):
            x = rng.normal(size=(rows, dim)).astype(np.float32)
            feats[k] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        np.savez(meta / f"{f:08d}.npz", **feats)
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    per = -(-n // n_shards)
    keys, shard_of, images = [], [], {}
    raw_txt = raw_txt or {}
    for s in range(n_shards):
        idx = range(s * per, min(n, (s + 1) * per))
        with tarfile.open(shards / f"{s:08d}.tar", "w") as tf:
            for i in idx:
                key = f"{s:04d}{i:05d}"
                img = b"\xff\xd8 this is not a jpeg" if i in bad_image_rows else random_jpeg(rng)
                images[uids[i]] = img
                add_member(tf, f"{key}.jpg", img)
                if i not in no_txt_rows:
                    add_member(tf, f"{key}.txt", raw_txt.get(i, texts[i].encode("utf-8")))
                add_member(tf, f"{key}.json", json.dumps({"uid": uids[i], "key": key, "caption": texts[i]}).encode())
                keys.append(key)
                shard_of.append(s)
        (shards / f"{s:08d}_stats.json").write_text(json.dumps({"successes": len(idx), "count": len(idx)}))
    return GenPool(root, uids, texts, keys, shard_of, images)
