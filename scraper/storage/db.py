"""Opening the SQLite database, its schema version, and write transactions.

WAL lets readers (``scrape status``, exports) run beside the daemon's writer,
``synchronous=NORMAL`` is durable enough under WAL (a power failure may take back the
commits since the last checkpoint, whole: their feeds' validators go with them, so those
feeds are fetched again), and a busy timeout turns a concurrent ``scrape --once`` into a
short wait instead of "database is locked".

Commands that only look (``status``, ``dups``) open the file read-only (``open_existing``)
and never migrate it, so they work on a backup, a read-only volume or another user's file.
Every problem with the file itself is a ``DatabaseError``: one line naming the file.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from scraper.storage import pg
from scraper.storage.errors import (
    BUSY_TIMEOUT_ENV,
    BUSY_TIMEOUT_MS,
    DatabaseError,
    DatabaseLocked,
    NoDatabase,
    busy_timeout_ms,
    locked,
)
from scraper.storage.pg import PgConnection
from scraper.storage.schema import MIGRATIONS

__all__ = ["BUSY_TIMEOUT_ENV", "BUSY_TIMEOUT_MS", "DatabaseError", "DatabaseLocked",
           "NoDatabase", "busy_timeout_ms", "locked"]

#: How long a process waits for another's schema upgrade (migration 8, the dedup key table
#: rebuilt, took 244 s at 1M entries; see ``migrate``).
MIGRATION_WAIT_MS = 600_000

log = logging.getLogger(__name__)

CACHE_KIB = 16384

#: Pages the WAL may hold before a commit copies them into the database (SQLite's default is
#: 1,000: 4 MiB), on every connection (an export's bookkeeping commits too).  A cold run's
#: transactions each dirty some 300 pages of the dedup key table at random, and every
#: checkpoint wrote them all back: a cold ``scrape --once`` of 1,000 feeds x 17 entries
#: (bench/poll.py's feeds) took 24.5-26.1 s at 1,000 pages, 23.0 s at 3,000, 20.5-21.9 s at
#: 10,000 and 21.1 s at 30,000, the same CPU (efe5cb7, alternated).  The WAL file keeps its
#: largest size until the last connection closes: 40 MiB, or more when one transaction
#: writes more (an FTS5 segment merge: 66 MiB after that cold run, 57 MiB at 1,000 pages).
WAL_AUTOCHECKPOINT_PAGES = 10_000

#: The open database every storage function takes (``connect``): SQLite's, or PostgreSQL's
#: (``pg.PgConnection``, which answers the same calls).  Code above storage names it by this
#: alias only, never by the driver's type.
Connection = sqlite3.Connection | PgConnection

#: The advisory lock (a number of our choosing) that the first process to open a PostgreSQL
#: database holds while it migrates; the others wait for it, as SQLite's wait on BEGIN
#: IMMEDIATE.
_MIGRATION_LOCK = 0x5C4A_0001


#: The oldest SQLite that runs our statements: 3.35 for ``INSERT ... RETURNING``
#: (storage.entries), 3.34 for the trigram search table (migration 9).
SQLITE_AT_LEAST = (3, 35)


def is_pg(conn: Connection) -> bool:
    """Is ``conn`` PostgreSQL's?  The few statements the dialects write differently ask."""
    return isinstance(conn, PgConnection)


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


