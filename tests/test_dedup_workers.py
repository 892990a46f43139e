"""Dedup with concurrent writers (PostgreSQL): two transactions storing reprints of one story
at the same moment still make one cluster, whichever of them commits first.

Two connections stand for two workers; each step of their interleaving is forced (a
transaction held open, a wait observed in ``pg_locks``), so no test depends on timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from test_dedup import ARTICLE, OTHER, SETTINGS, add, link_of

from scraper import dedup
from scraper import storage as store
from scraper.core import fingerprint
from scraper.storage import Connection
from scraper.storage import dedup as index

REPRINT = ARTICLE.replace("深圳", "广州", 1)


@pytest.fixture
def workers(pg_url: str) -> Iterator[tuple[Connection, Connection]]:
    one, two = store.connect(pg_url), store.connect(pg_url)
    yield one, two
    one.close()
    two.close()


def test_an_entry_finds_a_reprint_of_higher_id_committed_before_it_linked(
        workers: tuple[Connection, Connection]) -> None:
    """Worker one inserts its entry (taking the lower id) but links it only after worker
    two has stored and committed a reprint: one's entry still finds two's, though two's id
    is higher (a lower-id rule would leave two clusters)."""
    one, two = workers
    with store.transaction(one):
        a = add(one, "原文", ARTICLE, feed="a")
        with store.transaction(two):
            b = add(two, "转载", REPRINT, feed="b")
            dedup.link_entries(two, [b], SETTINGS)
        assert b > a and link_of(two, b) == (None, None, None)  # a was not committed yet
        dedup.link_entries(one, [a], SETTINGS)
    assert index.cluster_root(one, a) == index.cluster_root(one, b)
    assert {link_of(one, a)[0], link_of(one, b)[0]} in ({None, a}, {None, b})


def waiting_for_advisory_lock(conn: Connection) -> bool:
    return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted").fetchone()[0] > 0


def link_in_thread(conn: Connection, title: str, text: str, feed: str
                   ) -> tuple[threading.Thread, list[int], list[BaseException]]:
    """Store and link one entry on ``conn`` in its own transaction, in a thread started now
    (it may wait on the test's locks): the thread, the id once committed, the error if any
    (reported by the test, not lost in the thread)."""
    done: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with store.transaction(conn):
                entry = add(conn, title, text, feed=feed)
                dedup.link_entries(conn, [entry], SETTINGS)
            done.append(entry)
        except BaseException as exc:  # (the test reports it)
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, failed


def test_a_second_linker_waits_for_the_first_and_sees_its_entry(
        pg_url: str, workers: tuple[Connection, Connection]) -> None:
    """Worker one has linked its entry and not committed; worker two, linking a reprint,
    waits on the shared keys' lock until one commits, then finds one's entry.  An entry that
    shares no key with one's goes through meanwhile."""
    one, two = workers
    with store.transaction(one):
        x = add(one, "无关", OTHER, feed="x")
        dedup.link_entries(one, [x], SETTINGS)
    watcher = store.connect(pg_url)
    try:
        with store.transaction(one):
            a = add(one, "原文", ARTICLE, feed="a")
            dedup.link_entries(one, [a], SETTINGS)
            thread, done, failed = link_in_thread(two, "转载", REPRINT, "b")
            deadline = time.monotonic() + 30
            while not waiting_for_advisory_lock(watcher) and not done and not failed:
                assert time.monotonic() < deadline, "the second linker never waited"
                time.sleep(0.01)
            assert not done and not failed  # it waits: one has not committed
            # an unrelated entry of a third worker is not held up by one's locks
            with store.transaction(watcher):
                y = add(watcher, "又一篇", OTHER.replace("毫米", "厘米", 1), feed="y")
                dedup.link_entries(watcher, [y], SETTINGS)
            assert link_of(watcher, y)[0] == x
        thread.join(30)
    finally:
        watcher.close()
    assert not failed, failed
    assert link_of(one, done[0])[:2] == (a, "near")


def test_locks_are_bounded_per_transaction(pg_url: str) -> None:
    """A transaction touching more stripes than ``MAX_STRIPES`` holds one exclusive lock
    instead of one per stripe (PostgreSQL's shared lock table is finite)."""
    conn = store.connect(pg_url)
    try:
        def held() -> tuple[int, int]:
            rows = conn.execute("SELECT mode, count(*) FROM pg_locks WHERE locktype = "
                                "'advisory' AND pid = pg_backend_pid() GROUP BY mode").fetchall()
            by_mode = dict(rows)
            return by_mode.get("ShareLock", 0), by_mode.get("ExclusiveLock", 0)

        with store.transaction(conn):
            index.lock_keys(conn, range(10))
            assert held() == (1, 10)
        with store.transaction(conn):
            index.lock_keys(conn, range(index.MAX_STRIPES + 1))
            assert held() == (0, 1)
        assert held() == (0, 0)  # released at the end of the transaction
    finally:
        conn.close()


def test_an_edited_entry_and_a_more_complete_reprint_at_once_do_not_deadlock(
        pg_url: str, workers: tuple[Connection, Connection]) -> None:
    """Worker one's refresh rewrites entry x (an edit: it holds x's row) and then links it;
    worker two meanwhile stores the full article of which x is a trimmed copy, which takes
    x's cluster over and so updates x's row.  Had one taken its index locks only when it
    linked, each would wait for the other (PostgreSQL would abort one); a refresh takes them
    before its first write, so two waits for one."""
    one, two = workers
    trimmed = "\n".join(ARTICLE.split("\n")[:-4])
    with store.transaction(one):
        x = add(one, "原文", trimmed, feed="x")
        dedup.link_entries(one, [x], SETTINGS)
    edited = trimmed + "\n（本文有修改）"
    watcher = store.connect(pg_url)
    try:
        with store.transaction(one):
            dedup.lock_entries(one, [fingerprint.compute("原文", edited, None, SETTINGS)])
            one.execute("UPDATE entries SET content_text = ? WHERE id = ?", (edited, x))
            thread, done, failed = link_in_thread(two, "原文", ARTICLE, "b")
            deadline = time.monotonic() + 30
            while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted"
                                      ).fetchone()[0] and not done and not failed:
                assert time.monotonic() < deadline, "the second worker never waited"
                time.sleep(0.01)
            dedup.link_entries(one, [x], SETTINGS)
        thread.join(30)
    finally:
        watcher.close()
    assert not failed, failed
    assert link_of(one, x)[:2] == (done[0], "near")  # the full article is the root
