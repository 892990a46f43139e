"""SQLite's WAL checkpoints are spaced out on every connection the storage opens.

With SQLite's default (a checkpoint once the WAL holds 1,000 pages), a cold run wrote the
dedup key table's pages back every few commits: 24.5-26.1 s instead of 20.5-21.9 s for
1,000 feeds x 17 entries (docs/benchmarks.md).  The setting is per connection, so it is read
back from the connections ``storage`` hands out.
"""

from __future__ import annotations

from pathlib import Path

from scraper import storage

#: SQLite's own default, which a connection of ours must exceed.
SQLITE_DEFAULT_PAGES = 1000


def checkpoint_pages(conn: storage.Connection) -> int:
    return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_the_writer_and_the_readers_space_their_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "scrape.db"
    writer = storage.connect(db)
    try:
        assert checkpoint_pages(writer) > SQLITE_DEFAULT_PAGES
        # Opened beside the writer (its -wal file exists), as an export runs by the daemon.
        for write in (False, True):
            other = storage.open_existing(db, write=write)
            try:
                assert checkpoint_pages(other) > SQLITE_DEFAULT_PAGES
            finally:
                other.close()
    finally:
        writer.close()
