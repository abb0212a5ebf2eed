"""Captions at three levels of detail, in English and five other languages.

- generic:  says only that there is a shape/picture ("a shape", "an image of something")
- medium:   colour and kind ("a red circle", "red circles")
- detailed: count, size, colour, kind, position and background
            ("two small red circles in the top left on a striped background")
"""

from __future__ import annotations

import numpy as np

from . import vocab as V
from .scenes import Scene

LEVELS = ("generic", "medium", "detailed")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def generic_caption(scene: Scene, rng: np.random.Generator) -> str:
    del scene  # generic captions fit every scene; that is the point
    return _pick(rng, V.GENERIC_CAPTIONS)


def medium_caption(scene: Scene, rng: np.random.Generator) -> str:
    c, s = scene.colour, scene.shape
    if scene.count == 1:
        core = f"{_article(c)} {c} {s}"
        options = (core, f"{c} {s}", f"a picture of {core}", f"{core} on a background", f"a drawing of {core}")
    else:
        core = f"{c} {V.PLURAL[s]}"
        options = (core, f"some {core}", f"a picture of {core}", f"{core} on a background", f"a group of {core}")
    return _pick(rng, options)


def detailed_caption(scene: Scene, rng: np.random.Generator) -> str:
    c, s, z = scene.colour, scene.shape, scene.size
    noun = s if scene.count == 1 else V.PLURAL[s]
    count = _article(z) if scene.count == 1 else V.COUNT_WORDS[scene.count]
    if scene.count == 1 and rng.random() < 0.3:
        count = "one"
    obj = f"{count} {z} {c} {noun}"
    pos = V.POSITION_PHRASES[scene.position]
    tex = scene.background
    options = (
        f"{obj} {pos} on {_article(tex)} {tex} background",
        f"a photo of {obj} {pos}, {tex} background",
        f"{obj} {pos} against {_article(tex)} {tex} background",
        f"{_article(tex).capitalize()} {tex} background with {obj} {pos}",
    )
    return _pick(rng, options)


def caption_levels(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
    """(generic, medium, detailed) captions of one scene."""
    return generic_caption(scene, rng), medium_caption(scene, rng), detailed_caption(scene, rng)


def caption_at(scene: Scene, level: str, rng: np.random.Generator) -> str:
    if level == "generic":
        return generic_caption(scene, rng)
    if level == "medium":
        return medium_caption(scene, rng)
    if level == "detailed":
        return detailed_caption(scene, rng)
    raise ValueError(f"unknown caption level {level!r} (expected one of {LEVELS})")


def underspecified_caption(rng: np.random.Generator) -> str:
    t = _pick(rng, V.UNDERSPECIFIED_CAPTIONS)
    return t.format(n2=int(rng.integers(1, 100)), n3=int(rng.integers(1, 1000)),
                    n4=f"{int(rng.integers(0, 10000)):04d}", n5=f"{int(rng.integers(0, 100000)):05d}")


# --- other languages ------------------------------------------------------------------------------

def _romance(scene: Scene, level: str, shapes, colours, sizes, counts, positions, textures, lang: str) -> str:
    g, sg, pl = shapes[scene.shape]
    i = (0 if g == "m" else 1) + (0 if scene.count == 1 else 2)
    noun = sg if scene.count == 1 else pl
    colour = colours[scene.colour][i]
    if lang == "es":
        one = "un" if g == "m" else "una"
        count = one if scene.count == 1 else counts[scene.count]
        if level == "medium":
            return f"{one} {noun} {colour}" if scene.count == 1 else f"{noun} {colour}"
        size = sizes[scene.size][i]
        return f"{count} {noun} {colour} {size} {positions[scene.position]} sobre un fondo {textures[scene.background]}"
    one = "un" if g == "m" else "une"
    count = one if scene.count == 1 else counts[scene.count]
    if level == "medium":
        return f"{one} {noun} {colour}" if scene.count == 1 else f"des {noun} {colour}"
    size = sizes[scene.size][i]
    return f"{count} {size} {noun} {colour} {positions[scene.position]} sur un fond {textures[scene.background]}"


def _german(scene: Scene, level: str) -> str:
    g, sg, pl = V.DE_SHAPES[scene.shape]
    colour = V.DE_COLOURS[scene.colour]
    size = V.DE_SIZES[scene.size]
    if scene.count == 1:
        art, end = {"m": ("ein", "er"), "n": ("ein", "es"), "f": ("eine", "e")}[g]
        if level == "medium":
            return f"{art} {colour}{end} {sg}"
        phrase = f"{art} {size}{end} {colour}{end} {sg}"
    else:
        if level == "medium":
            return f"{colour}e {pl}"
        phrase = f"{V.DE_COUNTS[scene.count]} {size}e {colour}e {pl}"
    return f"{phrase} {V.DE_POSITIONS[scene.position]} {V.DE_TEXTURES[scene.background]}"


def translated_caption(scene: Scene, lang: str, level: str) -> str:
    """The scene's medium or detailed caption in `lang` (es, fr, de, ja, zh)."""
    if level not in ("medium", "detailed"):
        raise ValueError(f"translations exist for medium and detailed captions, not {level!r}")
    if lang == "es":
        return _romance(scene, level, V.ES_SHAPES, V.ES_COLOURS, V.ES_SIZES, V.ES_COUNTS, V.ES_POSITIONS,
                        V.ES_TEXTURES, "es")
    if lang == "fr":
        return _romance(scene, level, V.FR_SHAPES, V.FR_COLOURS, V.FR_SIZES, V.FR_COUNTS, V.FR_POSITIONS,
                        V.FR_TEXTURES, "fr")
    if lang == "de":
        return _german(scene, level)
    if lang == "ja":
        obj = f"{V.JA_COLOURS[scene.colour]}{V.JA_SHAPES[scene.shape]}"
        if level == "medium":
            return obj
        return (f"{V.JA_TEXTURES[scene.background]}の{V.JA_POSITIONS[scene.position]}にある"
                f"{V.JA_COUNTS[scene.count]}{V.JA_SIZES[scene.size]}{obj}")
    if lang == "zh":
        obj = f"{V.ZH_COLOURS[scene.colour]}的{V.ZH_SHAPES[scene.shape]}"
        if level == "medium":
            return f"{V.ZH_COUNTS[scene.count]}{obj}"
        return (f"{V.ZH_TEXTURES[scene.background]}上{V.ZH_POSITIONS[scene.position]}的"
                f"{V.ZH_COUNTS[scene.count]}{V.ZH_SIZES[scene.size]}{obj}")
    raise ValueError(f"unknown language {lang!r} (expected one of {V.LANGUAGES})")
