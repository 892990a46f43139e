"""Cross-feed deduplication: link each reprint to the earliest-seen entry of its story.

Three levels of evidence, each found through one index of 64-bit keys (see "The index"
below) and each confirmed before a link is made:

- ``url``: the same canonical URL (tracking parameters, fragment, scheme dropped);
- ``exact``: the same folded text (SHA-256 of :func:`fingerprint.fold_text`);
- ``near``: LSH band keys of a one-permutation MinHash over character shingles find
  candidates; a candidate is linked only when the exact shingle containment (how much of the
  shorter text lies inside the longer) reaches ``threshold``.  A stored sketch estimates each
  candidate's containment first, and the exact score is only computed for candidates whose
  estimate could reach ``threshold`` (see :func:`_could_reach`).  Containment and not Jaccard,
  because a reprint that trims a quarter of the article (the corpus' 龙芯 pair, Jaccard 0.61,
  containment 0.85) is still the same article, while two write-ups of one event sharing 70%
  of their text stay below it;
- ``title``: teasers and title-only items (under ``short_chars`` folded characters) cannot
  be judged by their text; within ``title_window_hours`` of each other, they link by title
  similarity, or (``near``) when their text lies inside a longer article found through the
  title or the article's opening ("lead" key).

Links, never deletions: ``entries.duplicate_of`` is the earliest-seen (lowest id) entry of
the cluster, ``dup_method`` and ``dup_score`` say why.  An entry is only ever compared with
entries of lower id, in id order, so re-processing gives the same answer and a link never
points forward.

The index is a log-structured merge of two levels, both derived from ``dedup_fingerprints``
(where each entry's keys are stored as a blob, with a write sequence number ``seq``):

- the fingerprints written since the last merge (``seq`` above ``dedup_state.merged_seq``)
  are indexed in memory (:class:`_Tail`), rebuilt from the table by any process that opens
  the database, so nothing is lost on a crash and concurrent writers see each other's keys;
- every ``MERGE_ENTRIES`` entries they are merged into ``dedup_postings`` in one sorted
  batch, under a 28-day time bucket, so that the batch lands in one small region of the
  B-tree: about one page written per 50 keys, where inserting each key as it came wrote one
  page per key (at 1M entries, commits cost 0.6 ms per article, now 0.06; bench/dedup_scale.py).

Each bucket of ``dedup_postings`` has a Bloom filter of its keys (``dedup_filters``,
scraper/bloom.py), written with every merge: a lookup seeks only the keys some bucket may
hold, so a new story, which shares no key with anything stored, runs no lookup at all.

The memory level follows the table: rows written since it last looked are read at the start
of each call, and the entries a call indexed are read back at the next (their transaction may
have rolled back).  A key that is stale anyway can only bring an extra candidate: candidates
are judged on their text and title, and the one key that is evidence by itself, the URL's, is
checked against the candidate's row.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from scraper import bloom
from scraper.config import DedupSettings, dedup_from_mapping  # noqa: F401 (re-exported)
from scraper.core import fingerprint as fpmod
from scraper.core.fingerprint import Fingerprint

# The dedup tables (dedup_fingerprints, dedup_postings, dedup_state) are created by
# migrations 3 to 5 in scraper/store.py, the one place the schema is written.

METHODS = ("url", "exact", "near", "title")
_PRIORITY = {m: i for i, m in enumerate(METHODS)}

#: Candidates confirmed per entry at most (each costs a text fold and a set intersection,
#: about 60 µs).  Candidates come strongest first and one per cluster, and only those whose
#: estimate could reach the threshold count, so this only bounds pathological buckets: a story
#: reprinted by 32 distinct unlinked clusters.
MAX_CONFIRMATIONS = 32

#: Standard deviations of margin below the Jaccard a pair needs before its sketch estimate
#: rules it out.  The estimate of J from k agreeing bins is binomial(k, J) / k (measured with
#: random sets: standard deviation 0.88-0.98 x sqrt(J(1 - J) / k), at most 1.0 x with the
#: effective k of :func:`_could_reach`); its exact lower tail at 5 sigma is 5.6e-7 for k = 128
#: at J = 0.67 (equal-sized texts at containment 0.8) and 1e-6 for k = 100, against 3.5e-5 at
#: 4 sigma.  A pair sitting exactly at the threshold is missed about once in a million; a
#: real reprint sits well above it (containment >= 0.85 in bench/dedup_quality.py).
SKETCH_SIGMAS = 5.0

#: A short text shorter than this (folded characters) is not evidence even when it lies
#: inside an article: "点击查看全文" would otherwise link every teaser that ends with it.
MIN_CONTAINED_CHARS = 20

#: Probe kinds that only find short entries (see ``Fingerprint``): looked up within the
#: title window.
_SHORT_KINDS = frozenset({"title", "lead"})

#: Width of a ``dedup_postings`` time bucket (seconds; migration 5 writes the same number).
#: An entry's keys are stored under its bucket, so a merge writes into the region of the
#: buckets of recent entries, and a lookup seeks each key in every bucket its window
#: overlaps: 2 µs a seek at 1M entries.  28 days: a 14-day window (28 days wide) overlaps 2
#: buckets, the title window 1 (or 2 near an edge); 14-day buckets made it 3 and 3, 120 µs of
#: seeks per article against 60 (bench/dedup_scale.py).
BUCKET_SECONDS = 28 * 86400

#: Entries indexed in memory before a merge into ``dedup_postings``.  A merge rewrites most
#: pages of the bucket's region (random keys land on every page: about 8,000 pages for the
#: 1.4M postings of a 28-day bucket at 1M entries a year), so the pages written per entry
#: fall as the batch grows: at 1M, 4096 entries a merge cost 0.509 ms per article against
#: 0.573 with 2048 (commit -24 µs, link -37; bench/dedup_scale.py, medians of 3 alternating
#: runs of 12,288 articles).  The memory part holds at most this many entries: about 2 KB
#: each (keys, index, sketch and columns), 9 MiB.
MERGE_ENTRIES = 4096


@dataclass(frozen=True)
class Link:
    entry_id: int
    duplicate_of: int
    method: str
    score: float


@dataclass(slots=True)
class _Entry:
    id: int
    feed: str
    title: str
    text: str
    url: str | None
    ts: int
    duplicate_of: int | None
    dup_method: str | None
    dup_score: float | None
    stored: tuple[Any, ...] | None = None  # (ts, text_hash, title, keys) as last indexed
    sketched: bool = False  # the stored row has a sketch (rows from before migration 4 don't)


@dataclass(slots=True)
class _Candidate:
    id: int
    ts: int
    length: int
    title: str
    text_hash: str
    kinds: set[str]
    bands: int = 0  # LSH bands shared
    sketch: bytes | None = None  # fingerprint.sketch of its text (None: indexed before it)
    shingles: int | None = None  # distinct shingles of its text
    estimate: float | None = None  # estimated Jaccard with the entry being linked
    reachable: bool = True  # False: the estimate says containment cannot reach the threshold
    #: Its cluster root as its fingerprint row names it (``dedup_fingerprints.root``; read
    #: from ``entries`` for rows linked before migration 6): it groups candidates by cluster.
    #: It can be stale, so the root a link names is read from the winning candidate's entry.
    root: int = 0


@dataclass
class _Verdict:
    method: str | None  # None: not a duplicate
    score: float
    reason: str
    jaccard: float | None = None
    containment: float | None = None
    title_similarity: float | None = None


_ENTRY_COLUMNS = ("e.id, e.feed, e.title, e.content_text, e.summary, e.url, e.published, "
                  "e.fetched_at, e.duplicate_of, e.dup_method, e.dup_score, "
                  "f.ts, f.text_hash, f.title, f.keys, f.sketch IS NOT NULL")
#: The same without the text, for entries whose fingerprint the caller computed: the text is
#: then only needed if the entry's own shingle set is (and the worker sent that too), and
#: :class:`_TextCache` reads it back from the row in the rare case it is not.
_ENTRY_COLUMNS_NO_TEXT = _ENTRY_COLUMNS.replace("e.content_text, e.summary", "NULL, NULL")


def _entry(row: Sequence[Any]) -> _Entry:
    ts_text = row[6] or row[7]
    return _Entry(id=row[0], feed=row[1], title=row[2] or "", text=row[3] or row[4] or "",
                  url=row[5], ts=_epoch(ts_text), duplicate_of=row[8], dup_method=row[9],
                  dup_score=row[10], stored=None if row[11] is None else tuple(row[11:15]),
                  sketched=bool(row[15]))


def _epoch(text: str | None) -> int:
    if not text:
        return 0
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _load_entries(conn: sqlite3.Connection, ids: Sequence[int],
                  text: bool = True) -> list[_Entry]:
    """The entries ``ids`` with their stored fingerprint rows; ``text=False`` leaves their
    text out (``_Entry.text`` is then empty)."""
    out: list[_Entry] = []
    columns = _ENTRY_COLUMNS if text else _ENTRY_COLUMNS_NO_TEXT
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: no sqlite3.Row built and copied per entry
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = cursor.execute(
            f"SELECT {columns} FROM entries e LEFT JOIN dedup_fingerprints f "
            f"ON f.entry_id = e.id WHERE e.id IN ({marks})", chunk)
        out.extend(map(_entry, rows))
    out.sort(key=lambda e: e.id)
    return out


class _TextCache:
    """Shingle sets, computed only when a candidate needs confirming (most entries have no
    candidate), kept on the connection across calls: a story reprinted five times is
    confirmed against its first copy four times, and that copy is read and folded once.

    Keyed by (entry, text hash, shingle size), so an entry whose text changed is recomputed.
    Bounded: ``size`` sets of about 12 KB (a 1,500-character article)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._raw: dict[int, str] = {}
        self._offered: dict[tuple[int, str, int], bytes] = {}
        self._items: OrderedDict[tuple[int, str, int], np.ndarray] = OrderedDict()

    @classmethod
    def of(cls, conn: sqlite3.Connection) -> _TextCache:
        cache = getattr(conn, "_dedup_texts", None)
        if cache is None:
            cache = cls()
            with contextlib.suppress(AttributeError):
                conn._dedup_texts = cache  # type: ignore[attr-defined]
        cache._raw.clear()
        cache._offered.clear()
        return cache

    def put(self, entry_id: int, text: str) -> None:
        """The text of an entry being linked (saves reading it back if it is needed)."""
        self._raw[entry_id] = text

    def offer(self, entry_id: int, fp: Fingerprint) -> None:
        """The shingle set that came with an entry's fingerprint (the worker computed it): kept
        for this call only, and cached like a computed one if it is used."""
        if fp.shingle:
            self._offered[(entry_id, fp.text_hash, fp.shingle)] = fp.shingle_set

    def get(self, conn: sqlite3.Connection, entry_id: int, digest: str,
            shingle: int) -> np.ndarray:
        key = (entry_id, digest, shingle)
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            return item
        offered = self._offered.get(key)
        if offered is not None:
            item = np.frombuffer(offered, dtype=np.uint64)
        else:
            text = self._raw.get(entry_id)
            if text is None:
                row = conn.execute("SELECT content_text, summary FROM entries WHERE id = ?",
                                   (entry_id,)).fetchone()
                text = (row[0] or row[1] or "") if row else ""
            item = fpmod.text_shingle_set(text, shingle)
        self._items[key] = item
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return item


