"""Fingerprints for deduplication: pure functions, run in worker processes.

Reprints differ in what is not content: ZAKER writes "8 月 28 日" where 快科技 writes
"8月28日", `" x "` where the other writes “x”, full-width digits, a tracking query on the
link.  Everything here folds those differences away and turns an article into a few integers
that SQLite can index (see ``dedup`` for the index and the decisions).

The near-duplicate signature is a one-permutation MinHash (Li, Owen & Zhang 2012) with
rotation densification (Shrivastava & Li 2014) over character shingles of the folded text.
Chinese has no spaces, so word tokenizers see a whole clause as one token: we shingle
characters.  One hash per shingle instead of one per shingle and permutation is what makes it
cheap in NumPy (about 60 µs for a 1,500-character article, see bench/dedup_scale.py), and
the exact score that confirms every candidate makes the estimator's noise harmless.

A second, larger sketch (:func:`sketch`, ``SKETCH_BINS`` bins of 16 bits) is stored per entry
to *estimate* a candidate's similarity before paying for the exact score: the LSH bands are
tuned for recall (10 bands x 2 rows let a pair at Jaccard 0.05 through 2.5% of the time), so
most candidates of an ordinary article are unrelated texts sharing a sentence or two, and the
estimate rules them out for a few microseconds instead of a 100 µs fold and intersection.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

if TYPE_CHECKING:
    from scraper.dedup import DedupSettings

# Python's \w is "alphanumeric in any script" (CJK ideographs included), so this drops
# punctuation (ASCII and full-width), symbols, spaces and underscores in one C-level pass.
_DROP = re.compile(r"[\W_]+")
#: The same test as a table over the Basic Multilingual Plane (``[\W_]`` is "not
#: ``str.isalnum()``"), for :func:`_drop_punctuation`'s NumPy path; built on first use (6 ms).
_WORD_BMP: np.ndarray | None = None
#: Below this many characters the regex is cheaper than the NumPy round trip (titles).
_NUMPY_DROP_MIN = 64

#: Query parameters that say where a click came from, never which article it is.  utm_* is
#: matched by prefix.  spm/scm (Alibaba), from/wfr/isappinstalled (WeChat, Weibo shares),
#: share_* (Bilibili, Douyin) are the ones Chinese news links carry.
TRACKING_PARAMS = frozenset({
    "spm", "scm", "from", "wfr", "isappinstalled", "share_source", "share_medium",
    "share_plat", "share_session_id", "share_tag", "share_from", "share_token", "timestamp",
    "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "twclid", "igshid", "mc_cid",
    "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "ref_url", "oly_anon_id", "oly_enc_id",
    "vero_id", "wt_mc", "wt.mc_id", "cmpid", "s_cid", "ncid", "sr_share",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Title signature: 6 bands of 2 rows over character bigrams.  Titles are 15-40 characters,
#: so 12 bins rarely need densifying; two rows keep a common bigram ("小米") from putting
#: thousands of titles in one bucket, and six bands still find titles at bigram Jaccard 0.6
#: 93% of the time (1 - (1 - 0.6**2)**6).
TITLE_BANDS = 6
TITLE_ROWS = 2
#: Folded characters of the article's opening that form the "lead" key: a teaser that is the
#: first lines of an article finds the article through it.  24 characters is about one
#: Chinese clause, long enough to be specific.
LEAD_CHARS = 24

#: Bins of the estimation sketch.  The standard deviation of the Jaccard estimate is about
#: sqrt(J(1 - J) / bins): 0.042 at J = 0.67 (two equal-sized texts at containment 0.8) with 128
#: bins, so a 4-sigma margin still rules out every candidate estimated below J = 0.5, while the
#: unrelated candidates of bench/ingest.py's articles estimate at 0.0-0.1.  A power of two, so
#: a bin is the hash's top bits and one sort gives every bin's minimum (see :func:`sketch`).
SKETCH_BINS = 128
#: Bits kept per bin: two different minima agree by chance with probability 2**-16, a bias of
#: 1.5e-5 on the estimate (corrected in :func:`estimate_jaccard`); 256 bytes per entry.
SKETCH_BITS = 16
_SKETCH_SHIFT = 64 - (SKETCH_BINS.bit_length() - 1)  # hash >> this = the bin

_MASK32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.zeros(0, dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Everything dedup needs about one entry; picklable, so workers can compute it.

    Title and lead keys only matter when one side of a pair is short (two full articles are
    judged by their text), so they live in two namespaces: a short entry's keys and a long
    entry's.  A long entry looks up only short entries' keys, which keeps the popular title
    buckets ("小米", "苹果") of long articles out of every long article's lookup.
    """

    canonical_url: str | None
    text_hash: str
    title: str  # folded title
    length: int  # characters of folded text
    short: bool  # judged by its title (length < settings.short_chars)
    signature: bytes  # one-permutation MinHash of the folded text, uint32 per bin
    band_keys: tuple[int, ...]  # near-duplicate LSH keys (empty for short texts)
    title_keys: tuple[int, ...]  # stored, in this entry's namespace (short or long)
    lead_key: int | None  # stored, in this entry's namespace
    probe_title_keys: tuple[int, ...]  # looked up: short -> both namespaces, long -> short
    probe_lead_keys: tuple[int, ...]
    url_key: int | None
    #: :func:`sketch` of the folded text (uint16 per bin; empty for an empty text) and its
    #: number of distinct shingles: what dedup estimates Jaccard and containment from.
    sketch: bytes = b""
    shingles: int = 0

    def _common(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        if self.url_key is not None:
            out.append(("url", self.url_key))
        # No key for the exact text: identical texts share every band key, and the text hash
        # is compared first when a band matches (one key less to insert per entry).
        out.extend(("near", k) for k in self.band_keys)
        return out

    def index_keys(self) -> list[tuple[str, int]]:
        """The keys stored for this entry, with the kind of evidence each stands for."""
        out = self._common()
        out.extend(("title", k) for k in self.title_keys)
        if self.lead_key is not None:
            out.append(("lead", self.lead_key))
        return out

    def probe_keys(self) -> list[tuple[str, int]]:
        """The keys to look up to find this entry's candidates."""
        out = self._common()
        out.extend(("title", k) for k in self.probe_title_keys)
        out.extend(("lead", k) for k in self.probe_lead_keys)
        return out


def fold_text(text: str) -> str:
    """Fold away what differs between reprints of one text and is not content.

    Punctuation goes first, so the NFKC check sees only letters and ideographs: Chinese text
    is full of full-width "，" and "（" that would otherwise send almost every article down
    the slow path (NFKC costs about 70 µs per article, the check well under 1 µs).
    """
    text = _drop_punctuation(text)
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        text = _DROP.sub("", unicodedata.normalize("NFKC", text))
    return text.casefold()


def _drop_punctuation(text: str) -> str:
    """``_DROP.sub("", text)`` as one table lookup per code point in NumPy: the regex spent
    40 µs of a 200 µs fingerprint on a 1,500-character article, this path about 10 µs.
    Text beyond the BMP, or with lone surrogates, takes the regex."""
    global _WORD_BMP
    if len(text) < _NUMPY_DROP_MIN:
        return _DROP.sub("", text)
    try:
        raw = text.encode("utf-32-le")
    except UnicodeEncodeError:  # lone surrogates
        return _DROP.sub("", text)
    codes = np.frombuffer(raw, dtype=np.uint32)
    if int(codes.max()) > 0xFFFF:
        return _DROP.sub("", text)
    if _WORD_BMP is None:
        _WORD_BMP = np.array([chr(c).isalnum() for c in range(0x10000)], dtype=bool)
    return codes[_WORD_BMP[codes]].tobytes().decode("utf-32-le")


def canonical_url(url: str) -> str:
    """The form of ``url`` under which two links to one article compare equal."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password else "")
        host = f"{userinfo}@{host}"
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    ]
    query.sort()
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def text_hash(folded: str) -> str:
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def key64(kind: str, value: str) -> int:
    """A stable signed 64-bit key (SQLite INTEGER); Python's hash() is salted per process."""
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8, person=kind.encode()[:16])
    return int.from_bytes(digest.digest(), "little", signed=True)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a polynomial hash of code points is too regular for MinHash."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_hashes(folded: str, size: int) -> np.ndarray:
    """64-bit hashes of every ``size``-character shingle (with repeats, in text order)."""
    if not folded:
        return _EMPTY
    codes = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(codes) - size + 1
    if count <= 0:  # shorter than one shingle: the whole text is the shingle
        codes = np.concatenate([codes, np.zeros(size - len(codes), dtype=np.uint64)])
        count = 1
    h = np.zeros(count, dtype=np.uint64)
    for j in range(size):
        h = h * np.uint64(0x100000001B3) + codes[j : j + count]
    return _mix(h)


