"""Opening the SQLite database, its schema version, and write transactions.

WAL lets readers (``scrape status``, exports) run beside the daemon's writer,
``synchronous=NORMAL`` is durable enough under WAL, and a busy timeout turns a concurrent
``scrape --once`` into a short wait instead of "database is locked".
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from scraper.storage.schema import MIGRATIONS

#: Seconds a writer waits for another writer's transaction before giving up.  A feed refresh
#: transaction takes milliseconds; 30 s covers a dedup rebuild running beside the daemon.
BUSY_TIMEOUT_MS = 30_000

#: How long a process waits for another's schema upgrade (migration 8, the dedup key table
#: rebuilt, took 244 s at 1M entries; see ``migrate``).
MIGRATION_WAIT_MS = 600_000

log = logging.getLogger(__name__)

CACHE_KIB = 16384

#: The open database every storage function takes (``connect``).  Code above storage names
#: it by this alias only, never by the driver's type, so that another backend changes this
#: line and not the callers.
Connection = sqlite3.Connection


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


def in_lists(values: Sequence[int] | Sequence[str], most: int = 512
             ) -> Iterator[tuple[str, list]]:
    """``(placeholders, parameters)`` for ``IN (...)`` over ``values``, ``most`` a statement,
    padded with the last value (``IN`` is a set) to a power of two: a shape per count filled
    SQLite's statement cache, and the daemon's memory grew with it (bench/soak.py)."""
    for start in range(0, len(values), most):
        chunk = list(values[start : start + most])
        size = 1 << (len(chunk) - 1).bit_length()
        yield ",".join("?" * size), chunk + chunk[-1:] * (size - len(chunk))


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database at ``path``."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # 16 MiB page cache (SQLite's default is 2 MB): 0.52 ms/article at 1M entries against 0.68
    # (bench/dedup_scale.py, issue 4 notes); 64 MiB measured no better.
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


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
            # Say so (see MIGRATION_WAIT_MS), or an upgrade looks like a hang.
            log.warning("upgrading the database schema from version %d to %d; a large "
                        "database takes minutes (about 4 per million entries)",
                        version, len(MIGRATIONS))
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
