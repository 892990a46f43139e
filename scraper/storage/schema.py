"""The schema: every table, as one ordered list of migrations for both backends."""

from __future__ import annotations

from typing import NamedTuple


class Step(NamedTuple):
    """One migration: its SQLite script and its PostgreSQL script ("" when the step has
    nothing to do there).  The PostgreSQL backend came after step 11: its first step
    creates the whole schema of that release at once, and steps 2-11 are empty there."""

    sqlite: str
    postgresql: str = ""


# 12: the processes working on this database (issue 21), one row each, written at each
# heartbeat: ``scrape status`` lists those alive and the feeds each holds (its claims in
# ``feeds.claimed_by``, which names the process the same way).
_WORKERS = """
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    heartbeat_interval REAL NOT NULL,
    version TEXT NOT NULL
);
"""

# 13: the hash of the last feed document whose entries were stored (issue 18): a 200 that
# sends the same document again is answered as a 304 is, with no parse and no worker
# (bench/poll.py --no-304, 1,000 feeds: 3.1-3.8 ms of CPU a poll before, 1.5-1.6 after; a
# 304 1.5 in the same session).
_BODY_HASH = """
ALTER TABLE feeds ADD COLUMN body_hash TEXT;
"""

# 14: placeholder dates taken back.  Go's zero time (0001-01-01, which Hugo writes for an
# undated page) was stored as "1-01-01T00:00:00Z" (strftime pads no year before 1000), which
# no ISO reader takes: every export of the database failed on it.  The parser now reads a
# date before 1970-01-02 as none (``core.parse._stamp``); this does the same for the rows
# stored before: those before it byte by byte, and those whose year is not four digits
# ('202-05-01...' sorts after '1970').
_PLACEHOLDER_DATES = """
UPDATE entries SET published = NULL
    WHERE published < '1970-01-02' OR substr(published, 5, 1) <> '-';
"""

