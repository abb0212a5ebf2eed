"""A small DataComp-layout pool for the filter tests (pyarrow + numpy + tarfile), built in a few
hundred milliseconds. Scores are rounded to 2 decimals so percent thresholds meet ties."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pool_members import add_member, random_jpeg

ENGLISH = [
    "a photo of a brown dog running on the beach",
    "red sports car parked in front of a house",
    "two cats sleeping on a blue sofa",
    "a bowl of fresh fruit on a wooden table",
    "mountain landscape with snow and a lake",
    "cute",
    "a cat",
    "close up of a yellow flower in the garden",
]
OTHER = [
    "un chien brun qui court sur la plage",
    "ein rotes Auto steht vor dem Haus",
    "dos gatos durmiendo en un sofá azul",
]


def make_fake_pool(
    root: Path,
    n_files: int = 3,
    rows: int = 40,
    n_shards: int = 2,
    seed: int = 0,
    dim: int = 16,
    bad_image_rows: tuple[int, ...] = (),
) -> pd.DataFrame:
    """Write <root>/metadata/*.parquet|npz and <root>/shards/*.tar; return the metadata frame."""
    rng = np.random.default_rng(seed)
    n = n_files * rows
    hi = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(np.uint64)
    lo = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)
    uids = [f"{int(h):016x}{int(w):016x}" for h, w in zip(hi, lo, strict=True)]
    texts = [(ENGLISH + OTHER)[i] for i in rng.integers(0, len(ENGLISH) + len(OTHER), n)]
    df = pd.DataFrame(
        {
            "uid": uids,
            "url": [f"http://example.com/{i}.jpg" for i in range(n)],
            "text": texts,
            "original_width": rng.choice([64, 199, 200, 256, 640, 900], n).astype(np.int64),
            "original_height": rng.choice([100, 200, 300, 480, 700], n).astype(np.int64),
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
        stem = f"{f:08d}"
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), meta / f"{stem}.parquet")
        feats = {}
        for key in ("b32_img", "b32_txt", "l14_img", "l14_txt"):
            x = rng.normal(size=(len(part), dim)).astype(np.float32)
            feats[key] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        np.savez(meta / f"{stem}.npz", **feats)
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    per = -(-n // n_shards)
    for s in range(n_shards):
        idx = range(s * per, min(n, (s + 1) * per))
        with tarfile.open(shards / f"{s:08d}.tar", "w") as tf:
            for i in idx:
                key = f"{s:04d}{i:05d}"
                img = b"not a jpeg" if i in bad_image_rows else random_jpeg(rng)
                add_member(tf, f"{key}.jpg", img)
                add_member(tf, f"{key}.txt", texts[i].encode())
                add_member(tf, f"{key}.json", json.dumps({"uid": uids[i], "key": key}).encode())
        (shards / f"{s:08d}_stats.json").write_text(json.dumps({"successes": len(idx), "count": len(idx)}))
    return df


def datacomp_uids(uids) -> np.ndarray:
    """DataComp's conversion, written as DataComp writes it (the reference for identity tests)."""
    return np.array([(int(u[:16], 16), int(u[16:32], 16)) for u in uids], np.dtype("u8,u8"))
