"""DataComp pool reader: metadata parquet, npz features, webdataset shards, uid <-> u8,u8.

Layout (mlfoundations/datacomp download_upstream.py and README, "Downloading DataComp data")::

    <pool>/metadata/<stem>.parquet   uid, text, original_width, ..., clip_*_similarity_score
    <pool>/metadata/<stem>.npz       b32_img, b32_txt, l14_img, l14_txt (rows aligned with the parquet)
    <pool>/shards/{:08d}.tar         <key>.jpg, <key>.txt, <key>.json (json holds "uid")

Everything streams file by file so memory stays bounded by one metadata file (or one shard).
A uid is 32 hex characters; DataComp stores it as ``np.dtype("u8,u8")`` = (high 64 bits, low 64 bits).
"""

from __future__ import annotations

import binascii
import contextlib
import io
import json
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

UID_DTYPE = np.dtype("u8,u8")
FEATURE_KEYS = ("b32_img", "b32_txt", "l14_img", "l14_txt")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")

# which ASCII bytes are hex digits (either case, as int(uid, 16) and binascii accept): names a bad uid
_IS_HEX = np.zeros(256, dtype=bool)
_IS_HEX[np.frombuffer(b"0123456789abcdefABCDEF", dtype=np.uint8)] = True
# the 16 decoded bytes of a uid, read as two big-endian words: uid[:16] is the high word
_BE_WORDS = np.dtype(">u8")


class PoolError(ValueError):
    """Bad pool content (missing files, misaligned features, bad or duplicate uids)."""


# ---------------------------------------------------------------------------------------------
# uid helpers


def _bad_uid(where: str, uid: Any, row: int) -> PoolError:
    return PoolError(f"{where}: uid {uid!r} (row {row}) is not 32 hexadecimal characters")


