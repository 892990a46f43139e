"""The dedup index in SQLite: fingerprint rows, one key table, links (migration 8).

``dedup_fingerprints`` holds what the rules need of a candidate, its keys (int64 blob) and
its cluster root; ``dedup_index (key, entry_id)`` the keys of the entries inside the dedup
window; entries below ``dedup_window.pruned_below`` have aged out and have no keys there.
Plain values in and out, shaped around what ``dedup`` needs, so another backend can provide
them.  No NumPy: keys travel as ``array('q')`` bytes, which NumPy's int64 also reads.

On PostgreSQL several processes link at once: :func:`lock_keys` makes two transactions that
share an index key take turns (see there).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scraper.storage.db import Connection, in_lists, is_pg, iso, utcnow


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry to link, with what its fingerprint row held when it was last linked."""

    id: int
    feed: str
    title: str
    text: str  # empty when read without the text
    url: str | None
    stamp: str | None  # published, else fetched_at (ISO 8601)
    arrived: str  # fetched_at
    duplicate_of: int | None
    dup_method: str | None
    dup_score: float | None
    #: (ts, text_hash, title, keys blob) of its fingerprint row; None: never linked.
    stored: tuple[int, str, str, bytes] | None
    sketched: bool  # its row has a sketch (rows from before migration 4 do not)


#: A candidate found by :func:`find_candidates`: (entry id, keys it shares, ts, length,
#: shingles, sketch, text hash, title, canonical url, root).  ``root`` is None for rows
#: linked before migration 6 (see :func:`roots_of`).
Found = tuple[int, list[int], int, int, int | None, bytes | None, str, str, str | None,
              int | None]

_ENTRY_SQL = ("SELECT e.id, e.feed, e.title, {text}, e.url, "
              "coalesce(nullif(e.published, ''), e.fetched_at), "
              "e.duplicate_of, e.dup_method, e.dup_score, f.ts, f.text_hash, f.title, f.keys, "
              "f.sketch IS NOT NULL, e.fetched_at FROM entries e LEFT JOIN dedup_fingerprints f "
              "ON f.entry_id = e.id WHERE e.id IN ({marks})")


def keys_blob(keys: Iterable[int]) -> bytes:
    """Keys as stored in ``dedup_fingerprints.keys``: native int64."""
    return array("q", keys).tobytes()


def blob_keys(blob: bytes) -> list[int]:
    keys = array("q")
    keys.frombytes(blob)
    return keys.tolist()


# -- concurrent writers (PostgreSQL) ----------------------------------------------------------

#: Index keys map onto this many advisory locks ("stripes"), each taken once per transaction:
#: two unrelated entries share one by chance (a wait, never a wrong answer), and 2^16 makes
#: that rare for the few hundred keys of an ordinary refresh.
LOCK_STRIPES = 1 << 16
#: A transaction locking more stripes than this takes the one exclusive lock over the whole
#: index instead.  Every advisory lock held is a slot of PostgreSQL's shared lock table
#: (max_locks_per_transaction x max_connections: 64 x 100 by default); 512 stripes (a refresh
#: of about 20 new articles, ~25 keys each) keeps a dozen workers well inside it, and a
#: first poll of a long feed or a rebuild's batch simply runs alone.
MAX_STRIPES = 512
#: The advisory lock numbers (bigint keys, beside ``db``'s migration lock 0x5C4A_0001 and
#: ``feeds``' claim lock 0x5C4A_0002): the whole index's lock, then one per stripe after it.
_INDEX_LOCK = 0x5C4A_0003 << 32