def shingle_set(folded: str, size: int) -> np.ndarray:
    """Sorted distinct shingle hashes: the exact set the similarity scores are computed on."""
    h = np.sort(shingle_hashes(folded, size))
    if len(h) < 2:
        return h
    return h[np.concatenate(([True], h[1:] != h[:-1]))]


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Jaccard, containment of the smaller set in the larger) of two :func:`shingle_set`."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    # Both sorted and distinct: one binary search per element of the smaller set (a third of
    # np.intersect1d's cost, which sorts the concatenation of both).
    at = np.searchsorted(large, small)
    at[at == len(large)] = 0
    common = int(np.count_nonzero(large[at] == small))
    return common / (len(a) + len(b) - common), common / min(len(a), len(b))


def sketch(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """(densified one-permutation MinHash of ``SKETCH_BINS`` 16-bit bins, distinct shingles).

    One sort does both: the bin is the hash's top bits, so in sorted order each bin's first
    hash is its minimum, and equal neighbours are repeated shingles.  The bin keeps the 16 bits
    that follow the bin bits (the bits that decide the minimum).  Empty bins borrow by rotation
    as in :func:`one_permutation_minhash`.
    """
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint16), 0
    ordered = np.sort(hashes)
    distinct = 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))
    bounds = np.arange(SKETCH_BINS, dtype=np.uint64) << np.uint64(_SKETCH_SHIFT)
    first = np.searchsorted(ordered, bounds)
    head = ordered[np.minimum(first, len(ordered) - 1)]
    values = (head >> np.uint64(_SKETCH_SHIFT - SKETCH_BITS)) & np.uint64(0xFFFF)
    full = (first < len(ordered)) & ((head >> np.uint64(_SKETCH_SHIFT)) == np.arange(
        SKETCH_BINS, dtype=np.uint64))
    if not full.all():
        nonempty = np.flatnonzero(full)
        idx = np.arange(SKETCH_BINS)
        source = nonempty[np.searchsorted(nonempty, idx) % len(nonempty)]
        dist = ((source - idx) % SKETCH_BINS).astype(np.uint64)
        values = np.where(full, values, (values[source] + dist * np.uint64(0x9E37)) & np.uint64(
            0xFFFF))
    return values.astype(np.uint16), distinct