def _id_lists(ids: Sequence[int], most: int = 512) -> Iterable[tuple[str, list[int]]]:
    """``(placeholders, parameters)`` for ``IN (...)`` over ``ids``: at most ``most`` a
    statement, padded with -1 (no entry has it) to a power of two, so that a handful of
    statement shapes serve every count.  Each count its own statement filled SQLite's
    statement cache with large ones (see :func:`_candidates`)."""
    for start in range(0, len(ids), most):
        chunk = list(ids[start : start + most])
        size = 1 << (len(chunk) - 1).bit_length()
        yield ",".join("?" * size), chunk + [-1] * (size - len(chunk))


def _bucket(ts: int) -> int:
    return max(ts, 0) // BUCKET_SECONDS


#: (ts, length, shingles, sketch, text_hash, title, canonical_url, root) of a fingerprint:
#: what screening needs, then what a candidate is built from.  ``root`` is the cluster root
#: as of the entry's last link (None: linked before migration 6, read from ``entries``).
_Light = tuple[int, int, int | None, bytes | None, str, str, str | None, int | None]
_LIGHT_COLUMNS = "ts, length, shingles, sketch, text_hash, title, canonical_url, root"
#: The same, of ``dedup_fingerprints`` joined as ``f``.
_LOOKUP_COLUMNS = ", ".join(f"f.{c}" for c in _LIGHT_COLUMNS.split(", "))
#: :meth:`_Tail.sync`'s read: ``merged_seq``, ``filtered_seq`` and the rows above both
#: ``merged_seq`` and the seq the memory level has seen, in one statement (one row of NULLs
#: after the two when there are none), where two statements cost each call one more round
#: trip.  Above ``merged_seq`` too, so that a memory level that starts afresh (after every
#: merge) does not read every merged row.
_SYNC_SQL = (f"SELECT s.merged_seq, s.filtered_seq, f.entry_id, f.keys, f.seq, "
             f"{_LOOKUP_COLUMNS} FROM dedup_state s "
             "LEFT JOIN dedup_fingerprints f ON f.seq > max(?, s.merged_seq) ORDER BY f.seq")