def lock_keys(conn: Connection, keys: Iterable[int]) -> None:
    """Wait until no other transaction holds any of ``keys`` (index keys the caller is about
    to look up, insert or delete), and hold them to the end of this one.  Nothing on SQLite,
    whose write transaction (BEGIN IMMEDIATE) is the only writer already.

    Why: PostgreSQL's READ COMMITTED lets two refreshes storing reprints of one story each
    look the other's up before either commits: each misses the other and the story makes two
    clusters.  Under the lock the second waits for the first's commit, and its lookups (a new
    snapshot per statement) then find the first's rows: it links as if it had come later.

    Why advisory locks rather than SERIALIZABLE with a retry: a serialization failure rolls
    back the whole refresh's transaction, whose entries came from HTTP responses and parsing
    done before it; redoing it means keeping all of that for a retry loop that may fail
    again under load.  A lock waits instead of failing, and costs nothing when no one else
    holds it.  It cannot deadlock with another linker: every transaction takes the shared
    lock over the index first, then its stripes in ascending order (or the exclusive lock
    alone), all before its first lookup.  Locks wait up to the connection's ``lock_timeout``
    (the busy timeout) like every other wait, then raise ``DatabaseLocked``.

    Take them before the transaction's first write (``dedup.lock_entries``): a transaction
    that rewrote a row and then waited here could hold the very row that the holder of the
    keys must update.  A second call for keys the transaction holds already returns at once
    (PostgreSQL counts a lock taken again); one for others takes them out of order."""
    if not is_pg(conn):
        return
    stripes = sorted({k % LOCK_STRIPES for k in keys})
    if not stripes:
        return
    if len(stripes) > MAX_STRIPES:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_INDEX_LOCK,))
        return
    conn.execute("SELECT pg_advisory_xact_lock_shared(?)", (_INDEX_LOCK,))
    # unnest yields the array in its order, and each row's lock is taken as it is produced.
    conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k",
                 ([_INDEX_LOCK + 1 + s for s in stripes],)).fetchall()


def lock_index(conn: Connection) -> None:
    """The whole index, to the end of the transaction, before its first write: a rebuild's
    bulk updates (every story cleared, a batch relinked) wait for the linkers in flight and
    hold off new ones, instead of meeting them row by row in another order."""
    if is_pg(conn):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_INDEX_LOCK,))


def load_entries(conn: Connection, ids: Sequence[int],
                 text: bool = True) -> list[StoredEntry]:
    """The entries ``ids`` in id order; ``text=False`` leaves their text out (the caller
    has their fingerprints)."""
    column = "coalesce(nullif(e.content_text, ''), e.summary, '')" if text else "''"
    out: list[StoredEntry] = []
    cursor = conn.cursor()
    cursor.row_factory = None
    for marks, params in in_lists(ids):
        for r in cursor.execute(_ENTRY_SQL.format(text=column, marks=marks), params):
            stored = None if r[9] is None else (r[9], r[10], r[11], r[12])
            out.append(StoredEntry(r[0], r[1], r[2] or "", r[3] or "", r[4], r[5], r[14], r[6],
                                   r[7], r[8], stored, bool(r[13])))
    out.sort(key=lambda e: e.id)
    return out


def entry_text(conn: Connection, entry_id: int) -> str:
    row = conn.execute("SELECT coalesce(nullif(content_text, ''), summary, '') FROM entries "
                       "WHERE id = ?", (entry_id,)).fetchone()
    return row[0] if row else ""