def estimate_jaccard(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of one sketch (``SKETCH_BINS``) with each row of ``theirs``
    (n x ``SKETCH_BINS``): the fraction of agreeing bins, less the 2**-16 chance agreement."""
    agree = np.count_nonzero(theirs == mine, axis=1) / SKETCH_BINS
    chance = 2.0**-SKETCH_BITS
    return np.maximum(agree - chance, 0.0) / (1.0 - chance)


def one_permutation_minhash(hashes: np.ndarray, bins: int) -> np.ndarray:
    """Densified one-permutation MinHash: ``bins`` uint32 values whose per-bin collision
    probability between two sets is their Jaccard similarity."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint32)
    # The top 32 bits choose the bin (multiply-shift, unbiased for any bin count), the low 32
    # bits are the value whose minimum the bin keeps.
    which = (((hashes >> np.uint64(32)) * np.uint64(bins)) >> np.uint64(32)).astype(np.intp)
    sig = np.full(bins, 0xFFFFFFFF + 1, dtype=np.uint64)
    np.minimum.at(sig, which, hashes & _MASK32)
    empty = sig > _MASK32
    if empty.any():
        # Rotation: an empty bin borrows from the next non-empty bin to its right (wrapping),
        # salted by the distance so that borrowed values do not all collide with each other.
        full = np.flatnonzero(~empty)
        idx = np.arange(bins)
        pos = np.searchsorted(full, idx) % len(full)
        source = full[pos]
        dist = ((source - idx) % bins).astype(np.uint64)
        sig = np.where(empty, (sig[source] + dist * np.uint64(0x9E3779B9)) & _MASK32, sig)
    return sig.astype(np.uint32)


def _splitmix_constants(count: int, seed: int) -> np.ndarray:
    out = []
    state = seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        out.append((z ^ (z >> 31)) | 1)  # odd: a bijection mod 2**64
    return np.array(out, dtype=np.uint64)


#: Fixed odd multipliers for combining the rows of a band (rows <= 32, see DedupSettings).
_ROW_MULTIPLIERS = _splitmix_constants(32, 0x62616E64)


def band_keys(signature: np.ndarray, bands: int, rows: int, salt: int) -> tuple[int, ...]:
    """One signed 64-bit key per band (the band's index and salt are part of the key).

    A random linear combination of the rows (mod 2**64), then one mix: a handful of NumPy
    calls for all bands at once (a loop over rows cost 20 µs of the 190 µs fingerprint)."""
    if len(signature) < bands * rows:
        return ()
    grid = signature[: bands * rows].astype(np.uint64).reshape(bands, rows)
    h = (grid * _ROW_MULTIPLIERS[:rows]).sum(axis=1, dtype=np.uint64)
    h += (np.arange(bands, dtype=np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    return tuple(_mix(h).view(np.int64).tolist())


_NEAR_SALT = 0x6E656172  # "near"
_TITLE_SALT = 0x7469746C  # "titl"
#: XORed into a long entry's title and lead keys: its namespace (see Fingerprint).
_LONG_NAMESPACE = 0x5A17_3C4B_9D2E_6F81


def compute(title: str, text: str, url: str | None, settings: DedupSettings) -> Fingerprint:
    """The fingerprint of one entry; ``text`` is the plain text of the normalized HTML."""
    folded = fold_text(text or "")
    folded_title = fold_text(title or "")
    canon = canonical_url(url) if url else None
    short = len(folded) < settings.short_chars
    signature = np.zeros(0, dtype=np.uint32)
    near: tuple[int, ...] = ()
    hashes = shingle_hashes(folded, settings.shingle)
    sketched, distinct = sketch(hashes)
    if not short:
        signature = one_permutation_minhash(hashes, settings.bands * settings.rows)
        near = band_keys(signature, settings.bands, settings.rows, _NEAR_SALT)
    titles: dict[bool, tuple[int, ...]] = {True: (), False: ()}
    if len(folded_title) >= 2:
        keys = title_band_keys(folded_title)
        titles = {True: keys, False: tuple(k ^ _LONG_NAMESPACE for k in keys)}
    leads: dict[bool, int | None] = {True: None, False: None}
    if len(folded) >= LEAD_CHARS:
        lead = key64("lead", folded[:LEAD_CHARS])
        leads = {True: lead, False: lead ^ _LONG_NAMESPACE}
    probe_sides = (True, False) if short else (True,)
    digest = text_hash(folded)
    return Fingerprint(
        canonical_url=canon,
        text_hash=digest,
        title=folded_title,
        length=len(folded),
        short=short,
        signature=signature.tobytes(),
        band_keys=near,
        title_keys=titles[short],
        lead_key=leads[short],
        probe_title_keys=tuple(k for side in probe_sides for k in titles[side]),
        probe_lead_keys=tuple(k for side in probe_sides if (k := leads[side]) is not None),
        # http and https copies of one page are one article: the key ignores the scheme.
        url_key=key64("url", canon.split("://", 1)[-1]) if canon else None,
        sketch=sketched.tobytes(),
        shingles=distinct,
    )


_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
_FNV_PRIME = 0x100000001B3
_TITLE_BINS = TITLE_BANDS * TITLE_ROWS
_TITLE_MULTIPLIERS = [int(m) for m in _ROW_MULTIPLIERS[:TITLE_ROWS]]
_TITLE_BAND_OFFSETS = [((b + _TITLE_SALT) * 0x9E3779B97F4A7C15) & _M64
                       for b in range(TITLE_BANDS)]


def _mix_int(h: int) -> int:
    """:func:`_mix` of one integer."""
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def title_band_keys(folded_title: str) -> tuple[int, ...]:
    """The title's LSH keys: ``band_keys(one_permutation_minhash(shingle_hashes(title, 2),
    12), 6, 2, salt)`` computed in plain Python integers, bit for bit (a title has 20 or so
    bigrams, too few for NumPy's per-call cost: 37 µs there, about a third of that here)."""
    codes = [ord(c) for c in folded_title]
    if len(codes) < 2:
        codes.append(0)
    sig = [-1] * _TITLE_BINS
    for a, b in zip(codes, codes[1:], strict=False):
        h = _mix_int((a * _FNV_PRIME + b) & _M64)
        which = ((h >> 32) * _TITLE_BINS) >> 32
        value = h & _M32
        if sig[which] < 0 or value < sig[which]:
            sig[which] = value
    if min(sig) < 0:
        full = [i for i, v in enumerate(sig) if v >= 0]
        filled = []
        for i, v in enumerate(sig):
            if v >= 0:
                filled.append(v)
                continue
            source = next((f for f in full if f >= i), full[0])
            dist = (source - i) % _TITLE_BINS
            filled.append((sig[source] + dist * 0x9E3779B9) & _M32)
        sig = filled
    keys = []
    for band in range(TITLE_BANDS):
        row = sig[band * TITLE_ROWS : (band + 1) * TITLE_ROWS]
        h = sum(v * m for v, m in zip(row, _TITLE_MULTIPLIERS, strict=True)) & _M64
        h = _mix_int((h + _TITLE_BAND_OFFSETS[band]) & _M64)
        keys.append(h - (1 << 64) if h >= 1 << 63 else h)
    return tuple(keys)


def title_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character bigrams of two folded titles."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    sa = {a[i : i + 2] for i in range(max(1, len(a) - 1))}
    sb = {b[i : i + 2] for i in range(max(1, len(b) - 1))}
    return len(sa & sb) / len(sa | sb)