class _Tail:
    """The in-memory level of the index: keys of the fingerprints not merged yet.

    Kept on the connection (``store.Connection``) and brought up to date at the start of each
    call by :meth:`sync`, inside the caller's transaction: rows with a higher ``seq`` than it
    has seen are added; a changed ``merged_seq`` (a merge here or in another process, or one
    rolled back) rebuilds it from the table.  Entries indexed during a call are added at once
    (later entries of the same call may be their duplicates) but do not move ``high``, so if
    their transaction rolls back nothing committed later is skipped; they are also marked
    ``dirty`` and read back at the next sync, so a rolled-back re-index gives the entry its
    committed keys back.
    """

    def __init__(self) -> None:
        self.merged = -1  # dedup_state.merged_seq it was built against (-1: not yet)
        self.high = 0  # every row with a seq up to this is indexed (in memory or merged)
        #: key -> the id holding it, or a list of ids when several do: most keys have one
        #: holder, and a one-element list per key cost 1.5 KB an entry (tracemalloc).
        self.index: dict[int, int | list[int]] = {}
        self.keys_of: dict[int, list[int]] = {}
        #: What :func:`_screen` reads of a candidate (``_Light``), so that the memory level's
        #: candidates are screened without a read: about 400 bytes an entry.
        self.light: dict[int, _Light] = {}
        self.dirty: set[int] = set()  # added by a call whose transaction may roll back
        #: The seq this connection's last call wrote each entry's row with: such a row, read
        #: back by the next sync with that seq, is what memory holds already (a seq is never
        #: reused), and is not decoded and compared again (10 µs a call, bench/dedup_scale.py).
        self.own: dict[int, int] = {}
        #: (lowest, highest) bucket in dedup_postings, or None before it is read: only merges
        #: add buckets, and every merge clears this.
        self.span: tuple[int, int] | None = None
        #: Bloom filters of buckets, as read from dedup_filters (see :meth:`filter`); every
        #: merge clears them with the rest.
        self.filters: dict[int, bloom.Filter] = {}
        #: ``dedup_state.filtered_seq`` equals ``merged_seq`` (see :func:`_check_filters`).
        self.filters_valid = True

    def buckets(self) -> tuple[int, int] | None:
        """The postings' bucket range (None: no postings).  A window reaching past it (into
        next month, or before the first entry) has nothing to seek there: 11 of an
        article's 40 seeks at bench/dedup_scale.py's dates."""
        if self.span is None or self.span[0] > self.span[1]:
            return None
        return self.span

    def _read_span(self, conn: sqlite3.Connection) -> None:
        """Read at the start of a call, before the call deletes any posting (a re-index):
        a range read after a delete that then rolls back would leave a bucket out until the
        next merge.  Deletes only shrink the range, so the range read here stays a superset;
        only merges add buckets, and a merge anywhere clears it (``merged_seq`` moves)."""
        # Two subqueries: SQLite answers a lone min() or max() from the index, but scans the
        # whole table (0.6 s at 1M entries) for both in one SELECT.
        low, high = conn.execute(
            "SELECT (SELECT min(bucket) FROM dedup_postings), "
            "(SELECT max(bucket) FROM dedup_postings)").fetchone()
        self.span = (1, 0) if low is None else (low, high)

    def sync(self, conn: sqlite3.Connection) -> None:
        found = conn.execute(_SYNC_SQL, (self.high,)).fetchall()
        merged = found[0][0]
        if merged != self.merged:
            seen = self.high
            self.__init__()  # type: ignore[misc]
            self.merged = self.high = merged
            if seen > merged:  # (a merge rolled back) the rows between were not read
                found = conn.execute(_SYNC_SQL, (merged,)).fetchall()
        if self.span is None:
            self._read_span(conn)
        self.filters_valid = found[0][1] == merged
        if not self.filters_valid:
            self.filters.clear()
        rows = [tuple(r)[2:] for r in found if r[2] is not None]
        self._update(rows)
        self.own.clear()
        if rows:
            self.high = rows[-1][2]
        # What the last call indexed and did not come back above: its transaction rolled back
        # (or the entry was deleted).  Read back what the table holds now.
        dirty = list(self.dirty - {r[0] for r in rows})
        self.dirty.clear()
        if dirty:
            # A call's transaction rolled back (or its entries were deleted).  A filter built
            # while that transaction had deleted a re-indexed entry's postings, and read back
            # by a later lookup, lacks keys the rollback restored: read the filters afresh.
            self.filters.clear()
            rows = conn.execute(
                f"SELECT entry_id, keys, seq, {_LIGHT_COLUMNS} FROM dedup_fingerprints "
                f"WHERE entry_id IN ({','.join('?' * len(dirty))})", dirty).fetchall()
            current = {r[0] for r in rows if r[2] > self.merged}
            for entry_id in dirty:
                if entry_id not in current:  # gone, or in the postings already
                    self.remove(entry_id)
            self._update(r for r in rows if r[0] in current)

    def _update(self, rows: Iterable[Sequence[Any]]) -> None:
        own = self.own
        for entry_id, blob, seq, *light in rows:
            if own and own.get(entry_id) == seq:
                continue
            keys = np.frombuffer(blob, dtype=np.int64).tolist()
            row = tuple(light)
            # This connection's own rows are in already: same keys, same light.
            if self.keys_of.get(entry_id) != keys or self.light.get(entry_id) != row:
                self.add(entry_id, keys, row)  # type: ignore[arg-type]

    def move_root(self, old: int, new: int) -> None:
        """Followers of ``old`` now name ``new``.  Their rows keep their seq, so a sync would
        not see it: they are marked dirty, read back at the next sync (the transaction may
        roll back).  Another connection's memory level keeps the old root, which only groups
        candidates: the root a link names is read from ``entries``."""
        for entry_id, light in self.light.items():
            if light[-1] == old:
                self.light[entry_id] = (*light[:-1], new)
                self.dirty.add(entry_id)

    def remove(self, entry_id: int) -> None:
        index = self.index
        for key in self.keys_of.pop(entry_id, ()):
            ids = index.get(key)
            if ids == entry_id:
                del index[key]
            elif type(ids) is list and entry_id in ids:
                ids.remove(entry_id)
        self.light.pop(entry_id, None)

    def add(self, entry_id: int, keys: list[int], light: _Light) -> None:
        self.remove(entry_id)
        self.keys_of[entry_id] = keys
        self.light[entry_id] = light
        index = self.index
        for key in keys:
            ids = index.get(key)
            if ids is None:
                index[key] = entry_id
            elif type(ids) is int:
                index[key] = [ids, entry_id]
            else:
                ids.append(entry_id)

    def filter(self, conn: sqlite3.Connection, bucket: int) -> bloom.Filter:
        """The Bloom filter of ``bucket``'s postings, read from ``dedup_filters`` and kept
        until the next merge or rollback (see :meth:`sync`), or built from the postings when
        the bucket has none (a database from before migration 7).  A filter built here is
        written but not kept: if the caller's transaction rolls back after deleting a posting
        (a re-index), the filter built without that key goes with it."""
        found = self.filters.get(bucket)
        if found is not None:
            return found
        found = _read_filter(conn, bucket)
        if found is None:
            return _build_filter(conn, bucket)
        if len(self.filters) >= _FILTERS_KEPT:
            del self.filters[next(iter(self.filters))]
        self.filters[bucket] = found
        return found

    def next_seq(self, last: int) -> int:
        """A seq above every row's: the clock, so that a number handed out in a transaction
        that rolled back is not handed out again below what another call has seen."""
        return max(self.high + 1, last + 1, time.time_ns())


def _tail(conn: sqlite3.Connection) -> _Tail:
    """The connection's tail, synced; a connection that takes no attributes (not opened by
    ``store.connect``) gets a fresh one each call: correct, only slower."""
    tail = getattr(conn, "_dedup_tail", None)
    if tail is None:
        tail = _Tail()
        with contextlib.suppress(AttributeError):
            conn._dedup_tail = tail  # type: ignore[attr-defined]
    tail.sync(conn)
    return tail


def held(conn: sqlite3.Connection) -> dict[str, int]:
    """What this connection's dedup index holds in memory: entries not merged yet (the
    memory level, about 3 KB each, emptied every ``MERGE_ENTRIES``) and bytes of Bloom
    filters.  The filters are the one part that grows with the stored data (a bucket's
    filter doubles when it fills; see scraper/bloom.py), so a daemon's RSS is read against
    them: the daemon's heartbeat records this for ``scrape status`` and bench/soak.py."""
    tail = getattr(conn, "_dedup_tail", None)
    if tail is None:
        return {"unmerged_entries": 0, "filter_bytes": 0}
    return {"unmerged_entries": len(tail.light),
            "filter_bytes": sum(f.words.nbytes for f in tail.filters.values())}


