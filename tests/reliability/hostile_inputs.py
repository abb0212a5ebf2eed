"""The crafted inputs of issue 19 (decompression bombs, duplicated uids), shared by its tests and by the
memory measurement in BENCHMARKS.md."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

from PIL import Image


def png_bomb(side: int = 13000) -> bytes:
    """A valid side x side RGB PNG of black pixels: ~160 kB on disk, side*side*3 bytes decoded (13000:
    507 MB), under Pillow's own error limit (2 x 89.5M pixels)."""
    row = b"\x00" + b"\x00" * (3 * side)  # filter byte + pixels
    # deflate a block of rows once and repeat it: after a full flush a segment refers to nothing before
    # it, so the repeats form one valid stream (seconds faster than deflating 507 MB)
    per = next(n for n in (100, 50, 25, 20, 10, 5, 4, 2, 1) if side % n == 0)
    block = row * per
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    adler = 1
    for _ in range(side // per):
        adler = zlib.adler32(block, adler)
    idat = b"\x78\xda" + segment * (side // per) + end + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(side: int = 12000) -> bytes:
    """A ~1 kB JPEG (16x16 pixels of data) whose frame header claims side x side."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)  # height, width
    return bytes(data)


def jpeg(width: int, height: int, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def read_shard(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def replace_images(path: Path, images: dict[int, bytes]) -> None:
    """Rewrite a shard with the image of its i-th sample replaced (by position in the shard)."""
    members = read_shard(path)
    keys = list(dict.fromkeys(n.split(".", 1)[0] for n, _ in members))
    out = []
    for name, data in members:
        key, ext = name.split(".", 1)
        i = keys.index(key)
        out.append((name, images[i] if ext == "jpg" and i in images else data))
    write_shard(path, out)


def add_sample(path: Path, key: str, uid: str, caption: str, image: bytes) -> None:
    """Append a sample (jpg, txt, json with ``uid``) to a shard."""
    members = read_shard(path)
    members += [(f"{key}.jpg", image), (f"{key}.txt", caption.encode()),
                (f"{key}.json", json.dumps({"uid": uid, "key": key, "caption": caption}).encode())]
    write_shard(path, members)
