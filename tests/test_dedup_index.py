"""The dedup index: one key table in the database, consistent after rollbacks, shared by
connections, holding only the window's entries."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus_posts
from test_dedup import (
    ARTICLE,
    OTHER,
    SETTINGS,
    T0,
    add,
    explain,
    indexed,
    link,
    link_of,
    snapshot,
    store_corpus,
    v7_database,
)

from scraper import dedup
from scraper import storage as store
from scraper.storage import Connection


@pytest.fixture
def conn(database: str) -> Iterator[Connection]:
    """SQLite's database, then PostgreSQL's."""
    connection = store.connect(database)
    yield connection
    connection.close()


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[Connection]:
    """For what only SQLite does: reuse a deleted entry's id, trace its statements."""
    connection = store.connect(tmp_path / "index.db")
    yield connection
    connection.close()


def reprint(n: int) -> str:
    return ARTICLE.replace("深圳", f"广州{n}", 1)


def keys_of(conn: Connection, entry_id: int) -> set[int]:
    return {r[0] for r in conn.execute("SELECT key FROM dedup_index WHERE entry_id = ?",
                                       (entry_id,))}


def stored_keys(conn: Connection, entry_id: int) -> set[int]:
    blob = conn.execute("SELECT keys FROM dedup_fingerprints WHERE entry_id = ?",
                        (entry_id,)).fetchone()[0]
    return set(np.frombuffer(blob, dtype=np.int64).tolist())


# -- one table, in the transaction ----------------------------------------------------------

def test_each_entry_is_indexed_under_the_keys_its_row_holds(conn: Connection) -> None:
    ids = list(store_corpus(conn, corpus_posts()).values())
    for entry_id in ids:
        assert keys_of(conn, entry_id) == stored_keys(conn, entry_id) != set()


def test_a_rolled_back_link_leaves_the_index_as_it_was(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    before = snapshot(conn)
    with pytest.raises(RuntimeError), store.transaction(conn):
        b = add(conn, "转载", reprint(1), feed="b")
        dedup.link_entries(conn, [b], SETTINGS)
        assert b in indexed(conn)
        raise RuntimeError("the refresh failed after dedup")
    assert snapshot(conn) == before
    c = add(conn, "转载", reprint(2), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")


def test_a_rolled_back_reindex_gives_the_entry_its_keys_back(
        conn: Connection) -> None:
    """A refresh that re-indexed an entry and then failed (the refresh carries on with the
    same connection) must leave the committed keys findable."""
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    before = keys_of(conn, a)
    with pytest.raises(RuntimeError), store.transaction(conn):
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER, a))
        dedup.link_entries(conn, [a], SETTINGS)
        assert keys_of(conn, a) != before
        raise RuntimeError("the refresh failed after dedup")
    assert keys_of(conn, a) == before
    link(conn, [a])  # its stored fingerprint is unchanged: skipped
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [b])
    assert link_of(conn, b)[:2] == (a, "near")


def test_another_connection_sees_keys_it_did_not_write(database: str) -> None:
    """The daemon and a `scrape --once` write to one database: each finds the other's
    entries, whoever linked last."""
    first = store.connect(database)
    second = store.connect(database)
    a = add(first, "原文", ARTICLE)
    link(first, [a])
    x = add(second, "另一篇", OTHER, feed="x")
    link(second, [x])
    b = add(first, "转载一", reprint(1), feed="b")
    link(first, [b])
    assert link_of(first, b)[:2] == (a, "near")
    c = add(second, "转载二", reprint(2), feed="c")
    link(second, [c])
    assert link_of(second, c)[:2] == (a, "near")
    d = add(first, "转载三", OTHER.replace("毫米", "厘米", 1), feed="d")
    link(first, [d])  # and first finds what second wrote
    assert link_of(first, d)[:2] == (x, "near")
    first.close()
    second.close()


