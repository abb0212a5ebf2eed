"""Small I/O helpers of the world build: reproducible tar members and progress logging to stderr
(atomic writes are harness.stages')."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time

# log lines show seconds since this process started, or since the build's parent process started
# (a world worker gets the parent's clock in HARNESS_LOG_T0)
_T0 = float(os.environ.get("HARNESS_LOG_T0") or time.time())


def log_t0() -> float:
    return _T0


def log(msg: str) -> None:
    print(f"[{time.time() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``data`` as member ``name`` with fixed metadata (mtime 0, mode 644, owner 0, no names), so the
    world's shards and eval tars are the same bytes on every machine."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