# Each migration runs once, in order, inside one transaction; the list index + 1 is the
# schema version (SQLite: PRAGMA user_version; PostgreSQL: the schema_version table).
# Append, never edit a released entry.
_SQLITE: list[str] = [
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
    # 5-7: a two-level key index with Bloom filters, since replaced by migration 8.
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
    # 6: each fingerprint names its cluster root, so that candidates are grouped by cluster
    # without reading their ``entries`` rows (duplicate_of lies past the content).  NULL for
    # rows linked before: those are read from ``entries`` until a rebuild or a re-link.
    """
ALTER TABLE dedup_fingerprints ADD COLUMN root INTEGER;
""",
    """
CREATE TABLE dedup_filters (
    bucket INTEGER PRIMARY KEY,
    keys INTEGER NOT NULL,
    bits BLOB NOT NULL
);
ALTER TABLE dedup_state ADD COLUMN filtered_seq INTEGER NOT NULL DEFAULT -1;
""",
    # 8: one plain key index (issue 15): dedup_index holds the keys of the entries inside the
    # dedup window; entries below dedup_window.pruned_below have aged out and have none.
    # Every stored fingerprint is indexed here (the window is a setting, unknown to SQL) and
    # the next links prune what lies outside.  The keys come from each row's blob (int64,
    # little-endian), a hex pair per byte, inserted in key order so that the B-tree is written
    # sequentially.  Migration 5's seq column stays, unused (dropping it rewrites the table).
    # ``arrived`` is the entry's fetched_at, kept beside its fingerprint for the window's
    # arrival rule: in ``entries`` it lies past the article's text, and reading it there walks
    # every overflow page of the row (bench/ingest.py cold: 10.8 s against 8.5 without it).
    """
DROP TABLE dedup_postings;
DROP TABLE dedup_filters;
DROP TABLE dedup_state;
DROP INDEX dedup_fingerprints_seq;
ALTER TABLE dedup_fingerprints ADD COLUMN arrived TEXT;
UPDATE dedup_fingerprints SET arrived =
    (SELECT fetched_at FROM entries WHERE entries.id = dedup_fingerprints.entry_id);
CREATE TABLE dedup_window (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_below INTEGER NOT NULL
);
INSERT INTO dedup_window (id, pruned_below) VALUES (1, 0);
CREATE TABLE dedup_index (
    key INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (key, entry_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO dedup_index (key, entry_id)
WITH RECURSIVE words(entry_id, keys, i) AS (
    SELECT entry_id, keys, 0 FROM dedup_fingerprints WHERE length(keys) >= 8
    UNION ALL SELECT entry_id, keys, i + 8 FROM words WHERE i + 16 <= length(keys)
), hexed AS (SELECT entry_id, hex(substr(keys, i + 1, 8)) AS h FROM words)
SELECT
    ((instr('0123456789ABCDEF', substr(h, 1, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 2, 1)) - 17) << 0)
  | ((instr('0123456789ABCDEF', substr(h, 3, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 4, 1)) - 17) << 8)
  | ((instr('0123456789ABCDEF', substr(h, 5, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 6, 1)) - 17) << 16)
  | ((instr('0123456789ABCDEF', substr(h, 7, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 8, 1)) - 17) << 24)
  | ((instr('0123456789ABCDEF', substr(h, 9, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 10, 1)) - 17) << 32)
  | ((instr('0123456789ABCDEF', substr(h, 11, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 12, 1)) - 17) << 40)
  | ((instr('0123456789ABCDEF', substr(h, 13, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 14, 1)) - 17) << 48)
  | ((instr('0123456789ABCDEF', substr(h, 15, 1)) * 16
      + instr('0123456789ABCDEF', substr(h, 16, 1)) - 17) << 56)
  AS key, entry_id FROM hexed ORDER BY 1, 2;
""",
    # 9: full-text search over each entry's title and cleaned text (issue 20: `scrape
    # search`).  An external-content FTS5 table (the text is not stored twice) kept in step
    # by triggers, written as sqlite-utils' ``enable_fts(create_triggers=True)`` writes it
    # (its call runs executescript, which would commit this migration's transaction midway):
    # the same table and trigger names, so sqlite-utils and Datasette recognise the index;
    # Datasette detects it by the ``content="entries"`` in this statement (its
    # ``detect_fts_sql``).  Unlike sqlite-utils' update trigger, this one fires only when the
    # title or text is written, not at every dedup link (``UPDATE ... SET duplicate_of``).
    # The trigram tokenizer (SQLite 3.34) matches any substring of three characters or more,
    # Chinese included, where unicode61 takes a whole Chinese clause for one word.  The index
    # costs the writer about 1 ms per entry of 850 characters (bench/search.py); merging its
    # segments at most 16 at a time instead of 4 (automerge) took 0.95 ms a entry instead of
    # 1.29 in transactions of 30 entries (a feed's), queries alike.  The rebuild indexes the
    # rows already stored.  ``entries_newest`` is the order search and list show (published,
    # else first seen; fetched_at lies past the row's HTML): the newest 50 of 100,000 entries
    # in 1 ms instead of 146 ms, read from the index instead of every row (bench/search.py).
    """
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    title, content_text,
    tokenize="trigram",
    content="entries", content_rowid="id"
);
CREATE TRIGGER entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, title, content_text)
        VALUES (new.id, new.title, new.content_text);
END;
CREATE TRIGGER entries_ad AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, content_text)
        VALUES ('delete', old.id, old.title, old.content_text);
END;
CREATE TRIGGER entries_au AFTER UPDATE OF title, content_text ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, content_text)
        VALUES ('delete', old.id, old.title, old.content_text);
    INSERT INTO entries_fts (rowid, title, content_text)
        VALUES (new.id, new.title, new.content_text);
END;
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 16);
INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');
CREATE INDEX entries_newest ON entries(COALESCE(published, fetched_at));
""",
    # 10: same-story grouping (issue 19): entries that report one event in different words
    # share ``story`` (an integer: the id of the cluster root that started it; NULL for none).
    # ``duplicate_of`` stays for reprints.  Few entries have a story: a partial index.
    """
ALTER TABLE entries ADD COLUMN story INTEGER;
CREATE INDEX entries_story ON entries(story) WHERE story IS NOT NULL;
""",
    # 11: the daemon's tick (issue 18): ``claim_due`` reads the due rows in claim order and
    # the claimed rows, not every feed (it read them all: 205-242 ms a call at 100,000 feeds,
    # bench/poll.py).  ``(next_due_at, name)`` is the claim order; few rows hold a claim at
    # once (the processes' refreshes in flight): a partial index.
    """
CREATE INDEX feeds_due ON feeds(next_due_at, name);
CREATE INDEX feeds_claimed ON feeds(claimed_by) WHERE claimed_by IS NOT NULL;
""",
    _WORKERS,
    _BODY_HASH,
    _PLACEHOLDER_DATES,
]