def test_a_reindexed_entry_leaves_no_stale_evidence(conn: Connection) -> None:
    """An entry whose text changed keeps no keys of its old text."""
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    old = keys_of(conn, a)
    conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER, a))
    link(conn, [a])
    assert keys_of(conn, a) == stored_keys(conn, a) and keys_of(conn, a) != old
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [b])
    assert link_of(conn, b)[0] != a


def test_a_stale_url_key_is_no_evidence(sqlite_conn: Connection) -> None:
    """The URL key alone links two entries, so it is checked against the candidate's row:
    keys left by a deleted entry whose id was then reused must not link by URL.  (SQLite
    reuses the highest id after a deletion; PostgreSQL's identity never does.)"""
    conn = sqlite_conn
    a = add(conn, "原文", ARTICLE, url="https://a.example/one")
    link(conn, [a])
    conn.execute("DELETE FROM entries WHERE id = ?", (a,))  # its keys stay behind
    reused = add(conn, "另一篇", OTHER, feed="b", url="https://b.example/two")
    assert reused == a
    link(conn, [reused])
    c = add(conn, "转载", "完全不同的内容。" * 30, feed="c",
            url="http://a.example/one?utm_source=x")
    link(conn, [c])
    assert link_of(conn, c) == (None, None, None)
    d = add(conn, "再转", OTHER + "\n补充", feed="d", url="https://b.example/two?from=x")
    link(conn, [d])
    assert link_of(conn, d)[:2] == (reused, "url")  # the real URL key still is evidence


def test_another_connection_sees_a_new_date_with_the_same_keys(database: str) -> None:
    """A feed corrects an entry's date, not its text: same keys, new ts."""
    one = store.connect(database)
    two = store.connect(database)
    a = add(one, "原文", ARTICLE, when=T0)
    link(one, [a])
    x = add(two, "无关", OTHER, feed="x")
    link(two, [x])
    later = T0 + timedelta(days=20)
    one.execute("UPDATE entries SET published = ? WHERE id = ?", (store.iso(later), a))
    link(one, [a])
    b = add(two, "转载", reprint(1), feed="b", when=later + timedelta(hours=1))
    link(two, [b])
    assert link_of(two, b)[:2] == (a, "near")
    one.close()
    two.close()


def test_the_same_text_links_after_a_shingle_change_without_rebuild(
        conn: Connection) -> None:
    """Sketches of different shingle sizes do not compare, the text hash does: the screen
    must not drop an identical text.  (90 characters: short when it was indexed, so its title
    key finds it; long under the new settings, so it is judged by its text.)"""
    text = ARTICLE[:90]
    a = add(conn, "小米12S Ultra 7月4日发布", text)
    link(conn, [a])
    b = add(conn, "小米12S Ultra 7月4日发布", text, feed="b", when=T0 + timedelta(hours=1))
    link(conn, [b], replace(SETTINGS, shingle=5, short_chars=50))
    assert link_of(conn, b)[:2] == (a, "exact")


def test_a_second_run_writes_nothing(conn: Connection) -> None:
    ids = store_corpus(conn, corpus_posts())
    before = snapshot(conn)
    link(conn, list(ids.values()))
    assert snapshot(conn) == before


# -- the window -----------------------------------------------------------------------------

DAY = timedelta(days=1)


