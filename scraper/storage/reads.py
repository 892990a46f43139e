"""Read-only views for the commands that look at the database (``scrape status``, the merged
feed's source links): the feed rows and the entry totals."""

from __future__ import annotations

from typing import Any

from scraper.storage.db import Connection, is_pg


def feed_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every feed's stored state, by name (in code point order on both backends: SQLite's
    BINARY; PostgreSQL's "C", where the database's own collation may fold case or skip
    punctuation); feeds since removed from the config included."""
    order = 'name COLLATE "C"' if is_pg(conn) else "name"
    return [dict(row) for row in conn.execute(f"SELECT * FROM feeds ORDER BY {order}")]


def entry_totals(conn: Connection) -> tuple[int, int]:
    """(entries stored, of which linked as duplicates)."""
    row = conn.execute(
        "SELECT COUNT(*), COUNT(duplicate_of) FROM entries").fetchone()
    return int(row[0]), int(row[1])
