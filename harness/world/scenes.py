"""Scenes and their rendering.

A `Scene` holds every parameter the renderer needs (object centres and radii included), so
rendering is a pure function of the scene: a near-duplicate re-renders its original exactly and then
perturbs it, and nothing depends on global random state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .vocab import COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, TEXTURES

CANVAS = 128  # rendered scenes are CANVAS x CANVAS pixels


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    count: int
    size: str
    position: str
    background: str
    rgb: tuple[int, int, int]          # jittered fill colour
    bg_rgb: tuple[int, int, int]       # background base colour
    bg_rgb2: tuple[int, int, int]      # background pattern colour
    centers: tuple[tuple[int, int], ...]
    radii: tuple[int, ...]
    rotations: tuple[float, ...]       # degrees, one per object
    texture_seed: int
    style: str = "filled"              # "filled" | "outline" (the sketch shift)
    contrast: float = 1.0              # < 1 blends the objects toward the background

    def fields(self) -> dict:
        """The semantic fields (what a caption or a class label can talk about)."""
        return {"shape": self.shape, "colour": self.colour, "count": self.count, "size": self.size,
                "position": self.position, "background": self.background}

    def to_dict(self) -> dict:
        return asdict(self)


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def sample_scene(
    rng: np.random.Generator,
    *,
    shape: str | None = None,
    colour: str | None = None,
    count: int | None = None,
    size: str | None = None,
    position: str | None = None,
    background: str | None = None,
    textures: tuple[str, ...] = TEXTURES,
    max_rotation: float = 15.0,
) -> Scene:
    """Draw a random scene; any field given is held fixed (used by the eval tasks for balanced labels)."""
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    count = count or int(COUNTS[rng.integers(len(COUNTS))])
    size = size or SIZES[rng.integers(len(SIZES))]
    position = position or list(POSITIONS)[rng.integers(len(POSITIONS))]
    background = background or textures[rng.integers(len(textures))]
    x0, y0 = POSITIONS[position]
    centers: list[tuple[int, int]] = []
    radii: list[int] = []
    if count == 1:
        r = int(rng.integers(9, 13)) if size == "small" else int(rng.integers(21, 28))
        slack = max(0, 32 - r - 2)
        cx = x0 + 32 + int(rng.integers(-slack, slack + 1)) // 2
        cy = y0 + 32 + int(rng.integers(-slack, slack + 1)) // 2
        centers.append((cx, cy))
        radii.append(r)
    else:
        # objects sit in distinct cells of a 2x2 grid inside the position's 64x64 box
        cells = rng.permutation(4)[:count]
        for c in cells:
            r = int(rng.integers(6, 9)) if size == "small" else int(rng.integers(12, 15))
            slack = max(0, 16 - r - 1)
            cx = x0 + 16 + 32 * (int(c) % 2) + int(rng.integers(-slack, slack + 1))
            cy = y0 + 16 + 32 * (int(c) // 2) + int(rng.integers(-slack, slack + 1))
            centers.append((cx, cy))
            radii.append(r)
    rotations = tuple(float(rng.uniform(-max_rotation, max_rotation)) for _ in range(count))
    # muted, light backgrounds keep the saturated objects visible
    grey = int(rng.integers(150, 236))
    bg = _jitter((grey, grey, grey), rng, 18)
    delta = int(rng.integers(35, 70)) * (1 if grey < 190 else -1)
    bg2 = tuple(int(np.clip(c + delta, 0, 255)) for c in _jitter(bg, rng, 10))
    return Scene(
        shape=shape, colour=colour, count=count, size=size, position=position, background=background,
        rgb=_jitter(COLOURS[colour], rng, 18), bg_rgb=bg, bg_rgb2=bg2,  # type: ignore[arg-type]
        centers=tuple(centers), radii=tuple(radii), rotations=rotations,
        texture_seed=int(rng.integers(2**31)),
    )


# --- backgrounds ---------------------------------------------------------------------------------

def render_background(scene: Scene, width: int = CANVAS, height: int = CANVAS) -> np.ndarray:
    """H x W x 3 uint8 background texture."""
    rng = np.random.default_rng(scene.texture_seed)
    a = np.array(scene.bg_rgb, dtype=np.float32)
    b = np.array(scene.bg_rgb2, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.integers(8, 17))
    kind = scene.background
    if kind == "plain":
        t = np.zeros((height, width), np.float32)
    elif kind == "striped":
        direction = rng.integers(3)
        coord = yy if direction == 0 else xx if direction == 1 else (xx + yy) / math.sqrt(2)
        t = ((coord // (period / 2)) % 2).astype(np.float32)
    elif kind == "dotted":
        r = period * 0.22
        dx = (xx % period) - period / 2
        dy = (yy % period) - period / 2
        t = (dx * dx + dy * dy <= r * r).astype(np.float32)
    elif kind == "checkered":
        t = (((xx // period) + (yy // period)) % 2).astype(np.float32)
    elif kind == "noisy":
        t = np.clip(rng.normal(0.5, 0.35, size=(height, width)), 0, 1).astype(np.float32)
    elif kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(ang) + yy * math.sin(ang)
        t = (proj - proj.min()) / max(1e-6, float(proj.max() - proj.min()))
    elif kind == "waves":
        t = 0.5 + 0.5 * np.sin(xx / period * 2 * math.pi + 3 * np.sin(yy / (2 * period) * 2 * math.pi))
    elif kind == "grid":
        t = (((xx % period) < 1.5) | ((yy % period) < 1.5)).astype(np.float32)
    elif kind == "rings":
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        t = ((d // (period / 2)) % 2).astype(np.float32)
    elif kind == "scribbles":
        img = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(14):
            pts = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(4)]
            draw.line(pts, fill=255, width=2)
        t = np.asarray(img, dtype=np.float32) / 255.0
    else:
        raise ValueError(f"unknown background texture {kind!r}")
    out = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


# --- shapes --------------------------------------------------------------------------------------

def _rotate(points: list[tuple[float, float]], cx: float, cy: float, deg: float) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _regular(n: int, r: float, start: float = -90.0) -> list[tuple[float, float]]:
    return [(r * math.cos(math.radians(start + 360 * k / n)), r * math.sin(math.radians(start + 360 * k / n)))
            for k in range(n)]


def shape_polygon(shape: str, r: float) -> list[tuple[float, float]] | None:
    """Outline points centred on the origin; None for shapes drawn with ellipses."""
    if shape in ("circle", "crescent"):
        return None
    if shape == "square":
        h = r * 0.8
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        return _regular(3, r, -90.0)
    if shape == "hexagon":
        return _regular(6, r, 0.0)
    if shape == "diamond":
        return [(0, -r), (r * 0.65, 0), (0, r), (-r * 0.65, 0)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            ang = math.radians(-90 + 36 * k)
            pts.append((rad * math.cos(ang), rad * math.sin(ang)))
        return pts
    if shape == "cross":
        a, b = r * 0.3, r * 0.9
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a),
                (-b, -a), (-a, -a)]
    if shape == "heart":
        pts = []
        for k in range(32):
            t = 2 * math.pi * k / 32
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x * r / 17, y * r / 17 + r * 0.1))
        return pts
    if shape == "arrow":
        return [(-r, -r * 0.25), (r * 0.2, -r * 0.25), (r * 0.2, -r * 0.65), (r, 0), (r * 0.2, r * 0.65),
                (r * 0.2, r * 0.25), (-r, r * 0.25)]
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape_mask(mask: Image.Image, shape: str, cx: float, cy: float, r: float, rot: float,
                    outline: bool = False) -> None:
    """Draw one object into an 'L' mask (255 = object)."""
    draw = ImageDraw.Draw(mask)
    width = max(2, int(round(r / 5)))
    if shape == "circle":
        box = [cx - r, cy - r, cx + r, cy + r]
        if outline:
            draw.ellipse(box, outline=255, width=width)
        else:
            draw.ellipse(box, fill=255)
        return
    if shape == "crescent":
        # a disc minus an offset disc, the offset direction following the rotation
        off = r * 0.55
        ox = cx + off * math.cos(math.radians(rot - 30))
        oy = cy + off * math.sin(math.radians(rot - 30))
        sub = Image.new("L", mask.size, 0)
        sdraw = ImageDraw.Draw(sub)
        sdraw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        sdraw.ellipse([ox - r * 0.85, oy - r * 0.85, ox + r * 0.85, oy + r * 0.85], fill=0)
        if outline:
            from PIL import ImageFilter
            inner = sub.filter(ImageFilter.MinFilter(2 * width + 1))
            sub = Image.fromarray(np.where(np.asarray(inner) > 0, 0, np.asarray(sub)).astype(np.uint8))
        mask.paste(255, (0, 0), sub)
        return
    pts = _rotate(shape_polygon(shape, r) or [], cx, cy, rot)
    if outline:
        draw.line([*pts, pts[0]], fill=255, width=width, joint="curve")
    else:
        draw.polygon(pts, fill=255)


def render_scene(scene: Scene, width: int = CANVAS, height: int = CANVAS, draw_objects: bool = True) -> Image.Image:
    """Render a scene to an RGB image (the canvas coordinates are scaled when width/height differ)."""
    bg = render_background(scene, CANVAS, CANVAS)
    img = Image.fromarray(bg, "RGB")
    if draw_objects:
        mask = Image.new("L", (CANVAS, CANVAS), 0)
        for (cx, cy), r, rot in zip(scene.centers, scene.radii, scene.rotations, strict=True):
            draw_shape_mask(mask, scene.shape, cx, cy, r, rot, outline=scene.style == "outline")
        fill = np.array(scene.rgb, np.float32)
        if scene.contrast < 1.0:
            mean_bg = bg.reshape(-1, 3).mean(0)
            fill = mean_bg + (fill - mean_bg) * scene.contrast
        colour = tuple(int(c) for c in np.clip(fill, 0, 255))
        img.paste(colour, (0, 0), mask)
    if (width, height) != (CANVAS, CANVAS):
        img = img.resize((width, height), Image.BICUBIC)
    return img


def with_style(scene: Scene, **changes) -> Scene:
    return replace(scene, **changes)


# --- text in images ------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable font: the same glyphs on every machine with the same Pillow.
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def draw_text_block(img: Image.Image, lines: list[str], rng: np.random.Generator,
                    size_range: tuple[int, int] = (18, 25),
                    ink: tuple[int, int, int] | None = None) -> tuple[int, int, int, int]:
    """Draw `lines` at a random spot; returns the pixel box (x0, y0, x1, y1) of the ink.

    Without `ink` the text is plain and contrasts with the background under it (dark on light).
    With `ink` (an RGB) the letters are filled with that colour and outlined in a contrasting
    shade, as on a coloured sign or sticker: the letters themselves then carry the colour word.
    """
    w, h = img.size
    size = int(rng.integers(size_range[0], size_range[1] + 1))
    outline = 1 if ink is not None else 0
    while True:
        f = font(size)
        boxes = [f.getbbox(line, stroke_width=outline) for line in lines]
        tw = max(b[2] - b[0] for b in boxes)
        line_h = max(b[3] for b in boxes) + 2
        th = line_h * len(lines)
        if (tw <= w - 6 and th <= h - 6) or size <= 8:
            break
        size -= 2
    x = int(rng.integers(3, max(4, w - tw - 2)))
    y = int(rng.integers(3, max(4, h - th - 2)))
    # the shade that contrasts with the background under the block (readable, detectable)
    under = np.asarray(img.convert("L").crop((x, y, min(w, x + tw), min(h, y + th))), dtype=np.float64)
    dark = float(under.mean()) >= 110 if under.size else True
    shade = _jitter((25, 25, 25) if dark else (245, 245, 245), rng, 20)
    fill = _jitter(ink, rng, 18) if ink is not None else shade
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = w, h, 0, 0
    for i, line in enumerate(lines):
        ly = y + i * line_h
        draw.text((x, ly), line, font=f, fill=fill, stroke_width=outline, stroke_fill=shade)
        b = draw.textbbox((x, ly), line, font=f, stroke_width=outline)
        x0, y0, x1, y1 = min(x0, b[0]), min(y0, b[1]), max(x1, b[2]), max(y1, b[3])
    return (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