def test_entries_that_arrived_before_the_window_leave_the_index(
        conn: Connection) -> None:
    window = timedelta(days=SETTINGS.window_days)
    a = add(conn, "原文", ARTICLE, when=T0, seen=T0)
    x = add(conn, "另一篇", OTHER, feed="x", when=T0 + 5 * DAY, seen=T0 + 5 * DAY)
    link(conn, [a, x])
    assert indexed(conn) == {a, x}
    # the newest arrival is just inside a's window: nothing leaves
    y = add(conn, "无关", "无关的内容。" * 40, feed="y", when=T0 + window, seen=T0 + window)
    link(conn, [y])
    assert indexed(conn) == {a, x, y}
    # one second later a has aged out, and only a
    z = add(conn, "无关二", "另一段无关的内容。" * 40, feed="z", when=T0 + window,
            seen=T0 + window + timedelta(seconds=1))
    link(conn, [z])
    assert indexed(conn) == {x, y, z}
    # so a late reprint of a finds nothing; x's reprint still finds x
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=T0 + window + DAY)
    c = add(conn, "转载", OTHER.replace("毫米", "厘米", 1), feed="c", when=T0 + 6 * DAY,
            seen=T0 + window + DAY)
    link(conn, [b, c])
    assert link_of(conn, b) == (None, None, None)
    assert link_of(conn, c)[:2] == (x, "near")
    assert explain(conn, b, SETTINGS)["candidates"] == []
    # an aged-out entry keeps its row (and links); relinking it unchanged changes nothing
    before = snapshot(conn)
    link(conn, [a])
    assert snapshot(conn) == before


def test_a_backlog_that_arrives_together_finds_its_reprints(conn: Connection) -> None:
    """The window follows arrival, not the feeds' dates: a feed added today brings last
    month's posts, and they must find the reprints another feed brought with them."""
    now = T0 + 60 * DAY
    news = add(conn, "今天", OTHER, feed="n", when=now, seen=now)
    link(conn, [news])
    a = add(conn, "原文", ARTICLE, feed="a", when=T0, seen=now)
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=now)
    link(conn, [a, b])
    assert link_of(conn, b)[:2] == (a, "near")


def test_one_call_prunes_a_bounded_number_of_entries(conn: Connection) -> None:
    old = [add(conn, f"旧{i}", f"第{i}条旧闻：" + "各不相同的旧内容。" * 12 + str(i),
               feed="old", when=T0, seen=T0) for i in range(dedup.PRUNE_ENTRIES + 10)]
    link(conn, old)
    assert indexed(conn) == set(old)
    later = T0 + timedelta(days=SETTINGS.window_days) + DAY
    n1 = add(conn, "新", OTHER, feed="new", when=later, seen=later)
    link(conn, [n1])
    assert indexed(conn) == set(old[dedup.PRUNE_ENTRIES:]) | {n1}  # the oldest went first
    n2 = add(conn, "新二", "另一段新的内容。" * 40, feed="new", when=later, seen=later)
    with pytest.raises(RuntimeError), store.transaction(conn):
        dedup.link_entries(conn, [n2], SETTINGS)
        assert indexed(conn) == {n1, n2}
        raise RuntimeError("the refresh failed after dedup")
    assert indexed(conn) == set(old[dedup.PRUNE_ENTRIES:]) | {n1}  # undone with the rest
    link(conn, [n2])
    assert indexed(conn) == {n1, n2}


def aged_out_pair(conn: Connection) -> tuple[int, int, int]:
    """An original, its reprint a day later, and an unrelated entry 30 days on, all linked:
    the pair has left the index."""
    a = add(conn, "原文", ARTICLE, when=T0, seen=T0)
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=T0 + DAY)
    later = T0 + 30 * DAY
    n = add(conn, "新", OTHER, feed="n", when=later, seen=later)
    link(conn, [a, b, n])
    assert link_of(conn, b)[:2] == (a, "near") and indexed(conn) == {n}
    return a, b, n


def test_rebuild_links_old_entries_in_their_own_window_then_prunes(
        conn: Connection) -> None:
    a, b, n = aged_out_pair(conn)
    before = snapshot(conn)
    result = dedup.rebuild(conn, SETTINGS)
    assert result["by_method"] == {"near": 1}
    assert snapshot(conn) == before
    # a window long enough to reach back to them: after the rebuild they are indexed
    dedup.rebuild(conn, replace(SETTINGS, window_days=40))
    assert indexed(conn) == {a, b, n}


