"""A small DataComp-layout pool with the damage the engines must treat alike: an undecodable image, an
image-less sample, a sample whose .json has no uid, a missing and a non-UTF-8 caption, a truncated shard
and an empty shard."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pool_members import add_member, random_jpeg

CAPTIONS = [
    "a photo of a brown dog running on the beach",
    "red sports car parked in front of a house",
    "two cats sleeping on a blue sofa",
    "un chien brun qui court sur la plage",
    "cute",
    "close up of a yellow flower in the garden",
]


def make_pool(root: Path, n_files: int = 4, rows: int = 30, n_shards: int = 4, seed: int = 0) -> pd.DataFrame:
    """Write <root>/metadata and <root>/shards; returns the metadata frame (pool order)."""
    rng = np.random.default_rng(seed)
    n = n_files * rows
    uids = [f"{int(h):016x}{int(w):016x}" for h, w in rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)]
    df = pd.DataFrame(
        {
            "uid": uids,
            "url": [f"http://example.com/{i}.jpg" for i in range(n)],
            "text": [CAPTIONS[i] for i in rng.integers(0, len(CAPTIONS), n)],
            "original_width": rng.choice([64, 200, 256, 640, 900], n).astype(np.int64),
            "original_height": rng.choice([100, 200, 300, 700], n).astype(np.int64),
            "clip_b32_similarity_score": np.round(rng.uniform(0.1, 0.45, n), 2).astype(np.float32),
            "clip_l14_similarity_score": np.round(rng.uniform(0.1, 0.4, n), 2).astype(np.float32),
            "face_bboxes": [[] for _ in range(n)],
            "sha256": [f"{i:064x}" for i in range(n)],
        }
    )
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        part = df.iloc[f * rows : (f + 1) * rows]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), meta / f"{f:08d}.parquet")
        feats = {}
        for key in ("b32_img", "b32_txt", "l14_img", "l14_txt"):
            x = rng.normal(size=(len(part), 16)).astype(np.float32)
            feats[key] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        np.savez(meta / f"{f:08d}.npz", **feats)
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    per = -(-n // (n_shards - 1))  # the last shard stays empty
    for s in range(n_shards):
        idx = list(range(s * per, min(n, (s + 1) * per)))
        path = shards / f"{s:08d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in idx:
                key = f"{s:04d}{i:05d}"
                img = b"not a jpeg" if i == 3 else random_jpeg(rng)  # 3: undecodable, NaN in both engines
                if i != 7:  # sample 7 has no image member at all
                    add_member(tf, f"{key}.jpg", img)
                if i == 17:  # a caption that is not UTF-8
                    add_member(tf, f"{key}.txt", b"caf\xe9 " + df.text[i].encode())
                elif i != 13:  # sample 13 has no caption member
                    add_member(tf, f"{key}.txt", df.text[i].encode())
                uid = {"nouid": True} if i == 11 else {"uid": uids[i]}  # 11: a corrupt sample
                add_member(tf, f"{key}.json", json.dumps({**uid, "key": key}).encode())
        (shards / f"{s:08d}_stats.json").write_text(json.dumps({"successes": len(idx)}))
        if s == 1:  # truncate shard 1 mid-way: what was read before the break is kept
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 2 // 3 + 100])
    return df