def connect(path: str | Path, *, create: bool = True) -> Connection:
    """Open the database at ``path`` for writing (creating the file if ``create``; never its
    folder: a mistyped ``--db`` must not start a second database) and migrate it.  A
    ``postgresql://`` URL opens that database (which must exist: ``createdb``)."""
    if pg.is_url(path):
        return _connect_pg(str(path))
    path = Path(path)
    if sqlite3.sqlite_version_info < SQLITE_AT_LEAST:
        raise DatabaseError(f"{path}: this Python's SQLite is {sqlite3.sqlite_version}; "
                            "scrape needs 3.35 or later (a newer Python, or PostgreSQL)")
    _check_path(path, create=create)
    try:
        conn, version = _open(f"{path.resolve().as_uri()}?mode=rwc")
    except sqlite3.Error as exc:
        raise problem(path, exc) from None
    try:
        # The version first: a newer release's file, or one that is not a database, is
        # refused before anything (journal mode, schema) writes to it.
        _check_version(path, version, reading=False)
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
        if not writable(conn):
            raise DatabaseError(f"{path}: cannot be written (a read-only file, folder or "
                                "file system); the read commands (status, dups, export) "
                                "can still read it")
    except sqlite3.Error as exc:
        conn.close()
        raise problem(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL.  The switch needs the file to itself and SQLite answers SQLITE_BUSY at
    once, without its busy handler, while another process opens the same new file (two
    daemons started together failed 1 time in 5 here), so it is retried up to the busy
    timeout.  A database already in WAL needs no switch."""
    deadline = time.monotonic() + busy_timeout_ms() / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_existing(path: str | Path, *, write: bool = False) -> Connection:
    """Open an existing database without migrating it: read-only, or with ``write`` for
    writing when the file allows it and read-only when not (an export's bookkeeping is
    optional; ``writable`` says which it got).  Its schema must be this release's."""
    if pg.is_url(path):
        return _open_existing_pg(str(path), write=write)
    path = Path(path)
    _check_path(path, create=False)
    uri = path.resolve().as_uri()
    try:
        if not Path(f"{path}-wal").exists():
            # Nobody has it open: its version is read without the -wal and -shm files a
            # reader of a WAL database creates and, read-only, cannot remove; so a database
            # refused here is left exactly as it was (see below for immutable).
            probe, version = _open(f"{uri}?mode=ro&immutable=1")
            probe.close()
            _check_version(path, version, reading=True)
        for mode in ("rw", "ro") if write else ("ro",):
            try:
                conn, version = _open(f"{uri}?mode={mode}")
                break
            except sqlite3.OperationalError as exc:
                if not _no_shared_memory(exc) or Path(f"{path}-wal").exists():
                    raise
        else:
            # A WAL database needs its -shm file, which a reader cannot create in a folder
            # it may not write (SQLite's wal.html, "Read-Only Databases").  No -wal file
            # means no process has the database open (the last to close removes it), so
            # the main file holds every commit and is read as immutable: no locks, no -shm.
            # That is not safe beside a live writer: one that starts during this read (as
            # a user who may write the folder) could checkpoint pages under it, and the
            # read would fail with an error (it never writes).  Refusing instead would
            # leave backups and read-only volumes unreadable, the case this is for.
            conn, version = _open(f"{uri}?mode=ro&immutable=1")
    except sqlite3.Error as exc:
        raise problem(path, exc) from None
    try:
        _check_version(path, version, reading=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_path(path: Path, *, create: bool) -> None:
    if path.is_dir():
        raise DatabaseError(f"{path}: is a folder, not a database file")
    if path.exists():
        return
    if not create:
        raise NoDatabase(path)
    if not path.parent.is_dir():
        raise DatabaseError(f"{path}: the folder {path.parent} does not exist (scrape "
                            "creates the database file, not its folder)")


def _open(uri: str) -> tuple[sqlite3.Connection, int]:
    """Connect to ``uri`` (``file:`` with its mode), set it up and read its schema version:
    the first read, where a file that is not a database or cannot be read fails (with the
    driver's error, which the callers word)."""
    timeout = busy_timeout_ms()
    conn = sqlite3.connect(uri, uri=True, timeout=timeout / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {timeout}")
        # 16 MiB page cache (SQLite's default is 2 MB): 0.52 ms/article at 1M entries against
        # 0.68 (bench/dedup_scale.py, issue 4 notes); 64 MiB measured no better.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        return conn, schema_version(conn)
    except BaseException:
        conn.close()
        raise


def _no_shared_memory(exc: sqlite3.Error) -> bool:
    """The error a WAL database gives a reader that cannot create its -shm file."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_READONLY_DIRECTORY",
                                                     "SQLITE_CANTOPEN")


def _connect_pg(url: str) -> PgConnection:
    conn = pg.open_connection(url)
    try:
        migrate(conn)
        if not writable(conn):
            raise DatabaseError(f"{conn.url}: cannot be written (this role may only read "
                                "some tables); the read commands (status, dups, export) "
                                "can still read it")
    except BaseException:
        conn.close()
        raise
    return conn


def _open_existing_pg(url: str, *, write: bool) -> PgConnection:
    """A read-only session unless ``write``: PostgreSQL refuses its writes as SQLite's
    read-only open does."""
    conn = pg.open_connection(url, read_only=not write)
    try:
        _check_version(conn.url, schema_version(conn), reading=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(path: Path | str, version: int, *, reading: bool) -> None:
    latest = len(MIGRATIONS)
    if version > latest:
        raise DatabaseError(f"{path}: made by a newer release of scrape (schema version "
                            f"{version}, this release knows up to {latest}); upgrade scrape "
                            "to use it (the file was not changed)")
    if reading and version < latest:
        what = ("holds no scrape tables yet" if version == 0 else
                f"has schema version {version}, older than this release's {latest}")
        raise DatabaseError(f"{path}: {what}: run `scrape --once` (or start the daemon) to "
                            "upgrade it; this command only reads and did not change it")


def problem(path: str | Path, exc: sqlite3.Error) -> DatabaseError:
    """The driver's error as one line naming the file and what is wrong with it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_NOTADB":
        return DatabaseError(f"{path}: not an SQLite database")
    if name.startswith("SQLITE_CORRUPT"):
        return DatabaseError(f"{path}: damaged ({exc})")
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return locked(path)
    if name == "SQLITE_READONLY_DIRECTORY":
        return DatabaseError(f"{path}: its folder may not be written (a read-only folder "
                             "or file system), and SQLite needs to create the database's "
                             "-wal and -shm files there")
    if name.startswith("SQLITE_READONLY"):
        return DatabaseError(f"{path}: cannot be written (a read-only file, folder or file "
                             "system)")
    if name.startswith("SQLITE_CANTOPEN"):
        return DatabaseError(f"{path}: cannot be opened (check that it is a file this user "
                             "may read, in a folder it may enter)")
    return DatabaseError(f"{path}: {exc}")


def writable(conn: Connection) -> bool:
    """Can ``conn`` write?  SQLite opens a file it may not write read-only without a word
    and says so only at the first write, so a write is tried and rolled back (the main file
    is not touched)."""
    if isinstance(conn, PgConnection):
        # A role may be granted less than the owner (a reporting user may only SELECT): it
        # writes as from a read-only file.  The tables every write command writes, and the
        # temporary table an export stages its records in.
        return not conn.read_only and bool(conn.execute(
            "SELECT bool_and(has_table_privilege(t, 'INSERT') AND has_table_privilege(t, "
            "'UPDATE') AND has_table_privilege(t, 'DELETE')) AND "
            "has_database_privilege(current_database(), 'TEMP') "
            "FROM unnest(ARRAY['entries', 'feeds', 'exports']) AS t").fetchone()[0])
    _begin(conn)
    try:
        conn.execute("DELETE FROM meta WHERE 0")
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
            return False
        raise problem(database_path(conn), exc) from None
    finally:
        conn.execute("ROLLBACK")
    return True


def file_identity(conn: Connection) -> tuple[str, int, int] | None:
    """The SQLite file's path, device and inode; None for PostgreSQL, or when no file is
    there.  ``scrape`` running on a file deleted or replaced since it opened it (``rm
    scrape.db``) stores into an inode nobody can open again: ``same_file`` compares the
    path's file now with this (found in review)."""
    if isinstance(conn, PgConnection):
        return None
    path = database_path(conn)
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (path, st.st_dev, st.st_ino)


def same_file(identity: tuple[str, int, int]) -> bool:
    """Is the file at ``identity``'s path still the one it names?  (No database call: the
    daemon asks from its event loop, and every statement runs on its database thread.)"""
    path, device, inode = identity
    try:
        st = Path(path).stat()
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def database_path(conn: Connection) -> str:
    """The file the connection reads and writes, for messages and the daemon's start line
    (PostgreSQL's URL, its password hidden)."""
    if isinstance(conn, PgConnection):
        return conn.url
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "?"


def schema_version(conn: Connection) -> int:
    if isinstance(conn, PgConnection):
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: Connection) -> None:
    """Bring the schema up to date; safe when several processes start at once."""
    if schema_version(conn) >= len(MIGRATIONS):
        return
    if isinstance(conn, PgConnection):
        _migrate_pg(conn)
        return
    # BEGIN IMMEDIATE takes the write lock first, so two processes never both migrate.  The
    # second waits for the first's upgrade, which can take longer than the busy timeout.
    conn.execute(f"PRAGMA busy_timeout = {MIGRATION_WAIT_MS}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
    try:
        version = schema_version(conn)
        if 0 < version < len(MIGRATIONS):
            # Say so (see MIGRATION_WAIT_MS), or an upgrade looks like a hang.
            log.warning("upgrading the database schema from version %d to %d; a large "
                        "database takes minutes (about 10 per million entries)",
                        version, len(MIGRATIONS))
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(step.sqlite):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate_pg(conn: PgConnection) -> None:
    """PostgreSQL's migration: the first process takes the advisory lock and migrates; the
    others wait on the lock (up to MIGRATION_WAIT_MS), then find the schema up to date."""
    with pg.transaction(conn):
        conn.execute(f"SET LOCAL lock_timeout = {MIGRATION_WAIT_MS}")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = schema_version(conn)
        _check_version(conn.url, version, reading=False)
        if 0 < version < len(MIGRATIONS):
            log.warning("upgrading the database schema from version %d to %d",
                        version, len(MIGRATIONS))
        for step in MIGRATIONS[version:]:
            for statement in _statements(step.postgresql):
                conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))


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
def transaction(conn: Connection) -> Iterator[Connection]:
    """One write transaction: all or nothing, so a crash loses at most the refresh in flight.

    IMMEDIATE takes the write lock up front; a deferred transaction that reads first and
    writes later can fail with SQLITE_BUSY without waiting on the busy timeout.  Past the
    timeout it raises DatabaseLocked, which names the file.  PostgreSQL's is ``pg``'s.
    """
    if isinstance(conn, PgConnection):
        with pg.transaction(conn):
            yield conn
        return
    _begin(conn)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def _begin(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
            raise locked(database_path(conn)) from None
        raise