def test_a_rebuild_redoes_what_an_interrupted_one_left_in_the_index(
        conn: Connection) -> None:
    """An interrupted rebuild leaves the keys of the old entries it redid in the index: they
    are never candidates (they arrived before every later entry's window) and the next
    rebuild takes them out."""
    a = add(conn, "原文", ARTICLE, when=T0, seen=T0)
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=T0 + DAY)
    later = T0 + 30 * DAY
    n = add(conn, "新", OTHER, feed="n", when=later, seen=later)
    link(conn, [a, b, n])
    before = snapshot(conn)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dedup.rebuild(conn, SETTINGS, progress=interrupt, batch=1)
    assert indexed(conn) == {a, n}  # a's keys were left behind
    c = add(conn, "又一转载", reprint(2), feed="c", when=T0 + DAY, seen=later + DAY)
    link(conn, [c])
    assert link_of(conn, c) == (None, None, None)  # a arrived a month before c
    conn.execute("DELETE FROM entries WHERE id = ?", (c,))
    conn.execute("DELETE FROM dedup_fingerprints WHERE entry_id = ?", (c,))
    dedup.rebuild(conn, SETTINGS)
    assert snapshot(conn) == before


# -- the window is a rule on arrival, whatever pruning has done --------------------------

#: How far pruning has got when the reprint is linked (or a rebuild's batch size).
PRUNING = ["live", "pruning behind", "one call", "rebuild, one batch", "rebuild, batches of 1",
           "rebuild, batches of 2"]
BATCH = {"rebuild, one batch": 500, "rebuild, batches of 1": 1, "rebuild, batches of 2": 2}


def reviewers_scenario(conn: Connection, pruning: str) -> tuple[int, int]:
    """Original ``a`` published and fetched at T0; an unrelated entry fetched 20 days later;
    then a new feed's backlog brings ``b``, a reprint of ``a`` published a day after it but
    fetched 20 days after it.  Returns (a, b)."""
    later = T0 + 20 * DAY
    old: list[int] = []
    if pruning == "pruning behind":  # more aged-out entries than one call prunes, before a
        old = [add(conn, f"旧{i}", f"第{i}条旧闻：" + "各不相同的旧内容。" * 12 + str(i),
                   feed="old", when=T0 - DAY, seen=T0 - DAY)
               for i in range(dedup.PRUNE_ENTRIES + 10)]
        link(conn, old)
    a = add(conn, "原文", ARTICLE, when=T0, seen=T0)
    if pruning != "one call":
        link(conn, [a])
    x = add(conn, "无关", "无关的内容。" * 40, feed="x", when=later, seen=later)
    if pruning != "one call":
        link(conn, [x])
    if pruning != "one call":
        assert (a in indexed(conn)) == (pruning == "pruning behind")
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=later)
    link(conn, [*old, a, x, b] if pruning == "one call" else [b])
    if pruning in BATCH:
        dedup.rebuild(conn, SETTINGS, batch=BATCH[pruning])
    return a, b


@pytest.mark.parametrize("pruning", PRUNING)
def test_a_reprint_arriving_after_the_window_is_not_linked_whatever_pruning_did(
        conn: Connection, pruning: str) -> None:
    a, b = reviewers_scenario(conn, pruning)
    assert link_of(conn, b) == (None, None, None)
    wide = replace(SETTINGS, explain_candidates=1000)
    assert a not in {c["id"] for c in explain(conn, b, wide)["candidates"]}
    assert b not in {c["id"] for c in explain(conn, a, wide)["candidates"]}


def test_a_reprint_arriving_after_the_window_is_not_linked_right_after_migration_8(
        tmp_path: Path) -> None:
    """Migration 8 indexes every entry; pruning catches up later, a bounded number a call."""
    path = tmp_path / "v7.db"
    a, x = v7_database(path, [("原文", ARTICLE), ("无关", "无关的内容。" * 40)])
    later = store.iso(T0 + 20 * DAY)
    with sqlite3.connect(path) as old:  # x arrived 20 days after a
        old.execute("UPDATE entries SET fetched_at = ?, updated_at = ? WHERE id = ?",
                    (later, later, x))
    old.close()
    conn = store.connect(path)
    assert indexed(conn) == {a, x}
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=T0 + 20 * DAY)
    link(conn, [b])
    assert link_of(conn, b) == (None, None, None)
    conn.close()