def _hex_bytes_to_array(
    buf: np.ndarray, where: str, first_row: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """(n, 32) uint8 ASCII hex -> u8,u8 array (written into ``out`` when given); invalid characters
    are an error naming the uid and its row (``first_row`` = the row of ``buf[0]`` in ``where``).

    binascii decodes the whole buffer in one C loop (no per-uid Python objects, no lookup tables);
    the 16 bytes of each uid are then two big-endian words, swapped to native in one pass.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    n = buf.shape[0]
    if out is None:
        out = np.empty(n, dtype=UID_DTYPE)
    if n == 0:
        return out
    try:
        raw = binascii.unhexlify(buf.reshape(-1))
    except binascii.Error:
        row = int(np.nonzero(~_IS_HEX[buf].all(axis=1))[0][0])
        raise _bad_uid(where, bytes(buf[row]).decode("ascii", "replace"), first_row + row) from None
    np.copyto(out.view(np.uint64), np.frombuffer(raw, dtype=_BE_WORDS))
    return out


def uids_to_array(uids: Iterable[str] | pa.Array | pa.ChunkedArray, where: str = "uids") -> np.ndarray:
    """32-hex uids -> ``np.dtype("u8,u8")`` (high 64 bits, low 64 bits), the way DataComp stores them.

    Vectorised over Arrow string buffers (no per-uid Python work); ``where`` names the source in errors.
    """
    if isinstance(uids, pa.ChunkedArray | pa.Array):
        return uids_into(uids, np.empty(len(uids), dtype=UID_DTYPE), where)
    lst = list(uids)
    if not lst:
        return np.empty(0, dtype=UID_DTYPE)
    for i, u in enumerate(lst):
        if not isinstance(u, str) or len(u) != 32:
            raise _bad_uid(where, u, i)
    try:
        raw = "".join(lst).encode("ascii")
    except UnicodeEncodeError as exc:
        raise PoolError(f"{where}: non-ASCII uid near row {exc.start // 32}") from exc
    return _hex_bytes_to_array(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32), where)


def uids_into(col: pa.ChunkedArray | pa.Array, out: np.ndarray, where: str = "uids") -> np.ndarray:
    """Convert a uid column into ``out`` (a u8,u8 array of the same length, e.g. a slice of a larger
    one); returns ``out``. Errors name ``where`` and the row in the column."""
    if out.dtype != UID_DTYPE or len(out) != len(col):
        raise ValueError(f"{where}: need a {UID_DTYPE} array of {len(col)} rows, got {out.dtype} x {len(out)}")
    start = 0
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        _arrow_uids(chunk, where, start, out[start : start + len(chunk)])
        start += len(chunk)
    return out


def _arrow_uids(arr: pa.Array, where: str, first_row: int, out: np.ndarray) -> np.ndarray:
    n = len(arr)
    if n == 0:
        return out
    if arr.null_count:
        row = int(np.nonzero(arr.is_null().to_numpy(zero_copy_only=False))[0][0])
        raise PoolError(f"{where}: uid is null at row {first_row + row}")
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_dtype = np.int32
    elif pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_dtype = np.int64
    else:
        out[:] = uids_to_array([str(x) for x in arr.to_pylist()], where)
        return out
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=off_dtype)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    if (lengths != 32).any():
        row = int(np.nonzero(lengths != 32)[0][0])
        raise _bad_uid(where, arr[row].as_py(), first_row + row)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return _hex_bytes_to_array(data.reshape(n, 32), where, first_row, out)


def array_to_uids(arr: np.ndarray) -> list[str]:
    """``u8,u8`` array -> lowercase 32-hex uid strings."""
    arr = np.asarray(arr)
    if arr.dtype != UID_DTYPE:
        raise PoolError(f"expected dtype {UID_DTYPE}, got {arr.dtype}")
    return [f"{int(h):016x}{int(lo):016x}" for h, lo in zip(arr["f0"], arr["f1"], strict=True)]


def uid_to_pair(uid: str) -> tuple[int, int]:
    """One uid -> (high, low), DataComp's divmod(int(uid, 16), 2**64)."""
    return divmod(int(uid, 16), 2**64)


def sort_uids(arr: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``arr`` (or ``arr[rows]``) sorted by (high, low), as ``ndarray.sort()`` sorts a ``u8,u8`` array.

    ``rows`` is a boolean mask over ``arr`` or row numbers (repeats allowed). A plain sort of uint64
    keys is several times faster than an argsort, so each key is the high word with its lowest bits
    replaced by the row number: sorted, the keys give the order by the high word's top bits, and the
    row numbers come back out of them. Rows whose keys share those top bits (a few for random uids,
    all of them at worst) are then put in (high, low) order among themselves. Few and reused
    temporaries: on a large pool, fresh memory costs more than the sort.
    """
    arr = np.asarray(arr)
    if arr.dtype != UID_DTYPE:
        raise PoolError(f"expected dtype {UID_DTYPE}, got {arr.dtype}")
    if rows is None:
        idx = np.arange(len(arr), dtype=np.int64)
    else:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != arr.shape:
                raise IndexError(f"mask of {rows.shape} for {arr.shape} uids")
            idx = np.flatnonzero(rows).astype(np.int64, copy=False)
        else:
            idx = np.array(rows, dtype=np.int64)  # a copy: its memory is reused below
            if len(idx) and (idx.min() < 0 or idx.max() >= len(arr)):
                raise IndexError(f"row numbers outside 0..{len(arr) - 1}")
    m = len(idx)
    if m < 2:
        return np.take(arr, idx)
    hi, lo = arr["f0"], arr["f1"]
    low = np.uint64((1 << max(1, (len(arr) - 1).bit_length())) - 1)
    keys = hi[idx]
    keys &= ~low
    keys |= idx.view(np.uint64)
    keys.sort()
    scratch = idx.view(np.uint64)  # the row numbers are in the keys now
    np.bitwise_xor(keys[1:], keys[:-1], out=scratch[1:])
    same = scratch[1:] <= low  # same top bits as the left neighbour
    keys &= low
    order = keys.view(np.int64)  # row numbers, sorted by the high words' top bits
    if same.any():
        left = np.zeros(m, dtype=bool)  # equals its left neighbour
        left[1:] = same
        in_run = left.copy()
        in_run[:-1] |= same
        pos = np.nonzero(in_run)[0]
        run_id = np.cumsum(~left[pos])  # a run starts where an element differs from its left neighbour
        sub = order[pos]
        order[pos] = sub[np.lexsort((lo[sub], hi[sub], run_id))]
    return np.take(arr, order)  # one 16-byte gather per row: faster than gathering each word


def is_sorted_uids(arr: np.ndarray) -> bool:
    if len(arr) < 2:
        return True
    hi, lo = arr["f0"], arr["f1"]
    return bool(np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] >= lo[:-1]))))


def uid_order(uids: np.ndarray) -> np.ndarray:
    """The stable row order that sorts a ``u8,u8`` array by (high, low): equal uids keep their order.

    Sorting the high words alone is enough (and faster) unless two rows share one."""
    order = np.argsort(uids["f0"], kind="stable")
    hi = uids["f0"][order]
    if len(hi) > 1 and (hi[1:] == hi[:-1]).any():
        order = np.lexsort((uids["f1"], uids["f0"]))
    return order


def uid_ranges(sorted_uids: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each uid of ``query``, the rows ``[start, end)`` of ``sorted_uids`` (a (high, low)-sorted
    ``u8,u8`` array, repeats allowed) that hold it; ``start == end`` when it is absent.

    A binary search on the high words; only rows whose high word repeats in ``sorted_uids`` (a few
    for random uids, or a uid listed twice) look at the low words, one at a time."""
    hi, lo = sorted_uids["f0"], sorted_uids["f1"]
    qh, ql = query["f0"], query["f1"]
    start = np.searchsorted(hi, qh, side="left")
    end = np.searchsorted(hi, qh, side="right")
    span = end - start
    one = np.nonzero(span == 1)[0]
    miss = one[lo[start[one]] != ql[one]]
    end[miss] = start[miss]
    for i in np.nonzero(span > 1)[0]:
        seg = lo[start[i] : end[i]]
        a, b = np.searchsorted(seg, ql[i], side="left"), np.searchsorted(seg, ql[i], side="right")
        start[i], end[i] = start[i] + a, start[i] + b
    return start, end


def find_uids(sorted_uids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The first row of ``sorted_uids`` (see uid_ranges) holding each query uid, -1 when absent."""
    start, end = uid_ranges(sorted_uids, query)
    return np.where(end > start, start, -1).astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# data classes shared with plugins


@dataclass
class Sample:
    """One decoded sample from a pool shard."""

    uid: str
    key: str
    image: Any  # PIL.Image.Image | None (None when not decoded or undecodable)
    caption: str
    meta: dict
    shard: str


@dataclass
class MetadataBatch:
    """One metadata file (or a slice of one): the needed columns (+ uid) and npz arrays, rows aligned."""

    table: pa.Table
    features: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""  # the metadata parquet this batch came from (for error messages)
    offset: int = 0  # row offset of this batch in the pool's metadata order

    _uids: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.table.num_rows

    def uids(self) -> np.ndarray:
        """The batch's uids as ``u8,u8`` (converted once, shared by every filter of the pass)."""
        if self._uids is None:
            self._uids = uids_to_array(self.table.column("uid"), where=self.path or "metadata batch")
        return self._uids

    def column(self, name: str) -> np.ndarray:
        """A column as numpy (strings become an object array)."""
        return self.table.column(name).to_numpy(zero_copy_only=False)

    def texts(self) -> list[str]:
        """The captions (the "text" column) as strings; a missing caption is ""."""
        return ["" if t is None else str(t) for t in self.table.column("text").to_pylist()]


@dataclass
class SampleStats:
    """What iter_samples met: counts of corrupt items, kept after the iteration ends."""

    shards: int = 0
    samples: int = 0
    corrupt_samples: int = 0
    corrupt_shards: int = 0
    undecodable_images: int = 0
    bad_captions: int = 0  # no .txt member, or a .txt that is not UTF-8 (decoded with U+FFFD)
    errors: list[str] = field(default_factory=list)

    def note(self, msg: str) -> None:
        if len(self.errors) < 50:  # keep the first few messages, counts carry the rest
            self.errors.append(msg)

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "samples": self.samples,
            "corrupt_samples": self.corrupt_samples,
            "corrupt_shards": self.corrupt_shards,
            "undecodable_images": self.undecodable_images,
            "bad_captions": self.bad_captions,
            "errors": list(self.errors),
        }

    def summary(self) -> str:
        """One line for logs: what was skipped or damaged (empty when nothing was)."""
        parts = [
            f"{n} {what}{'s' if n != 1 else ''}"
            for n, what in ((self.corrupt_shards, "corrupt shard"), (self.corrupt_samples, "corrupt sample"),
                            (self.undecodable_images, "undecodable image"), (self.bad_captions, "bad caption"))
            if n
        ]
        if not parts:
            return ""
        first = f"; first: {self.errors[0]}" if self.errors else ""
        return f"{', '.join(parts)} in {self.shards} shard(s){first}"

    def add(self, other: SampleStats) -> None:
        self.shards += other.shards
        self.samples += other.samples
        self.corrupt_samples += other.corrupt_samples
        self.corrupt_shards += other.corrupt_shards
        self.undecodable_images += other.undecodable_images
        self.bad_captions += other.bad_captions
        for e in other.errors:
            self.note(e)


# ---------------------------------------------------------------------------------------------
# raw shard reading (shared by iter_samples and the resharder)


def _split_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the basename."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :].lower()


def iter_shard_raw(path: str | Path, stats: SampleStats | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for each sample of one tar shard, streaming.

    A shard that cannot be opened, or breaks part way, is counted in ``stats.corrupt_shards``;
    the samples read before the break are still yielded. That includes a plain tar that stops early
    without an error from tarfile (a damaged header, or a cut exactly between members): what follows
    the last good member must be the end-of-archive zero blocks.
    """
    stats = stats if stats is not None else SampleStats()
    stats.shards += 1
    path = Path(path)
    cur_key: str | None = None
    cur: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, ext = _split_key(member.name)
                if cur_key is not None and (key != cur_key or ext in cur):
                    yield cur_key, cur  # before reading on: a break in the next member must not cost this one
                    cur = {}
                f = tf.extractfile(member)
                data = f.read() if f is not None else b""
                cur_key = key
                cur[ext] = data
            stopped_at = tf.offset if getattr(tf.fileobj, "comptype", "tar") == "tar" else None
        damage = _unfinished_tar(path, stopped_at) if stopped_at is not None else None
    except (tarfile.TarError, OSError, EOFError) as exc:
        stats.corrupt_shards += 1
        stats.note(f"{path}: corrupt shard ({type(exc).__name__}: {exc})")
        return
    if cur_key is not None:
        yield cur_key, cur
    if damage:
        stats.corrupt_shards += 1
        stats.note(f"{path}: corrupt shard ({damage})")


def _unfinished_tar(path: Path, offset: int) -> str | None:
    """Why a plain tar that tarfile stopped reading at ``offset`` is damaged, or None if it ended well."""
    with open(path, "rb") as f:
        f.seek(offset)
        seen = 0
        while block := f.read(1 << 16):
            if block.strip(b"\0"):
                return f"unreadable tar header at byte {offset}; the rest of the shard was skipped"
            seen += len(block)
    if seen < 512:
        return f"truncated at byte {offset} (no end-of-archive marker)"
    return None


def parse_sample_json(raw: dict[str, bytes]) -> dict:
    """The sample's .json as a dict with a valid "uid"; raises ValueError otherwise."""
    if "json" not in raw:
        raise ValueError("missing .json")
    meta = json.loads(raw["json"])
    uid = meta.get("uid") if isinstance(meta, dict) else None
    if not isinstance(uid, str) or len(uid) != 32 or any(c not in "0123456789abcdefABCDEF" for c in uid):
        raise ValueError(f"bad uid {uid!r} in .json")
    return meta


def checked_sample_json(key: str, raw: dict[str, bytes], shard: str, stats: SampleStats) -> dict | None:
    """The sample's .json (see parse_sample_json), or None for a corrupt sample: one without a readable
    .json holding a valid uid, counted in ``stats`` and noted as ``<shard>/<key>``. Every reader of
    shards (scoring, resharding) skips a sample by this one rule."""
    try:
        return parse_sample_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        stats.corrupt_samples += 1
        stats.note(f"{shard}/{key}: corrupt sample ({exc})")
        return None


# Decoding limits. A 164 kB PNG can decode to 13000x13000 (500 MB of RGB), a 1.3 kB JPEG header can
# claim 12000x12000, both under Pillow's own limit (89.5M pixels warns, 179M refuses). DataComp's pool
# images are at most 512 px on a side (img2dataset's resize), and the models see 224 px, so:
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # 16.8M pixels, 50 MB as RGB; env HARNESS_MAX_IMAGE_PIXELS
DRAFT_SIDE = 1024  # a JPEG is decoded at 1/2, 1/4 or 1/8 scale while both sides stay >= this
DEFAULT_DECODED_BATCH_MB = 512  # a scoring batch is flushed early once its decoded pixels reach this;
#                                 env HARNESS_DECODED_BATCH_MB (256 images of 512x512 RGB are 192 MB)


class ImageTooLarge(ValueError):
    """An image whose header claims more pixels than the limit: skipped and counted, never decoded."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    if n <= 0:
        raise ValueError(f"environment variable {name}={value!r} must be positive")
    return n


def max_image_pixels() -> int:
    """The pixel limit of decode_image (HARNESS_MAX_IMAGE_PIXELS, default 4096*4096)."""
    return _env_int("HARNESS_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def decoded_batch_bytes() -> int:
    """The decoded-pixel budget of one scoring batch, in bytes (HARNESS_DECODED_BATCH_MB, default 512)."""
    return _env_int("HARNESS_DECODED_BATCH_MB", DEFAULT_DECODED_BATCH_MB) * 2**20


def image_bytes(img: Any) -> int:
    """Memory a decoded PIL image holds (width x height x bands)."""
    return int(img.width) * int(img.height) * len(img.getbands())


def decode_image(data: bytes, max_pixels: int | None = None) -> Any:
    """Decode to RGB, bounded: the header's size is checked before any pixel is decoded (over the
    limit: ImageTooLarge), and a JPEG much larger than the models need is decoded at reduced scale."""
    from PIL import Image

    limit = max_image_pixels() if max_pixels is None else max_pixels
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    if w * h > limit:
        raise ImageTooLarge(f"{w}x{h} = {w * h} pixels, over the {limit}-pixel limit")
    if img.format == "JPEG" and min(w, h) >= 2 * DRAFT_SIDE:
        img.draft(img.mode, (DRAFT_SIDE, DRAFT_SIDE))  # DCT scaling: never below DRAFT_SIDE on a side
    img.load()
    return img.convert("RGB") if img.mode != "RGB" else img


def iter_shard_samples(
    path: str | Path, decode_images: bool = True, stats: SampleStats | None = None
) -> Iterator[Sample]:
    """Samples of one shard; corrupt samples (no json/uid) are skipped and counted.

    An image that will not decode yields the sample with ``image=None`` (counted as undecodable) so
    the scoring engine can give it NaN; with ``decode_images=False`` the image is left as None.
    """
    stats = stats if stats is not None else SampleStats()
    shard = Path(path).name
    for key, raw in iter_shard_raw(path, stats):
        sample = sample_from_raw(key, raw, shard, decode_images, stats)
        if sample is not None:
            yield sample


def sample_from_raw(
    key: str, raw: dict[str, bytes], shard: str, decode_images: bool, stats: SampleStats
) -> Sample | None:
    """One sample from its raw members, with the reader's rules (every engine uses these).

    No json/uid: None, counted as a corrupt sample. Missing or non-UTF-8 caption: "" or U+FFFD,
    counted as a bad caption. Missing or undecodable image (when decoding): ``image=None``, counted.
    """
    meta = checked_sample_json(key, raw, shard, stats)
    if meta is None:
        return None
    if "txt" not in raw:
        caption = ""
        stats.bad_captions += 1
        stats.note(f"{shard}/{key}: no caption (.txt member); used an empty caption")
    else:
        try:
            caption = raw["txt"].decode("utf-8")
        except UnicodeDecodeError:
            caption = raw["txt"].decode("utf-8", "replace")
            stats.bad_captions += 1
            stats.note(f"{shard}/{key}: caption is not valid UTF-8; undecodable bytes became U+FFFD")
    image = None
    if decode_images:
        img_bytes = next((raw[e] for e in IMAGE_EXTS if e in raw), None)
        if img_bytes is None:
            stats.undecodable_images += 1
            stats.note(f"{shard}/{key}: no image member")
        else:
            try:
                image = decode_image(img_bytes)
            except ImageTooLarge as exc:
                stats.undecodable_images += 1
                stats.note(f"{shard}/{key}: image skipped, {exc}")
            except Exception as exc:  # PIL raises many types for broken files
                stats.undecodable_images += 1
                stats.note(f"{shard}/{key}: undecodable image ({type(exc).__name__})")
    stats.samples += 1
    return Sample(uid=meta["uid"].lower(), key=key, image=image, caption=caption, meta=meta, shard=shard)


# ---------------------------------------------------------------------------------------------
# the pool


_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, pa.ArrowException)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A damaged file (pyarrow, numpy, zip or I/O failure) becomes a PoolError naming it."""
    try:
        yield
    except PoolError:
        raise
    except _READ_ERRORS as exc:
        raise PoolError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _check_finite(arr: np.ndarray, npz: Path, key: str, table: pa.Table) -> None:
    """NaN or inf in a feature array is refused here, naming the npz, the array and the row, rather than
    deep inside a filter (k-means, a classifier) that names neither."""
    if arr.dtype.kind != "f":
        return
    finite = np.isfinite(arr)
    if finite.all():
        return
    row = int(np.flatnonzero(~finite.reshape(len(arr), -1).all(axis=1))[0])
    uid = table.column("uid")[row].as_py() if "uid" in table.column_names else "?"
    raise PoolError(f"{npz}: array {key!r} holds NaN or inf at row {row} (uid {uid})")


def _uid_column(table: pa.Table, path: Path) -> pa.ChunkedArray:
    """The uid column as strings (a numeric or binary column is cast, so uids_to_array can name it)."""
    col = table.column("uid")
    if col.type != pa.string():
        with _reading(path):
            col = col.cast(pa.string())
    return col


class Pool:
    """A DataComp pool on disk: ``<root>/metadata`` and ``<root>/shards``.

    ``root`` may also be a world directory (``<world>/pool``) in which case the pool inside it is used.
    """

    def __init__(self, root: str | Path):
        root = Path(root).expanduser()
        if not (root / "metadata").is_dir() and (root / "pool" / "metadata").is_dir():
            root = root / "pool"
        self.root = root
        self.metadata_dir = root / "metadata"
        self.shards_dir = root / "shards"
        if not self.metadata_dir.is_dir():
            raise PoolError(f"{root}: not a DataComp pool (no metadata/ directory)")
        self.sample_stats = SampleStats()
        self._uids: np.ndarray | None = None  # u8,u8 uids, converted once on demand

    def __repr__(self) -> str:
        return f"Pool({str(self.root)!r})"

    @property
    def name(self) -> str:
        """A short name for run directories: the world's name for <world>/pool, else the folder's."""
        return self.root.parent.name if self.root.name == "pool" else self.root.name

    @property
    def metadata_files(self) -> list[Path]:
        files = sorted(self.metadata_dir.glob("*.parquet"))
        if not files:
            raise PoolError(f"{self.metadata_dir}: no .parquet metadata files")
        return files

    @property
    def shards(self) -> list[Path]:
        return sorted(self.shards_dir.glob("*.tar")) if self.shards_dir.is_dir() else []

    def npz_path(self, parquet: Path) -> Path:
        return parquet.with_suffix(".npz")

    def file_rows(self) -> list[int]:
        """Row count of each metadata file (from the parquet footers, cheap)."""
        return [self._footer_rows(p) for p in self.metadata_files]

    @staticmethod
    def _footer_rows(path: Path) -> int:
        """A file's row count from its footer, refused when the footer contradicts its row groups."""
        with _reading(path):
            meta = pq.ParquetFile(path).metadata
            groups = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        if meta.num_rows != groups:
            raise PoolError(f"{path}: damaged parquet footer ({meta.num_rows} rows, row groups hold {groups})")
        return meta.num_rows

    def __len__(self) -> int:
        return sum(self.file_rows())

    def schema(self) -> pa.Schema:
        with _reading(self.metadata_files[0]):
            return pq.read_schema(self.metadata_files[0])

    # -- metadata --------------------------------------------------------------------------

    def _read_table(self, path: Path, cols: Sequence[str]) -> pa.Table:
        try:
            table = pq.read_table(path, columns=list(cols))
        except (pa.ArrowInvalid, KeyError) as exc:
            with _reading(path):
                names = pq.read_schema(path).names
            missing = [c for c in cols if c not in names]
            if missing:
                raise PoolError(f"{path}: missing column(s) {missing}; the file has {names}") from exc
            raise PoolError(f"{path}: unreadable parquet ({exc})") from exc
        except _READ_ERRORS as exc:
            raise PoolError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc
        promised = self._footer_rows(path)
        if table.num_rows != promised:  # what was read must be what the footer promised
            raise PoolError(f"{path}: damaged parquet ({table.num_rows} rows read, footer says {promised})")
        return table

    def read_columns(self, cols: Sequence[str]) -> pa.Table:
        """The given columns over every metadata file, in the pool's order."""
        cols = list(dict.fromkeys(cols))
        tables = [self._read_table(p, cols) for p in self.metadata_files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def iter_metadata(
        self, cols: Sequence[str] = (), features: Sequence[str] = ()
    ) -> Iterator[MetadataBatch]:
        """One MetadataBatch per metadata file: ``uid`` + cols, and the npz arrays aligned row for row."""
        cols = list(dict.fromkeys(["uid", *cols]))
        offset = 0
        # the first full pass converts every uid once, into one array that uids() then returns (16 bytes
        # a row; holding the strings instead would take 36, and fresh memory is much of the pass's cost)
        all_uids = np.empty(sum(self.file_rows()), dtype=UID_DTYPE) if self._uids is None else None
        for path in self.metadata_files:
            batch = self.metadata_batch(path, cols, features, offset)
            table = batch.table
            if all_uids is not None:
                try:
                    part = all_uids[offset : offset + table.num_rows]
                    batch._uids = uids_into(_uid_column(table, path), part, where=str(path))
                except (PoolError, ValueError):  # raised where uids are asked for (uids(), batch.uids()), as before
                    all_uids = None
            yield batch
            offset += table.num_rows
        if all_uids is not None and offset == len(all_uids):
            self._uids = all_uids

    def metadata_batch(
        self, path: Path, cols: Sequence[str] = (), features: Sequence[str] = (), offset: int = 0
    ) -> MetadataBatch:
        """One metadata file as a MetadataBatch (``uid`` + cols, the npz arrays aligned row for row),
        ``offset`` its first row in the whole pool: what one worker of a distributed pass reads."""
        cols = list(dict.fromkeys(["uid", *cols]))
        table = self._read_table(path, cols)
        feats: dict[str, np.ndarray] = {}
        if features:
            npz = self.npz_path(path)
            if not npz.exists():
                raise PoolError(f"{npz}: missing (features {list(features)} were asked for)")
            with _reading(npz), np.load(npz) as z:
                for k in features:
                    if k not in z.files:
                        raise PoolError(f"{npz}: no array {k!r}; it has {z.files}")
                    arr = z[k]
                    if arr.shape[0] != table.num_rows:
                        raise PoolError(
                            f"{npz}: {k!r} has {arr.shape[0]} rows but {path.name} has "
                            f"{table.num_rows}; features must align row for row with the parquet"
                        )
                    _check_finite(arr, npz, k, table)
                    feats[k] = arr
        return MetadataBatch(table=table, features=feats, path=str(path), offset=offset)

    def uids(self) -> np.ndarray:
        """Every uid as ``u8,u8`` in metadata order (16 bytes per row).

        Kept for the life of this Pool object: a Pool describes the files as they were when read.
        Converted by the first full metadata pass, or here file by file (no strings kept).
        """
        if self._uids is None:
            files = self.metadata_files
            rows = self.file_rows()
            out = np.empty(sum(rows), dtype=UID_DTYPE)
            offset = 0
            for path, n in zip(files, rows, strict=True):  # per file, so an error names the file
                col = _uid_column(self._read_table(path, ["uid"]), path)
                uids_into(col, out[offset : offset + n], where=str(path))
                offset += n
            self._uids = out
        return self._uids

    def validate(self, uids: np.ndarray | None = None) -> np.ndarray:
        """Check uids (format and uniqueness); returns them (metadata order).

        A duplicate is an error naming the uid and the metadata files that hold it.
        """
        arr = self.uids() if uids is None else uids
        if len(arr) < 2:
            return arr
        hi = np.sort(arr["f0"])  # a plain sort of the high words; pairs are looked at only on a clash
        clash = np.unique(hi[1:][hi[1:] == hi[:-1]])
        for h in clash:
            rows = np.nonzero(arr["f0"] == h)[0]
            lows, counts = np.unique(arr["f1"][rows], return_counts=True)
            if (counts > 1).any():
                row = int(rows[arr["f1"][rows] == lows[counts > 1][0]][0])
                uid = array_to_uids(arr[row : row + 1])[0]
                raise PoolError(f"duplicate uid {uid} in the pool, in {self._files_holding(uid)}")
        return arr

    def _files_holding(self, uid: str) -> list[str]:
        found = []
        for p in self.metadata_files:
            col = pq.read_table(p, columns=["uid"]).column("uid").to_pylist()
            n = sum(1 for u in col if u.lower() == uid)
            if n:
                found.append(f"{p.name} (x{n})" if n > 1 else p.name)
        return found

    # -- shards ----------------------------------------------------------------------------

    def iter_samples(self, decode_images: bool = True, shards: Sequence[Path] | None = None) -> Iterator[Sample]:
        """Stream samples over the shards; corrupt samples/shards are skipped and counted in
        ``self.sample_stats`` (reset at the start of each call)."""
        self.sample_stats = SampleStats()
        for shard in self.shards if shards is None else shards:
            yield from iter_shard_samples(shard, decode_images, self.sample_stats)

    # -- identity --------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Content fingerprint of the metadata: every parquet file's bytes (xxh3, memoised by stat, see
        `harness.stages.content_digest`) and every npz's zip directory (its members' CRC-32s and sizes,
        which the writer computed over their full content). What metadata scorers and selection read."""
        from harness.stages import content_digest, fingerprint

        parts = [[p.name, content_digest(p)] for p in sorted(self.metadata_dir.glob("*.parquet"))]
        parts += [[p.name, _npz_directory(p)] for p in sorted(self.metadata_dir.glob("*.npz"))]
        return fingerprint(parts)

    def shards_fingerprint(self) -> str:
        """Content fingerprint of the shards (what image scorers and resharding read)."""
        from harness.stages import content_digest, fingerprint

        return fingerprint([[p.relative_to(self.root).as_posix(), content_digest(p)] for p in self.shards])


def _npz_directory(path: Path) -> list[list[Any]]:
    """An npz's members with their CRC-32 and sizes, read from the zip's central directory only."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [[i.filename, i.CRC, i.file_size] for i in zf.infolist()]
    except (OSError, zipfile.BadZipFile) as e:
        raise PoolError(f"{path}: not a readable npz ({e})") from None
