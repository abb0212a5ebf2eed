"""Issue 19, item 2: image decoding is bounded.

The crafted inputs of the issue: a ~160 kB PNG of 13000x13000 (507 MB decoded, under Pillow's own error
limit) and a ~1 kB JPEG whose header claims 12000x12000. Both are skipped before any pixel is decoded
and counted as undecodable images (NaN in every term, never selected), in the reader, in scoring and in
the training data pipeline; a large JPEG under the limit is decoded at reduced scale; a scoring batch
holds a bounded amount of decoded pixels. The peak-memory figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import jpeg, jpeg_claiming, png_bomb, replace_images
from PIL import Image

from harness.plugins import Needs, Scorer, ScoringContext
from harness.pool import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageTooLarge,
    Pool,
    SampleStats,
    decode_image,
    iter_shard_samples,
)
from harness.scoring import compute_terms


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb(13000)


def test_the_crafted_inputs_are_what_the_issue_describes(bomb):
    small = jpeg_claiming(12000)
    assert len(bomb) < 600_000 and len(small) < 2_000
    with Image.open(__import__("io").BytesIO(bomb)) as im:
        assert im.size == (13000, 13000) and im.size[0] * im.size[1] < 2 * Image.MAX_IMAGE_PIXELS
    with Image.open(__import__("io").BytesIO(small)) as im:
        assert im.size == (12000, 12000)


def test_limit_is_well_below_pillows_default():
    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 4096
    assert DEFAULT_MAX_IMAGE_PIXELS * 5 < Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("which", ["png", "jpeg"])
def test_bombs_are_refused_from_the_header(which, bomb):
    data = bomb if which == "png" else jpeg_claiming(12000)
    with pytest.raises(ImageTooLarge, match=r"(13000x13000|12000x12000) = \d+ pixels, over the 16777216-pixel"):
        decode_image(data)


def test_bombs_in_a_shard_are_skipped_and_counted_like_undecodable_images(gen_pool, bomb):
    shard = gen_pool.shards[0]
    replace_images(shard, {1: bomb, 3: jpeg_claiming(12000)})
    stats = SampleStats()
    got = {s.key: s for s in iter_shard_samples(shard, decode_images=True, stats=stats)}
    keys = [k for k, s in zip(gen_pool.keys, gen_pool.shard_of, strict=True) if s == 0]
    assert got[keys[1]].image is None and got[keys[3]].image is None
    assert all(got[k].image is not None for i, k in enumerate(keys) if i not in (1, 3))
    assert stats.undecodable_images == 2 and stats.samples == len(keys)
    assert any("13000x13000" in e and "pixel limit" in e for e in stats.errors)
    assert "2 undecodable images" in stats.summary()


def test_pixel_limit_is_configurable(monkeypatch):
    data = jpeg(64, 64)
    assert decode_image(data).size == (64, 64)
    monkeypatch.setenv("HARNESS_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLarge, match="over the 1000-pixel limit"):
        decode_image(data)
    monkeypatch.setenv("HARNESS_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="HARNESS_MAX_IMAGE_PIXELS='lots' is not an integer"):
        decode_image(data)


def test_large_jpeg_is_decoded_at_reduced_scale_small_one_in_full():
    # 4096x2600 (10.6M pixels, under the limit): DCT scaling by 1/2 keeps both sides >= 1024
    assert decode_image(jpeg(4096, 2600)).size == (2048, 1300)
    # below twice the draft side: decoded at full size, pixel for pixel as before
    full = jpeg(1500, 900)
    assert decode_image(full).size == (1500, 900)
    with Image.open(__import__("io").BytesIO(full)) as im:
        np.testing.assert_array_equal(np.asarray(decode_image(full)), np.asarray(im.convert("RGB")))


class _BatchRecorder(Scorer):
    name = "rel_batch_recorder"
    terms = ("s",)
    needs = Needs(images=True)
    default_percent = 50.0
    sizes: list[int] = []

    def score_samples(self, samples, ctx):
        type(self).sizes.append(len(samples))
        return {"s": np.array([float(s.image.width) for s in samples])}


def test_decoded_batch_is_bounded_in_bytes(gen_pool, tmp_path, registered, monkeypatch):
    # 300x300 RGB = 270 kB decoded; a 1 MB budget flushes after 4 images although the batch size is 256
    for shard in gen_pool.shards:
        replace_images(shard, {i: jpeg(300, 300) for i in range(10)})
    registered(_BatchRecorder)
    _BatchRecorder.sizes = []
    monkeypatch.setenv("HARNESS_DECODED_BATCH_MB", "1")
    pool = Pool(gen_pool.root)
    t = compute_terms(pool, "rel_batch_recorder", ScoringContext(pool=pool, batch_size=256), tmp_path / "s",
                      progress=False)
    assert _BatchRecorder.sizes == [4, 4, 2, 4, 4, 2]  # two shards of 10 samples
    assert np.all(t.terms["s"] == 300.0)


def test_scoring_a_shard_with_bombs_gives_nan_and_says_so(gen_pool, tmp_path, registered, bomb, caplog):
    replace_images(gen_pool.shards[0], {0: bomb, 2: jpeg_claiming(12000)})
    registered(_BatchRecorder)
    pool = Pool(gen_pool.root)
    with caplog.at_level(logging.WARNING, logger="harness.scoring"):
        t = compute_terms(pool, "rel_batch_recorder", ScoringContext(pool=pool), tmp_path / "s", progress=False)
    assert np.flatnonzero(np.isnan(t.terms["s"])).tolist() == [0, 2]  # metadata order = gen_pool.uids
    line = [r.getMessage() for r in caplog.records if "rel_batch_recorder" in r.getMessage()]
    assert len(line) == 1 and "2 without a decodable image" in line[0] and "13000x13000" in line[0]


def test_training_pipeline_refuses_the_bombs_at_open(bomb):
    """In a training dataloader process, Pillow refuses an image over the harness's limit at open, before
    decoding (open_clip_train's handler then skips the sample); an ordinary image still opens."""
    import io
    import warnings

    from harness.training.seeding import bound_image_decoding

    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            bound_image_decoding()
            for data in (bomb, jpeg_claiming(12000), jpeg(4100, 4100)):  # the last: 16.8M, just over
                with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning)):
                    Image.open(io.BytesIO(data))
            Image.open(io.BytesIO(jpeg(640, 480))).load()
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_peak_memory_with_bombs_stays_near_a_clean_run(tmp_path, bomb):
    """Reading a shard of eight 13000x13000 PNGs (507 MB each if decoded) keeps the reader's peak RSS
    within 100 MB of reading the same shard with ordinary images (fresh interpreters, ru_maxrss)."""
    from hostile_inputs import write_shard

    def shard(path: Path, image: bytes) -> Path:
        members = []
        for i in range(8):
            members += [(f"{i:05d}.jpg", image), (f"{i:05d}.txt", b"a caption"),
                        (f"{i:05d}.json", json.dumps({"uid": f"{i:032x}"}).encode())]
        write_shard(path, members)
        return path

    code = textwrap.dedent("""
        import resource, sys
        from harness.pool import SampleStats, iter_shard_samples
        s = SampleStats()
        n = sum(1 for _ in iter_shard_samples(sys.argv[1], decode_images=True, stats=s))
        print(n, s.undecodable_images, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)

    def peak(path: Path) -> tuple[int, int, int]:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        n, bad, rss_kb = map(int, out.stdout.split())
        return n, bad, rss_kb

    clean = peak(shard(tmp_path / "clean.tar", jpeg(512, 512)))
    bombs = peak(shard(tmp_path / "bombs.tar", bomb))
    assert clean[:2] == (8, 0) and bombs[:2] == (8, 8)
    assert bombs[2] < clean[2] + 100_000, (clean, bombs)  # kB; one decoded bomb alone is 507 MB
