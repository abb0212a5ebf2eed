"""Image-caption samples with web-like noise: planning (cheap, no pixels) and rendering.

A set of samples is first *planned* (scene, caption, noise type, declared original size, links to
other samples) and then each plan is rendered on its own, so a pool can be written shard by shard
and any sample can be re-rendered exactly from its plan.

Randomness: sample i of stream `stream` under seed `seed` draws from
`np.random.default_rng([seed, stream, i])`; links between samples (mismatched-caption donors,
near-duplicate originals) come from one extra generator of the same stream. Nothing reads global
random state, so a seed fixes everything.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageEnhance

from . import vocab as V
from .captions import caption_at, translated_caption, underspecified_caption
from .scenes import CANVAS, Scene, draw_text_block, render_scene, sample_scene

NOISE_TYPES: tuple[str, ...] = (
    "clean", "underspecified", "mismatched", "text_in_image", "non_english", "bad_image", "near_duplicate",
)

# Default pool mix (fractions of the pool; exact counts by largest remainder).
DEFAULT_MIX: dict[str, float] = {
    "clean": 0.45, "underspecified": 0.12, "mismatched": 0.15, "text_in_image": 0.08,
    "non_english": 0.08, "bad_image": 0.06, "near_duplicate": 0.06,
}
# Data the reference CLIPs learn from: mostly clean but web-like, with enough text-in-image pairs
# that the models learn to "read" rendered words, as OpenAI's CLIP does (with 14% the tiny models
# barely did; with 25% a caption's rendered words lift its score above clean pairs', as on the web).
WEB_MIX: dict[str, float] = {
    "clean": 0.55, "underspecified": 0.05, "mismatched": 0.05, "text_in_image": 0.25,
    "non_english": 0.04, "bad_image": 0.03, "near_duplicate": 0.03,
}
CLEAN_MIX: dict[str, float] = {"clean": 1.0}

# Caption level of clean samples (and of captions that start from a clean one).
DEFAULT_DETAIL: dict[str, float] = {"generic": 0.2, "medium": 0.4, "detailed": 0.4}
SPECIFIC_DETAIL: dict[str, float] = {"medium": 0.35, "detailed": 0.65}  # DFN's "high quality" data

TEXT_ABSENT_P = 0.6       # text_in_image: the concept is absent (else drawn small, once)
TEXT_INK = True           # text_in_image: letters in the caption's colour (see scenes.draw_text_block)
TEXT_MEDIUM_P = 1.0       # text_in_image: share of medium captions (else detailed)
TEXT_SIZE = (22, 30)      # text_in_image: font size range in pixels on the 128 px canvas
TINY_P = 0.5              # bad_image: tiny (else extreme aspect ratio)
JPEG_QUALITY = 90


@dataclass
class Plan:
    index: int
    noise: str
    scene: Scene                  # what the image shows (for text_in_image: the concept's background)
    caption: str
    detail: str                   # generic | medium | detailed | none (underspecified)
    lang: str = "en"
    caption_scene: Scene | None = None   # the scene the caption describes, when not `scene`
    dup_of: int = -1
    concept_present: bool = True
    text_lines: tuple[str, ...] = ()
    orig_size: tuple[int, int] = (0, 0)  # declared original (width, height)
    stored_size: tuple[int, int] = (CANVAS, CANVAS)
    seed: int = 0                        # for the rendering-time randomness (text placement, perturbation)
    jpeg_quality: int = JPEG_QUALITY
    extra: dict = field(default_factory=dict)


@dataclass
class Rendered:
    image: Image.Image
    text_box: tuple[int, int, int, int] | None = None


def allocate(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Exact counts for a mix by largest remainder (sums to n)."""
    unknown = set(mix) - set(NOISE_TYPES)
    if unknown:
        raise ValueError(f"unknown noise types {sorted(unknown)}; known: {NOISE_TYPES}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("noise mix has no positive weight")
    raw = {k: n * v / total for k, v in mix.items()}
    counts = {k: int(np.floor(x)) for k, x in raw.items()}
    rest = n - sum(counts.values())
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[:rest]:
        counts[k] += 1
    return counts


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _normal_size(rng: np.random.Generator) -> tuple[int, int]:
    short = int(np.exp(rng.uniform(np.log(200), np.log(1200))))
    aspect = float(np.exp(rng.uniform(np.log(1 / 1.8), np.log(1.8))))
    return (short, int(short * aspect)) if aspect >= 1 else (int(short / aspect), short)


def _different_scene(rng: np.random.Generator, scene: Scene) -> Scene:
    while True:
        other = sample_scene(rng)
        if (other.shape, other.colour) != (scene.shape, scene.colour):
            return other


def _plan_one(i: int, noise: str, rng: np.random.Generator, detail_mix: dict[str, float]) -> Plan:
    scene = sample_scene(rng)
    plan = Plan(index=i, noise=noise, scene=scene, caption="", detail="", orig_size=_normal_size(rng),
                seed=int(rng.integers(2**31)))
    if noise in ("clean", "near_duplicate", "bad_image"):
        plan.detail = _choice(rng, detail_mix)
        if noise == "bad_image" and plan.detail == "generic":
            plan.detail = "medium"  # keep the caption honest so only the image is bad
        plan.caption = caption_at(scene, plan.detail, rng)
    elif noise == "underspecified":
        plan.detail = "none"
        plan.caption = underspecified_caption(rng)
    elif noise == "mismatched":
        # donor filled in by the linker when the set has clean samples; a fresh scene otherwise
        donor = _different_scene(rng, scene)
        plan.detail = "medium" if rng.random() < 0.5 else "detailed"
        plan.caption = caption_at(donor, plan.detail, rng)
        plan.caption_scene = donor
    elif noise == "non_english":
        plan.lang = V.LANGUAGES[int(rng.integers(len(V.LANGUAGES)))]
        plan.detail = "detailed" if rng.random() < 0.7 else "medium"
        plan.caption = translated_caption(scene, plan.lang, plan.detail)
    elif noise == "text_in_image":
        # the caption echoes the rendered words ("a picture of red squares"), as on posters and
        # product shots: what T-MARS targets is a caption whose only match is the text
        plan.detail = "medium" if rng.random() < TEXT_MEDIUM_P else "detailed"
        plan.caption = caption_at(scene, plan.detail, rng)
        plan.caption_scene = scene
        plan.concept_present = bool(rng.random() >= TEXT_ABSENT_P)
        if plan.concept_present:
            # the concept survives only as one small object; the text dominates
            small = sample_scene(rng, shape=scene.shape, colour=scene.colour, count=1, size="small",
                                 background=scene.background)
            plan.scene = replace(small, bg_rgb=scene.bg_rgb, bg_rgb2=scene.bg_rgb2,
                                 texture_seed=scene.texture_seed)
        noun = scene.shape if scene.count == 1 else V.PLURAL[scene.shape]
        lines = (scene.colour, noun)
        if rng.random() < 0.3:
            lines = tuple(w.upper() for w in lines)
        plan.text_lines = lines
    elif noise == "bad_image":
        pass
    else:
        raise ValueError(f"unknown noise type {noise!r}")
    if noise == "bad_image":
        if rng.random() < TINY_P:
            side = int(rng.integers(24, 121))
            aspect = float(rng.uniform(0.8, 1.25))
            w, h = side, max(16, int(side * aspect))
            plan.orig_size = (w, h)
            plan.stored_size = (min(w, CANVAS), min(h, CANVAS))
            plan.extra["bad"] = "tiny"
        else:
            ratio = float(rng.uniform(3.5, 7.0))
            long = int(rng.integers(400, 1601))
            short = max(40, int(long / ratio))
            short_stored = max(16, int(round(CANVAS / ratio)))
            if rng.random() < 0.5:
                plan.orig_size, plan.stored_size = (long, short), (CANVAS, short_stored)
            else:
                plan.orig_size, plan.stored_size = (short, long), (short_stored, CANVAS)
            plan.extra["bad"] = "aspect"
    if noise == "near_duplicate":
        plan.jpeg_quality = int(rng.integers(65, 86))
    return plan


def plan_samples(seed: int, stream: int, n: int, mix: dict[str, float],
                 detail_mix: dict[str, float] | None = None) -> list[Plan]:
    """Plan n samples whose noise types follow `mix` exactly (largest remainder), in random order."""
    detail_mix = detail_mix or DEFAULT_DETAIL
    link_rng = np.random.default_rng([seed, stream, 2**40])
    counts = allocate(n, mix)
    labels = np.array([k for k in NOISE_TYPES for _ in range(counts.get(k, 0))], dtype=object)
    labels = labels[link_rng.permutation(n)] if n else labels
    plans = [_plan_one(i, str(labels[i]), np.random.default_rng([seed, stream, i]), detail_mix)
             for i in range(n)]
    _link(plans, link_rng)
    return plans


def _link(plans: list[Plan], rng: np.random.Generator) -> None:
    """Mismatched captions borrow another clean sample's caption; near-duplicates copy a clean sample."""
    clean = [p for p in plans if p.noise == "clean"]
    specific = [p for p in clean if p.detail in ("medium", "detailed")]
    for p in plans:
        if p.noise == "mismatched" and specific:
            for _ in range(50):
                donor = specific[int(rng.integers(len(specific)))]
                if (donor.scene.shape, donor.scene.colour) != (p.scene.shape, p.scene.colour):
                    p.caption, p.detail, p.caption_scene = donor.caption, donor.detail, donor.scene
                    p.extra["caption_of"] = donor.index
                    break
        elif p.noise == "near_duplicate" and clean:
            orig = clean[int(rng.integers(len(clean)))]
            p.scene, p.caption, p.detail = orig.scene, orig.caption, orig.detail
            p.orig_size, p.dup_of = orig.orig_size, orig.index
            if rng.random() < 0.3:  # re-uploads often carry a re-worded caption
                p.caption = caption_at(orig.scene, orig.detail, np.random.default_rng(p.seed))


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` and centre-crop (what open_clip's eval transform does)."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def render_plan(plan: Plan) -> Rendered:
    """The pixels of a planned sample (deterministic)."""
    rng = np.random.default_rng([plan.seed, 7])
    if plan.noise == "text_in_image":
        img = render_scene(plan.scene, draw_objects=plan.concept_present)
        ink = V.COLOURS[plan.caption_scene.colour] if TEXT_INK and plan.caption_scene else None
        box = draw_text_block(img, list(plan.text_lines), rng, size_range=TEXT_SIZE, ink=ink)
        return Rendered(img, box)
    img = render_scene(plan.scene)
    if plan.noise == "bad_image":
        img = img.resize(plan.stored_size, Image.BICUBIC)
    elif plan.noise == "near_duplicate":
        # a slightly shifted, re-exposed re-encode of the original
        dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
        img = img.crop((max(0, dx), max(0, dy), CANVAS + min(0, dx), CANVAS + min(0, dy)))
        img = img.resize((CANVAS, CANVAS), Image.BICUBIC)
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.9, 1.1)))
    return Rendered(img)


def encode_jpeg(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
