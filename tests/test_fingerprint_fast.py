"""The cheaper NumPy formulations in fingerprint give the values of the plain ones, bit for bit."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from scraper.core import fingerprint as fp

_FNV = 0x100000001B3
_M64 = (1 << 64) - 1


def _codes(rng: np.random.Generator, n: int) -> np.ndarray:
    # CJK, ASCII and the top of the BMP: products that wrap mod 2**64 at every shingle size
    pools = np.r_[0x30:0x7B, 0x4E00:0x9FFF, 0xFF00:0xFFFF].astype(np.uint32)
    return rng.choice(pools, n)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("n", [1, 2, 5, 17, 1500])
def test_polynomial_is_the_plain_sum(size: int, n: int) -> None:
    codes = _codes(np.random.default_rng(size * 1000 + n), n + size)
    count = n
    want = []
    for i in range(count):
        h = 0
        for j in range(size):
            h = (h * _FNV + int(codes[i + j])) & _M64
        want.append(h)
    assert fp._polynomial(codes, size, count).tolist() == want
    out = np.empty(count, dtype=np.uint64)
    assert fp._polynomial(codes, size, count, out) is out
    assert out.tolist() == want


def _sketch_by_cast(ordered: np.ndarray) -> tuple[bytes, int]:
    """_sketch_sorted as it was written before the uint16 views (commit 3fedb10)."""
    distinct = len(np.unique(ordered))
    head = ordered.take(np.searchsorted(ordered, fp._SKETCH_BOUNDS), mode="clip")
    top = head >> fp._U_SKETCH_VALUE_SHIFT
    values = top.astype(np.uint16)
    full = (top >> np.uint64(16)) == fp._SKETCH_BIN_IDS
    if np.count_nonzero(full) < fp.SKETCH_BINS:
        nonempty = np.flatnonzero(full)
        idx = np.arange(fp.SKETCH_BINS)
        source = nonempty[np.searchsorted(nonempty, idx) % len(nonempty)]
        dist = ((source - idx) % fp.SKETCH_BINS).astype(np.uint16)
        values = np.where(full, values, values[source] + dist * np.uint16(0x9E37))
    return values.tobytes(), distinct


@pytest.mark.parametrize("n", [1, 3, 40, 127, 128, 500, 1500])
def test_sketch_views_match_the_cast(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        hashes[: n // 4] = hashes[-(n // 4) or n :][: n // 4]  # some repeats
        ordered = np.sort(hashes)
        want = _sketch_by_cast(ordered)
        values, distinct = fp._sketch_sorted(ordered)
        assert (values.tobytes(), distinct) == want
        values, distinct = fp._sketch_sorted(ordered, want[1])
        assert (values.tobytes(), distinct) == want
        got, count = fp.sketch(hashes)
        assert (got.tobytes(), count) == want


@pytest.mark.parametrize("n", [0, 1, 2, 3, 100, 1500])
def test_distinct_sorted_is_unique(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 50 if n < 200 else 2**64, n, dtype=np.uint64, endpoint=False)
    assert fp._distinct_sorted(hashes.copy()).tolist() == np.unique(hashes).tolist()


def test_text_shingle_set_is_the_shingle_set_of_the_fold() -> None:
    rng = np.random.default_rng(7)
    for n in [0, 3, 63, 64, 65, 400, 1500]:
        text = _codes(rng, n).tobytes().decode("utf-32-le") + " Ａ，b。"
        for size in (2, 3, 4, 5):
            want = fp.shingle_set(fp.fold_text(text), size)
            assert fp.text_shingle_set(text, size).tobytes() == want.tobytes()


def _band_keys_by_band(values: list[int], bands: int, rows: int, salt: int) -> tuple[int, ...]:
    """_band_keys as it was written before the lanes: one band at a time."""
    keys = []
    for band in range(bands):
        h = (band + salt) * 0x9E3779B97F4A7C15
        for v, m in zip(values[band * rows : (band + 1) * rows], fp._ROW_MULTIPLIER_INTS,
                        strict=False):
            h += v * m
        h &= _M64
        h ^= h >> 30
        h = h * 0xBF58476D1CE4E5B9 & _M64
        h ^= h >> 27
        h = h * 0x94D049BB133111EB & _M64
        h ^= h >> 31
        keys.append(h - (1 << 64) if h >> 63 else h)
    return tuple(keys)


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 32])
@pytest.mark.parametrize("bands", [1, 2, 6, 10, 33])
def test_band_keys_lanes_match_the_band_by_band_loop(bands: int, rows: int) -> None:
    rng = np.random.default_rng(bands * 100 + rows)
    salts = [fp._NEAR_SALT, fp._TITLE_SALT, 0, (1 << 64) - 1]
    extremes = [[0] * (bands * rows), [2**32 - 1] * (bands * rows)]
    randoms = [rng.integers(0, 2**32, bands * rows, dtype=np.uint64).tolist() for _ in range(20)]
    for salt in salts:
        for values in extremes + randoms:
            want = _band_keys_by_band(values, bands, rows, salt)
            got = fp._band_keys(values, bands, rows, salt)
            assert got == want
            assert all(type(k) is int for k in got)
            # extra values past bands * rows are ignored, as the loop ignored them
            assert fp._band_keys([*values, 7, 8], bands, rows, salt) == want


def test_band_keys_reject_values_beyond_uint32() -> None:
    # A lane holds a value times a 64-bit multiplier only if the value fits 32 bits.
    with pytest.raises(struct.error):
        fp._band_keys([2**32, 1], 1, 2, fp._NEAR_SALT)


@pytest.mark.parametrize("bins", [1, 3, 20, 64, 200])
@pytest.mark.parametrize("n", [1, 2, 5, 40, 127, 128, 1500])
def test_one_searchsorted_for_sketch_and_minhash(bins: int, n: int) -> None:
    rng = np.random.default_rng(bins * 10_000 + n)
    for _ in range(10):
        hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        hashes[: n // 4] = hashes[-(n // 4) or n :][: n // 4]  # some repeats
        ordered = np.sort(hashes)
        starts = np.searchsorted(ordered, fp._joint_bounds(bins))
        values, distinct = fp._sketch_sorted(ordered, None, starts[: fp.SKETCH_BINS])
        want_values, want_distinct = fp._sketch_sorted(ordered)
        assert (values.tobytes(), distinct) == (want_values.tobytes(), want_distinct)
        sig = fp._minhash_sorted(ordered, bins, starts[fp.SKETCH_BINS :])
        assert sig.tobytes() == fp._minhash_sorted(ordered, bins).tobytes()
        assert sig.tobytes() == fp.one_permutation_minhash(hashes, bins).tobytes()