def _merge(conn: sqlite3.Connection, tail: _Tail) -> None:
    """Move the keys of every fingerprint above ``merged_seq`` into ``dedup_postings``, in
    (bucket, key) order, in the caller's transaction (a rollback undoes it with the rest).

    The rows are built and sorted in NumPy: 37k postings as Python tuples cost 60 ms of a
    merge's 190 (bench/dedup_scale.py at 1M, 30 µs per article linked).  They are inserted
    ``_MERGE_ROWS`` to a statement (see there)."""
    _check_filters(conn, tail)
    merged = tail.merged
    rows = conn.execute("SELECT entry_id, ts, keys, seq FROM dedup_fingerprints WHERE seq > ?",
                        (merged,)).fetchall()
    if not rows:
        return
    keys = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.int64)
    counts = [len(r[2]) // 8 for r in rows]
    ids = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), counts)
    buckets = np.repeat(np.array([_bucket(r[1]) for r in rows], dtype=np.int64), counts)
    order = np.lexsort((ids, keys, buckets))
    buckets, keys = buckets[order], keys[order]
    postings = np.column_stack((buckets, keys, ids[order]))
    if len(postings):
        # The last chunk is padded with copies of the last posting, which OR IGNORE skips:
        # one statement shape whatever the count.
        postings = np.concatenate(
            (postings, np.repeat(postings[-1:], -len(postings) % _MERGE_ROWS, axis=0)))
        statements = postings.reshape(-1, 3 * _MERGE_ROWS)
        # 32 statements' parameters at a time: the whole merge as Python lists was 75k
        # postings, 8 MB of ints at once in the daemon's heap.
        for start in range(0, len(statements), 32):
            conn.executemany(_MERGE_SQL, statements[start : start + 32].tolist())
        # Each bucket's filter gets the keys merged into it, in this transaction.
        start = 0
        for end in [*(np.flatnonzero(np.diff(buckets)) + 1).tolist(), len(keys)]:
            _add_to_filter(conn, tail, int(buckets[start]), keys[start:end])
            start = end
    top = max(merged, *(r[3] for r in rows))
    conn.execute("UPDATE dedup_state SET merged_seq = ?, filtered_seq = ?", (top, top))
    tail.__init__()  # type: ignore[misc]  # the next sync rebuilds it from the table


#: Filters a connection keeps (buckets, each 2 to 4 bytes per key: 4 MB for a 28-day
#: bucket at 1M entries a year).  A lookup needs one or two; rebuilding a backlog reads older.
_FILTERS_KEPT = 4
_FILTER_WRITE = "INSERT OR REPLACE INTO dedup_filters (bucket, keys, bits) VALUES (?, ?, ?)"


def _read_filter(conn: sqlite3.Connection, bucket: int) -> bloom.Filter | None:
    row = conn.execute("SELECT keys, bits FROM dedup_filters WHERE bucket = ?",
                       (bucket,)).fetchone()
    return None if row is None else bloom.Filter.from_blob(row[1], row[0])


def _build_filter(conn: sqlite3.Connection, bucket: int) -> bloom.Filter:
    """The filter of every key ``bucket`` holds in ``dedup_postings``, written to
    ``dedup_filters`` (in the caller's transaction).  One scan of the bucket's postings:
    about 0.3 s for the 1.4M keys of a 28-day bucket at 1M entries a year, once per bucket,
    and again whenever the bucket has grown to :attr:`bloom.Filter.overfull`."""
    cursor = conn.cursor()
    cursor.row_factory = None
    keys = np.fromiter((r[0] for r in cursor.execute(
        "SELECT key FROM dedup_postings WHERE bucket = ?", (bucket,))), dtype=np.int64)
    built = bloom.Filter.of(keys)
    conn.execute(_FILTER_WRITE, (bucket, built.count, built.blob()))
    return built


def _check_filters(conn: sqlite3.Connection, tail: _Tail) -> None:
    """Drop every filter when a merge was made without them (``filtered_seq`` behind
    ``merged_seq``: a process of the release before migration 7 still running on this
    database): they lack its keys, and are built again from the postings as needed."""
    if tail.filters_valid:
        return
    conn.execute("DELETE FROM dedup_filters")
    conn.execute("UPDATE dedup_state SET filtered_seq = merged_seq")
    tail.filters.clear()
    tail.filters_valid = True


def build_filters(conn: sqlite3.Connection) -> int:
    """Build every bucket's filter from its postings, as the merges would have; returns the
    buckets done.  For postings written around the merges (bench/dedup_scale.py's bulk load):
    a bucket without a filter would otherwise be built at its first lookup."""
    done = 0
    row = conn.execute("SELECT min(bucket) FROM dedup_postings").fetchone()
    while row is not None and row[0] is not None:
        _build_filter(conn, row[0])
        done += 1
        # (one seek per bucket: DISTINCT would read every posting)
        row = conn.execute("SELECT min(bucket) FROM dedup_postings WHERE bucket > ?",
                           (row[0],)).fetchone()
    conn.execute("UPDATE dedup_state SET filtered_seq = merged_seq")
    return done


def _add_to_filter(conn: sqlite3.Connection, tail: _Tail, bucket: int, keys: np.ndarray
                   ) -> None:
    """Add a merge's ``keys`` (already in the bucket's postings) to the bucket's filter."""
    found = tail.filters.get(bucket) or _read_filter(conn, bucket)
    if found is None:  # built from the postings, which hold the new keys already
        _build_filter(conn, bucket)
        return
    found.add(keys)
    if found.overfull:
        _build_filter(conn, bucket)
    else:
        conn.execute(_FILTER_WRITE, (bucket, found.count, found.blob()))


#: Postings per INSERT of a merge.  One row per statement spent most of a merge in binding
#: and stepping one statement per posting: 37k postings took 46 ms, 256 to a statement 17
#: (sorted random keys into an empty table, this machine; 768 parameters, far below SQLite's
#: 32,766).
_MERGE_ROWS = 256
_MERGE_SQL = ("INSERT OR IGNORE INTO dedup_postings (bucket, key, entry_id) VALUES "
              + ", ".join(["(?, ?, ?)"] * _MERGE_ROWS))


def _keys_blob(keys: Iterable[int]) -> bytes:
    """The keys as native int64, as ``np.array(keys, dtype=np.int64).tobytes()`` writes them
    (and :func:`np.frombuffer` reads them), without NumPy's per-call cost for 18 numbers."""
    return array("q", keys).tobytes()


def _index_keys(fp: Fingerprint) -> list[int]:
    """The distinct keys of ``fp.index_keys()``, sorted (what ``dedup_fingerprints.keys``
    holds), without building its list of (kind, key) pairs."""
    keys = {*fp.band_keys, *fp.title_keys}
    if fp.url_key is not None:
        keys.add(fp.url_key)
    if fp.lead_key is not None:
        keys.add(fp.lead_key)
    return sorted(keys)


def _probe_lookups(fp: Fingerprint) -> tuple[dict[int, str], list[int], list[int]]:
    """(kind of each probe key, the keys looked up in the near window, those looked up in the
    title window only); the first kind a key is listed under in ``fp.probe_keys()`` wins.
    (Straight from the fields: the pairs ``probe_keys`` builds cost a few µs per call.)"""
    kinds_of: dict[int, str] = {}
    if fp.url_key is not None:
        kinds_of[fp.url_key] = "url"
    for key in fp.band_keys:
        kinds_of.setdefault(key, "near")
    wide = list(kinds_of)
    for key in fp.probe_title_keys:
        kinds_of.setdefault(key, "title")
    for key in fp.probe_lead_keys:
        kinds_of.setdefault(key, "lead")
    narrow = list(kinds_of)[len(wide):]
    return kinds_of, wide, narrow