@pytest.mark.parametrize("pruning", ["live", "rebuild, one batch", "rebuild, batches of 1"])
def test_a_backlog_reprint_of_an_original_that_arrived_within_the_window_is_linked(
        conn: Connection, pruning: str) -> None:
    """Published two months ago, but its original arrived 10 days before it did."""
    now = T0 + 60 * DAY
    a = add(conn, "原文", ARTICLE, feed="a", when=T0, seen=now - 10 * DAY)
    link(conn, [a])
    x = add(conn, "无关", "无关的内容。" * 40, feed="x", when=now, seen=now - DAY)
    link(conn, [x])
    b = add(conn, "转载", reprint(1), feed="b", when=T0 + DAY, seen=now)
    link(conn, [b])
    if pruning in BATCH:
        dedup.rebuild(conn, SETTINGS, batch=BATCH[pruning])
    assert link_of(conn, b)[:2] == (a, "near")
    assert [c["decision"] for c in explain(conn, b, SETTINGS)["candidates"]
            if c["id"] == a] == ["near"]
    # a reprint that arrived a window and a second after a: found by b (a is not compared),
    # linked to the root of b's cluster
    y = add(conn, "转载", reprint(2), feed="y", when=T0 + DAY,
            seen=now - 10 * DAY + timedelta(days=SETTINGS.window_days, seconds=1))
    link(conn, [y])
    assert link_of(conn, y)[:2] == (a, "near")
    assert {c["id"] for c in explain(conn, y, SETTINGS)["candidates"]} == {b}


# -- cluster roots in the fingerprint rows ------------------------------------------------

def stored_roots(conn: Connection) -> dict[int, int | None]:
    return dict(conn.execute("SELECT entry_id, root FROM dedup_fingerprints").fetchall())


def true_roots(conn: Connection) -> dict[int, int]:
    return {i: dup or i for i, dup in conn.execute("SELECT id, duplicate_of FROM entries")}


def test_each_row_names_its_root_and_followers_move_with_it(conn: Connection) -> None:
    x = add(conn, "X", ARTICLE, feed="x")
    y = add(conn, "Y", OTHER, feed="y")
    z = add(conn, "Z", OTHER, feed="z")
    link(conn, [x, y, z])
    assert stored_roots(conn) == true_roots(conn) == {x: x, y: y, z: y}
    # y turns into x's article: y and its follower z now belong to x's cluster
    conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (ARTICLE, y))
    link(conn, [y])
    assert stored_roots(conn) == true_roots(conn) == {x: x, y: x, z: x}


def test_rows_without_a_root_are_grouped_from_entries(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [a, b])
    conn.execute("UPDATE dedup_fingerprints SET root = NULL")  # as linked before migration 6
    c = add(conn, "再转载", reprint(2), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")
    assert stored_roots(conn)[c] == a


def test_a_stale_root_in_a_candidate_row_still_links_to_the_true_root(
        conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [a, b])
    # another process moved b's cluster and this row was not told: b names itself
    conn.execute("UPDATE dedup_fingerprints SET root = entry_id")
    c = add(conn, "再转载", reprint(1), feed="c")  # b's text: the best evidence is b's
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "exact")  # duplicate_of always names a root


def test_a_rolled_back_root_move_leaves_the_roots_as_they_were(
        conn: Connection) -> None:
    r = add(conn, "R", ARTICLE, feed="r")
    e = add(conn, "E", OTHER, feed="e")
    f = add(conn, "F", OTHER.replace("毫米", "厘米", 1), feed="f")
    link(conn, [r, e, f])
    assert link_of(conn, f)[0] == e
    with pytest.raises(RuntimeError), store.transaction(conn):
        # e (and f with it) would move to r
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (ARTICLE, e))
        dedup.link_entries(conn, [e], SETTINGS)
        assert true_roots(conn)[f] == r
        raise RuntimeError("the refresh fails after dedup")
    assert stored_roots(conn) == true_roots(conn) and true_roots(conn)[f] == e
    n = add(conn, "N", OTHER.replace("毫米", "厘米", 1), feed="n")  # f's text
    link(conn, [n])
    assert link_of(conn, n)[0] == e


