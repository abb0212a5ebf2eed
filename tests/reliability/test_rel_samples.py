"""Item 1: damaged shards, undecodable images, empty/missing captions and awkward caption text, through
the pool reader, the scoring engine and the resharder.

Behaviour under test: a damaged shard or sample is skipped and counted (with a note naming the shard and
key, and one warning line per scoring / resharding pass); samples before the damage still count; awkward
but valid captions pass through byte for byte.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from reliability_pool import CONTROL_CAPTION, LONG_CAPTION, MIXED_CAPTION, GenPool

from harness.plugins import Needs, Scorer, ScoringContext
from harness.pool import Pool, iter_shard_samples, uids_to_array
from harness.reshard import reshard
from harness.scoring import compute_terms, score
from harness.selection import save_subset


class CaptionProbe(Scorer):
    """Scores each sample by caption length and mean pixel, so the table shows what the scorer saw."""

    name = "rel_caption_probe"
    terms = ("chars", "pixel")
    needs = Needs(images=True, captions=True)
    default_percent = 100.0
    seen: dict[str, str] = {}

    def score_samples(self, samples, ctx):
        for s in samples:
            CaptionProbe.seen[s.uid] = s.caption
        return {
            "chars": np.array([len(s.caption) for s in samples], float),
            "pixel": np.array([float(np.asarray(s.image).mean()) for s in samples]),
        }

    def combine(self, terms):
        return terms["chars"].to_numpy()


def _ctx(root: Path) -> ScoringContext:
    return ScoringContext(pool=Pool(root), batch_size=4)


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tf:
        return tf.getmembers()


def _reshard_all(pool: Pool, gp: GenPool, out: Path) -> dict:
    save_subset(out.parent / "all.npy", uids_to_array(gp.uids))
    return reshard(pool, out.parent / "all.npy", out, workers=1)


def _resharded(out: Path) -> dict[str, dict[str, bytes]]:
    got: dict[str, dict[str, bytes]] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                got.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return got


# ------------------------------------------------------------------------------------------------
# awkward but valid captions: carried unchanged


def test_awkward_captions_pass_through_reader_scorer_and_resharder(gen_pool: GenPool, tmp_path, registered):
    pool = Pool(gen_pool.root)
    got = {s.uid: s.caption for s in pool.iter_samples(decode_images=False)}
    assert got == dict(zip(gen_pool.uids, gen_pool.captions, strict=True))
    assert got[gen_pool.uids[0]] == ""
    assert got[gen_pool.uids[1]] == LONG_CAPTION and len(LONG_CAPTION) == 10_000
    assert got[gen_pool.uids[2]] == CONTROL_CAPTION
    assert got[gen_pool.uids[3]] == MIXED_CAPTION
    assert pool.sample_stats.as_dict()["errors"] == []

    registered(CaptionProbe)
    table = score(pool, "rel_caption_probe", _ctx(gen_pool.root), tmp_path / "scores", progress=False)
    assert table["uid"].tolist() == gen_pool.uids
    assert table["chars"].tolist() == [len(c) for c in gen_pool.captions]
    assert table.attrs["record"]["missing"] == 0

    meta = _reshard_all(pool, gen_pool, tmp_path / "shards")
    assert meta["output_count"] == len(gen_pool.uids) and meta["corrupt_samples"] == 0
    out = _resharded(tmp_path / "shards")
    for uid, cap in zip(gen_pool.uids, gen_pool.captions, strict=True):
        assert out[f"{uid}-0"]["txt"] == cap.encode("utf-8")  # byte for byte
        assert out[f"{uid}-0"]["jpg"] == gen_pool.images[uid]


def test_long_and_control_captions_tokenize_to_the_context_length():
    """The text path of model scorers and training (open_clip's tokenizer) truncates, never fails."""
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    ids = tok([LONG_CAPTION, CONTROL_CAPTION, MIXED_CAPTION, ""])
    assert tuple(ids.shape) == (4, 77)
    assert int(ids[0, -1]) != 0  # the long caption fills the context (truncated, end token kept)


def test_missing_and_invalid_utf8_captions_are_counted(pool_factory, caplog):
    gp = pool_factory(no_txt_rows=(4,), raw_txt={5: b"caf\xe9 \xff broken"})
    pool = Pool(gp.root)
    got = {s.uid: s.caption for s in pool.iter_samples(decode_images=False)}
    assert got[gp.uids[4]] == ""  # still yielded: the metadata row exists, the caption is empty
    assert got[gp.uids[5]] == "caf\ufffd \ufffd broken"  # replacement characters, never a crash
    stats = pool.sample_stats
    assert stats.bad_captions == 2
    assert any(gp.keys[4] in e and "no caption" in e for e in stats.errors)
    assert any(gp.keys[5] in e and "UTF-8" in e for e in stats.errors)


# ------------------------------------------------------------------------------------------------
# undecodable image


def test_undecodable_image_is_nan_counted_and_never_selected(pool_factory, tmp_path, registered, caplog):
    gp = pool_factory(bad_image_rows=(6,))
    pool = Pool(gp.root)
    samples = {s.uid: s for s in pool.iter_samples()}
    assert samples[gp.uids[6]].image is None
    assert pool.sample_stats.undecodable_images == 1
    assert any(gp.keys[6] in e and "undecodable image" in e for e in pool.sample_stats.errors)

    registered(CaptionProbe)
    with caplog.at_level(logging.WARNING, logger="harness"):
        t = compute_terms(pool, "rel_caption_probe", _ctx(gp.root), tmp_path / "scores", progress=False)
    assert np.isnan(t.terms["chars"][6]) and np.isnan(t.terms["pixel"][6])
    assert np.isfinite(np.delete(t.terms["chars"], 6)).all()
    assert t.record["missing"] == 1
    assert any("1 undecodable image" in r.getMessage() for r in caplog.records)

    from harness import expressions

    ast = expressions.parse("rel_caption_probe_100")
    mask, _ = expressions.evaluate(ast, len(gp.uids), lambda name: t.combined())
    assert not mask[6] and mask.sum() == len(gp.uids) - 1  # 100% keeps every scored row, not the broken one


# ------------------------------------------------------------------------------------------------
# damaged shards


def _truncate_inside(gp: GenPool, shard: int, sample: int) -> int:
    """Cut shard `shard` in the middle of the image of its `sample`-th sample; returns that row."""
    path = gp.shards[shard]
    m = _members(path)[3 * sample]
    assert m.name.endswith(".jpg")
    data = path.read_bytes()
    path.write_bytes(data[: m.offset_data + m.size // 2])
    return [i for i, s in enumerate(gp.shard_of) if s == shard][sample]


def _cut_at_member_boundary(gp: GenPool, shard: int, sample: int) -> int:
    path = gp.shards[shard]
    m = _members(path)[3 * sample]
    path.write_bytes(path.read_bytes()[: m.offset])  # ends exactly before a header: no end marker
    return [i for i, s in enumerate(gp.shard_of) if s == shard][sample]


def _break_header(gp: GenPool, shard: int, sample: int) -> int:
    path = gp.shards[shard]
    m = _members(path)[3 * sample]
    data = bytearray(path.read_bytes())
    data[m.offset + 148 : m.offset + 156] = b"9999999\0"  # a wrong header checksum
    path.write_bytes(bytes(data))
    return [i for i, s in enumerate(gp.shard_of) if s == shard][sample]


@pytest.mark.parametrize("damage", [_truncate_inside, _cut_at_member_boundary, _break_header])
def test_damaged_shard_keeps_what_came_before_and_counts_it(damage, pool_factory, tmp_path, registered, caplog):
    gp = pool_factory()
    first_lost = damage(gp, 0, 5)
    lost = [i for i, s in enumerate(gp.shard_of) if s == 0 and i >= first_lost]
    kept = [u for i, u in enumerate(gp.uids) if i not in lost]
    pool = Pool(gp.root)

    got = [s.uid for s in pool.iter_samples(decode_images=False)]
    assert got == kept
    assert pool.sample_stats.corrupt_shards == 1
    assert any(gp.shards[0].name in e for e in pool.sample_stats.errors)

    registered(CaptionProbe)
    with caplog.at_level(logging.WARNING, logger="harness"):
        t = compute_terms(pool, "rel_caption_probe", _ctx(gp.root), tmp_path / "scores", progress=False)
    assert np.isnan(t.terms["chars"][lost]).all()
    assert np.isfinite(np.delete(t.terms["chars"], lost)).all()
    assert t.record["missing"] == len(lost) and t.record["not_in_shards"] == len(lost)
    assert any("1 corrupt shard" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harness"):
        meta = _reshard_all(pool, gp, tmp_path / "shards")
    assert meta["corrupt_shards"] == 1
    assert meta["missing_from_input"] == len(lost)
    assert sorted(_resharded(tmp_path / "shards")) == sorted(f"{u}-0" for u in kept)
    assert any("1 corrupt shard" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"this is not a tar archive at all" * 40])
def test_unreadable_shard_is_skipped_and_counted(content, pool_factory):
    gp = pool_factory()
    gp.shards[1].write_bytes(content)
    pool = Pool(gp.root)
    got = [s.uid for s in pool.iter_samples(decode_images=False)]
    assert got == [u for u, s in zip(gp.uids, gp.shard_of, strict=True) if s == 0]
    assert pool.sample_stats.corrupt_shards == 1


def test_sample_with_bad_json_is_skipped_and_counted(tmp_path):
    shard = tmp_path / "00000000.tar"
    good = "0123456789abcdef" * 2
    with tarfile.open(shard, "w") as tf:
        for key, payload in [("a", b"{not json"), ("b", json.dumps({"uid": "xyz"}).encode()),
                             ("c", json.dumps({"uid": good}).encode()), ("d", None)]:
            for ext, data in (("txt", b"cap"), ("json", payload)):
                if data is None:
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    from harness.pool import SampleStats

    stats = SampleStats()
    got = [s.uid for s in iter_shard_samples(shard, decode_images=False, stats=stats)]
    assert got == [good]
    assert stats.corrupt_samples == 3
    assert [e.split(":")[0] for e in stats.errors] == ["00000000.tar/a", "00000000.tar/b", "00000000.tar/d"]
