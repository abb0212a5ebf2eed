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
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import UsageError

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
    """Hash of each file's name and content (see `content_digest`); a path alone never keys anything."""
    return fingerprint(sorted([Path(p).name, content_digest(p)] for p in paths))


def fingerprint_tree(root: str | os.PathLike[str], pattern: str = "*") -> str:
    """Content fingerprint of every file below `root` (names relative to it), completion records aside."""
    root = Path(root)
    files = sorted(p for p in root.rglob(pattern) if p.is_file() and RECORD_DIR not in p.parts)
    return fingerprint([[p.relative_to(root).as_posix(), content_digest(p)] for p in files])


# -- content digests, memoised by the file's full stat -----------------------------------------
#
# Keys must follow content, not names or mtimes: `cp -p` rewrites a file and keeps its size and mtime.
# The one field user space cannot set is the inode's change time (ctime): every write, copy or rename
# moves it. So a digest is recomputed whenever (device, inode, size, mtime, ctime) differs from the
# last time, and reused otherwise; a pool rsynced elsewhere is re-read once and keeps its fingerprints
# (same content), a rewritten file gets a new one. xxh3-128 reads at memory speed (BENCHMARKS.md).

DIGEST_CACHE_ENV = "HARNESS_DIGEST_CACHE"
_memo: dict[tuple[str, tuple[int, ...]], str] = {}


def _digest_db_path() -> Path:
    explicit = os.environ.get(DIGEST_CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "datacomp-harness" / "digests.sqlite"


def stat_key(st: os.stat_result) -> tuple[int, ...]:
    """What of a file's stat keeps a remembered digest valid (ctime included: see above)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest_db() -> sqlite3.Connection | None:
    """The on-disk memo, or None where it cannot be opened (read-only home): digests are then recomputed."""
    path = _digest_db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS digest (path TEXT PRIMARY KEY, stat TEXT, digest TEXT)")
        return db
    except (OSError, sqlite3.Error):
        return None


def content_digest(path: str | os.PathLike[str], chunk: int = 8 << 20) -> str:
    """xxh3-128 of the file's bytes (hex), memoised while the file's stat (ctime included) is unchanged."""
    import xxhash

    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, stat_key(st))
    if key in _memo:
        return _memo[key]
    stat_text = json.dumps(list(key[1]))
    db = _digest_db()
    if db is not None:
        with contextlib.closing(db):
            try:
                row = db.execute("SELECT stat, digest FROM digest WHERE path = ?", (real,)).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None and row[0] == stat_text:
                _memo[key] = row[1]
                return row[1]
            digest = _hash_file(real, chunk, xxhash)
            with contextlib.suppress(sqlite3.Error), db:
                db.execute("INSERT OR REPLACE INTO digest VALUES (?, ?, ?)", (real, stat_text, digest))
    else:
        digest = _hash_file(real, chunk, xxhash)
    _memo[key] = digest
    return digest


def _hash_file(path: str, chunk: int, xxhash: Any) -> str:
    return _hash_with(xxhash.xxh3_128(), path, chunk)


def _hash_with(h: Any, path: str | os.PathLike[str], chunk: int) -> str:
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


_sha256_memo: dict[tuple[str, tuple[int, ...]], str] = {}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex), the digest published formats and model identities name;
    remembered for this process while the file's stat (ctime included) is unchanged."""
    real = os.path.realpath(path)
    key = (real, stat_key(os.stat(real)))
    if key not in _sha256_memo:
        _sha256_memo[key] = _hash_with(hashlib.sha256(), real, chunk)
    return _sha256_memo[key]


def source_fingerprint(*modules: Any) -> str:
    """Content of the source files of the given modules or packages (every .py below a package):
    a stage whose code changed is redone."""
    files: list[Path] = []
    for module in modules:
        origin = Path(module.__file__)
        files += sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    return fingerprint([[f.name, content_digest(f)] for f in files])


def replace_output_dir(out: Path, overwrite: bool, marker: str) -> None:
    """Make ``out`` absent or empty before an export/bundle is written into it: a non-empty folder is
    replaced only with ``overwrite`` and only when it holds ``marker`` (an earlier output of the same
    command), never an unrelated folder."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"{out} exists and is not empty (pass --force to replace it)")
        if not (out / marker).is_file():
            raise UsageError(f"{out} holds no {marker}, so it is not an earlier output; refusing to delete it")
        shutil.rmtree(out)


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
