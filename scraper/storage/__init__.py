"""SQLite storage: the one place that opens the database and owns the core schema.

We open the connection ourselves (sqlite-utils' ``Database(path)`` would use the rollback
journal): WAL lets readers (``scrape status``, exports) run beside the daemon's writer,
``synchronous=NORMAL`` is durable enough under WAL, and a busy timeout turns a concurrent
``scrape --once`` into a short wait instead of "database is locked".

Feature modules (dedup, export, ...) keep their own tables; they add them through
``MIGRATIONS`` here so that the schema version in ``PRAGMA user_version`` tells the whole story.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils


#: Seconds a writer waits for another writer's transaction before giving up.  A feed refresh
#: transaction takes milliseconds; 30 s covers a dedup rebuild running beside the daemon.
BUSY_TIMEOUT_MS = 30_000

#: How long a process waits for another's schema upgrade (migration 5 took 73 s at 1M
#: entries; see ``migrate``).
MIGRATION_WAIT_MS = 600_000

log = logging.getLogger(__name__)

CACHE_KIB = 16384

# Each migration runs once, in order, inside one transaction; the list index + 1 is the
# schema version stored in PRAGMA user_version.  Append, never edit a released entry.
MIGRATIONS: list[str] = [
    # 1: core tables
    """
    CREATE TABLE feeds (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        last_fetch_at TEXT,
        last_success_at TEXT,
        last_status INTEGER,
        last_error TEXT,
        last_error_at TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        next_due_at TEXT,
        retry_after_at TEXT,
        cache_max_age INTEGER,
        ttl INTEGER,
        claimed_by TEXT,
        claimed_until TEXT,
        entry_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL,
        entry_key TEXT NOT NULL,
        url TEXT,
        guid TEXT,
        title TEXT,
        author TEXT,
        published TEXT,
        content_html TEXT,
        content_text TEXT,
        summary TEXT,
        image TEXT,
        raw_html TEXT,
        raw_hash TEXT,
        fetched_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        duplicate_of INTEGER REFERENCES entries(id),
        dup_method TEXT,
        dup_score REAL,
        UNIQUE (feed, entry_key)
    );
    CREATE INDEX entries_published ON entries(published);
    CREATE INDEX entries_duplicate_of ON entries(duplicate_of);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    # 2: what each export target already has, so re-exports write only what is new
    """
    CREATE TABLE exports (
        target TEXT NOT NULL,
        entry_id INTEGER NOT NULL REFERENCES entries(id),
        path TEXT,
        content_hash TEXT,
        exported_at TEXT NOT NULL,
        PRIMARY KEY (target, entry_id)
    );
    """,
    # 3: dedup fingerprints and the LSH index (scraper/dedup.py).  dedup_keys is WITHOUT
    # ROWID so that the (key, entry_id) primary key is the only B-tree: one index seek per
    # key on lookup, one insert per key.  Each fingerprint keeps its own keys as a blob, so
    # an update deletes them by primary key without a second index.
    """
CREATE TABLE dedup_fingerprints (
    entry_id INTEGER PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    canonical_url TEXT,
    text_hash TEXT NOT NULL,
    title TEXT NOT NULL,
    length INTEGER NOT NULL,
    keys BLOB NOT NULL
);
CREATE TABLE dedup_keys (
    key INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (key, entry_id)
) WITHOUT ROWID;
""",
    # 4: the dedup estimation sketch (fingerprint.sketch, 256 bytes) and the distinct
    # shingle count of each entry.  Rows indexed before it have NULLs: their candidates get
    # the exact score, and the next link_entries over them (or `scrape dedup --rebuild`)
    # fills the columns in.
    """
ALTER TABLE dedup_fingerprints ADD COLUMN sketch BLOB;
ALTER TABLE dedup_fingerprints ADD COLUMN shingles INTEGER;
""",
    # 5: the key index becomes an LSM of two levels (scraper/dedup.py, "The index").  One row
    # per key inserted at random into an 18M-row B-tree dirtied a page per key: at 1M entries
    # the commits cost 0.6 ms per article (bench/dedup_scale.py).  Fingerprints get a write
    # sequence number (``seq``); those above ``dedup_state.merged_seq`` are indexed in memory
    # and merged into dedup_postings in sorted batches, clustered by a 28-day time bucket so
    # that a batch lands in one small region of the B-tree.  Existing keys move over as merged.
    """
ALTER TABLE dedup_fingerprints ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dedup_fingerprints_seq ON dedup_fingerprints(seq);
CREATE TABLE dedup_postings (
    bucket INTEGER NOT NULL,
    key INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, entry_id)
) WITHOUT ROWID;
INSERT INTO dedup_postings (bucket, key, entry_id)
    SELECT max(f.ts, 0) / 2419200, k.key, k.entry_id
    FROM dedup_keys k JOIN dedup_fingerprints f ON f.entry_id = k.entry_id ORDER BY 1, 2, 3;
DROP TABLE dedup_keys;
CREATE TABLE dedup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    merged_seq INTEGER NOT NULL
);
INSERT INTO dedup_state (id, merged_seq) VALUES (1, 0);
""",
    # 6: each fingerprint names its cluster root (scraper/dedup.py), so that candidates are
    # grouped by cluster without reading their ``entries`` rows, whose duplicate_of lies past
    # the content (a walk over every overflow page of the row).  NULL for rows linked before:
    # those are read from ``entries`` as before, until `scrape dedup --rebuild` or a re-link.
    """
ALTER TABLE dedup_fingerprints ADD COLUMN root INTEGER;
""",
    # 7: a Bloom filter of each dedup_postings bucket's keys (scraper/bloom.py), so that a
    # lookup seeks only the keys a bucket may hold.  ``keys`` counts the keys added to it.
    # Empty here: scraper/dedup.py builds a bucket's filter from its postings when a lookup
    # or a merge first needs it, and every merge adds its keys in the same transaction.
    # ``filtered_seq``: the merge the filters are up to date with.  Every merge sets it with
    # ``merged_seq``; a process of an earlier release merges without it (migrate lets it run on
    # a newer schema), and the next process that sees the two differ drops every filter.
    """
CREATE TABLE dedup_filters (
    bucket INTEGER PRIMARY KEY,
    keys INTEGER NOT NULL,
    bits BLOB NOT NULL
);
ALTER TABLE dedup_state ADD COLUMN filtered_seq INTEGER NOT NULL DEFAULT -1;
""",
]


