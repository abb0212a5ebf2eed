"""Small rendered images with and without text, for the tests and the benchmark (not the world)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("dog", "banana", "airplane", "truck", "pizza", "zebra", "ship", "guitar", "coffee", "tiger")


def render(
    rng: np.random.Generator, text: str | None, size: int = 128, font_px: int = 14
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """A plain background with two shapes, plus ``text`` (if given) in a contrasting colour.

    Returns the image and the text's pixel box (x0, y0, x1, y1), or None without text.
    """
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    s = size / 128
    a, b = rng.integers(0, int(64 * s), 2)
    draw.ellipse(
        [int(a), int(b), int(a + 50 * s), int(b + 50 * s)],
        fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
    )
    c, d = rng.integers(int(60 * s), int(100 * s), 2)
    draw.rectangle(
        [int(c), int(d), int(c + 25 * s), int(d + 25 * s)],
        fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
    )
    if text is None:
        return image, None
    font = ImageFont.load_default(size=font_px)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(2, max(3, size - (x1 - x0) - 2)))
    y = int(rng.integers(2, max(3, size - (y1 - y0) - 2)))
    # a solid label behind the text, so the text contrasts whatever the shapes are
    label = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink = (0, 0, 0) if sum(label) > 384 else (255, 255, 255)
    box = draw.textbbox((x, y), text, font=font)
    draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=label)
    draw.text((x, y), text, font=font, fill=ink)
    return image, (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
