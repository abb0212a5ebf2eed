"""Small I/O helpers of the world build: its logger, progress reports, reproducible tar members
(atomic writes are harness.stages')."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import time
from typing import Any

# The world's messages go through the harness's one console (harness/console.py): the build's own
# status at INFO, each worker's detail (rendering, a shard written, a task written) at DEBUG (-v).
LOG = logging.getLogger("harness.world")

PROGRESS_ENV = "HARNESS_WORLD_PROGRESS"  # a worker process reports its step's progress into this file
_REPORT_EVERY = 0.5  # seconds between progress writes of a worker
_last_report: dict[str, float] = {}
_bars: dict[str, Any] = {}


def report_progress(label: str, done: int, total: int, unit: str = "step", note: str = "") -> None:
    """Progress of a long world step (`done` of `total` units of `label`, e.g. training steps).

    In a worker process (PROGRESS_ENV set) it goes to a small JSON file that the build's parent draws
    as one bar for all workers (build._WorldBar); in the building process itself it is a bar of its own.
    """
    path = os.environ.get(PROGRESS_ENV)
    now = time.time()
    if path:
        if done < total and now - _last_report.get(path, 0.0) < _REPORT_EVERY:
            return
        _last_report[path] = now
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"label": label, "done": done, "total": total, "unit": unit, "note": note}, f)
        os.replace(tmp, path)
        return
    from ..console import progress

    bar = _bars.get(label)
    if bar is None:
        bar = _bars[label] = progress(total=total, desc=f"world {label}", unit=unit, leave=False)
    if note:
        bar.set_postfix_str(note, refresh=False)
    bar.update(done - bar.n)  # redrawn at most every mininterval
    if done >= total:
        bar.close()
        del _bars[label]


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``data`` as member ``name`` with fixed metadata (mtime 0, mode 644, owner 0, no names), so the
    world's shards and eval tars are the same bytes on every machine."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
