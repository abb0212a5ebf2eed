"""Building blocks for the small generated pools of the test folders (filters, reliability, scaleout).

A module with a unique name beside tests/conftest.py, so every test folder imports the same one.
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image


def random_jpeg(rng: np.random.Generator, size: int = 8) -> bytes:
    """A decodable size x size JPEG of random pixels."""
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    """Write `data` into an open tar as member `name`."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
