"""Fingerprints for deduplication: pure functions, run in worker processes.

Reprints differ in what is not content ("8 月 28 日" against "8月28日", quotes, full-width
digits, a tracking query): ``core.shingles`` folds that away and hashes the shingles; this
module turns them into the integers the dedup index stores.

The near-duplicate signature is a one-permutation MinHash (Li, Owen & Zhang 2012) with
rotation densification (Shrivastava & Li 2014) over character shingles of the folded text.
One hash per shingle instead of one per shingle and permutation makes it cheap in NumPy
(about 60 µs for a 1,500-character article, bench/dedup_scale.py), and the exact score that
confirms every candidate makes the estimator's noise harmless.

A second, larger sketch (:func:`sketch`, ``SKETCH_BINS`` bins of 16 bits) is stored per entry
to *estimate* a candidate's similarity before paying for the exact score: the LSH bands are
tuned for recall (10 bands x 2 rows let a pair at Jaccard 0.05 through 2.5% of the time), so
most candidates of an ordinary article are unrelated texts sharing a sentence or two, and the
estimate rules them out for a few microseconds instead of a 100 µs fold and intersection.
"""

from __future__ import annotations

import hashlib
import re
import struct
import sys
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from scraper.core.shingles import (  # noqa: F401 (fold_text ... similarity: re-exported)
    distinct_sorted,
    fold_codes,
    fold_text,
    hash_codes,
    shingle_hashes,
    shingle_set,
    shingle_set_of,
    similarity,
    text_shingle_set,
)


class DedupSettings(Protocol):
    """What :func:`compute` reads of ``config.DedupSettings`` (core imports nothing above it)."""

    shingle: int
    bands: int
    rows: int
    short_chars: int


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
#: 1.5e-5 on the estimate (corrected in ``similarity.estimate_jaccard``); 256 bytes per entry.
SKETCH_BITS = 16
_SKETCH_SHIFT = 64 - (SKETCH_BINS.bit_length() - 1)  # hash >> this = the bin

_MASK32 = np.uint64(0xFFFFFFFF)


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
    #: :func:`shingle_set` of the folded text at ``shingle`` characters (uint64, about 12 KB
    #: for a 1,500-character article): dedup's exact score needs it, and computing it here
    #: spares the database thread a 60 µs fold and hash (bench/dedup_scale.py).
    shingle_set: bytes = b""
    shingle: int = 0

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


#: A link with nothing to canonicalize but its host's case and trailing slashes: what
#: urlsplit and urlunsplit make of it is known (6 µs of the fingerprint, 1 µs this way).
#: Path characters are printable ASCII but "?" and "#"; a fragment is dropped.
_PLAIN_URL = re.compile(r"(https?)://([A-Za-z0-9.-]+)(/[!-\"$->@-~]*)?(?:#[!-~]*)?")


def canonical_url(url: str) -> str:
    """The form of ``url`` under which two links to one article compare equal."""
    url = url.strip()
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        scheme, host, path = plain.groups()
        if not path:
            path = "/"
        elif len(path) > 1:
            path = path.rstrip("/") or "/"
        return f"{scheme}://{host.lower()}{path}"
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


def sketch(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """(densified one-permutation MinHash of ``SKETCH_BINS`` 16-bit bins, distinct shingles).

    One sort does both: the bin is the hash's top bits, so in sorted order each bin's first
    hash is its minimum, and equal neighbours are repeated shingles.  The bin keeps the 16 bits
    that follow the bin bits (the bits that decide the minimum).  Empty bins borrow by rotation
    as in :func:`one_permutation_minhash`.
    """
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint16), 0
    return _sketch_sorted(np.sort(hashes))


_SKETCH_BIN_IDS = np.arange(SKETCH_BINS, dtype=np.uint64)
_SKETCH_BOUNDS = _SKETCH_BIN_IDS << np.uint64(_SKETCH_SHIFT)
_U_SKETCH_VALUE_SHIFT = np.uint64(_SKETCH_SHIFT - SKETCH_BITS)
_SKETCH_BIN_IDS16 = _SKETCH_BIN_IDS.astype(np.uint16)
#: Which uint16 of a uint64 holds its bits 0-15, and which its bits 16-31.
_U16_LOW, _U16_NEXT = (0, 1) if sys.byteorder == "little" else (3, 2)


