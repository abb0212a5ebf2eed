"""The fast paths of selection against their slow definitions: uid decoding (binascii into a u8,u8
array), the packed-key uid sort, the bracketed k-th value, the in-place random hash, and the uids a
metadata pass converts once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from filters_fakepool import datacomp_uids
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.baselines.random_filter import uid_uniform
from harness.expressions import kth_smallest, percent_threshold
from harness.pool import Pool, PoolError, sort_uids, uids_into, uids_to_array

UID = np.dtype("u8,u8")


def _hex(rng: np.random.Generator, n: int, upper: float = 0.0) -> list[str]:
    out = []
    for _ in range(n):
        u = bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex()
        if rng.random() < upper:
            u = "".join(c.upper() if rng.random() < 0.5 else c for c in u)
        out.append(u)
    return out


def test_uid_decoding_matches_int_parsing_on_random_and_mixed_case_uids():
    rng = np.random.default_rng(7)
    uids = _hex(rng, 3000, upper=0.3) + ["0" * 32, "f" * 32, "F" * 32, "8" + "0" * 31, "0" * 31 + "1"]
    ref = datacomp_uids(uids)  # int(u[:16], 16), int(u[16:], 16): DataComp's rule
    np.testing.assert_array_equal(uids_to_array(uids), ref)
    arr = pa.array(uids)
    np.testing.assert_array_equal(uids_to_array(arr), ref)
    np.testing.assert_array_equal(uids_to_array(pa.array(uids, pa.large_string())), ref)
    # a sliced array (non-zero offset) and several chunks
    np.testing.assert_array_equal(uids_to_array(arr.slice(5, 100)), ref[5:105])
    chunked = pa.chunked_array([arr.slice(0, 7), arr.slice(7, 0), arr.slice(7, 2000), arr.slice(2007)])
    np.testing.assert_array_equal(uids_to_array(chunked), ref)
    assert uids_to_array(pa.array([], pa.string())).dtype == UID


def test_uids_into_writes_a_slice_and_checks_its_length():
    rng = np.random.default_rng(8)
    uids = _hex(rng, 50)
    big = np.zeros(80, UID)
    out = uids_into(pa.chunked_array([pa.array(uids[:20]), pa.array(uids[20:])]), big[10:60], where="f.parquet")
    np.testing.assert_array_equal(big[10:60], datacomp_uids(uids))
    assert out.base is big or np.shares_memory(out, big)
    assert (big[:10]["f0"] == 0).all() and (big[60:]["f1"] == 0).all()
    with pytest.raises(ValueError, match="f.parquet"):
        uids_into(pa.array(uids), np.empty(49, UID), where="f.parquet")


@pytest.mark.parametrize("bad", ["g" + "0" * 31, "0" * 16 + " " + "0" * 15, "0" * 30 + "-1", "x" * 32, "0" * 31 + "\x00"])
def test_a_bad_uid_is_named_with_its_row_in_the_whole_column(bad):
    rng = np.random.default_rng(9)
    uids = _hex(rng, 30)
    uids[23] = bad
    col = pa.chunked_array([pa.array(uids[:20]), pa.array(uids[20:])])  # the bad one is row 3 of chunk 2
    with pytest.raises(PoolError) as err:
        uids_to_array(col, where="meta/00000001.parquet")
    msg = str(err.value)
    assert "meta/00000001.parquet" in msg and "(row 23)" in msg and repr(bad) in msg
    with pytest.raises(PoolError, match=r"\(row 23\)"):
        uids_to_array(uids, where="x")


def _ref_sort(arr: np.ndarray, rows=None) -> np.ndarray:
    out = arr.copy() if rows is None else arr[rows]
    out.sort()  # numpy's structured sort: (f0, f1) lexicographic
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=60),
    st.integers(0, 3),
    st.randoms(use_true_random=False),
)
def test_sort_uids_equals_numpy_structured_sort(pairs, shape, rnd):
    arr = np.array(pairs, UID)
    if shape == 1:  # high words sharing their top bits (the packed keys tie): the tie fix must order them
        arr["f0"] >>= np.uint64(40)
    elif shape == 2:  # a handful of high words, many equal
        arr["f0"] %= np.uint64(3)
    elif shape == 3:
        arr["f0"] = np.uint64(2**64 - 1)
    np.testing.assert_array_equal(sort_uids(arr), _ref_sort(arr))
    if len(arr):
        mask = np.array([rnd.random() < 0.5 for _ in range(len(arr))])
        np.testing.assert_array_equal(sort_uids(arr, mask), _ref_sort(arr, mask))
        rows = np.sort(np.array([rnd.randrange(len(arr)) for _ in range(2 * len(arr))], dtype=np.int64))
        before = rows.copy()
        np.testing.assert_array_equal(sort_uids(arr, rows), _ref_sort(arr, rows))
        np.testing.assert_array_equal(rows, before)  # the caller's row numbers are left alone


def test_sort_uids_on_a_large_random_set_and_bad_rows():
    rng = np.random.default_rng(10)
    arr = np.empty(300_000, UID)
    arr["f0"] = rng.integers(0, 2**64, len(arr), dtype=np.uint64)
    arr["f1"] = rng.integers(0, 2**64, len(arr), dtype=np.uint64)
    arr["f0"][::1000] = arr["f0"][1::1000]  # some shared high words
    mask = rng.random(len(arr)) < 0.3
    np.testing.assert_array_equal(sort_uids(arr, mask), _ref_sort(arr, mask))
    with pytest.raises(IndexError):
        sort_uids(arr, np.array([0, len(arr)]))
    with pytest.raises(IndexError):
        sort_uids(arr, np.array([-1]))
    with pytest.raises(PoolError, match="dtype"):
        sort_uids(np.zeros(3, np.uint64))


@pytest.mark.parametrize("kind", ["normal3", "uniform", "few", "sorted", "reversed", "constant"])
def test_kth_smallest_is_partitions_value(kind):
    rng = np.random.default_rng(11)
    n = 300_007
    a = {
        "normal3": np.round(rng.normal(0.3, 0.05, n), 3),
        "uniform": rng.random(n),
        "few": rng.integers(0, 3, n).astype(np.float64),
        "sorted": np.sort(rng.random(n)),
        "reversed": np.sort(rng.random(n))[::-1].copy(),
        "constant": np.full(n, 0.25),
    }[kind]
    for k in (0, 1, n // 10, n // 2, n - 1 - int(n * 0.3), n - 2, n - 1):
        assert kth_smallest(a, k, small=0) == np.partition(a, k)[k]  # small=0: always bracket
    # DataComp's threshold with NaNs (sorted last, never kept)
    a[::97] = np.nan
    finite = a[~np.isnan(a)]
    idx = int(n * 0.3)
    assert percent_threshold(a, 30) == -np.sort(-finite)[idx]


def test_uid_uniform_keeps_its_definition():
    """The seeded hash, written out slowly: mix(mix(f0 ^ mix(seed + golden)) ^ f1) >> 11, / 2**53."""
    m64 = (1 << 64) - 1

    def mix(x: int) -> int:
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & m64
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & m64
        return x ^ (x >> 31)

    rng = np.random.default_rng(12)
    uids = datacomp_uids(_hex(rng, 200))
    for seed in (0, 1, 2**64 - 1, -5, 123456789):
        key = mix(((seed % 2**64) + 0x9E3779B97F4A7C15) & m64)
        want = [(mix(mix(int(h) ^ key) ^ int(lo)) >> 11) / 2**53 for h, lo in zip(uids["f0"], uids["f1"], strict=True)]
        got = uid_uniform(uids, seed)
        assert got.dtype == np.float64
        assert got.tolist() == want


def test_metadata_pass_converts_uids_once(fake_pool_dir):
    root, df = fake_pool_dir
    pool = Pool(root)
    seen = [b.uids() for b in pool.iter_metadata(["clip_l14_similarity_score"])]
    assert pool._uids is not None  # kept from the pass: uids() converts nothing more
    np.testing.assert_array_equal(pool.uids(), datacomp_uids(df.uid))
    assert all(np.shares_memory(s, pool.uids()) for s in seen)  # the batches saw slices of it
    np.testing.assert_array_equal(Pool(root).uids(), pool.uids())  # and uids() alone gives the same
