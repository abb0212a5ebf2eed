"""`world_fingerprint(world_dir)`: a content hash of what a world generated.

It covers every file the generator wrote for users of the world: pool metadata (parquet, npz),
pool shards and their stats, the oracle, the models (weights, model.json, reference sets), the
eval suite and the ImageNet-like set. It leaves out what records how the world was built rather
than what it holds: `world.json`, every `complete.json`, the `.build/` folder (step records,
lock, this module's cache) and temporary files of an interrupted write; in JSON files it drops
keys that hold timings (`seconds`, `*_seconds`). Two worlds with the same fingerprint hold the
same bytes; the README's table names the fingerprint of the world it was computed on.

Hashing the default world (about 80 MB) takes about a second. To skip even that on repeated calls,
each file's digest is cached in `.build/content.json` together with the file's stat key
(harness.stages.stat_key: device, inode, size, mtime and ctime, the rule the stages' digest memo
follows). A cached digest is used only when all of them match: `cp -p` or `touch -r` restores
size and mtime but gives a new ctime (which no user call can set), so a rewritten file is always
hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.stages import sha256_file, stat_key

CACHE_FILE = ".build/content.json"
_FORMAT = 1  # bump when what is hashed changes
_EXCLUDED_DIRS = {".build"}
_EXCLUDED_FILES = {"world.json", "complete.json"}


def _included(rel: Path) -> bool:
    if rel.parts[0] in _EXCLUDED_DIRS or rel.name in _EXCLUDED_FILES:
        return False
    # atomic writers' temp files: ".<name>.<random>.tmp"
    return not (rel.name.startswith(".") and rel.name.endswith(".tmp"))


def _drop_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_timings(v) for k, v in obj.items() if not (k == "seconds" or k.endswith("_seconds"))}
    if isinstance(obj, list):
        return [_drop_timings(v) for v in obj]
    return obj


def _file_digest(path: Path) -> str:
    if path.suffix == ".json":
        try:
            obj = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        else:
            canon = json.dumps(_drop_timings(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            return "json:" + hashlib.sha256(canon.encode()).hexdigest()
    return sha256_file(path)


def content_files(world_dir: Path) -> list[Path]:
    """The files the fingerprint covers, relative to world_dir, in a fixed order."""
    world_dir = Path(world_dir)
    found = []
    for root, dirs, files in os.walk(world_dir):
        rel_root = Path(root).relative_to(world_dir)
        if rel_root.parts and rel_root.parts[0] in _EXCLUDED_DIRS:
            dirs[:] = []
            continue
        for name in files:
            rel = rel_root / name
            if _included(rel):
                found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def world_fingerprint(world_dir: str | Path, use_cache: bool = True, *, finished: bool = True) -> str:
    """16 hex digits identifying the content of the world in `world_dir` (see the module docstring).

    Raises FileNotFoundError when world_dir holds no world.json (not a finished world); the world
    builder passes finished=False to fingerprint a world before writing its world.json.
    """
    world_dir = Path(world_dir)
    if finished and not (world_dir / "world.json").is_file():
        raise FileNotFoundError(f"{world_dir} is not a finished world (no world.json); build it with `harness world`")
    cache_path = world_dir / CACHE_FILE
    cached: dict[str, list] = {}
    if use_cache:
        try:
            rec = json.loads(cache_path.read_text())
            if rec.get("format") == _FORMAT:
                cached = rec.get("files", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            cached = {}
    entries: dict[str, list] = {}
    total = hashlib.sha256(f"datacomp-harness world content v{_FORMAT}\n".encode())
    for rel in content_files(world_dir):
        path = world_dir / rel
        st = path.stat()
        stamp = list(stat_key(st))
        key = rel.as_posix()
        hit = cached.get(key)
        digest = hit[-1] if hit and hit[:-1] == stamp else _file_digest(path)
        entries[key] = [*stamp, digest]
        total.update(f"{key}\0{digest}\n".encode())
    fingerprint = total.hexdigest()[:16]
    if use_cache and entries != cached:
        try:
            cache_path.parent.mkdir(exist_ok=True)
            tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": _FORMAT, "fingerprint": fingerprint, "files": entries}))
            os.replace(tmp, cache_path)
        except OSError:
            pass  # a read-only world: fine, the cache only saves time
    return fingerprint
