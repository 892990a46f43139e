"""``storage.feeds.rename_feed`` beside a refresh in flight: a claimed row under either name
refuses the move, changing nothing; on both backends (``database``: a file path or a URL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scraper import storage as store
from scraper.storage import feeds as stored

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("claimed", ["old", "new"])
def test_rename_refuses_while_either_name_is_being_refreshed(database: str,
                                                             claimed: str) -> None:
    conn = store.connect(database)
    try:
        with store.transaction(conn):
            conn.execute("INSERT INTO feeds (name, url) VALUES ('old', 'https://a.example/')")
            conn.execute("INSERT INTO entries (feed, entry_key, title, fetched_at, updated_at)"
                         " VALUES ('old', 'k', 't', '2026-01-01T00:00:00Z', "
                         "'2026-01-01T00:00:00Z')")
        # A daemon that read the edited config refreshes the feed under its new name (its
        # row has no entries yet), or a refresh of the old name is in flight.
        assert claimed in stored.claim_feeds(
            conn, [(claimed, "https://a.example/", NOW + timedelta(minutes=5))],
            claimant="daemon", now=NOW, is_dead=lambda _: False)
        before = [tuple(r) for r in conn.execute("SELECT * FROM feeds ORDER BY name")]
        with pytest.raises(ValueError, match=f"'{claimed}' is being refreshed"):
            stored.rename_feed(conn, "old", "new", NOW)
        assert [tuple(r) for r in conn.execute("SELECT * FROM feeds ORDER BY name")] == before
        assert [tuple(r) for r in conn.execute("SELECT feed FROM entries")] == [("old",)]
    finally:
        conn.close()


def test_prune_refuses_while_a_feed_is_being_refreshed(database: str) -> None:
    """A daemon that has not reloaded the edited config yet may be refreshing the removed
    feed: pruning under it would see its entries stored again a moment later."""
    conn = store.connect(database)
    try:
        with store.transaction(conn):
            conn.execute("INSERT INTO entries (feed, entry_key, title, fetched_at, updated_at)"
                         " VALUES ('gone', 'k', 't', '2026-01-01T00:00:00Z', "
                         "'2026-01-01T00:00:00Z')")
        assert "gone" in stored.claim_feeds(
            conn, [("gone", "https://a.example/", NOW + timedelta(minutes=5))],
            claimant="daemon", now=NOW, is_dead=lambda _: False)
        with pytest.raises(ValueError, match="being refreshed right now: gone"):
            stored.prune_feeds(conn, ["gone"], now=NOW)
        assert [tuple(r) for r in conn.execute("SELECT feed FROM entries")] == [("gone",)]
        # once the claim has expired, it goes
        assert stored.prune_feeds(conn, ["gone"], now=NOW + timedelta(minutes=6)).entries == 1
    finally:
        conn.close()
