"""Issue 19: Hypothesis fuzzing of the image decoder, the pool reader fed hostile images, and the
expression parser fed deep nesting and long chains (test_rel_fuzz.py covers damaged shards and
parquets and random expression text). Bounded: a fixed number of examples each, no deadline, no
example database, so the file runs in CI in well under a minute.

Properties: the decoder returns an RGB image within the pixel limit or raises; through the reader
nothing raises and every image it could not use is counted; the parser returns an AST or raises
ExpressionError with a position inside the text -- never RecursionError.
"""

from __future__ import annotations

import io
import json
import struct

import pytest
from hostile_inputs import write_shard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.expressions import ExpressionError, parse
from harness.pool import SampleStats, decode_image, iter_shard_samples, max_image_pixels, sample_from_raw

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KNOWN = {"dfn": {"predicate": False, "default_percent": 15.0}, "basic": {"predicate": True, "default_percent": None},
         "clip_b32": {"predicate": False, "default_percent": None}}


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (24, 16), (120, 40, 200))
    img.save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP")}


def _set_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite the size the header claims (PNG IHDR, JPEG SOF0); other formats unchanged."""
    buf = bytearray(data)
    if buf.startswith(b"\x89PNG"):
        buf[16:24] = struct.pack(">II", w, h)
    elif (sof := buf.find(b"\xff\xc0")) > 0:
        buf[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(buf)


@st.composite
def hostile_images(draw) -> bytes:
    data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    if draw(st.booleans()):  # a header that lies about the size
        data = _set_size(data, draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    edits = draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    cut = draw(st.integers(0, 10))
    return bytes(buf[: max(1, len(buf) * cut // 10)] if cut < 10 else buf)


@FUZZ
@given(hostile_images())
@example(_set_size(SEEDS["PNG"], 13000, 13000))
@example(_set_size(SEEDS["JPEG"], 12000, 12000))
def test_decoder_returns_a_bounded_rgb_image_or_raises(data):
    try:
        img = decode_image(data)
    except Exception:  # noqa: BLE001  (any refusal is fine: the reader counts it)
        return
    assert img.mode == "RGB" and img.width * img.height <= max_image_pixels()


@FUZZ
@given(hostile_images())
def test_reader_counts_every_hostile_image_it_cannot_use(data):
    stats = SampleStats()
    raw = {"jpg": data, "txt": b"a caption", "json": json.dumps({"uid": "ab" * 16}).encode()}
    sample = sample_from_raw("k", raw, "00000000.tar", True, stats)
    assert sample is not None and stats.samples == 1
    assert (sample.image is None) == (stats.undecodable_images == 1)
    if sample.image is not None:
        assert sample.image.width * sample.image.height <= max_image_pixels()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile_shards")


@FUZZ
@given(st.lists(hostile_images(), min_size=1, max_size=6))
def test_shard_of_hostile_images_reads_whole_and_counted(shard_dir, images):
    members = []
    for i, img in enumerate(images):
        members += [(f"{i:05d}.jpg", img), (f"{i:05d}.txt", b"cap"),
                    (f"{i:05d}.json", json.dumps({"uid": f"{i:032x}"}).encode())]
    path = shard_dir / "00000000.tar"
    write_shard(path, members)
    stats = SampleStats()
    got = list(iter_shard_samples(path, decode_images=True, stats=stats))
    assert [s.uid for s in got] == [f"{i:032x}" for i in range(len(images))]  # no sample lost to an image
    assert stats.undecodable_images == sum(s.image is None for s in got) and stats.corrupt_shards == 0


def _check(expr: str) -> None:
    try:
        parse(expr, known=KNOWN)
    except ExpressionError as e:
        assert 0 <= e.pos <= len(expr)
    # RecursionError (or anything else) fails the test


@FUZZ
@given(st.integers(0, 2000), st.integers(0, 2000), st.sampled_from(["dfn", "basic", "clip_b32>=0.2", "dfn20"]))
@example(500, 500, "dfn")
def test_parser_on_deep_nesting_never_recurses_out(opens, closes, atom):
    _check("(" * opens + atom + ")" * closes)


@FUZZ
@given(st.lists(st.sampled_from(["dfn", "basic", "(", ")", "+", "&", "-", "dfn10", " "]), max_size=3000))
def test_parser_on_long_token_soup_never_recurses_out(tokens):
    _check("".join(tokens))


@FUZZ
@given(st.integers(1, 5000), st.sampled_from(["+", "&", " - "]))
def test_parser_on_long_chains_never_recurses_out(n, op):
    _check(op.join(["dfn"] * n))
