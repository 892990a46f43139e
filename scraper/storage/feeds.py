"""The ``feeds`` table: one row per configured feed, its fetch state and its claim."""

from __future__ import annotations

import sqlite3

from scraper.storage.db import transaction


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