def find_candidates(conn: Connection, keys: Sequence[int], exclude: int,
                    below: int | None = None, low_ts: int | None = None,
                    high_ts: int | None = None, arrived_from: str | None = None,
                    arrived_to: str | None = None) -> list[Found]:
    """Entries other than ``exclude`` holding any of ``keys``: of lower id than ``below``,
    dated ``low_ts`` to ``high_ts``; arrived from ``arrived_from`` on if of lower id than
    ``exclude``, until ``arrived_to`` if higher.  Each once, grouped before the join (a reprint
    shares 5 or 6 keys with each member of its cluster), with the keys it shares."""
    if not keys:
        return []
    out: list[Found] = []
    cursor = conn.cursor()
    cursor.row_factory = None
    bounds = [exclude, _BIG if below is None else below,
              -_BIG if low_ts is None else low_ts, _BIG if high_ts is None else high_ts,
              exclude, arrived_from or "", arrived_to or _LAST]
    # SQLite's group_concat is PostgreSQL's string_agg.
    agg = "string_agg(key::text, ',')" if is_pg(conn) else "group_concat(key)"
    for marks, params in in_lists(keys):
        sql = ("SELECT g.entry_id, g.keys, f.ts, f.length, f.shingles, f.sketch, f.text_hash, "
               f"f.title, f.canonical_url, f.root FROM (SELECT entry_id, {agg} AS "
               f"keys FROM dedup_index WHERE key IN ({marks}) AND entry_id != ? AND "
               "entry_id < ? GROUP BY entry_id) g JOIN dedup_fingerprints f "
               "ON f.entry_id = g.entry_id "
               "WHERE f.ts BETWEEN ? AND ? AND CASE WHEN g.entry_id < ? THEN f.arrived >= ? "
               "ELSE f.arrived <= ? END")
        for r in cursor.execute(sql, params + bounds):
            out.append((r[0], [int(k) for k in r[1].split(",")], *r[2:]))
    return out


#: Above every id and date: the bound of a lookup that has none (one statement shape).
_BIG = 1 << 62
#: After every ISO 8601 time: the bound of an arrival lookup that has none.
_LAST = "\uffff"


