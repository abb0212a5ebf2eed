"""Stage bookkeeping shared by every step of the flow: atomic writes, fingerprints, completion records
and the run-directory lock.

A stage is done when its completion record exists and names the same input fingerprint as now; the
record is written last, after every output has been renamed into place, so a killed stage is simply
redone (its partial outputs are temporary files that never shadow finished ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

RECORD_DIR = ".stages"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    The temporary file lives in the same directory so the rename is atomic on POSIX; on failure
    (including a full disk) it is removed and the old `path`, if any, is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are meant to be shared
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # make the bytes durable before the rename publishes them
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-able description (settings, expressions, other fingerprints)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fingerprint_files(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Hash of names, sizes and modification times: cheap, and changes whenever a file is rewritten."""
    parts = []
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        parts.append([p.name, st.st_size, st.st_mtime_ns])
    return fingerprint(parts)


def fingerprint_tree(root: str | os.PathLike[str], pattern: str = "*") -> str:
    root = Path(root)
    files = [p for p in root.rglob(pattern) if p.is_file() and RECORD_DIR not in p.parts]
    return fingerprint_files(files)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


class Stage:
    """Completion record of one stage in a directory: `<dir>/.stages/<name>.json`."""

    def __init__(self, directory: str | os.PathLike[str], name: str, inputs: dict[str, Any]):
        self.directory = Path(directory)
        self.name = name
        self.inputs = inputs
        self.key = fingerprint(inputs)
        self.record_path = self.directory / RECORD_DIR / f"{name}.json"

    def record(self) -> dict[str, Any] | None:
        if not self.record_path.exists():
            return None
        try:
            return json.loads(self.record_path.read_text())
        except json.JSONDecodeError:
            return None  # a torn record means the stage never finished

    def done(self) -> bool:
        rec = self.record()
        return rec is not None and rec.get("key") == self.key

    def outputs(self) -> dict[str, Any]:
        rec = self.record()
        return dict(rec.get("outputs", {})) if rec else {}

    def complete(self, outputs: dict[str, Any] | None = None, seconds: float | None = None) -> None:
        atomic_write_json(
            self.record_path,
            {"stage": self.name, "key": self.key, "inputs": self.inputs, "outputs": outputs or {},
             "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        )

    def invalidate(self) -> None:
        self.record_path.unlink(missing_ok=True)

    def begin(self, discard: Iterable[str | os.PathLike[str]] = ()) -> bool:
        """Mark the stage started for the current inputs, before it writes anything.

        Returns True when the last attempt had these same inputs (its partial outputs, e.g. training
        checkpoints or finished evaluation lines, may be resumed). Otherwise the paths in ``discard``
        are removed first: outputs made from other inputs are never resumed into or reused.
        """
        started = self.directory / RECORD_DIR / f"{self.name}.started.json"
        try:
            same = json.loads(started.read_text()).get("key") == self.key
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            for p in map(Path, discard):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
        atomic_write_json(started, {"stage": self.name, "key": self.key, "inputs": self.inputs})
        return same


class RunLockedError(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Refuse a second run on the same run directory instead of letting both write into it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunLockedError(
            f"another run is using {directory} (lock file {directory / '.lock'}); wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()