def _sketch_sorted(ordered: np.ndarray, distinct: int | None = None,
                   starts: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """:func:`sketch` of hashes already sorted (not empty); ``distinct``, if given, is their
    number of distinct values, and ``starts`` ``np.searchsorted(ordered, _SKETCH_BOUNDS)``
    (:func:`compute` has both)."""
    if distinct is None:
        distinct = len(ordered) - int(np.count_nonzero(ordered[1:] == ordered[:-1]))
    if starts is None:
        starts = np.searchsorted(ordered, _SKETCH_BOUNDS)
    # An empty bin's first index is the next bin's (or n, clipped to the last hash): either
    # way the hash found there lies in another bin, which is how empty bins are told.
    head = ordered.take(starts, mode="clip")
    top = head >> _U_SKETCH_VALUE_SHIFT  # the bin's bits, then the 16 the bin keeps
    # top < 2**23: its low uint16 is the value the bin keeps, the next one the bin's bits.
    # Views of those, not a cast and a shift: two NumPy calls less per sketch.
    halves = top.view(np.uint16)
    values = halves[_U16_LOW :: 4]
    full = halves[_U16_NEXT :: 4] == _SKETCH_BIN_IDS16
    if np.count_nonzero(full) < SKETCH_BINS:  # (0.2 µs, full.all() 0.9: measured)
        nonempty = np.flatnonzero(full)
        idx = np.arange(SKETCH_BINS)
        source = nonempty[np.searchsorted(nonempty, idx) % len(nonempty)]
        dist = ((source - idx) % SKETCH_BINS).astype(np.uint16)
        values = np.where(full, values, values[source] + dist * np.uint16(0x9E37))
    return values, distinct


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


def _minhash_sorted(ordered: np.ndarray, bins: int, starts: np.ndarray | None = None
                    ) -> np.ndarray:
    """:func:`one_permutation_minhash` of hashes already sorted (not empty); ``starts``, if
    given, is ``np.searchsorted(ordered, _minhash_bounds(bins))``.

    The bin grows with the hash, so in sorted order each bin is one run and a reduceat over
    the low 32 bits gives every bin's minimum: no np.minimum.at and no second sort (6 µs,
    the unsorted path 12-20, measured).
    """
    if starts is None:
        starts = np.searchsorted(ordered, _minhash_bounds(bins))
    n = len(ordered)
    low = ordered.view(np.uint32)[_LOW_HALF::2]
    at = starts.tolist()
    if at[-1] < n and len(set(at)) == bins:  # no bin is empty
        return np.minimum.reduceat(low, starts)
    ends = [*at[1:], n]
    full = [i for i in range(bins) if at[i] < ends[i]]
    sig = [0] * bins
    for i, v in zip(full, np.minimum.reduceat(low, [at[i] for i in full]).tolist(), strict=True):
        sig[i] = v
    # The rotation of one_permutation_minhash, in Python integers.
    nxt = full[0] + bins  # the next non-empty bin at or after i, wrapping
    filled = set(full)
    for i in range(bins - 1, -1, -1):
        if i in filled:
            nxt = i
        else:
            source = nxt % bins
            sig[i] = (sig[source] + (nxt - i) * 0x9E3779B9) & 0xFFFFFFFF
    return np.array(sig, dtype=np.uint32)


def _minhash_bounds(bins: int) -> np.ndarray:
    """The first hash of each of :func:`_minhash_sorted`'s ``bins`` bins (cached)."""
    bounds = _MINHASH_BOUNDS.get(bins)
    if bounds is None:
        # The first hash of bin b: the least top half t with (t * bins) >> 32 >= b.
        bounds = np.array([(-(-(b << 32) // bins)) << 32 for b in range(bins)], np.uint64)
        _MINHASH_BOUNDS[bins] = bounds
    return bounds


def _joint_bounds(bins: int) -> np.ndarray:
    """``_SKETCH_BOUNDS`` then ``_minhash_bounds(bins)`` (cached): :func:`compute` finds
    both bin sets' starts with one searchsorted, one NumPy call less per article."""
    bounds = _JOINT_BOUNDS.get(bins)
    if bounds is None:
        bounds = np.concatenate((_SKETCH_BOUNDS, _minhash_bounds(bins)))
        _JOINT_BOUNDS[bins] = bounds
    return bounds


#: Bin boundaries of :func:`_minhash_sorted` per bin count, and :func:`_joint_bounds`.
_MINHASH_BOUNDS: dict[int, np.ndarray] = {}
_JOINT_BOUNDS: dict[int, np.ndarray] = {}
#: Which uint32 of a uint64 holds its low 32 bits.
_LOW_HALF = 0 if sys.byteorder == "little" else 1


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
_ROW_MULTIPLIER_INTS = [int(m) for m in _ROW_MULTIPLIERS]


def band_keys(signature: np.ndarray, bands: int, rows: int, salt: int) -> tuple[int, ...]:
    """One signed 64-bit key per band (the band's index and salt are part of the key).

    A random linear combination of the rows (mod 2**64), then one mix, in plain Python
    integers: 20 values are too few for NumPy's per-call cost (12 µs there, 6 here, and all
    bands in one integer less still, see :func:`_band_keys`)."""
    if len(signature) < bands * rows:
        return ()
    return _band_keys(signature[: bands * rows].astype(np.uint64).tolist(), bands, rows, salt)


def _band_keys(values: list[int], bands: int, rows: int, salt: int) -> tuple[int, ...]:
    """:func:`band_keys` of the first ``bands * rows`` values (uint32 as Python ints; a
    larger value raises ``struct.error``).

    All bands at once, in one Python integer with a 128-bit lane per band (SWAR): a value
    times a 64-bit multiplier, summed over the rows, stays inside its lane, and masking
    every lane to 64 bits after each step is the plain formula's mod 2**64, so each lane
    ends with its band's key bit for bit (tests/test_fingerprint_fast.py checks it against
    the band-by-band loop).  About 15 operations on a 1,300-bit integer instead of 15 per
    band: half the time of the loop over bands.  ``struct`` spreads the values into their
    lanes and reads the keys out as signed integers, one C call each."""
    plan = _BAND_PLANS.get((bands, rows, salt))
    if plan is None:
        plan = _band_plan(bands, rows, salt)
    packer, unpacker, lanes, offsets, width, low, size = plan
    n = bands * rows
    if rows == 2:
        packed = int.from_bytes(packer.pack(*values[0:n:2], *values[1:n:2]), "little")
        m0, m1 = _ROW_MULTIPLIER_INTS[:2]
        h = (packed & low) * m0 + (packed >> width) * m1
    else:
        packed = int.from_bytes(
            packer.pack(*[v for row in range(rows) for v in values[row:n:rows]]), "little")
        h = 0
        for m in _ROW_MULTIPLIER_INTS[:rows]:
            h += (packed & low) * m
            packed >>= width
    # A lane's sum is below 32 * 2**96 and its salt below 2**64: no carry into the next lane.
    # Then _mix_int lane by lane: a right shift brings the next lane's low bits into the top
    # half of this one, which the mask clears before a multiplication could carry them on.
    h = (h + offsets) & lanes
    h = ((h ^ (h >> 30)) & lanes) * 0xBF58476D1CE4E5B9 & lanes
    h = ((h ^ (h >> 27)) & lanes) * 0x94D049BB133111EB & lanes
    h ^= h >> 31  # (the unpacker reads each lane's low 64 bits only)
    return unpacker.unpack(h.to_bytes(size, "little"))


#: What :func:`_band_keys` needs for one (bands, rows, salt): the packer of ``rows`` lane sets
#: of ``bands`` uint32 values (row 0 of every band, then row 1...), the unpacker of the keys,
#: the 64-bit mask of every lane, the bands' salts ``(band + salt) * 0x9E3779B97F4A7C15`` in
#: their lanes, and one lane set's bits, mask and bytes.
_BandPlan = tuple[struct.Struct, struct.Struct, int, int, int, int, int]
_BAND_PLANS: dict[tuple[int, int, int], _BandPlan] = {}


def _band_plan(bands: int, rows: int, salt: int) -> _BandPlan:
    """Build and cache the :data:`_BAND_PLANS` entry of one shape."""
    lane = struct.Struct("<" + "Q8x" * bands)
    salts = [(band + salt) * 0x9E3779B97F4A7C15 & _M64 for band in range(bands)]
    plan = (
        struct.Struct("<" + "I12x" * (bands * rows)),
        struct.Struct("<" + "q8x" * bands),
        int.from_bytes(lane.pack(*[_M64] * bands), "little"),
        int.from_bytes(lane.pack(*salts), "little"),
        128 * bands,
        (1 << 128 * bands) - 1,
        16 * bands,
    )
    _BAND_PLANS[(bands, rows, salt)] = plan
    return plan


_NEAR_SALT = 0x6E656172  # "near"
_TITLE_SALT = 0x7469746C  # "titl"
#: XORed into a long entry's title and lead keys: its namespace (see Fingerprint).
_LONG_NAMESPACE = 0x5A17_3C4B_9D2E_6F81


def compute(title: str, text: str, url: str | None, settings: DedupSettings) -> Fingerprint:
    """The fingerprint of one entry; ``text`` is the plain text of the normalized HTML.

    The public steps, fused (100 µs for a 1,500-character article, 170 unfused): the code
    points come from the fold, one sort of the shingle hashes serves the sketch, the distinct
    count and the MinHash, and one searchsorted finds both the sketch's and the MinHash's
    bins."""
    folded, codes = fold_codes(text or "")
    folded_title = fold_text(title or "")
    canon = canonical_url(url) if url else None
    length = len(folded)
    short = length < settings.short_chars
    signature = sketched = members = b""
    distinct = 0
    near: tuple[int, ...] = ()
    title_codes = title_hashes = None
    if len(folded_title) >= 2:
        title_codes = np.frombuffer(folded_title.encode("utf-32-le"), dtype=np.uint32)
    if folded:
        if codes is None:
            codes = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
        ordered = hash_codes(codes, settings.shingle, title_codes)
        if title_codes is not None:
            split = len(ordered) - len(title_codes) + 1
            title_hashes = ordered[split:].tolist()
            ordered = ordered[:split]
        distinct_set = distinct_sorted(ordered)  # (sorts ``ordered`` in place)
        distinct = len(distinct_set)
        members = distinct_set.tobytes()
        if short:
            sketched = _sketch_sorted(ordered, distinct)[0].tobytes()
        else:
            bins = settings.bands * settings.rows
            starts = np.searchsorted(ordered, _joint_bounds(bins))
            sketched = _sketch_sorted(ordered, distinct, starts[:SKETCH_BINS])[0].tobytes()
            sig = _minhash_sorted(ordered, bins, starts[SKETCH_BINS:])
            signature = sig.tobytes()
            near = _band_keys(sig.tolist(), settings.bands, settings.rows, _NEAR_SALT)
    short_titles: tuple[int, ...] = ()
    long_titles: tuple[int, ...] = ()
    if title_codes is not None:
        short_titles = title_band_keys(folded_title) if title_hashes is None else _title_keys(
            title_hashes)
        long_titles = tuple([k ^ _LONG_NAMESPACE for k in short_titles])
    lead = long_lead = None
    if length >= LEAD_CHARS:
        lead = key64("lead", folded[:LEAD_CHARS])
        long_lead = lead ^ _LONG_NAMESPACE
    if short:
        title_keys, lead_key = short_titles, lead
        probe_titles = short_titles + long_titles
        probe_leads = () if lead is None else (lead, long_lead)
    else:
        title_keys, lead_key = long_titles, long_lead
        probe_titles = short_titles
        probe_leads = () if lead is None else (lead,)
    return Fingerprint(
        canonical_url=canon,
        text_hash=text_hash(folded),
        title=folded_title,
        length=length,
        short=short,
        signature=signature,
        band_keys=near,
        title_keys=title_keys,
        lead_key=lead_key,
        probe_title_keys=probe_titles,
        probe_lead_keys=probe_leads,
        # http and https copies of one page are one article: the key ignores the scheme.
        url_key=key64("url", canon.split("://", 1)[-1]) if canon else None,
        sketch=sketched,
        shingles=distinct,
        shingle_set=members,
        shingle=settings.shingle,
    )


_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
_EMPTY_BIN = 1 << 32  # above every value a bin keeps
_FNV_PRIME = 0x100000001B3
_TITLE_BINS = TITLE_BANDS * TITLE_ROWS


def _mix_int(h: int) -> int:
    """splitmix64's finalizer of one integer (``shingles.hash_codes`` mixes arrays with it):
    a polynomial hash of code points is too regular for MinHash."""
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def title_band_keys(folded_title: str) -> tuple[int, ...]:
    """The title's LSH keys: ``band_keys(one_permutation_minhash(shingle_hashes(title, 2),
    12), 6, 2, salt)`` computed in plain Python integers, bit for bit (a title has 20 or so
    bigrams, too few for NumPy's per-call cost).  :func:`compute` mixes the bigrams with the
    text's shingles instead (half the cost)."""
    codes = [ord(c) for c in folded_title]
    if len(codes) < 2:
        codes.append(0)
    pairs = zip(codes[:-1], codes[1:], strict=True)
    return _title_keys([_mix_int(a * _FNV_PRIME + b) for a, b in pairs])


def _title_keys(hashes: list[int]) -> tuple[int, ...]:
    """:func:`title_band_keys` from the mixed bigram hashes."""
    sig = [_EMPTY_BIN] * _TITLE_BINS
    for h in hashes:
        which = ((h >> 32) * _TITLE_BINS) >> 32
        value = h & _M32
        if value < sig[which]:
            sig[which] = value
    if max(sig) == _EMPTY_BIN:
        # The rotation of one_permutation_minhash.
        nxt = _TITLE_BINS + next(i for i, v in enumerate(sig) if v != _EMPTY_BIN)
        for i in range(_TITLE_BINS - 1, -1, -1):
            if sig[i] != _EMPTY_BIN:
                nxt = i
            else:
                sig[i] = (sig[nxt % _TITLE_BINS] + (nxt - i) * 0x9E3779B9) & _M32
    return _band_keys(sig, TITLE_BANDS, TITLE_ROWS, _TITLE_SALT)