#: Text of the postings lookup of :func:`_candidates` by shape ((buckets, keys) of each
#: lookup, whether ``before`` and a window are given): built once, not at every call.  Its
#: size is bounded by the settings (a handful of shapes), and it is emptied if it ever holds
#: ``_LOOKUP_SHAPES``.
_LOOKUP_SQL: dict[tuple[Any, ...], str] = {}
_LOOKUP_SHAPES = 64


def _lookup_sql(shape: tuple[tuple[int, int], ...], before: bool, window: bool) -> str:
    """The postings lookup: the keys of each entry found (``group_concat``, as text), then
    the entry's light columns.  Grouped before the join, so that each candidate's fingerprint
    is read once: a reprint shares 5 or 6 keys with each member of its story's cluster, and
    one row per posting joined its fingerprint row 5 or 6 times."""
    key = (shape, before, window)
    sql = _LOOKUP_SQL.get(key)
    if sql is None:
        where = " AND entry_id != ?"
        if before:
            where += " AND entry_id < ?"
        postings = " UNION ALL ".join(
            f"SELECT key, entry_id FROM dedup_postings WHERE bucket IN "
            f"({','.join('?' * buckets)}) AND key IN ({','.join('?' * keys)}){where}"
            for buckets, keys in shape)
        sql = (f"SELECT g.keys, g.entry_id, {_LOOKUP_COLUMNS} FROM (SELECT entry_id, "
               f"group_concat(key) AS keys FROM ({postings}) GROUP BY entry_id) g "
               "JOIN dedup_fingerprints f ON f.entry_id = g.entry_id"
               + (" WHERE f.ts BETWEEN ? AND ?" if window else ""))
        if len(_LOOKUP_SQL) >= _LOOKUP_SHAPES:
            _LOOKUP_SQL.clear()
        _LOOKUP_SQL[key] = sql
    return sql


def _candidates(conn: sqlite3.Connection, tail: _Tail, fp: Fingerprint, before: int | None,
                exclude: int, ts: int | None = None, settings: DedupSettings | None = None,
                screen: bool = False) -> dict[int, _Candidate]:
    """Entries sharing at least one index key with ``fp``: of lower id than ``before`` and,
    when ``ts`` and ``settings`` are given, within the window of the key's kind (title and
    lead keys only serve short pairs, which :func:`_judge` compares within the title window:
    they are looked up in the one or two buckets of that window, not the 14 days').

    With ``screen`` (linking), candidates that :func:`_ruled_out` would drop are dropped
    first from a light read of their sketches, before anything else is read or built: an
    article of bench/ingest.py (sentences drawn from one corpus) has 200 candidates sharing a
    sentence or two, at 6 µs each when read and built in full.  Only the URL key is checked
    against the candidate's row; the other kinds only bring a candidate that is then judged
    on its text or title.  Each candidate comes with its cluster root, which :func:`_link`
    groups the candidates it judges by."""
    kinds_of, wide, narrow = _probe_lookups(fp)
    if not kinds_of:
        return {}
    lookups: list[tuple[Sequence[int], list[int]]] = []  # (buckets, keys)
    low_ts = high_ts = None
    stored = tail.buckets()
    if ts is not None and settings is not None:
        # (each window a property that computes it: read once, not twice)
        near_span, title_span = settings.window_seconds, settings.title_window_seconds
        window = max(near_span, title_span)
        low_ts, high_ts = ts - window, ts + window
        for span, keys in ((near_span, wide), (title_span, narrow)):
            if keys and stored is not None:
                first = max(_bucket(ts - span), stored[0])
                last = min(_bucket(ts + span), stored[1])
                if first <= last:
                    lookups.append((range(first, last + 1), keys))
    elif stored is not None:
        lookups.append((range(stored[0], stored[1] + 1), list(kinds_of)))
    # The keys each candidate shares (in the order candidates are first met), and what
    # screening needs of it; a candidate met in both levels takes its row from the table.
    light: dict[int, _Light] = {}
    shared: dict[int, set[int]] = {}
    limit = exclude if before is None else min(before, exclude)
    tail_light = tail.light
    tail_index = tail.index
    for key in kinds_of:  # (18 dict lookups, no list of pairs built)
        holders = tail_index.get(key)
        if holders is None:
            continue
        for entry_id in (holders,) if type(holders) is int else holders:
            # ids below ``limit`` pass both tests at once (exclude and before); the rest by hand
            if entry_id >= limit and (entry_id == exclude or (before is not None
                                                              and entry_id >= before)):
                continue
            row = tail_light.get(entry_id)
            if row is not None and (low_ts is None or low_ts <= row[0] <= high_ts):
                keys_of = shared.get(entry_id)
                if keys_of is None:
                    shared[entry_id] = {key}
                else:
                    keys_of.add(key)
                light[entry_id] = row
    if screen and lookups and conn.in_transaction:
        lookups = _filtered(conn, tail, lookups)
    if lookups:
        # One statement of a fixed shape (the number of buckets and keys), the fingerprint
        # joined to each entry found (see _lookup_sql).  Reading the postings first and then
        # the distinct candidates' rows by an IN list of their ids made a new statement for
        # every count: an article with hundreds of candidates (bench/soak.py's, built from
        # one corpus) filled SQLite's statement cache with large statements, and its memory
        # grew 1 MiB per 1,000 entries while the daemon ran (it stayed flat with this join).
        extra: list[Any] = [exclude] if before is None else [exclude, before]
        params: list[Any] = []
        for buckets, keys in lookups:
            params += buckets
            params += keys
            params += extra
        if low_ts is not None:
            params += [low_ts, high_ts]
        sql = _lookup_sql(tuple((len(b), len(k)) for b, k in lookups), before is not None,
                          low_ts is not None)
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples: no sqlite3.Row to build per candidate
        for row in cursor.execute(sql, params):
            entry_id = row[1]
            found_keys = map(int, row[0].split(","))
            keys_of = shared.get(entry_id)
            if keys_of is None:
                shared[entry_id] = set(found_keys)
            else:
                keys_of.update(found_keys)
            light[entry_id] = row[2:]
    if not light:
        return {}
    estimated: dict[int, tuple[float, bool]] = {}
    ids: Any
    if screen and settings is not None:
        url_key = fp.url_key
        by_url = set() if url_key is None else {i for i, k in shared.items() if url_key in k}
        ids, estimated = _screen(fp, light, by_url, settings)
        if not ids:
            return {}
    else:
        ids = light
    mine = _scheme_less(fp.canonical_url)
    found: dict[int, _Candidate] = {}
    unknown: list[_Candidate] = []  # linked before migration 6: no root in the row
    for entry_id, keys in shared.items():
        if entry_id not in ids:
            continue
        cts, length, shingles, sk, digest, title, url, root = light[entry_id]
        kinds = [kinds_of[k] for k in keys]
        if "url" in kinds and _scheme_less(url) != mine:
            # The one key that is evidence by itself is checked against the row: a key can be
            # stale (an entry re-indexed or rolled back in memory); other kinds only bring a
            # candidate that is then judged on its text or title.
            kinds = [k for k in kinds if k != "url"]
            if not kinds:
                continue
        cand = found[entry_id] = _Candidate(entry_id, cts, length, title, digest, set(kinds),
                                            kinds.count("near"), sk, shingles, None, True,
                                            root or entry_id)
        if root is None:
            unknown.append(cand)
        if entry_id in estimated:
            cand.estimate, cand.reachable = estimated[entry_id]
    roots: dict[int, int | None] = {}
    for marks, params in _id_lists([c.id for c in unknown]):
        roots.update(conn.execute(f"SELECT id, duplicate_of FROM entries WHERE id IN ({marks})",
                                  params).fetchall())
    for cand in unknown:
        cand.root = roots.get(cand.id) or cand.id
    return found


