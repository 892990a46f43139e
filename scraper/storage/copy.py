"""``scrape db copy``: an SQLite database's rows into an empty PostgreSQL database.

For a user who moves up (issue 21): every entry keeps its id, so dedup links, stories,
export records and the ids people wrote down stay valid.  The source is read in one read
transaction (one snapshot, even beside a running daemon) and never written; the destination
is written in one transaction, so a copy that fails leaves it as empty as it was.  Each
table's count is checked against the source's before the commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from scraper.storage.db import Connection, database_path, transaction
from scraper.storage.errors import DatabaseError
from scraper.storage.pg import PgConnection

#: The tables copied, in an order that satisfies the foreign keys (entries before the rows
#: that name them), each with the order it is read in: its primary key, so entries arrive
#: in id order and every index is written in its own order.
TABLES: tuple[tuple[str, str], ...] = (
    ("feeds", "name"),
    ("entries", "id"),
    ("meta", "key"),
    ("exports", "target, entry_id"),
    ("dedup_fingerprints", "entry_id"),
    ("dedup_index", "key, entry_id"),
    ("dedup_window", "id"),
    ("workers", "name"),
)

#: SQLite's tables that PostgreSQL does without: the FTS5 index (search uses pg_trgm's
#: indexes on ``entries`` there) and its shadow tables, and SQLite's own.
SQLITE_ONLY_PREFIXES = ("entries_fts", "sqlite_")

#: Columns the SQLite schema still has but no longer uses (schema.py, migration 8 kept
#: ``seq`` rather than rewrite the table); PostgreSQL's schema never had them.
DROPPED_COLUMNS = {("dedup_fingerprints", "seq")}

#: Tables PostgreSQL's migration already filled with their one row (the dedup window's
#: start): replaced by the source's.
SEEDED = ("dedup_window",)

#: Rows read from SQLite at a time, between two progress reports: a few MB of articles.
BATCH = 1000

#: ``progress(table, rows done, rows in the table)`` after each batch.
Progress = Callable[[str, int, int], None]


def copy_database(source: Connection, target: Connection,
                  progress: Progress | None = None) -> dict[str, int]:
    """Copy every table of ``source`` (an open SQLite database of this release's schema)
    into ``target`` (a migrated, empty PostgreSQL database); the rows copied per table.

    A DatabaseError, with ``target`` unchanged, when it is not empty, when the schemas do
    not match, or when PostgreSQL refuses a row."""
    if not isinstance(source, sqlite3.Connection) or not isinstance(target, PgConnection):
        raise TypeError("copy_database: from SQLite to PostgreSQL")
    source.execute("BEGIN")  # one snapshot of every table
    try:
        columns = _columns(source, target)
        counts = {table: _count(source, table) for table, _ in TABLES}
        at = ""
        try:
            with transaction(target):
                _lock_and_check_empty(target)
                for table, order in TABLES:
                    at = f"table {table}: "
                    _copy_table(source, target, table, order, columns[table], counts[table],
                                progress)
                at = ""
                _move_identity_on(target)
                copied = {table: _count(target, table) for table, _ in TABLES}
                if copied != counts:
                    wrong = ", ".join(f"{t} {copied[t]} of {counts[t]}" for t in counts
                                      if copied[t] != counts[t])
                    raise DatabaseError(f"{target.url}: the copy's counts differ from the "
                                        f"source's ({wrong}); nothing was copied")
        except DatabaseError:
            raise
        except Exception as exc:  # the driver's: a row PostgreSQL refuses
            if not type(exc).__module__.startswith("psycopg"):
                raise
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseError(f"{target.url}: {at}{detail}; nothing was copied") from None
    finally:
        source.execute("ROLLBACK")
    # The new rows' statistics for the planner, and the trigram indexes' pending lists
    # merged: right after a bulk insert the planner chose a Seq Scan for a search (97 ms at
    # 5,000 entries, 0.1 ms through the index after this; storage/search.py).
    target.execute(f"VACUUM (ANALYZE) {', '.join(t for t, _ in TABLES)}")
    return counts


def _columns(source: sqlite3.Connection, target: PgConnection) -> dict[str, list[str]]:
    """Each table's columns, PostgreSQL's order; a DatabaseError when the source has a
    table or column that the copy would leave behind (a schema this code does not know)."""
    names = {t for t, _ in TABLES}
    tables = [r[0] for r in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    unknown = [t for t in tables if t not in names and not t.startswith(SQLITE_ONLY_PREFIXES)]
    if unknown:
        raise DatabaseError(f"{database_path(source)}: tables this release cannot copy: "
                            f"{', '.join(unknown)}")
    out: dict[str, list[str]] = {}
    for table, _ in TABLES:
        theirs = [r[0] for r in target.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? "
            "ORDER BY ordinal_position", (table,))]
        ours = {r[1] for r in source.execute(f"PRAGMA table_info({table})")}
        ours -= {c for t, c in DROPPED_COLUMNS if t == table}
        if ours != set(theirs):
            raise DatabaseError(f"{target.url}: table {table} has other columns than "
                                f"{database_path(source)}'s (missing: "
                                f"{', '.join(sorted(ours - set(theirs))) or 'none'}; extra: "
                                f"{', '.join(sorted(set(theirs) - ours)) or 'none'})")
        out[table] = theirs
    return out


def _lock_and_check_empty(target: PgConnection) -> None:
    """Hold the tables (readers still read; a daemon's writes wait, a second copy too) and
    refuse a database that holds anything: the copy keeps the source's ids and names,
    which would meet the rows there."""
    target.execute(f"LOCK TABLE {', '.join(t for t, _ in TABLES)} IN EXCLUSIVE MODE")
    held = {table: n for table, _ in TABLES if table not in SEEDED
            and (n := _count(target, table))}
    if held:
        what = ", ".join(f"{n} rows in {t}" for t, n in held.items())
        raise DatabaseError(f"{target.url}: not empty ({what}); scrape db copy fills an "
                            "empty database only (createdb a new one)")


def _copy_table(source: sqlite3.Connection, target: PgConnection, table: str, order: str,
                columns: list[str], total: int, progress: Progress | None) -> None:
    if table in SEEDED:
        target.execute(f"DELETE FROM {table}")
    names = ", ".join(columns)
    forward: list[tuple[int, int]] = []
    done = 0
    # COPY, PostgreSQL's bulk load: 160,000 dedup_index rows in 0.3-0.5 s against 3.5-4.4 s
    # through executemany (pipelined, 1,000 a call), measured here; a million entries have
    # some 30 million.  The entries' trigram indexes cost the same either way (building
    # them after the load instead measured slower).
    with target.raw.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for rows in _batches(source, f"SELECT {names} FROM {table} ORDER BY {order}"):
            if table == "entries":
                rows = _hold_forward_links(rows, columns, forward)
            for row in rows:
                copy.write_row(row)
            done += len(rows)
            if progress:
                progress(table, done, total)
    # A link to a later id (a newer entry that took its cluster over) waited until that
    # entry was stored: the foreign key is checked at each statement.
    if forward:
        target.executemany("UPDATE entries SET duplicate_of = ? WHERE id = ?", forward)
    if progress and not total:
        progress(table, 0, 0)


def _hold_forward_links(rows: list[tuple[Any, ...]], columns: list[str],
                        forward: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
    """The rows with each ``duplicate_of`` that names a later id set aside in ``forward``
    as (duplicate_of, id); links to earlier ids are stored as they are (rows come in id
    order, so their target is there already)."""
    key, link = columns.index("id"), columns.index("duplicate_of")
    out = []
    for row in rows:
        if row[link] is not None and row[link] > row[key]:
            forward.append((row[link], row[key]))
            row = (*row[:link], None, *row[link + 1:])
        out.append(row)
    return out


def _batches(source: sqlite3.Connection, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    cursor = source.cursor()
    cursor.row_factory = None  # plain tuples, as COPY takes them
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(BATCH):
            yield rows
    finally:
        cursor.close()


def _move_identity_on(target: PgConnection) -> None:
    """The ids were given, not drawn: the next entry stored takes the one after the
    largest (PostgreSQL's identity would start at 1 and meet the copied ids)."""
    target.execute("SELECT setval(pg_get_serial_sequence('entries', 'id'), "
                   "COALESCE(max(id), 1), max(id) IS NOT NULL) FROM entries")


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
