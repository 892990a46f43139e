"""The NumPy and big-integer formulations of the fingerprint give the values of plain
Python written from their definitions, bit for bit: stored keys depend on it."""

from __future__ import annotations

import numpy as np
import pytest

from scraper.core import fingerprint as fp
from scraper.core import shingles
from scraper.dedup import DedupSettings

_FNV = 0x100000001B3
_M64 = (1 << 64) - 1


def _codes(rng: np.random.Generator, n: int) -> np.ndarray:
    # CJK, ASCII and the top of the BMP: products that wrap mod 2**64 at every shingle size
    pools = np.r_[0x30:0x7B, 0x4E00:0x9FFF, 0xFF00:0xFFFF].astype(np.uint32)
    return rng.choice(pools, n)


def _mix(h: int) -> int:
    """splitmix64's finalizer."""
    h ^= h >> 30
    h = h * 0xBF58476D1CE4E5B9 & _M64
    h ^= h >> 27
    h = h * 0x94D049BB133111EB & _M64
    return h ^ (h >> 31)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("n", [1, 2, 5, 17, 1500])
def test_shingle_hashes_are_the_mixed_polynomial(size: int, n: int) -> None:
    codes = _codes(np.random.default_rng(size * 1000 + n), n + size - 1).tolist()
    want = []
    for i in range(n):
        h = 0
        for j in range(size):
            h = (h * _FNV + codes[i + j]) & _M64
        want.append(_mix(h))
    text = "".join(map(chr, codes))
    assert fp.shingle_hashes(text, size).tolist() == want


def test_a_text_shorter_than_a_shingle_is_one_shingle_padded_with_zeros() -> None:
    assert fp.shingle_hashes("ab", 4).tolist() == [_mix((ord("a") * _FNV + ord("b")) * _FNV**2
                                                        & _M64)]


def _plain_sketch(hashes: list[int]) -> tuple[list[int], int]:
    """The sketch by its definition: bin = the top 7 bits, value = the 16 bits after them of
    the bin's least hash; an empty bin takes the next full bin's value (wrapping) plus
    0x9E37 per bin of distance."""
    bins = fp.SKETCH_BINS
    least: dict[int, int] = {}
    for h in hashes:
        b = h >> 57
        least[b] = min(least.get(b, h), h)
    values = [None] * bins
    for b, h in least.items():
        values[b] = (h >> 41) & 0xFFFF
    out = []
    for b in range(bins):
        d = 0
        while values[(b + d) % bins] is None:
            d += 1
        out.append((values[(b + d) % bins] + d * 0x9E37) & 0xFFFF)
    return out, len(set(hashes))


@pytest.mark.parametrize("n", [1, 3, 40, 127, 128, 500, 1500])
def test_sketch_is_its_definition(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        hashes[: n // 4] = hashes[-(n // 4) or n :][: n // 4]  # some repeats
        values, distinct = fp.sketch(hashes)
        assert (values.tolist(), distinct) == _plain_sketch(hashes.tolist())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 100, 1500])
def test_distinct_sorted_is_unique(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 50 if n < 200 else 2**64, n, dtype=np.uint64, endpoint=False)
    assert shingles.distinct_sorted(hashes.copy()).tolist() == sorted(set(hashes.tolist()))


def test_text_shingle_set_is_the_shingle_set_of_the_fold() -> None:
    rng = np.random.default_rng(7)
    for n in [0, 3, 63, 64, 65, 400, 1500]:
        text = _codes(rng, n).tobytes().decode("utf-32-le") + " Ａ，b。"
        for size in (2, 3, 4, 5):
            want = sorted(set(fp.shingle_hashes(fp.fold_text(text), size).tolist()))
            assert fp.text_shingle_set(text, size).tolist() == want


def _plain_band_keys(values: list[int], bands: int, rows: int, salt: int) -> tuple[int, ...]:
    """Band keys one band at a time: the salted sum of the band's rows times fixed odd
    multipliers (splitmix64 of the seed "band"), mixed, as a signed 64-bit integer."""
    multipliers = []
    state = 0x62616E64
    for _ in range(rows):
        state = (state + 0x9E3779B97F4A7C15) & _M64
        multipliers.append(_mix(state) | 1)
    keys = []
    for band in range(bands):
        h = (band + salt) * 0x9E3779B97F4A7C15
        for v, m in zip(values[band * rows : (band + 1) * rows], multipliers, strict=True):
            h += v * m
        h = _mix(h & _M64)
        keys.append(h - (1 << 64) if h >> 63 else h)
    return tuple(keys)


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 32])
@pytest.mark.parametrize("bands", [1, 2, 6, 10, 33])
def test_band_keys_are_the_band_by_band_sums(bands: int, rows: int) -> None:
    rng = np.random.default_rng(bands * 100 + rows)
    n = bands * rows
    extremes = [np.zeros(n, np.uint32), np.full(n, 2**32 - 1, np.uint32)]
    randoms = [rng.integers(0, 2**32, n + 3, dtype=np.uint32) for _ in range(20)]
    for salt in (0x6E656172, 0x7469746C, 0, (1 << 64) - 1):
        for signature in extremes + randoms:
            want = _plain_band_keys(signature.tolist(), bands, rows, salt)
            got = fp.band_keys(signature, bands, rows, salt)
            assert got == want  # (values past bands * rows are ignored)
            assert all(type(k) is int for k in got)
    assert fp.band_keys(np.zeros(n - 1, np.uint32), bands, rows, 0) == ()


@pytest.mark.parametrize(("bands", "rows"), [(1, 1), (3, 1), (32, 2), (100, 2)])
def test_compute_takes_its_minhash_and_sketch_from_one_sort(bands: int, rows: int) -> None:
    """compute() finds the sketch's and the MinHash's bins with one search of the sorted
    hashes, for any bin count."""
    settings = DedupSettings(bands=bands, rows=rows)
    rng = np.random.default_rng(bands * 10 + rows)
    for n in [1, 2, 5, 40, 127, 128, 1500]:
        text = _codes(rng, n + 200).tobytes().decode("utf-32-le")
        got = fp.compute("", text, None, settings)
        hashes = fp.shingle_hashes(fp.fold_text(text), settings.shingle)
        assert got.sketch == fp.sketch(hashes)[0].tobytes()
        assert got.signature == fp.one_permutation_minhash(hashes, bands * rows).tobytes()