def _filtered(conn: sqlite3.Connection, tail: _Tail, lookups: list[tuple[Sequence[int], list[int]]]
              ) -> list[tuple[Sequence[int], list[int]]]:
    """The lookups less the keys that no bucket of theirs holds, by the buckets' Bloom
    filters (and less the buckets that hold none of them): a new story's lookup is then
    usually empty, with no statement run.  Only inside a transaction, so that no merge by
    another process can come between the filters read here and the postings read next.

    The keys left are padded with copies of the last to a power of two (``IN`` is a set), so
    that the lookup takes one of a handful of statement shapes."""
    _check_filters(conn, tail)
    out: list[tuple[Sequence[int], list[int]]] = []
    for buckets, keys in lookups:
        probed = bloom.probes(keys)
        used = []
        held: set[int] = set()
        for bucket in buckets:
            found = tail.filter(conn, bucket).select(keys, probed)
            if found:
                used.append(bucket)
                held.update(found)
        if used:
            present = [k for k in keys if k in held]
            present += present[-1:] * ((1 << (len(present) - 1).bit_length()) - len(present))
            out.append((used, present))
    return out


def _screen(fp: Fingerprint, light: dict[int, _Light], by_url: set[int],
            settings: DedupSettings) -> tuple[set[int], dict[int, tuple[float, bool]]]:
    """The candidates that :func:`_ruled_out` would keep, from their sketches alone: found by
    URL, short, the same text, without a usable sketch, or with an estimate that could reach
    the threshold; with the (estimate, could reach) of each candidate it estimated."""
    if fp.short or len(fp.sketch) != fpmod.SKETCH_BINS * 2 or not fp.shingles:
        return set(light), {}
    keep = set(by_url)
    usable_ids: list[int] = []
    sizes: list[int] = []
    sketches: list[bytes] = []
    size = len(fp.sketch)
    for entry_id, (_, length, shingles, sk, digest, *_) in light.items():
        if length < settings.short_chars or digest == fp.text_hash:
            keep.add(entry_id)  # judged whatever its estimate (which it still gets)
        if not shingles or sk is None or len(sk) != size:
            keep.add(entry_id)
        else:
            usable_ids.append(entry_id)
            sizes.append(shingles)
            sketches.append(sk)
    if not usable_ids:
        return keep, {}
    if len(usable_ids) > _NUMPY_FROM:
        estimates = fpmod.estimate_jaccard(
            np.frombuffer(fp.sketch, dtype=np.uint16),
            np.frombuffer(b"".join(sketches), dtype=np.uint16).reshape(
                len(usable_ids), fpmod.SKETCH_BINS)).tolist()
    else:
        # fingerprint.estimate_jaccard in plain Python, the same IEEE operations on the same
        # counts (so the same numbers): a dozen NumPy calls on a few rows cost more than the
        # counting itself (see _agreeing_bins).
        mine = int.from_bytes(fp.sketch, "little")
        estimates = [max(_agreeing_bins(mine, sk) / _BINS - _CHANCE, 0.0) / _CHANCE_SCALE
                     for sk in sketches]
    reach = _could_reach(estimates, fp.shingles, sizes, settings.threshold)
    info = dict(zip(usable_ids, zip(estimates, reach, strict=True), strict=True))
    keep.update(i for i, ok in zip(usable_ids, reach, strict=True) if ok)
    return keep, info


#: :func:`fingerprint.estimate_jaccard`'s constants, for :func:`_screen`'s plain-float path.
_BINS = fpmod.SKETCH_BINS
_CHANCE = 2.0**-fpmod.SKETCH_BITS
_CHANCE_SCALE = 1.0 - _CHANCE
#: The low 15 bits, and the top bit, of every 16-bit bin of a sketch read as one integer.
_BIN_LOW = int.from_bytes(b"\xff\x7f" * fpmod.SKETCH_BINS, "little")
_BIN_TOP = int.from_bytes(b"\x00\x80" * fpmod.SKETCH_BINS, "little")


def _agreeing_bins(mine: int, theirs: bytes) -> int:
    """How many 16-bit bins of two sketches are equal, ``np.count_nonzero(a == b)`` of the
    sketches as uint16 arrays, with the sketches as 2048-bit integers: in their XOR, a bin's
    low 15 bits plus 0x7fff carry into its top bit exactly when they are not all zero (and
    never beyond it), so after ORing in the bin's own top bit, the top bits set are the bins
    that differ.  Five operations on integers of 32 machine words, about 1 µs a candidate,
    where each NumPy call costs 1 to 2 (measured)."""
    x = mine ^ int.from_bytes(theirs, "little")
    return _BINS - ((((x & _BIN_LOW) + _BIN_LOW) | x) & _BIN_TOP).bit_count()


def _scheme_less(url: str | None) -> str | None:
    """What the url key is made of (``fingerprint.compute``: http and https are one page)."""
    return url.split("://", 1)[-1] if url else None


def _could_reach(estimates: Sequence[float], mine: float, theirs: Sequence[float],
                 threshold: float) -> list[bool]:
    """Could pairs with these estimated Jaccards and distinct shingle counts have a
    containment of ``threshold``?  False only when the estimate is ``SKETCH_SIGMAS`` standard
    deviations below the Jaccard that containment needs.

    For sets of sizes a <= b, containment t means an intersection of t * a, hence a Jaccard of
    J* = t * a / (a + b - t * a).  The test is one-sided at J*: a pair above J* is ruled out
    even less often.  The estimator's spread is taken at J* with k = min(bins, a) effective
    bins: a set smaller than the bin count fills the rest by densification, which adds no
    information (measured: the spread is then 1.0-1.1 x the binomial's at k = bins).

    The same IEEE arithmetic two ways: plain floats for a handful of candidates (a dozen
    NumPy calls on arrays that short cost about 15 µs), NumPy for the hundreds that an
    article sharing common sentences gets (bench/ingest.py, bench/soak.py).
    """
    if len(estimates) > _NUMPY_FROM:
        size = np.asarray(theirs, dtype=np.float64)
        small = np.minimum(mine, size)
        inter = threshold * small
        needed = inter / np.maximum(mine + size - inter, 1e-9)
        sigma = np.sqrt(needed * (1.0 - needed) / np.clip(small, 1.0, fpmod.SKETCH_BINS))
        ok = (np.asarray(estimates) >= needed - SKETCH_SIGMAS * sigma) | (small <= 0)
        return ok.tolist()
    out = []
    for estimate, size in zip(estimates, theirs, strict=True):
        small = min(mine, size)
        if small <= 0:
            out.append(True)
            continue
        inter = threshold * small
        needed = inter / max(mine + size - inter, 1e-9)
        sigma = math.sqrt(needed * (1.0 - needed) / min(max(small, 1.0), fpmod.SKETCH_BINS))
        out.append(estimate >= needed - SKETCH_SIGMAS * sigma)
    return out


#: Candidates above which :func:`_could_reach` takes NumPy.
_NUMPY_FROM = 16


def _short_pair(fp: Fingerprint, cand: _Candidate, settings: DedupSettings) -> bool:
    return fp.short or cand.length < settings.short_chars


