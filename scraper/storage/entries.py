"""The ``entries`` table as the refresh needs it: what is stored of a document's entries,
and applying a refresh's plan (``core.decide.Plan``) in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from scraper.core.decide import EntryData, Plan
from scraper.storage.db import Connection, in_lists, iso, parse_iso, transaction
from scraper.storage.feeds import record_outcome

#: Keys per ``IN (...)`` list: SQLite's default limit is 32,766 host parameters (999 before
#: 3.32); 500 stays under both with room for the feed name.
CHUNK = 500


def known_hashes(conn: Connection, feed: str, keys: Sequence[str]) -> dict[str, str]:
    """The stored raw hash of each of these entry keys of ``feed`` (absent: not stored); only
    the current document's keys, since every key a feed ever had grows with its history."""
    known: dict[str, str] = {}
    for marks, chunk in in_lists(keys, CHUNK):
        known.update(conn.execute(
            f"SELECT entry_key, raw_hash FROM entries WHERE feed = ? "
            f"AND entry_key IN ({marks})", (feed, *chunk)).fetchall())
    return known


def recent_dates(conn: Connection, feed: str, since: datetime) -> list[datetime | None]:
    """When each of the feed's entries since ``since`` was published (else first fetched):
    the evidence of an adaptive feed's publishing rate."""
    rows = conn.execute(
        "SELECT COALESCE(published, fetched_at) FROM entries WHERE feed = ? "
        "AND COALESCE(published, fetched_at) >= ?", (feed, iso(since))).fetchall()
    return [parse_iso(r[0]) for r in rows]


def _values(e: EntryData) -> tuple[object, ...]:
    return (e.url, e.guid, e.title, e.author, e.published, e.content_html, e.content_text,
            e.summary, e.image, e.raw_html, e.raw_hash)


#: One statement whether the row is there or not: on PostgreSQL a SELECT then INSERT lets
#: two writers of one feed (a claim that expired under a slow refresh) both find nothing,
#: and the second INSERT fail on the unique key; this one waits for the first writer's
#: row and updates it.  ``fetched_at`` stays the first fetch's.
_UPSERT = (
    "INSERT INTO entries (feed, entry_key, url, guid, title, author, published, "
    "content_html, content_text, summary, image, raw_html, raw_hash, fetched_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (feed, entry_key) DO UPDATE SET url = excluded.url, "
    "guid = excluded.guid, title = excluded.title, author = excluded.author, "
    "published = excluded.published, content_html = excluded.content_html, "
    "content_text = excluded.content_text, summary = excluded.summary, "
    "image = excluded.image, raw_html = excluded.raw_html, raw_hash = excluded.raw_hash, "
    "updated_at = excluded.updated_at RETURNING id")


def write_entries(conn: Connection, feed: str, new: Sequence[EntryData],
                  updated: Sequence[EntryData], now: datetime) -> list[int]:
    """Insert the new entries and update the changed ones (inside the caller's transaction);
    their ids, new first, each in the order given.

    An "updated" entry that is not stored (the row went meanwhile) is inserted, and a "new"
    one that is stored (another process stored it) is updated: the unique (feed, key) stays
    the one row either way.
    """
    stamp = iso(now)
    return [int(conn.execute(_UPSERT, (feed, entry.key, *_values(entry), stamp, stamp)
                             ).fetchone()[0])
            for entry in (*new, *updated)]


def apply_plan(conn: Connection, feed: str, plan: Plan, *, claimant: str,
               link: Callable[[list[int]], None] | None = None,
               lock: Callable[[], None] | None = None) -> list[int]:
    """Apply a refresh's plan in one transaction: ``lock`` first (dedup's locks, taken
    before any write: ``dedup.lock_entries``), the entries, then ``link`` over their ids
    (dedup, which must see them in the same transaction), then the feed's row, whose claim
    by ``claimant`` is released.  A crash leaves all of it or none."""
    with transaction(conn):
        if lock is not None:
            lock()
        ids = write_entries(conn, feed, plan.new, plan.updated, plan.feed.fetched_at)
        if ids and link is not None:
            link(ids)
        record_outcome(conn, feed, plan.feed, claimant)
    return ids