class Connection(sqlite3.Connection):
    """sqlite3's connection with a ``__dict__``: dedup keeps the in-memory part of its index
    on the connection it belongs to (the C type takes neither attributes nor weak references).
    """


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``: sorts as text, so SQL can compare timestamps directly."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database at ``path``."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False, factory=Connection)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # 16 MiB page cache (SQLite's default is 2 MB): the dedup index lookups at 1M entries
    # went from 0.68 to 0.52 ms/article and a 6000-entry rebuild from 1.02 to 0.72 ms/entry;
    # 64 MiB measured no better (bench/dedup_scale.py, issue 4 notes).
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


def database(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """A sqlite-utils view over our own configured connection (for its query helpers).

    Imported here, not at the top: it costs 140 ms of start-up (python -X importtime), more
    than half of what a warm `scrape --once` over unchanged feeds needs in all.
    """
    import sqlite_utils

    return sqlite_utils.Database(conn)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date; safe when several processes start at once."""
    if schema_version(conn) >= len(MIGRATIONS):
        return
    # BEGIN IMMEDIATE takes the write lock first, so two processes never both migrate.  The
    # second waits for the first's upgrade, which can take longer than the busy timeout.
    conn.execute(f"PRAGMA busy_timeout = {MIGRATION_WAIT_MS}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        version = schema_version(conn)
        if 0 < version < len(MIGRATIONS):
            # Migration 5 rewrites the dedup index: 73 s at 1M entries (bench/dedup_scale.py's
            # database).  Say so, or a daemon upgrade looks like a hang.
            log.warning("upgrading the database schema from version %d to %d; a large "
                        "database takes a minute or more", version, len(MIGRATIONS))
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all or nothing, so a crash loses at most the refresh in flight.

    IMMEDIATE takes the write lock up front; a deferred transaction that reads first and
    writes later can fail with SQLITE_BUSY without waiting on the busy timeout.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def sync_feeds(conn: sqlite3.Connection, feeds: list[tuple[str, str]]) -> None:
    """Make sure every configured feed (name, url) has a row; a changed URL is updated.

    Rows of feeds removed from the config stay, with their entries: nothing is lost.
    """
    with transaction(conn):
        conn.executemany(
            "INSERT INTO feeds (name, url) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET url = excluded.url WHERE url != excluded.url",
            feeds,
        )


def feed_state(conn: sqlite3.Connection, name: str) -> dict:
    row = conn.execute("SELECT * FROM feeds WHERE name = ?", (name,)).fetchone()
    return dict(row) if row else {}


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