def _ruled_out(fp: Fingerprint, cand: _Candidate, settings: DedupSettings) -> bool:
    """True when :func:`_judge` (with ``screen``) cannot link this pair, known without any
    I/O: no shared URL, not the same text, both long, and an estimate that cannot reach the
    threshold.  Most candidates of an ordinary article end here, unjudged."""
    return (not cand.reachable and "url" not in cand.kinds and cand.text_hash != fp.text_hash
            and not _short_pair(fp, cand, settings))


def _order(cand: _Candidate) -> tuple[int, int, int]:
    """Cheap, strong evidence first; then the most shared LSH bands (the likeliest match)."""
    return (0 if "url" in cand.kinds else 1), -cand.bands, cand.id


def _judge(entry: _Entry, fp: Fingerprint, cand: _Candidate, settings: DedupSettings,
           texts: _TextCache, conn: sqlite3.Connection, screen: bool = False) -> _Verdict:
    """Is ``entry`` a duplicate of ``cand``?  The one place the rules live (link and explain).

    With ``screen``, a candidate whose sketch estimate cannot reach the threshold gets no exact
    score (linking); explain leaves it off to show the real scores."""
    gap = abs(entry.ts - cand.ts)
    if gap > settings.window_seconds:
        return _Verdict(None, 0.0, f"outside the {settings.window_days:g}-day window")
    if "url" in cand.kinds:
        return _Verdict("url", 1.0, "same canonical URL")
    short = _short_pair(fp, cand, settings)
    if not short and cand.text_hash == fp.text_hash:
        return _Verdict("exact", 1.0, "same normalized text")
    if short and gap > settings.title_window_seconds:
        return _Verdict(None, 0.0, f"short text, {gap / 3600:.0f} h apart (title window "
                        f"{settings.title_window_hours:g} h)")
    verdict = _Verdict(None, 0.0, "no evidence")
    if fp.length and cand.length and max(fp.length, cand.length) >= MIN_CONTAINED_CHARS \
            and min(fp.length, cand.length) >= MIN_CONTAINED_CHARS:
        if screen and not cand.reachable:
            verdict.reason = (f"estimated Jaccard {cand.estimate:.2f} cannot reach containment "
                              f"{settings.threshold:g}")
            return _judge_title(fp, cand, settings, gap, short, verdict)
        mine = texts.get(conn, entry.id, fp.text_hash, settings.shingle)
        theirs = texts.get(conn, cand.id, cand.text_hash, settings.shingle)
        jac, cont = fpmod.similarity(mine, theirs)
        verdict.jaccard, verdict.containment = jac, cont
        verdict.score = cont
        if cont >= settings.threshold:
            what = "text contained in the longer one" if short else "near-duplicate text"
            return _Verdict("near", round(cont, 4), f"{what}: containment {cont:.2f} "
                            f">= {settings.threshold:g} (Jaccard {jac:.2f})", jac, cont)
        verdict.reason = f"containment {cont:.2f} < {settings.threshold:g} (Jaccard {jac:.2f})"
    return _judge_title(fp, cand, settings, gap, short, verdict)


def _judge_title(fp: Fingerprint, cand: _Candidate, settings: DedupSettings, gap: int,
                 short: bool, verdict: _Verdict) -> _Verdict:
    """The title rule of :func:`_judge`, for pairs where one side is short."""
    if short:
        tsim = fpmod.title_similarity(fp.title, cand.title)
        verdict.title_similarity = tsim
        if gap > settings.title_window_seconds:
            verdict.reason += f"; short text, but {gap / 3600:.0f} h apart " \
                              f"(title window {settings.title_window_hours:g} h)"
        elif tsim >= settings.title_threshold:
            return _Verdict("title", round(tsim, 4), f"short text; title similarity {tsim:.2f} "
                            f">= {settings.title_threshold:g}", verdict.jaccard,
                            verdict.containment, tsim)
        else:
            verdict.reason += f"; short text, title similarity {tsim:.2f} " \
                              f"< {settings.title_threshold:g}"
            verdict.score = max(verdict.score, tsim)
    return verdict


def _better(a: tuple[int, float, int], b: tuple[int, float, int] | None) -> bool:
    return b is None or (a[0], -a[1], a[2]) < (b[0], -b[1], b[2])


def _root(conn: sqlite3.Connection, entry_id: int) -> int:
    """Follow ``duplicate_of`` to the cluster root (links should be one hop; be safe)."""
    seen = {entry_id}
    current = entry_id
    while True:
        row = conn.execute("SELECT duplicate_of FROM entries WHERE id = ?", (current,)).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return current
        current = row[0]
        seen.add(current)


def link_entries(conn: sqlite3.Connection, entry_ids: list[int], settings: DedupSettings,
                 fingerprints: dict[int, Fingerprint] | None = None) -> list[Link]:
    """Fingerprint, index and link ``entry_ids``; returns the links of those that are duplicates.

    Runs inside the caller's transaction (a feed refresh), after the ``entries`` rows are
    written.  An entry whose fingerprint is unchanged since it was last linked is left alone,
    so a second run over the same feeds changes no link.
    """
    return _link(conn, entry_ids, settings, fingerprints or {}, force=False)


