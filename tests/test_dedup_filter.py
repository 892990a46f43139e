"""The postings' Bloom filters in dedup: they must hold every merged key, be built for a
database that has none, follow another process's merges, and change no link."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus_posts, post_link
from test_dedup import ARTICLE, OTHER, SETTINGS, T0, add, link, link_of, post_text
from test_dedup_index import reprint

from scraper import bloom, dedup
from scraper import storage as store
from scraper.dedup import link_entries


def stored_filters(conn: sqlite3.Connection) -> dict[int, bloom.Filter]:
    return {r[0]: bloom.Filter.from_blob(r[2], r[1])
            for r in conn.execute("SELECT bucket, keys, bits FROM dedup_filters")}


def assert_filters_hold_every_posting(conn: sqlite3.Connection) -> None:
    filters = stored_filters(conn)
    by_bucket: dict[int, list[int]] = {}
    for bucket, key in conn.execute("SELECT bucket, key FROM dedup_postings"):
        by_bucket.setdefault(bucket, []).append(key)
    assert by_bucket, "no postings: nothing was tested"
    for bucket, keys in by_bucket.items():
        assert bucket in filters, bucket
        assert filters[bucket].select(keys, bloom.probes(keys)) == keys, bucket


def test_every_merged_key_is_in_its_buckets_filter(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 3)
    conn = store.connect(tmp_path / "db")
    ids = [add(conn, f"T{i}", reprint(i) if i % 2 else OTHER.replace("毫米", f"米{i}", 1),
               feed=f"f{i}", when=T0 + timedelta(days=20 * i)) for i in range(12)]
    for entry_id in ids:
        link(conn, [entry_id])
    assert len({r[0] for r in conn.execute("SELECT bucket FROM dedup_postings")}) >= 5
    assert_filters_hold_every_posting(conn)


def test_a_database_without_filters_builds_them_and_still_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Postings written before migration 7 have no filter: the first lookup builds it."""
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    path = tmp_path / "db"
    conn = store.connect(path)
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    conn.execute("DELETE FROM dedup_filters")
    conn.close()
    conn = store.connect(path)
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [b])
    assert link_of(conn, b)[:2] == (a, "near")
    assert_filters_hold_every_posting(conn)


def test_a_merge_into_a_bucket_without_a_filter_builds_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    conn = store.connect(tmp_path / "db")
    link(conn, [add(conn, "原文", ARTICLE)])
    conn.execute("DELETE FROM dedup_filters")
    conn._dedup_tail.filters.clear()
    link(conn, [add(conn, "另一篇", OTHER, feed="b")])  # merged into the same bucket
    assert_filters_hold_every_posting(conn)


def test_another_connections_merge_reaches_this_ones_filters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``second`` has read the bucket's filter; ``first`` then merges a new story into that
    bucket.  ``second`` must not skip the new story's keys on its old copy of the filter."""
    path = tmp_path / "db"
    first = store.connect(path)
    second = store.connect(path)
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)  # first merges at every call
    link(first, [add(first, "旧闻", OTHER, feed="x")])
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)  # second never does
    link(second, [add(second, "另一条", OTHER.replace("毫米", "公里", 3), feed="y")])
    assert second._dedup_tail.filters  # read for that lookup, and kept
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    a = add(first, "原文", ARTICLE, feed="a")
    link(first, [a])  # merged at once, into the bucket second holds a filter of
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)
    c = add(second, "转载", reprint(1), feed="c")
    link(second, [c])
    assert link_of(second, c)[:2] == (a, "near")
    first.close()
    second.close()


def corpus_linked_one_by_one(path: Path) -> list[tuple]:
    conn = store.connect(path)
    with store.transaction(conn):
        ids = [add(conn, post.title, post_text(post), feed=post.site, url=post_link(post),
                   when=post.date, key=post.slug) for post in corpus_posts()]
    for entry_id in ids:
        link(conn, [entry_id])
    rows = [tuple(r) for r in conn.execute(
        "SELECT id, duplicate_of, dup_method, dup_score FROM entries ORDER BY id")]
    conn.close()
    return rows


def test_filters_change_no_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus linked with the filters skipping keys, and with every key sought."""
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 2)
    filtered = corpus_linked_one_by_one(tmp_path / "with.db")
    sought: list[int] = []

    def every_key(conn: sqlite3.Connection, tail: object, lookups: list) -> list:
        sought.append(len(lookups))
        return lookups

    monkeypatch.setattr(dedup, "_filtered", every_key)
    assert corpus_linked_one_by_one(tmp_path / "without.db") == filtered
    assert any(r[1] is not None for r in filtered) and sum(sought) > 0


def test_the_filters_skip_the_keys_of_a_new_story(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What they are for: a story that shares no key with the postings runs no lookup."""
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    conn = store.connect(tmp_path / "db")
    link(conn, [add(conn, "原文", ARTICLE)])
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        link(conn, [add(conn, "无关", OTHER, feed="b")])
        new_story = [s for s in statements if "FROM dedup_postings WHERE bucket IN" in s]
        statements.clear()
        link(conn, [add(conn, "转载", reprint(1), feed="c")])
        reprinted = [s for s in statements if "FROM dedup_postings WHERE bucket IN" in s]
    finally:
        conn.set_trace_callback(None)
    assert not new_story and reprinted


