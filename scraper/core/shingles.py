"""Text folding and shingle hashing: what fingerprint's keys and dedup's exact score share.

Reprints differ in what is not content, so the text is folded first (punctuation, width, case
dropped); then every ``size``-character shingle of the folded text gets a 64-bit hash.
Chinese has no spaces, so word tokenizers see a whole clause as one token: we shingle
characters.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

import numpy as np

# Python's \w is "alphanumeric in any script" (CJK ideographs included), so this drops
# punctuation (ASCII and full-width), symbols, spaces and underscores in one C-level pass.
_DROP = re.compile(r"[\W_]+")
#: The same test as a table over the Basic Multilingual Plane (``[\W_]`` is "not
#: ``str.isalnum()``"), for :func:`fold_codes`'s NumPy path; built with ``_FOLD_BMP``.
_WORD_BMP: np.ndarray | None = None
#: Below this many characters the regex is cheaper than the NumPy round trip (titles).
_NUMPY_DROP_MIN = 64
#: (data, errors, final) -> (text, bytes consumed); takes any buffer, a uint32 array too.
_decode_utf32 = codecs.utf_32_le_decode
_EMPTY = np.zeros(0, dtype=np.uint64)


def fold_text(text: str) -> str:
    """Fold away what differs between reprints of one text and is not content.

    Punctuation goes first, so the NFKC check sees only letters and ideographs: Chinese text
    is full of full-width "，" and "（" that would otherwise send almost every article down
    the slow path (NFKC costs about 70 µs per article, the check well under 1 µs).
    """
    return fold_codes(text)[0]


def fold_codes(text: str) -> tuple[str, np.ndarray | None]:
    """:func:`fold_text` and, when the table path folded it, the folded text's code points
    (uint32), so that :func:`compute` need not encode the text a second time."""
    if len(text) >= _NUMPY_DROP_MIN:
        try:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            # take: a third of the cost of indexing (measured), the same IndexError
            folded = (_FOLD_BMP if _FOLD_BMP is not None else _fold_table()).take(codes)
        except (UnicodeEncodeError, IndexError):  # lone surrogates, or beyond the BMP
            codes = folded = None
        if folded is not None:
            folded = folded[folded != 0]
            try:  # the decoder rejects _FOLD_SLOW: some character needs the full fold
                return _decode_utf32(folded, None, True)[0], folded
            except UnicodeDecodeError:
                pass
            dropped = codes[_WORD_BMP.take(codes)].tobytes().decode("utf-32-le")
        else:
            dropped = _DROP.sub("", text)
    else:
        dropped = _DROP.sub("", text)
    if not dropped.isascii() and not unicodedata.is_normalized("NFKC", dropped):
        dropped = _DROP.sub("", unicodedata.normalize("NFKC", dropped))
    return dropped.casefold(), None


#: Per BMP code point: 0 if the fold drops it, else its case fold when that is one code point
#: and the character cannot change an NFKC-normalized text's normalization, else _FOLD_SLOW.
#: One lookup then folds a whole text: the NFKC check and casefold cost 8 µs of the 18 µs
#: fold of a 1,500-character article (measured), the lookup about 2 µs.  Built on first use.
_FOLD_BMP: np.ndarray | None = None
_FOLD_SLOW = 0xFFFFFFFF  # not a code point: decoding it fails


def _fold_table() -> np.ndarray:
    """Build :data:`_FOLD_BMP` and ``_WORD_BMP`` (30 ms measured, once per process).

    A text of characters that are their own NFKC form, of combining class 0 and never the
    second of a composing pair passes the NFKC quick check with "yes", the check
    ``unicodedata.is_normalized`` makes first: such a text is normalized.  Hangul jamo compose
    by rule, not by decomposition mapping: all count as seconds.  Casefold and NFKC act
    character by character across a NUL (a starter that composes with nothing), so one call
    over the joined characters gives every character's image."""
    global _FOLD_BMP, _WORD_BMP
    every_codes = np.r_[1:0xD800, 0xE000:0x10000].astype(np.uint32)  # NUL: the separator
    every = every_codes.tobytes().decode("utf-32-le")
    kept = _DROP.sub("", every)
    alnum = np.frombuffer(kept.encode("utf-32-le"), dtype=np.uint32)
    folds = _nul_joined(alnum).casefold().split("\0")
    nfkc = unicodedata.normalize("NFKC", _nul_joined(alnum)).split("\0")
    nfd = unicodedata.normalize("NFD", _nul_joined(every_codes)).split("\0")
    if not len(folds) == len(nfkc) == len(kept) or len(nfd) != len(every):
        raise AssertionError("a character folded to or from NUL")
    seconds = {0x1100 + i for i in range(0x100)}
    for ch, decomposed in zip(every, nfd, strict=True):
        if len(decomposed) > 1:
            parts = unicodedata.decomposition(ch).split()
            if parts and not parts[0].startswith("<"):
                seconds.update(int(p, 16) for p in parts[1:])
    table = alnum.copy()
    for i, (ch, fold, norm) in enumerate(zip(kept, folds, nfkc, strict=True)):
        if norm != ch or unicodedata.combining(ch) or ord(ch) in seconds:
            table[i] = _FOLD_SLOW
        elif fold != ch:
            table[i] = ord(fold) if len(fold) == 1 else _FOLD_SLOW
    _FOLD_BMP = np.zeros(0x10000, dtype=np.uint32)
    _FOLD_BMP[alnum] = table
    _WORD_BMP = np.zeros(0x10000, dtype=bool)
    _WORD_BMP[alnum] = True
    return _FOLD_BMP