def _link(conn: sqlite3.Connection, entry_ids: Iterable[int], settings: DedupSettings,
          fingerprints: dict[int, Fingerprint], force: bool) -> list[Link]:
    links: list[Link] = []
    texts = _TextCache.of(conn)
    tail = _tail(conn)
    seq = 0
    ids = sorted(set(entry_ids))
    # The texts are only read when some fingerprint is to be computed here.
    with_text = not all(fingerprints.get(i) for i in ids)
    for entry in _load_entries(conn, ids, with_text):
        fp = fingerprints.get(entry.id) or fpmod.compute(entry.title, entry.text, entry.url,
                                                         settings)
        keys = _index_keys(fp)
        blob = _keys_blob(keys)
        stored = entry.stored
        if not force and stored == (entry.ts, fp.text_hash, fp.title, blob):
            if not entry.sketched:  # indexed before migration 4: add what it lacks
                conn.execute("UPDATE dedup_fingerprints SET sketch = ?, shingles = ? "
                             "WHERE entry_id = ?", (fp.sketch, fp.shingles, entry.id))
            if entry.duplicate_of is not None:
                links.append(Link(entry.id, entry.duplicate_of, entry.dup_method or "",
                                  entry.dup_score or 0.0))
            continue
        if stored is not None:  # its old keys, if merged (else they are only in memory)
            bucket = _bucket(stored[0])
            conn.executemany(
                "DELETE FROM dedup_postings WHERE bucket = ? AND key = ? AND entry_id = ?",
                [(bucket, k, entry.id) for k in np.frombuffer(stored[3], dtype=np.int64).tolist()])
        if with_text:
            texts.put(entry.id, entry.text)
        texts.offer(entry.id, fp)

        best: tuple[int, float, int] | None = None
        best_id = 0  # the candidate that gave ``best``
        best_method = ""
        linked_roots: set[int] = set()
        confirmations = 0
        found = _candidates(conn, tail, fp, before=entry.id, exclude=entry.id, ts=entry.ts,
                            settings=settings, screen=True)
        judged = sorted((c for c in found.values() if not _ruled_out(fp, c, settings)),
                        key=_order)
        for cand in judged:
            if cand.root in linked_roots:
                continue  # its cluster is already matched: another member cannot change the root
            if confirmations >= MAX_CONFIRMATIONS:
                break
            verdict = _judge(entry, fp, cand, settings, texts, conn, screen=True)
            if verdict.jaccard is not None:  # the exact score was computed
                confirmations += 1
            if verdict.method is None:
                continue
            linked_roots.add(cand.root)
            rank = (_PRIORITY[verdict.method], verdict.score, cand.root)
            if _better(rank, best):
                best, best_method, best_id = rank, verdict.method, cand.id
        new: tuple[int | None, str | None, float | None] = (None, None, None)
        if best is not None:
            # Candidates have lower ids, so their roots do too: never self, never forward.
            # The root the candidate's row names groups candidates, but it can be stale (moved
            # by another connection since this one read it): the link's root is read from
            # the candidate's entry.
            new = (_root(conn, best_id), best_method, best[1])
        seq = tail.next_seq(seq)
        light = (entry.ts, fp.length, fp.shingles, fp.sketch, fp.text_hash, fp.title,
                 fp.canonical_url, entry.id if new[0] is None else new[0])
        conn.execute(
            "INSERT OR REPLACE INTO dedup_fingerprints (entry_id, ts, canonical_url, text_hash, "
            "title, length, keys, sketch, shingles, seq, root) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.id, entry.ts, fp.canonical_url, fp.text_hash, fp.title, fp.length, blob,
             fp.sketch, fp.shingles, seq, light[-1]))
        tail.add(entry.id, keys, light)
        tail.dirty.add(entry.id)
        tail.own[entry.id] = seq
        if new != (entry.duplicate_of, entry.dup_method, entry.dup_score):
            conn.execute("UPDATE entries SET duplicate_of = ?, dup_method = ?, dup_score = ? "
                         "WHERE id = ?", (*new, entry.id))
        if new[0] is not None:
            if stored is not None:
                # A re-indexed entry that was a root and no longer is: its duplicates follow
                # it to the new root, so duplicate_of always names the cluster root.  (A new
                # entry has no duplicates yet.)
                # Their rows get a new seq, so that every connection reads their new root at
                # its next sync (a stale root would group them with the wrong cluster and can
                # hide the best candidate); rows merged already are merged again, harmlessly.
                seq = tail.next_seq(seq)
                conn.execute("UPDATE dedup_fingerprints SET root = ?, seq = ? WHERE entry_id IN "
                             "(SELECT id FROM entries WHERE duplicate_of = ?)",
                             (new[0], seq, entry.id))
                moved = conn.execute("UPDATE entries SET duplicate_of = ? WHERE duplicate_of = ?",
                                     (new[0], entry.id)).rowcount
                if moved:
                    tail.move_root(entry.id, new[0])
            links.append(Link(entry.id, new[0], new[1] or "", new[2] or 0.0))
    if len(tail.keys_of) >= MERGE_ENTRIES:
        _merge(conn, tail)
    return links


def rebuild(conn: sqlite3.Connection, settings: DedupSettings,
            progress: Callable[[int, int], None] | None = None,
            batch: int = 500) -> dict[str, Any]:
    """Recompute fingerprints and links of every entry, in id order (after a settings change).

    Commits every ``batch`` entries so the daemon's refreshes are not blocked for the whole
    rebuild.  Correct without clearing anything first: entries are redone in id order and
    each is compared only with lower ids, which are already redone.
    """
    from scraper import storage as store

    started = time.perf_counter()
    total = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    done = 0
    last = 0
    by_method: dict[str, int] = {}
    while True:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM entries WHERE id > ? ORDER BY id LIMIT ?", (last, batch))]
        if not ids:
            break
        with store.transaction(conn):
            links = _link(conn, ids, settings, {}, force=True)
        for link in links:
            by_method[link.method] = by_method.get(link.method, 0) + 1
        done += len(ids)
        last = ids[-1]
        if progress is not None:
            progress(done, total)
    with store.transaction(conn):
        conn.execute("DELETE FROM dedup_postings WHERE entry_id NOT IN (SELECT id FROM entries)")
    return {"entries": done, "duplicates": sum(by_method.values()), "by_method": by_method,
            "seconds": round(time.perf_counter() - started, 3)}


def explain(conn: sqlite3.Connection, entry_id: int, settings: DedupSettings) -> dict[str, Any]:
    """Why ``entry_id`` is or is not linked: its nearest indexed candidates and their scores."""
    rows = _load_entries(conn, [entry_id])
    if not rows:
        raise KeyError(entry_id)
    entry = rows[0]
    fp = fpmod.compute(entry.title, entry.text, entry.url, settings)
    texts = _TextCache.of(conn)
    texts.put(entry.id, entry.text)
    out: list[dict[str, Any]] = []
    for cand in _candidates(conn, _tail(conn), fp, before=None, exclude=entry.id).values():
        verdict = _judge(entry, fp, cand, settings, texts, conn)
        later = cand.id > entry.id
        info = conn.execute("SELECT feed, title, duplicate_of FROM entries WHERE id = ?",
                            (cand.id,)).fetchone()
        decision = verdict.method or "no link"
        if later and verdict.method:
            decision = f"later entry (it links here by {verdict.method})"
        out.append({
            "id": cand.id, "feed": info[0] if info else None,
            "title": info[1] if info else None,
            "duplicate_of": info[2] if info else None,
            "found_by": sorted(cand.kinds), "later": later,
            "hours_apart": round(abs(entry.ts - cand.ts) / 3600, 1),
            "jaccard": _r(verdict.jaccard), "containment": _r(verdict.containment),
            "title_similarity": _r(verdict.title_similarity),
            "score": _r(verdict.score), "decision": decision, "reason": verdict.reason,
        })
    out.sort(key=lambda c: (c["decision"] == "no link", -(c["score"] or 0), c["id"]))
    if entry.duplicate_of is not None:
        summary = (f"linked to {entry.duplicate_of} by {entry.dup_method} "
                   f"(score {entry.dup_score})")
    elif not out:
        summary = "not linked: no entry shares an index key (URL, text hash, LSH band, title)"
    else:
        summary = "not linked: no earlier candidate passed its threshold"
    dependents = conn.execute("SELECT count(*) FROM entries WHERE duplicate_of = ?",
                              (entry.id,)).fetchone()[0]
    return {
        "entry": {"id": entry.id, "feed": entry.feed, "title": entry.title,
                  "folded_length": fp.length, "short": fp.length < settings.short_chars,
                  "canonical_url": fp.canonical_url, "text_hash": fp.text_hash},
        "duplicate_of": entry.duplicate_of, "method": entry.dup_method,
        "score": entry.dup_score, "duplicates": dependents, "summary": summary,
        "candidates": out[: settings.explain_candidates],
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def clusters(conn: sqlite3.Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Clusters with more than one member, newest root first: root, then its duplicates."""
    sql = ("SELECT DISTINCT duplicate_of FROM entries WHERE duplicate_of IS NOT NULL "
           "ORDER BY duplicate_of DESC")
    roots = [r[0] for r in conn.execute(sql + (" LIMIT ?" if limit else ""),
                                        (limit,) if limit else ())]
    out = []
    for root in roots:
        head = conn.execute("SELECT id, feed, title, published FROM entries WHERE id = ?",
                            (root,)).fetchone()
        members = conn.execute(
            "SELECT id, feed, title, dup_method, dup_score FROM entries "
            "WHERE duplicate_of = ? ORDER BY id", (root,)).fetchall()
        out.append({
            "id": root, "feed": head[1] if head else None, "title": head[2] if head else None,
            "published": head[3] if head else None,
            "duplicates": [{"id": m[0], "feed": m[1], "title": m[2], "method": m[3],
                            "score": m[4]} for m in members],
        })
    return out
