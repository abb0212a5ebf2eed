"""Write the pool in DataComp's layout, plus the oracle labels beside it.

```
pool/shards/{:08d}.tar          <key>.jpg, <key>.txt, <key>.json (img2dataset-style, "uid" inside)
pool/shards/{:08d}_stats.json   {"count", "successes", ...}
pool/metadata/<stem>.parquet    uid, url, text, original_width, original_height,
                                clip_b32_similarity_score, clip_l14_similarity_score, face_bboxes, sha256
pool/metadata/<stem>.npz        b32_img, b32_txt, l14_img, l14_txt (float16, L2-normalised), rows = parquet rows
oracle.parquet                  one row per uid: noise type, caption level, scene fields, text box, links
```
As in DataComp, metadata files and shards partition the pool differently (metadata rows are a
random permutation), so readers must join by uid.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from harness.stages import atomic_path, atomic_write_text

from .data import STREAM_POOL
from .io import LOG, add_tar_member, report_progress
from .samples import Plan, encode_jpeg, plan_samples, render_plan

METADATA_SCHEMA = pa.schema([
    ("uid", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("original_width", pa.int64()),
    ("original_height", pa.int64()),
    ("clip_b32_similarity_score", pa.float32()),
    ("clip_l14_similarity_score", pa.float32()),
    ("face_bboxes", pa.list_(pa.list_(pa.float64()))),
    ("sha256", pa.string()),
])
NPZ_KEYS = ("b32_img", "b32_txt", "l14_img", "l14_txt")
# Bumped when the pool's bytes change for the same seed and models (part of the pool step's record).
POOL_FORMAT = 2  # 2: features computed from the decoded JPEG, i.e. from exactly what the shard holds
_FILE_NAME = re.compile(r"^[\w\-. ]+\.(jpe?g|png|JPE?G|PNG)$")


def make_uid(seed: int, index: int) -> str:
    """32 hex characters (128 bits), like DataComp's uids; stable for (seed, index)."""
    return hashlib.md5(f"tiny-world/{seed}/{index}".encode()).hexdigest()


def sample_key(shard: int, offset: int) -> str:
    """img2dataset's key: shard id then offset within the shard, zero-padded to 9 digits."""
    return f"{shard:05d}{offset:04d}"


def _url(uid: str, caption: str) -> str:
    name = caption if _FILE_NAME.match(caption) else f"{uid}.jpg"
    return f"https://tiny-world.invalid/{uid[:2]}/{uid[2:4]}/{name.replace(' ', '_')}"


def write_pool(world_dir: Path, seed: int, knobs: dict, encoders: dict) -> dict:
    """Render, write shards, encode with the reference models, write metadata and the oracle.

    encoders: {"b32": LoadedClip, "l14": LoadedClip}. Returns counts for world.json.
    """
    world_dir = Path(world_dir)
    shards_dir = world_dir / "pool" / "shards"
    meta_dir = world_dir / "pool" / "metadata"
    shards_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    n, shard_size = int(knobs["pool_size"]), int(knobs["shard_size"])
    if not 0 < shard_size <= 10_000:
        raise ValueError(f"shard_size must be in 1..10000 (img2dataset keys), got {shard_size}")
    plans = plan_samples(seed, STREAM_POOL, n, knobs["noise_mix"], knobs["detail_mix"])
    uids = [make_uid(seed, i) for i in range(n)]
    feats = {k: None for k in NPZ_KEYS}
    rows: dict[str, list] = {"url": [], "text": [], "original_width": [], "original_height": [], "sha256": []}
    oracle: list[dict] = []
    n_shards = (n + shard_size - 1) // shard_size
    for shard in range(n_shards):
        lo, hi = shard * shard_size, min(n, (shard + 1) * shard_size)
        images, texts = [], []
        with atomic_path(shards_dir / f"{shard:08d}.tar") as tmp, \
                tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(lo, hi):
                p: Plan = plans[i]
                rendered = render_plan(p)
                jpg = encode_jpeg(rendered.image, p.jpeg_quality)
                key = sample_key(shard, i - lo)
                sha = hashlib.sha256(jpg).hexdigest()
                url = _url(uids[i], p.caption)
                w, h = rendered.image.size
                record = {
                    "uid": uids[i], "key": key, "url": url, "caption": p.caption, "status": "success",
                    "error_message": None, "width": w, "height": h, "original_width": p.orig_size[0],
                    "original_height": p.orig_size[1], "exif": "{}", "sha256": sha, "face_bboxes": [],
                }
                add_tar_member(tar, f"{key}.jpg", jpg)
                add_tar_member(tar, f"{key}.txt", p.caption.encode("utf-8"))
                add_tar_member(tar, f"{key}.json", json.dumps(record, ensure_ascii=False).encode("utf-8"))
                rows["url"].append(url)
                rows["text"].append(p.caption)
                rows["original_width"].append(p.orig_size[0])
                rows["original_height"].append(p.orig_size[1])
                rows["sha256"].append(sha)
                # encode what a reader of the shard gets back, not the pre-JPEG pixels
                images.append(Image.open(io.BytesIO(jpg)).convert("RGB"))
                texts.append(p.caption)
                oracle.append(_oracle_row(p, uids, shard, key, rendered.text_box))
        stats = {"count": hi - lo, "successes": hi - lo, "failed_to_download": 0, "failed_to_resize": 0,
                 "status_dict": {"success": hi - lo}, "shard": f"{shard:08d}"}
        atomic_write_text(shards_dir / f"{shard:08d}_stats.json", json.dumps(stats, indent=1) + "\n")
        for tag, enc in encoders.items():
            for side, arr in ((f"{tag}_img", enc.encode_images(images)), (f"{tag}_txt", enc.encode_texts(texts))):
                feats[side] = arr if feats[side] is None else np.concatenate([feats[side], arr])
        LOG.debug("pool shard %d/%d written (%d samples)", shard + 1, n_shards, hi)
        report_progress("pool", shard + 1, n_shards, "shard")

    scores = {tag: np.sum(feats[f"{tag}_img"] * feats[f"{tag}_txt"], axis=1).astype(np.float32)
              for tag in ("b32", "l14")}
    _write_metadata(meta_dir, seed, int(knobs["metadata_files"]), uids, rows, scores, feats)
    _write_oracle(world_dir / "oracle.parquet", oracle)
    counts = {k: 0 for k in knobs["noise_mix"]}
    for p in plans:
        counts[p.noise] = counts.get(p.noise, 0) + 1
    return {"samples": n, "shards": n_shards, "metadata_files": int(knobs["metadata_files"]), "noise_counts": counts}