# The schema of step 11 on PostgreSQL, in its types: ids are identities (``db copy`` sets
# them explicitly and moves the sequence on), blobs are BYTEA, scores DOUBLE PRECISION; the
# times stay ISO 8601 text, which both backends compare alike.  Search uses pg_trgm (a
# trusted extension since PostgreSQL 13: the database's owner may create it): its GIN
# indexes answer ILIKE '%...%' for any substring of three characters or more, Chinese
# included, as SQLite's trigram FTS5 table does.
_POSTGRESQL_FIRST = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
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
    cache_max_age BIGINT,
    ttl BIGINT,
    claimed_by TEXT,
    claimed_until TEXT,
    entry_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX feeds_due ON feeds(next_due_at, name);
CREATE INDEX feeds_claimed ON feeds(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE TABLE entries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    duplicate_of BIGINT REFERENCES entries(id),
    dup_method TEXT,
    dup_score DOUBLE PRECISION,
    story BIGINT,
    UNIQUE (feed, entry_key)
);
CREATE INDEX entries_published ON entries(published);
CREATE INDEX entries_duplicate_of ON entries(duplicate_of);
CREATE INDEX entries_newest ON entries((COALESCE(published, fetched_at)));
CREATE INDEX entries_story ON entries(story) WHERE story IS NOT NULL;
CREATE INDEX entries_title_trgm ON entries USING gin (title gin_trgm_ops);
CREATE INDEX entries_text_trgm ON entries USING gin (content_text gin_trgm_ops);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE exports (
    target TEXT NOT NULL,
    entry_id BIGINT NOT NULL REFERENCES entries(id),
    path TEXT,
    content_hash TEXT,
    exported_at TEXT NOT NULL,
    PRIMARY KEY (target, entry_id)
);
CREATE TABLE dedup_fingerprints (
    entry_id BIGINT PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
    ts BIGINT NOT NULL,
    canonical_url TEXT,
    text_hash TEXT NOT NULL,
    title TEXT NOT NULL,
    length INTEGER NOT NULL,
    keys BYTEA NOT NULL,
    sketch BYTEA,
    shingles INTEGER,
    root BIGINT,
    arrived TEXT
);
CREATE TABLE dedup_window (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_below BIGINT NOT NULL
);
INSERT INTO dedup_window (id, pruned_below) VALUES (1, 0);
CREATE TABLE dedup_index (
    key BIGINT NOT NULL,
    entry_id BIGINT NOT NULL,
    PRIMARY KEY (key, entry_id)
);
"""

MIGRATIONS: list[Step] = [
    Step(_SQLITE[0], _POSTGRESQL_FIRST),
    *(Step(script) for script in _SQLITE[1:11]),
    Step(_WORKERS, _WORKERS.replace("REAL", "DOUBLE PRECISION")),
    Step(_BODY_HASH, _BODY_HASH),
    Step(_PLACEHOLDER_DATES, _PLACEHOLDER_DATES.replace("published <", 'published COLLATE "C" <')),
]
assert len(MIGRATIONS) == len(_SQLITE)