def test_an_overfull_filter_is_rebuilt_from_the_postings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    conn = store.connect(tmp_path / "db")
    link(conn, [add(conn, "原文", ARTICLE)])
    bucket, words = conn.execute(
        "SELECT bucket, length(bits) / 8 FROM dedup_filters").fetchone()
    # As if far more keys had been added than the filter was built for.
    conn.execute("UPDATE dedup_filters SET keys = ?", (words * 64,))
    link(conn, [add(conn, "另一篇", OTHER, feed="b")])
    count = conn.execute("SELECT keys FROM dedup_filters WHERE bucket = ?", (bucket,)).fetchone()
    postings = conn.execute("SELECT count(*) FROM dedup_postings WHERE bucket = ?",
                            (bucket,)).fetchone()
    assert count[0] == postings[0]  # counted afresh from the postings
    assert_filters_hold_every_posting(conn)


def test_build_filters_covers_every_bucket(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db")
    rng = np.random.default_rng(9)
    rows = [(int(b), int(k), i) for i, (b, k) in enumerate(
        zip(rng.integers(600, 640, 500), rng.integers(-(2**62), 2**62, 500), strict=True))]
    with store.transaction(conn):
        conn.executemany("INSERT INTO dedup_postings (bucket, key, entry_id) VALUES (?, ?, ?)",
                         rows)
        done = dedup.build_filters(conn)
    assert done == len({r[0] for r in rows})
    assert_filters_hold_every_posting(conn)


# -- found by review: a rollback, and a merge made without the filters ---------------------

def rolled_back_reindex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                        ) -> tuple[sqlite3.Connection, int, int]:
    """A database from before migration 7 (no filter rows).  One call re-indexes A (its
    postings deleted), builds bucket b's filter without A's keys and writes it; the next
    entry of the same call, Y, reads that uncommitted row and caches it.  The transaction
    rolls back: A's postings are back.  Returns (connection, A, Y)."""
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    conn = store.connect(tmp_path / "db")
    a = add(conn, "原文", ARTICLE, feed="a")
    link(conn, [a])  # merged: A's keys are in dedup_postings
    conn.execute("DELETE FROM dedup_filters")  # as migration 7 leaves an old database
    conn._dedup_tail.filters.clear()
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)
    y = add(conn, "无关", OTHER.replace("毫米", "公里", 3), feed="y")
    with pytest.raises(RuntimeError), store.transaction(conn):
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER, a))
        link_entries(conn, [a, y], SETTINGS)
        raise RuntimeError("the refresh fails after linking")
    assert conn.execute("SELECT count(*) FROM dedup_filters").fetchone()[0] == 0
    return conn, a, y


def test_a_filter_built_in_a_rolled_back_reindex_is_not_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn, a, _ = rolled_back_reindex(tmp_path, monkeypatch)
    c = add(conn, "转载", reprint(1), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")


def test_a_merge_by_a_process_of_the_previous_version_is_noticed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store.migrate lets a binary run on a newer schema (``version >= len(MIGRATIONS)``), so a
    daemon still running the previous release keeps merging into a database that a new
    ``scrape --once`` moved to version 7, without touching dedup_filters."""
    path = tmp_path / "db"
    new = store.connect(path)
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    link(new, [add(new, "旧闻", OTHER, feed="x")])  # bucket b gets a filter
    old = store.connect(path)
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)
    a = add(old, "原文", ARTICLE, feed="a")
    link(old, [a])
    with store.transaction(old):  # what 99a7396's _merge writes: postings and merged_seq only
        merged = old.execute("SELECT merged_seq FROM dedup_state").fetchone()[0]
        rows = old.execute("SELECT entry_id, ts, keys, seq FROM dedup_fingerprints "
                           "WHERE seq > ?", (merged,)).fetchall()
        old.executemany("INSERT OR IGNORE INTO dedup_postings VALUES (?, ?, ?)",
                        [(dedup._bucket(ts), k, e) for e, ts, blob, _ in rows
                         for k in np.frombuffer(blob, dtype=np.int64).tolist()])
        old.execute("UPDATE dedup_state SET merged_seq = ?", (max(r[3] for r in rows),))
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)
    c = add(new, "转载", reprint(1), feed="c")
    link(new, [c])
    assert link_of(new, c)[:2] == (a, "near")


def test_the_stale_filter_is_not_written_by_the_next_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn, _, y = rolled_back_reindex(tmp_path, monkeypatch)
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    link(conn, [y])  # merged into bucket b: from a cached copy, it would lack A's keys
    assert_filters_hold_every_posting(conn)


def test_held_reports_the_memory_level_and_the_filters_a_connection_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the daemon's heartbeat records (``scrape status``, bench/soak.py)."""
    path = tmp_path / "db"
    first = store.connect(path)
    assert dedup.held(first) == {"unmerged_entries": 0, "filter_bytes": 0}  # no call yet
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)
    link(first, [add(first, "旧闻", OTHER, feed="x")])  # merged: a filter in the database
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 10**9)
    second = store.connect(path)
    ids = [add(second, f"T{i}", ARTICLE.replace("龙芯", f"龙{i}", 1), feed=f"f{i}")
           for i in range(3)]
    link(second, ids)
    held = dedup.held(second)
    assert held["unmerged_entries"] == len(ids)
    # The lookups read the bucket's filter and keep it: its bytes as stored.
    stored = first.execute("SELECT sum(length(bits)) FROM dedup_filters").fetchone()[0]
    assert stored > 0 and held["filter_bytes"] == stored
    first.close()
    second.close()
