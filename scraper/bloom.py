"""Blocked Bloom filters over 64-bit dedup keys: which keys a ``dedup_postings`` bucket may hold.

Most of an article's 18 index keys are in no bucket at all (a new story shares no band key
with anything stored), yet each costs a B-tree seek per bucket: at 1M stored entries the
postings lookup was 80-90 µs of the 320-350 µs an article spent linking.  With a filter that
answers "certainly absent" for those keys, the link took 31 µs less (medians of 5 alternating
runs of bench/dedup_scale.py's 1M case), and the commit 9 µs more (each merge rewrites the
bucket's filter: 4 MB at 1M entries).  A filter never answers "absent" for a key it was
given, so skipping the keys it rules out changes no candidate.

Blocked: each key sets ``PROBES`` bits inside one 64-bit word, so a probe reads one word (a
Python int from a memoryview, about 0.3 µs per key), where a classic filter reads one
cache line per probe.  The keys are hashes already (MinHash band keys, BLAKE2 keys), so
the word is the key's top bits and the bit positions its low bits, with no further hashing.

Sizing: ``BITS_PER_KEY`` bits per key when built, rounded up to a power of two words;
:func:`overfull` when keys added since take it below ``MIN_BITS_PER_KEY``.  False positives
with 4 probes in a 64-bit word, from the Poisson occupancy of the words: 0.5% at 16 bits a
key (91% of new articles' 18 keys all ruled out), 3.3% at 8 (tests/test_bloom.py checks the
model against random keys).
"""

from __future__ import annotations

import numpy as np

PROBES = 4
#: Bits per key a filter is built with (16 to 32 after rounding to a power of two words).
BITS_PER_KEY = 16
#: Below this many bits per key a filter is rebuilt at its new size (see the module doc).
MIN_BITS_PER_KEY = 8
#: The smallest filter: 64 words, 512 bytes (a bucket with a few entries).
MIN_WORDS = 64


def words_for(count: int) -> int:
    """The word count a filter built for ``count`` keys gets: a power of two (the word index
    is then the key's top bits)."""
    need = max(MIN_WORDS, -(-count * BITS_PER_KEY // 64))
    return 1 << (need - 1).bit_length()


#: The mask of two probes' bits, by the 12 key bits that place them (bits 0-5 and 6-11): the
#: ``PROBES`` bits of a key are those of its bits 0-11 and of its bits 12-23.  The one
#: definition of where a key's bits go, for :func:`probes` and :meth:`Filter.add` alike.
_MASKS = [(1 << (x & 63)) | (1 << (x >> 6)) for x in range(4096)]
_MASKS_ARRAY = np.array(_MASKS, dtype=np.uint64)
_U12 = np.uint64(12)
_LOW12 = np.uint64(4095)


def probes(keys: list[int]) -> list[int]:
    """The mask of each key's bits in its word (keys: signed int64 as Python ints; ``&`` on a
    negative int reads its two's complement bits): the part of a probe that does not depend
    on the filter's size.  Two table lookups a key, where the four shifts took twice as long
    (12 µs for an article's 11 near keys, bench/dedup_scale.py under line_profiler)."""
    masks = _MASKS
    return [masks[k & 4095] | masks[(k >> 12) & 4095] for k in keys]


def overfull(count: int, words: int) -> bool:
    return count * MIN_BITS_PER_KEY > words * 64


class Filter:
    """A filter as a uint64 array (``words``), and ``count``: keys added (with repeats: an
    upper bound on the distinct keys, which only makes it rebuild sooner)."""

    __slots__ = ("count", "words", "_shift", "_top", "_view")

    def __init__(self, words: np.ndarray, count: int):
        size = len(words)
        if size < 1 or size & (size - 1) or size > 1 << 40:
            raise ValueError(f"a filter has a power of two words up to 2**40, not {size}")
        self.words = words
        self.count = count
        self._shift = 64 - (size.bit_length() - 1)
        self._top = size - 1
        self._view = memoryview(words).cast("B").cast("Q")

    @classmethod
    def empty(cls, count: int) -> Filter:
        """An empty filter sized for ``count`` keys."""
        return cls(np.zeros(words_for(count), dtype=np.uint64), 0)

    @classmethod
    def of(cls, keys: np.ndarray) -> Filter:
        """A filter of ``keys`` (int64), sized for them."""
        out = cls.empty(len(keys))
        out.add(keys)
        return out

    @classmethod
    def from_blob(cls, blob: bytes, count: int) -> Filter:
        # A copy: the filter is added to in place, and a bytes buffer is read-only.
        return cls(np.frombuffer(blob, dtype=np.uint64).copy(), count)

    def blob(self) -> bytes:
        return self.words.tobytes()

    def add(self, keys: np.ndarray) -> None:
        """Set the bits of ``keys`` (int64 array)."""
        if not len(keys):
            return
        u = keys.view(np.uint64)
        masks = _MASKS_ARRAY[u & _LOW12] | _MASKS_ARRAY[(u >> _U12) & _LOW12]
        # (ufunc.at: several keys can land in one word)
        np.bitwise_or.at(self.words, (u >> np.uint64(self._shift)).astype(np.intp), masks)
        self.count += len(keys)

    def __contains__(self, key: int) -> bool:
        return bool(self.select([key], probes([key])))

    def select(self, keys: list[int], masks: list[int]) -> list[int]:
        """The ``keys`` the filter may hold (``masks``: their :func:`probes`, computed once
        for all the buckets a lookup reads).  A key's word is its top bits: the arithmetic
        shift of a negative key, masked, gives the same bits as the unsigned one."""
        view, shift, top = self._view, self._shift, self._top
        return [k for k, mask in zip(keys, masks, strict=True)
                if view[(k >> shift) & top] & mask == mask]

    @property
    def overfull(self) -> bool:
        return overfull(self.count, len(self.words))
