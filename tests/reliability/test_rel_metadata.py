"""Item 2: metadata missing a required column, npz rows not matching the parquet, duplicate uids, uids that
are not 32 hex characters.

Behaviour under test: a PoolError naming the file (and the column, array, uid or row) at fault, raised before
a subset or score table is written; nothing is skipped silently.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_pool import GenPool

from harness.plugins import Needs, Scorer, ScoringContext
from harness.pool import Pool, PoolError
from harness.scoring import compute_terms
from harness.selection import select


class FeatureNorm(Scorer):
    """A metadata scorer that needs npz features."""

    name = "rel_feature_norm"
    needs = Needs(features=("b32_img", "b32_txt"))
    default_percent = 50.0

    def score_metadata(self, batch, ctx):
        a, b = batch.features["b32_img"].astype(float), batch.features["b32_txt"].astype(float)
        return {"score": (a * b).sum(axis=1)}


class SampleUid(Scorer):
    """A shard scorer: the score is the sample's caption length."""

    name = "rel_sample_len"
    needs = Needs(captions=True)
    default_percent = 50.0

    def score_samples(self, samples, ctx):
        return {"score": np.array([len(s.caption) for s in samples], float)}


def _rewrite(path, fn) -> None:
    pq.write_table(fn(pq.read_table(path)), path)


def _ctx(gp: GenPool) -> ScoringContext:
    return ScoringContext(pool=Pool(gp.root))


def _select_refused(gp: GenPool, expr: str, tmp_path, match: str) -> PoolError:
    with pytest.raises(PoolError, match=match) as err:
        select(Pool(gp.root), expr, tmp_path / "run", _ctx(gp), tmp_path / "scores", progress=False)
    assert not (tmp_path / "run" / "subset.npy").exists()
    assert not list((tmp_path / "scores").glob("*.parquet")) if (tmp_path / "scores").exists() else True
    return err.value


def test_missing_required_column_names_file_and_column(gen_pool, tmp_path):
    bad = gen_pool.metadata_files[1]
    _rewrite(bad, lambda t: t.drop_columns(["clip_l14_similarity_score"]))
    err = _select_refused(gen_pool, "clip_l14_30", tmp_path, "clip_l14_similarity_score")
    assert str(bad) in str(err) and "missing column" in str(err)


def test_missing_uid_column_is_refused(gen_pool, tmp_path):
    _rewrite(gen_pool.metadata_files[0], lambda t: t.drop_columns(["uid"]))
    with pytest.raises(PoolError, match=r"00000000\.parquet.*missing column.*'uid'"):
        list(Pool(gen_pool.root).iter_metadata(["text"]))


@pytest.mark.parametrize("change", ["fewer_rows", "more_rows", "missing_array", "missing_file"])
def test_npz_not_matching_parquet_is_refused(change, gen_pool, tmp_path, registered):
    registered(FeatureNorm)
    npz = gen_pool.metadata_files[1].with_suffix(".npz")
    arrays = dict(np.load(npz))
    if change == "fewer_rows":
        arrays["b32_txt"] = arrays["b32_txt"][:-1]
        match = r"00000001\.npz: 'b32_txt' has 9 rows but 00000001\.parquet has 10"
    elif change == "more_rows":
        arrays = {k: np.concatenate([v, v[:2]]) for k, v in arrays.items()}
        match = r"00000001\.npz: 'b32_img' has 12 rows but 00000001\.parquet has 10"
    elif change == "missing_array":
        del arrays["b32_img"]
        match = r"00000001\.npz: no array 'b32_img'"
    if change == "missing_file":
        npz.unlink()
        match = r"00000001\.npz: missing"
    else:
        np.savez(npz, **arrays)
    with pytest.raises(PoolError, match=match):
        compute_terms(Pool(gen_pool.root), FeatureNorm.name, _ctx(gen_pool), tmp_path / "scores", progress=False)
    assert not list((tmp_path / "scores").glob("*.parquet")) if (tmp_path / "scores").exists() else True


def _duplicate(gp: GenPool) -> str:
    """Give the first row of file 1 the uid of row 3 of file 0."""
    dup = gp.uids[3]
    _rewrite(gp.metadata_files[1], lambda t: t.set_column(0, "uid", pa.array([dup] + gp.uids[11:20])))
    return dup


def test_duplicate_uid_is_refused_by_selection_naming_uid_and_files(gen_pool, tmp_path):
    dup = _duplicate(gen_pool)
    err = _select_refused(gen_pool, "clip_l14_30", tmp_path, f"duplicate uid {dup}")
    assert "00000000.parquet" in str(err) and "00000001.parquet" in str(err)


def test_duplicate_uid_is_refused_by_shard_scoring(gen_pool, tmp_path, registered):
    """Shard results are aligned by uid: with a duplicate the alignment is ambiguous, so refuse it."""
    registered(SampleUid)
    dup = _duplicate(gen_pool)
    with pytest.raises(PoolError, match=f"duplicate uid {dup}"):
        compute_terms(Pool(gen_pool.root), SampleUid.name, _ctx(gen_pool), tmp_path / "scores", progress=False)
    assert not list((tmp_path / "scores").glob("*.parquet"))


@pytest.mark.parametrize(
    "bad",
    ["0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0", "g123456789abcdef0123456789abcdef",
     "0123456789abcdef 123456789abcdef", "0123456789abcdéf0123456789abcde", ""],
)
def test_uid_that_is_not_32_hex_characters_names_file_row_and_uid(bad, gen_pool, tmp_path):
    uids = gen_pool.uids[10:20]
    uids[4] = bad
    _rewrite(gen_pool.metadata_files[1], lambda t: t.set_column(0, "uid", pa.array(uids)))
    err = _select_refused(gen_pool, "clip_l14_30", tmp_path, "is not 32 hexadecimal|non-ASCII")
    assert "00000001.parquet" in str(err)
    assert "row 4" in str(err)


def test_null_or_numeric_uid_is_refused(gen_pool):
    path = gen_pool.metadata_files[0]
    _rewrite(path, lambda t: t.set_column(0, "uid", pa.array([None] + gen_pool.uids[1:10], pa.string())))
    with pytest.raises(PoolError, match=r"00000000\.parquet: uid is null at row 0"):
        Pool(gen_pool.root).uids()
    _rewrite(path, lambda t: t.set_column(0, "uid", pa.array(np.arange(10, dtype=np.int64))))
    with pytest.raises(PoolError, match=r"00000000\.parquet: uid '0' \(row 0\)"):
        Pool(gen_pool.root).uids()


def test_bad_uid_in_shard_json_is_skipped_and_counted_then_missing_in_scores(gen_pool, tmp_path, registered):
    """A shard sample whose .json uid is malformed cannot be matched to metadata: skipped, counted, NaN."""
    import io
    import json
    import tarfile

    shard = gen_pool.shards[0]
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(shard, "w") as tf:
        for m, data in members:
            if m.name == f"{gen_pool.keys[2]}.json":
                data = json.dumps({"uid": "not-a-uid"}).encode()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    registered(SampleUid)
    pool = Pool(gen_pool.root)
    t = compute_terms(pool, SampleUid.name, _ctx(gen_pool), tmp_path / "scores", progress=False)
    assert np.isnan(t.terms["score"][2]) and np.isfinite(np.delete(t.terms["score"], 2)).all()
    assert t.record["missing"] == 1
    assert t.record["sample_stats"]["corrupt_samples"] == 1
    assert "bad uid 'not-a-uid'" in t.record["sample_stats"]["errors"][0]