def roots_of(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Each entry's cluster root as ``entries`` names it (itself for an original)."""
    out: dict[int, int] = {}
    for marks, params in in_lists(ids):
        for entry_id, dup in conn.execute(
                f"SELECT id, duplicate_of FROM entries WHERE id IN ({marks})", params):
            out[entry_id] = dup or entry_id
    return out


def cluster_root(conn: Connection, entry_id: int) -> int:
    """Follow ``duplicate_of`` to the cluster root (links are one hop; be safe)."""
    seen = {entry_id}
    current = entry_id
    while True:
        row = conn.execute("SELECT duplicate_of FROM entries WHERE id = ?", (current,)).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return current
        current = row[0]
        seen.add(current)


def save_fingerprint(conn: Connection, entry_id: int, ts: int, arrived: str,
                     canonical_url: str | None, text_hash: str, title: str, length: int,
                     keys: bytes, sketch: bytes, shingles: int, root: int) -> None:
    conn.execute(
        "INSERT INTO dedup_fingerprints (entry_id, ts, arrived, canonical_url, "
        "text_hash, title, length, keys, sketch, shingles, root) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id) DO UPDATE SET "
        "ts = excluded.ts, arrived = excluded.arrived, canonical_url = excluded.canonical_url, "
        "text_hash = excluded.text_hash, title = excluded.title, length = excluded.length, "
        "keys = excluded.keys, sketch = excluded.sketch, shingles = excluded.shingles, "
        "root = excluded.root",
        (entry_id, ts, arrived, canonical_url, text_hash, title, length, keys, sketch,
         shingles, root))


def fill_sketch(conn: Connection, entry_id: int, sketch: bytes, shingles: int) -> None:
    """Add the sketch to a row stored before migration 4."""
    conn.execute("UPDATE dedup_fingerprints SET sketch = ?, shingles = ? WHERE entry_id = ?",
                 (sketch, shingles, entry_id))


def index_keys(conn: Connection, entry_id: int, keys: Iterable[int]) -> None:
    conn.executemany("INSERT INTO dedup_index (key, entry_id) VALUES (?, ?) "
                     "ON CONFLICT DO NOTHING",
                     [(k, entry_id) for k in keys])


def unindex_keys(conn: Connection, entry_id: int, blob: bytes) -> None:
    """Delete the keys ``blob`` holds of ``entry_id`` (its fingerprint row's, as stored)."""
    conn.executemany("DELETE FROM dedup_index WHERE key = ? AND entry_id = ?",
                     [(k, entry_id) for k in blob_keys(blob)])


# -- what the exports see change ---------------------------------------------------------------
#
# An exported record shows more than its own row: an original's ``duplicates`` (and the feeds
# in ``also_reported_by``), a story's other originals in ``same_story``.  The incremental
# exports re-send what was ``updated_at`` since they last wrote it, so every link or story
# change stamps the entries whose records it changes, in the same transaction: the entry
# itself, the originals it leaves and joins, and the story's entries when its originals
# change.  (``updated_at`` is the row's "changed since" mark; the hexo export and the merged
# feed read no link and compare their own content hashes, so a stamp alone rewrites nothing.)


def _stamp() -> str:
    return iso(utcnow()) or ""


def _touch(conn: Connection, ids: Iterable[int | None]) -> None:
    """Stamp ``updated_at`` of the entries ``ids`` (Nones skipped)."""
    wanted = sorted({i for i in ids if i is not None})
    stamp = _stamp()
    for marks, params in in_lists(wanted):
        conn.execute(f"UPDATE entries SET updated_at = ? WHERE id IN ({marks})",
                     [stamp, *params])


def _touch_stories(conn: Connection, stories: Iterable[int | None]) -> None:
    """Stamp every entry of ``stories``: their ``same_story`` lists the story's originals."""
    stamp = _stamp()
    for story in sorted({s for s in stories if s is not None}):
        conn.execute("UPDATE entries SET updated_at = ? WHERE story = ?", (stamp, story))


def set_link(conn: Connection, entry_id: int, duplicate_of: int | None,
             method: str | None, score: float | None) -> None:
    row = conn.execute("SELECT duplicate_of, story FROM entries WHERE id = ?",
                       (entry_id,)).fetchone()
    old, story = (None, None) if row is None else (row[0], row[1])
    if (old is None) != (duplicate_of is None):
        _touch_stories(conn, [story])  # one original more or fewer in its story
    _touch(conn, [old, duplicate_of])  # the original it leaves, the one it joins
    conn.execute("UPDATE entries SET duplicate_of = ?, dup_method = ?, dup_score = ?, "
                 "updated_at = ? WHERE id = ?",
                 (duplicate_of, method, score, _stamp(), entry_id))


def move_followers(conn: Connection, old_root: int, new_root: int) -> int:
    """The duplicates of ``old_root`` (no longer a root) follow it to ``new_root``, so that
    ``duplicate_of`` always names the cluster root; returns how many moved."""
    conn.execute("UPDATE dedup_fingerprints SET root = ? WHERE entry_id IN "
                 "(SELECT id FROM entries WHERE duplicate_of = ?)", (new_root, old_root))
    moved = conn.execute("UPDATE entries SET duplicate_of = ?, updated_at = ? "
                         "WHERE duplicate_of = ?", (new_root, _stamp(), old_root)).rowcount
    if moved:
        _touch(conn, [old_root, new_root])  # one lost its duplicates, the other gained them
    return moved


# -- the window -------------------------------------------------------------------------------

def pruned_below(conn: Connection) -> int:
    """Entries of lower id than this have aged out of the window: no keys in the index."""
    return int(conn.execute("SELECT pruned_below FROM dedup_window").fetchone()[0])


def claim_pruning(conn: Connection) -> int | None:
    """``pruned_below`` for a transaction about to prune, None when another transaction is
    pruning (PostgreSQL: its row is locked until that one commits; it will have pruned what
    this one would, so skipping costs nothing, where waiting would make every refresh wait
    for the one before it)."""
    if not is_pg(conn):
        return pruned_below(conn)
    row = conn.execute("SELECT pruned_below FROM dedup_window FOR UPDATE SKIP LOCKED"
                       ).fetchone()
    return None if row is None else int(row[0])


def set_pruned_below(conn: Connection, entry_id: int) -> None:
    conn.execute("UPDATE dedup_window SET pruned_below = ?", (entry_id,))


def arrival(conn: Connection, entry_id: int | None = None) -> str | None:
    """``fetched_at`` of ``entry_id``, or of the newest entry (the highest id)."""
    row = conn.execute("SELECT fetched_at FROM entries WHERE id = (SELECT max(id) FROM entries)"
                       if entry_id is None else
                       "SELECT fetched_at FROM entries WHERE id = ?",
                       () if entry_id is None else (entry_id,)).fetchone()
    return None if row is None else row[0]


def prune(conn: Connection, start: int, cutoff: str, most: int,
          below: int | None = None) -> int:
    """Take out of the index the keys of the entries from id ``start`` on that arrived before
    ``cutoff`` (ISO 8601, as ``fetched_at``), stopping at the first that arrived after it,
    at id ``below``, or after ``most`` entries; returns the id to start from next time.

    Entries arrive in id order, so the ones that aged out are a run of ids: a walk from the
    last stop finds them with one seek.  An entry that arrived out of order (a clock step
    back) stops the walk early, which only keeps a few keys longer."""
    cursor = conn.cursor()
    cursor.row_factory = None
    done: list[tuple[int, bytes | None]] = []
    stop: int | None = None
    for entry_id, old, keys in cursor.execute(
            "SELECT e.id, e.fetched_at < ?, f.keys FROM entries e LEFT JOIN dedup_fingerprints f "
            "ON f.entry_id = e.id WHERE e.id >= ? AND e.id < ? ORDER BY e.id LIMIT ?",
            (cutoff, start, _BIG if below is None else below, most)):
        if not old:
            stop = entry_id
            break
        done.append((entry_id, keys))
    cursor.close()
    if not done:
        return start
    conn.executemany("DELETE FROM dedup_index WHERE key = ? AND entry_id = ?",
                     [(k, entry_id) for entry_id, blob in done if blob
                      for k in blob_keys(blob)])
    return done[-1][0] + 1 if stop is None else stop


def drop_orphan_keys(conn: Connection) -> None:
    """Keys of entries deleted since they were indexed (their fingerprint rows went with
    them): harmless, since lookups join the fingerprint, but dead weight."""
    conn.execute("DELETE FROM dedup_index WHERE entry_id NOT IN "
                 "(SELECT entry_id FROM dedup_fingerprints)")


# -- reading --------------------------------------------------------------------------------

def count_entries(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])