def _oracle_row(p: Plan, uids: list[str], shard: int, key: str, box) -> dict:
    cs = p.caption_scene or p.scene
    return {
        "uid": uids[p.index], "noise": p.noise, "detail": p.detail, "lang": p.lang,
        "shape": p.scene.shape, "colour": p.scene.colour, "count": p.scene.count, "size": p.scene.size,
        "position": p.scene.position, "background": p.scene.background,
        "caption_shape": cs.shape, "caption_colour": cs.colour,
        "concept_present": bool(p.concept_present),
        "text_x0": box[0] if box else -1, "text_y0": box[1] if box else -1,
        "text_x1": box[2] if box else -1, "text_y1": box[3] if box else -1,
        "dup_of": uids[p.dup_of] if p.dup_of >= 0 else "",
        "caption_of": uids[p.extra["caption_of"]] if "caption_of" in p.extra else "",
        "bad_kind": p.extra.get("bad", ""), "shard": f"{shard:08d}", "key": key,
    }


def _write_metadata(meta_dir: Path, seed: int, n_files: int, uids, rows, scores, feats) -> None:
    n = len(uids)
    order = np.random.default_rng([seed, 11]).permutation(n)
    # uneven parts, so readers cannot assume equal file sizes
    cuts = np.sort(np.random.default_rng([seed, 12]).choice(np.arange(1, n), size=n_files - 1, replace=False)) \
        if n_files > 1 else np.array([], dtype=int)
    for k, part in enumerate(np.split(order, cuts)):
        stem = hashlib.sha256(f"tiny-world/{seed}/metadata/{k}".encode()).hexdigest()[:32]
        table = pa.table({
            "uid": pa.array([uids[i] for i in part], pa.string()),
            "url": pa.array([rows["url"][i] for i in part], pa.string()),
            "text": pa.array([rows["text"][i] for i in part], pa.string()),
            "original_width": pa.array([rows["original_width"][i] for i in part], pa.int64()),
            "original_height": pa.array([rows["original_height"][i] for i in part], pa.int64()),
            "clip_b32_similarity_score": pa.array(scores["b32"][part], pa.float32()),
            "clip_l14_similarity_score": pa.array(scores["l14"][part], pa.float32()),
            "face_bboxes": pa.array([[] for _ in part], pa.list_(pa.list_(pa.float64()))),
            "sha256": pa.array([rows["sha256"][i] for i in part], pa.string()),
        }, schema=METADATA_SCHEMA)
        with atomic_path(meta_dir / f"{stem}.parquet") as tmp:
            pq.write_table(table, tmp)
        with atomic_path(meta_dir / f"{stem}.npz") as tmp:
            write_npz(tmp, {key: feats[key][part].astype(np.float16) for key in NPZ_KEYS})


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed .npz like np.savez writes, but with fixed timestamps so equal data gives equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def _write_oracle(path: Path, oracle: list[dict]) -> None:
    table = pa.Table.from_pylist(oracle)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
