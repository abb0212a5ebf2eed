"""T-MARS throughput on this CPU: detection alone, and detection + masking + CLIP re-scoring.

``python -m harness.benchmarks.tmars [--n 64] [--world DIR] [--threads 1]`` prints a Markdown section.
Images are 128 px renders (harness.benchmarks.text_images), half with a word of text. The scoring CLIP is
the world's ``ref_b32`` when a world is found (``--world``, default .cache/world-seed0), and an
untrained open_clip ViT-B-32 otherwise (the same compute as OpenAI's B/32 on a real pool; its
scores are meaningless, only the time counts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.baselines.tmars.detectors import get_detector
from harness.baselines.tmars.masking import mask_images
from harness.benchmarks.text_images import WORDS, render


class _RandomB32:
    """Minimal LoadedClip stand-in around an untrained open_clip ViT-B-32 (no download)."""

    def __init__(self) -> None:
        import open_clip
        import torch

        self.torch = torch
        self.model, _, self.preprocess = open_clip.create_model_and_transforms("ViT-B-32")
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32")
        self.name = "ViT-B-32 (untrained)"

    def encode_images(self, images: list[Any], batch_size: int = 256) -> np.ndarray:
        with self.torch.no_grad():
            x = self.torch.stack([self.preprocess(im) for im in images])
            f = self.model.encode_image(x)
        return (f / f.norm(dim=-1, keepdim=True)).numpy()

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        with self.torch.no_grad():
            f = self.model.encode_text(self.tokenizer(texts))
        return (f / f.norm(dim=-1, keepdim=True)).numpy()


def _clip(world: Path) -> tuple[Any, str]:
    ref = world / "models" / "ref_b32"
    if (ref / "model.json").is_file():
        from harness.models import load_clip

        return load_clip(ref), f"world reference CLIP `{ref}`"
    return _RandomB32(), "open_clip ViT-B-32, untrained (OpenAI B/32 compute)"


def _rate(fn, n: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=64, help="images per measurement")
    parser.add_argument("--world", type=Path, default=Path(".cache/world-seed0"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime and torch threads")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images, captions = [], []
    for i in range(args.n):
        word = WORDS[i % len(WORDS)]
        im, _ = render(rng, word if i % 2 == 0 else None, font_px=18)
        images.append(im)
        captions.append(f"a picture of a {word}")

    rows = []
    for upscale in (192, 0):
        det = get_detector("rapidocr", upscale_to=upscale, threads=args.threads)
        det.detect(images[:2])  # warm-up (session start-up)
        rate = _rate(lambda det=det: det.detect(images), args.n)
        label = f"detection (PP-OCR, upscale_to={upscale})" + (" [default]" if upscale == 192 else "")
        rows.append((label, rate))

    det = get_detector("rapidocr", threads=args.threads)
    regions = det.detect(images)
    rows.append(("masking alone", _rate(lambda: mask_images(images, regions), args.n)))

    clip, clip_label = _clip(args.world)
    clip.encode_images(images[:2])

    def full() -> None:
        masked = mask_images(images, det.detect(images))
        txt = clip.encode_texts(captions)
        orig = clip.encode_images(images)
        changed = [m.image for m in masked if m.n_boxes > 0]
        if changed:
            clip.encode_images(changed)
        assert orig.shape[0] == txt.shape[0]

    rows.append(("detection + masking + re-scoring (original and masked)", _rate(full, args.n, repeats=1)))
    boxes = sum(len(r) for r in regions)
    print(
        f"{args.n} images of 128 px (half with text, {boxes} boxes found), {args.threads} thread(s); "
        f"scoring model: {clip_label}.\n"
    )
    print("| stage | images/s | ms/image |")
    print("|---|---:|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} | {1000 / rate:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