def entry_ids_after(conn: Connection, after: int, most: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                                       (after, most))]


def entry_brief(conn: Connection, entry_id: int
                ) -> tuple[str, str, str | None, int | None] | None:
    """(feed, title, published, duplicate_of) of an entry, None if there is none."""
    row = conn.execute("SELECT feed, title, published, duplicate_of FROM entries WHERE id = ?",
                       (entry_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def count_duplicates(conn: Connection, root: int) -> int:
    return int(conn.execute("SELECT count(*) FROM entries WHERE duplicate_of = ?",
                            (root,)).fetchone()[0])


def cluster_roots(conn: Connection, limit: int | None = None) -> list[int]:
    """Roots with at least one duplicate, newest first."""
    sql = ("SELECT DISTINCT duplicate_of FROM entries WHERE duplicate_of IS NOT NULL "
           "ORDER BY duplicate_of DESC")
    if limit:
        return [r[0] for r in conn.execute(sql + " LIMIT ?", (limit,))]
    return [r[0] for r in conn.execute(sql)]


def cluster_members(conn: Connection, root: int
                    ) -> list[tuple[int, str, str, str | None, float | None]]:
    """(id, feed, title, method, score) of each duplicate of ``root``, in id order."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT id, feed, title, dup_method, dup_score FROM entries WHERE duplicate_of = ? "
        "ORDER BY id", (root,))]


# -- the canonical entry and stories (issue 19) ------------------------------------------------

def completeness(conn: Connection, entry_id: int) -> tuple[int, int] | None:
    """(folded length, ts) of an entry's fingerprint row: what says which member of a cluster
    is its best (``dedup``); None if it has none."""
    row = conn.execute("SELECT length, ts FROM dedup_fingerprints WHERE entry_id = ?",
                       (entry_id,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def promote(conn: Connection, new_root: int, old_root: int, method: str,
            score: float) -> None:
    """Make ``new_root`` (a member of ``old_root``'s cluster) the cluster's root: the old root
    and its duplicates link to it, with their methods; ``old_root`` takes the link that
    brought ``new_root`` in.  A cluster's members are few, and ``duplicate_of`` is indexed.
    Every member's record changes, and the story's list of originals (see ``_touch``)."""
    _touch_stories(conn, [story_of(conn, old_root), story_of(conn, new_root)])
    stamp = _stamp()
    conn.execute("UPDATE entries SET duplicate_of = ?, updated_at = ? "
                 "WHERE duplicate_of = ? AND id != ?", (new_root, stamp, old_root, new_root))
    conn.execute("UPDATE entries SET duplicate_of = ?, dup_method = ?, dup_score = ?, "
                 "updated_at = ? WHERE id = ?", (new_root, method, score, stamp, old_root))
    conn.execute("UPDATE entries SET duplicate_of = NULL, dup_method = NULL, dup_score = NULL, "
                 "updated_at = ? WHERE id = ?", (stamp, new_root))
    conn.execute("UPDATE dedup_fingerprints SET root = ? WHERE entry_id IN "
                 "(SELECT id FROM entries WHERE duplicate_of = ?) OR entry_id = ?",
                 (new_root, new_root, new_root))


def cluster_stories(conn: Connection, root: int) -> list[int]:
    """The stories the members of ``root``'s cluster are in (normally one or none)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT story FROM entries WHERE (id = ? OR duplicate_of = ?) "
        "AND story IS NOT NULL ORDER BY 1", (root, root))]


def set_cluster_story(conn: Connection, root: int, story: int | None) -> None:
    """Put ``root``'s cluster in ``story``; only the members not in it already are written
    (and stamped).  When the root moves, the originals of the story it leaves and of the one
    it joins change: those entries are stamped too."""
    old = story_of(conn, root)
    if old != story:
        _touch_stories(conn, [old, story])
    other = "story IS NOT NULL" if story is None else "(story IS NULL OR story != ?)"
    conn.execute(f"UPDATE entries SET story = ?, updated_at = ? WHERE (id = ? OR duplicate_of "
                 f"= ?) AND {other}",
                 (story, _stamp(), root, root, *(() if story is None else (story,))))


def merge_story(conn: Connection, old: int, new: int) -> None:
    """Every entry of story ``old`` joins story ``new`` (two stories found to be one); the
    entries of both see the other's originals."""
    _touch_stories(conn, [new])
    conn.execute("UPDATE entries SET story = ?, updated_at = ? WHERE story = ?",
                 (new, _stamp(), old))


def clear_stories(conn: Connection) -> None:
    """Forget every story (a rebuild finds them again)."""
    conn.execute("UPDATE entries SET story = NULL, updated_at = ? WHERE story IS NOT NULL",
                 (_stamp(),))


def story_of(conn: Connection, entry_id: int) -> int | None:
    row = conn.execute("SELECT story FROM entries WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else row[0]


def story_members(conn: Connection, story: int
                  ) -> list[tuple[int, str, str, int | None]]:
    """(id, feed, title, duplicate_of) of the entries of ``story``, in id order."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT id, feed, title, duplicate_of FROM entries WHERE story = ? ORDER BY id",
        (story,))]


def story_ids(conn: Connection, limit: int | None = None) -> list[int]:
    """Stories, newest first (by their id)."""
    sql = "SELECT DISTINCT story FROM entries WHERE story IS NOT NULL ORDER BY story DESC"
    if limit:
        return [r[0] for r in conn.execute(sql + " LIMIT ?", (limit,))]
    return [r[0] for r in conn.execute(sql)]


def fingerprint_of(conn: Connection, entry_id: int
                   ) -> tuple[int, int, str, str] | None:
    """(ts, length, folded title, text hash) of an entry's fingerprint row (explain)."""
    row = conn.execute("SELECT ts, length, title, text_hash FROM dedup_fingerprints "
                       "WHERE entry_id = ?", (entry_id,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2], row[3])