def test_a_root_moved_by_another_connection_is_not_linked_to(database: str) -> None:
    mine, theirs = store.connect(database), store.connect(database)
    r = add(mine, "R", ARTICLE, feed="r")
    x = add(mine, "X", OTHER, feed="x")
    f = add(mine, "F", OTHER.replace("毫米", "厘米", 1), feed="f")
    link(mine, [r, x, f])
    # the other connection moves x (and f with it) to r, then makes x an original again
    for text in (ARTICLE, OTHER.replace("毫米", "分米", 1)):
        theirs.execute("UPDATE entries SET content_text = ? WHERE id = ?", (text, x))
        link(theirs, [x])
    assert link_of(theirs, f)[0] == r and link_of(theirs, x)[0] is None
    n = add(mine, "N", OTHER.replace("毫米", "厘米", 1), feed="n")  # f's text
    link(mine, [n])
    assert link_of(mine, n)[0] == r  # f's root now, not x
    mine.close()
    theirs.close()


# -- statements -----------------------------------------------------------------------------

def test_statement_shapes_do_not_grow_with_the_candidates(sqlite_conn: Connection) -> None:
    """Each distinct statement text is compiled and kept in SQLite's statement cache: an IN
    list as long as the candidates made one per count, and the daemon's memory grew with
    them (1 MiB per 1,000 entries of bench/soak.py).  (PostgreSQL's statements are the same
    texts; SQLite's trace callback shows them.)"""
    conn = sqlite_conn
    sentences = [f"第{i}句：这是一段各不相同的新闻正文，编号{i * 7}，内容用于测试。"
                 for i in range(40)]
    texts = ["\n".join(sentences[j] for j in range(i % 7, 40, 1 + i % 5)) for i in range(60)]
    ids = [add(conn, f"标题{i}", text, feed=f"f{i % 3}") for i, text in enumerate(texts)]
    shapes: set[str] = set()
    # expanded SQL: numbers, strings and blobs back to one placeholder each
    literal = re.compile(r"X'[0-9A-Fa-f]*'|'(?:[^']|'')*'|-?\b\d+(?:\.\d+)?\b")
    conn.set_trace_callback(lambda sql: shapes.add(literal.sub("?", sql)))
    try:
        for entry_id in ids:
            link(conn, [entry_id])
    finally:
        conn.set_trace_callback(None)
    wide = replace(SETTINGS, explain_candidates=1000)
    candidates = [len(explain(conn, i, wide)["candidates"]) for i in ids]
    assert max(candidates) >= 20 and len(set(candidates)) >= 5  # many counts were seen
    assert len(shapes) <= 25, len(shapes)


def test_a_rebuild_beside_the_daemon_still_links_old_entries(database: str) -> None:
    """The daemon prunes while a rebuild runs (it commits every batch): the rebuild must
    still find each old entry's candidates, which it indexed again for the purpose."""
    conn, daemon = store.connect(database), store.connect(database)
    a, b, n = aged_out_pair(conn)
    later = T0 + 30 * DAY
    added: list[int] = []

    def beside(done: int, total: int) -> None:  # between the rebuild's batches
        if done > 2:
            return
        entry_id = add(daemon, f"新{done}", f"第{done}篇新的内容。" * 40, feed="m", when=later,
                       seen=later + done * DAY)
        link(daemon, [entry_id])
        added.append(entry_id)

    dedup.rebuild(conn, SETTINGS, progress=beside, batch=1)
    assert link_of(conn, b)[:2] == (a, "near")
    assert indexed(conn) == {n, *added}
    conn.close()
    daemon.close()