def _nul_joined(codes: np.ndarray) -> str:
    """The characters of ``codes`` with a NUL between each two."""
    out = np.zeros(2 * len(codes) - 1, dtype=np.uint32)
    out[::2] = codes
    return out.tobytes().decode("utf-32-le")


_U_FNV = np.uint64(0x100000001B3)
_U_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_U_MIX2 = np.uint64(0x94D049BB133111EB)
_U30, _U27, _U31 = np.uint64(30), np.uint64(27), np.uint64(31)


def hash_codes(codes: np.ndarray, size: int, title: np.ndarray | None = None) -> np.ndarray:
    """:func:`shingle_hashes` of a text given as its code points (uint32), followed by the
    hashes of ``title``'s bigrams when given (code points too): one mix for both.  In place
    where it can be: half the time of a fresh array at every step (measured)."""
    count = len(codes) - size + 1
    if count <= 0:  # shorter than one shingle: the whole text is the shingle
        codes = np.concatenate([codes, np.zeros(size - len(codes), dtype=codes.dtype)])
        count = 1
    if title is None:
        h = _polynomial(codes, size, count)
    else:
        h = np.empty(count + len(title) - 1, dtype=np.uint64)
        bigrams = h[count:]
        _polynomial(codes, size, count, h[:count])
        np.multiply(title[:-1], _U_FNV, out=bigrams)
        bigrams += title[1:]
    tmp = h >> _U30
    h ^= tmp
    h *= _U_MIX1
    np.right_shift(h, _U27, out=tmp)
    h ^= tmp
    h *= _U_MIX2
    np.right_shift(h, _U31, out=tmp)
    h ^= tmp
    return h


def _polynomial(codes: np.ndarray, size: int, count: int, out: np.ndarray | None = None
                ) -> np.ndarray:
    """The unmixed hash ``sum(codes[i + j] * FNV**(size - 1 - j))`` (mod 2**64) of the first
    ``count`` shingles (into ``out`` if given), by doubling: a shingle of 2k characters is two
    of k, so 4 characters take 4 NumPy calls instead of 7 (3 µs less, measured)."""
    if size == 1:
        if out is None:
            return codes[:count].astype(np.uint64)
        out[...] = codes[:count]
        return out
    if size == 2:
        # The code points times a uint64 scalar are uint64 already: no copy to widen them
        # first (one NumPy call and one temporary less than ``size`` 1 then doubling).
        h = np.multiply(codes[:count], _U_FNV, out=out)
        h += codes[1 : 1 + count]
        return h
    if size % 2:
        h = _polynomial(codes, size - 1, count, out)
        h *= _U_FNV
        h += codes[size - 1 : size - 1 + count]
        return h
    half = size // 2
    parts = _polynomial(codes, half, count + half)
    h = np.multiply(parts[:count], _FNV_POWERS[half], out=out)
    h += parts[half : half + count]
    return h


#: FNV ** k mod 2**64, for :func:`_polynomial`.
_FNV_POWERS = [np.uint64(pow(0x100000001B3, k, 1 << 64)) for k in range(33)]


def shingle_hashes(folded: str, size: int) -> np.ndarray:
    """64-bit hashes of every ``size``-character shingle (with repeats, in text order)."""
    if not folded:
        return _EMPTY
    return hash_codes(np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32), size)


def shingle_set(folded: str, size: int) -> np.ndarray:
    """Sorted distinct shingle hashes: the exact set the similarity scores are computed on."""
    return distinct_sorted(shingle_hashes(folded, size))


def text_shingle_set(text: str, size: int) -> np.ndarray:
    """``shingle_set(fold_text(text), size)`` (dedup's exact score computes it for each
    candidate not in its cache), hashed from the fold's code points when the table path has
    them, as :func:`compute` does: the folded string is not encoded again."""
    folded, codes = fold_codes(text)
    if codes is None:
        codes = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
    if not len(codes):
        return _EMPTY
    return distinct_sorted(hash_codes(codes, size))


def distinct_sorted(h: np.ndarray) -> np.ndarray:
    """The distinct values of ``h``, sorted (``h`` is sorted in place).  The default sort,
    not "stable": :func:`text_shingle_set` runs between dedup's database calls, with cold
    caches, where it took 50 µs against 72 (bench/dedup_scale.py's articles)."""
    h.sort()
    if len(h) < 2:
        return h
    fresh = np.empty(len(h), dtype=bool)  # (no list and concatenate for the first True)
    fresh[0] = True
    np.not_equal(h[1:], h[:-1], out=fresh[1:])
    return h[fresh]


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Jaccard, containment of the smaller set in the larger) of two :func:`shingle_set`."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, 0.0
    # Both sorted and distinct: each common hash is two equal neighbours in their merge, and
    # a stable sort (timsort) of the two runs is one merge pass (6 µs for two 1,500-character
    # articles, a third of a binary search's time).
    both = np.concatenate((a, b))
    both.sort(kind="stable")
    common = int(np.count_nonzero(both[1:] == both[:-1]))
    return common / (len(a) + len(b) - common), common / min(len(a), len(b))


def shingle_set_of(blob: bytes) -> np.ndarray:
    """A :func:`shingle_set` from its bytes (``Fingerprint.shingle_set``, as workers send it)."""
    return np.frombuffer(blob, dtype=np.uint64)
