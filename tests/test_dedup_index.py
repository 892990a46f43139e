"""The dedup index's two levels: keys in memory, merged into dedup_postings in batches.

Whatever the level a key sits in, the links must be the same; a merge must survive a
rollback and another process's writes."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from corpus import corpus_posts
from test_dedup import ARTICLE, OTHER, SETTINGS, T0, add, link, link_of, snapshot, store_corpus

from scraper import dedup
from scraper import storage as store
from scraper.core import fingerprint


def postings(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM dedup_postings").fetchone()[0]


def merged_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT merged_seq FROM dedup_state").fetchone()[0]


def reprint(n: int) -> str:
    return ARTICLE.replace("深圳", f"广州{n}", 1)


def links_of_corpus(tmp_path: Path, name: str, merge_entries: int,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple], int]:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", merge_entries)
    conn = store.connect(tmp_path / name)
    store_corpus(conn, corpus_posts())
    rows = [tuple(r) for r in conn.execute(
        "SELECT id, duplicate_of, dup_method, dup_score FROM entries ORDER BY id")]
    count = postings(conn)
    conn.close()
    return rows, count


def test_links_do_not_depend_on_where_the_keys_are(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    in_memory, none_merged = links_of_corpus(tmp_path, "memory.db", 10**9, monkeypatch)
    merged, all_merged = links_of_corpus(tmp_path, "merged.db", 1, monkeypatch)
    assert none_merged == 0 and all_merged > 0
    assert merged == in_memory
    assert any(row[1] is not None for row in merged)


def test_a_merge_moves_keys_to_the_postings_and_they_are_still_found(
        conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 2)
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    assert postings(conn) == 0 and merged_seq(conn) == 0  # one entry: still in memory
    b = add(conn, "另一篇", OTHER, feed="b")
    link(conn, [b])
    assert postings(conn) > 0
    assert merged_seq(conn) == conn.execute("SELECT max(seq) FROM dedup_fingerprints").fetchone()[0]
    assert not conn._dedup_tail.keys_of  # the memory level is empty after the merge
    c = add(conn, "转载", reprint(1), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")


def test_a_rolled_back_merge_loses_nothing(conn: sqlite3.Connection,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 2)
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    with pytest.raises(RuntimeError), store.transaction(conn):
        b = add(conn, "另一篇", OTHER, feed="b")
        dedup.link_entries(conn, [b], SETTINGS)
        assert postings(conn) > 0  # merged inside the transaction...
        raise RuntimeError("the refresh failed after dedup")
    assert postings(conn) == 0 and merged_seq(conn) == 0  # ...and undone with it
    c = add(conn, "转载", reprint(1), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")  # a's keys were not lost from memory


def test_another_connection_sees_keys_it_did_not_write(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon and a `scrape --once` each keep a memory level: each must find the other's
    entries, merged or not."""
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 3)
    first = store.connect(tmp_path / "shared.db")
    second = store.connect(tmp_path / "shared.db")
    a = add(first, "原文", ARTICLE, when=T0)
    link(first, [a])
    x = add(second, "另一篇", OTHER, feed="x")
    link(second, [x])  # second's memory level now holds a and x
    b = add(first, "转载一", reprint(1), feed="b")
    link(first, [b])  # three entries: first merges them all
    assert merged_seq(first) > 0
    assert link_of(first, b)[:2] == (a, "near")
    c = add(second, "转载二", reprint(2), feed="c")
    link(second, [c])  # second must notice the merge and still find a (now in the postings)
    assert link_of(second, c)[:2] == (a, "near")
    d = add(first, "转载三", reprint(3), feed="d")
    link(first, [d])  # and first finds what second wrote since
    assert link_of(first, d)[:2] == (a, "near")
    first.close()
    second.close()


def test_a_reindexed_entry_leaves_no_stale_evidence(conn: sqlite3.Connection,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose text changed keeps no postings under its old keys, and an old key still
    held in memory brings no false link."""
    for merge_entries in (1, 10**9):
        monkeypatch.setattr(dedup, "MERGE_ENTRIES", merge_entries)
        a = add(conn, "原文", ARTICLE, key=f"a{merge_entries}")
        link(conn, [a])
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER, a))
        link(conn, [a])
        b = add(conn, "转载", reprint(merge_entries), feed="b", key=f"b{merge_entries}")
        link(conn, [b])
        assert link_of(conn, b)[0] != a, merge_entries
        kept = {r[0] for r in conn.execute("SELECT key FROM dedup_postings WHERE entry_id = ?",
                                           (a,))}
        if merge_entries == 1:
            assert kept and kept == set(conn._dedup_tail.keys_of.get(a, kept))
        conn.execute("DELETE FROM entries WHERE id IN (?, ?)", (a, b))


def test_a_stale_url_key_in_memory_is_no_evidence(conn: sqlite3.Connection) -> None:
    """The URL key alone links two entries, so it is checked against the candidate's row:
    a key left in memory for an id that now holds another page must not link."""
    a = add(conn, "原文", ARTICLE, url="https://a.example/one")
    link(conn, [a])
    link(conn, [a])  # (its row is synced: the memory level will not read it again)
    stale = fingerprint.compute("x", OTHER, "https://b.example/two", SETTINGS).url_key
    conn._dedup_tail.index[stale] = a
    b = add(conn, "另一篇", OTHER, feed="b", url="http://b.example/two")
    link(conn, [b])
    assert link_of(conn, b) == (None, None, None)
    c = add(conn, "转载", reprint(1), feed="c", url="http://a.example/one?utm_source=x")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "url")  # the real URL key still is evidence


def test_a_rolled_back_reindex_gives_the_entry_its_keys_back(
        conn: sqlite3.Connection) -> None:
    """A refresh that re-indexed an entry and then failed (pipeline.py carries on with the
    same connection) must leave the committed keys findable."""
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    with pytest.raises(RuntimeError), store.transaction(conn):
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER, a))
        dedup.link_entries(conn, [a], SETTINGS)
        raise RuntimeError("the refresh failed after dedup")
    link(conn, [a])  # its stored fingerprint is unchanged: skipped
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [b])
    assert link_of(conn, b)[:2] == (a, "near")


def test_another_connection_sees_a_new_date_with_the_same_keys(tmp_path: Path) -> None:
    """A feed corrects an entry's date, not its text: same keys, new ts.  The other
    connection's memory level must take the new ts, or its window drops the entry."""
    one = store.connect(tmp_path / "shared.db")
    two = store.connect(tmp_path / "shared.db")
    a = add(one, "原文", ARTICLE, when=T0)
    link(one, [a])
    x = add(two, "无关", OTHER, feed="x")
    link(two, [x])  # two now holds a, dated T0
    later = T0 + timedelta(days=20)
    one.execute("UPDATE entries SET published = ? WHERE id = ?", (store.iso(later), a))
    link(one, [a])
    b = add(two, "转载", reprint(1), feed="b", when=later + timedelta(hours=1))
    link(two, [b])
    assert link_of(two, b)[:2] == (a, "near")
    one.close()
    two.close()


def test_the_same_text_links_after_a_shingle_change_without_rebuild(
        conn: sqlite3.Connection) -> None:
    """Sketches of different shingle sizes do not compare, the text hash does: the screen
    must not drop an identical text.  (90 characters: short when it was indexed, so its title
    key finds it; long under the new settings, so it is judged by its text.)"""
    text = ARTICLE[:90]
    a = add(conn, "小米12S Ultra 7月4日发布", text)
    link(conn, [a])
    b = add(conn, "小米12S Ultra 7月4日发布", text, feed="b", when=T0 + timedelta(hours=1))
    link(conn, [b], replace(SETTINGS, shingle=5, short_chars=50))
    assert link_of(conn, b)[:2] == (a, "exact")


def test_a_second_run_writes_nothing(conn: sqlite3.Connection,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 4)
    ids = store_corpus(conn, corpus_posts())
    before = snapshot(conn)
    link(conn, list(ids.values()))
    assert snapshot(conn) == before


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    connection = store.connect(tmp_path / "index.db")
    yield connection
    connection.close()


# -- the cluster root in each fingerprint row (migration 6) ---------------------------------

def stored_roots(conn: sqlite3.Connection) -> dict[int, int | None]:
    return dict(conn.execute("SELECT entry_id, root FROM dedup_fingerprints").fetchall())


def true_roots(conn: sqlite3.Connection) -> dict[int, int]:
    return {i: dup or i for i, dup in conn.execute("SELECT id, duplicate_of FROM entries")}


def test_each_row_names_its_root_and_followers_move_with_it(conn: sqlite3.Connection) -> None:
    x = add(conn, "X", ARTICLE, feed="x")
    y = add(conn, "Y", OTHER, feed="y")
    z = add(conn, "Z", OTHER, feed="z")
    link(conn, [x, y, z])
    assert stored_roots(conn) == true_roots(conn) == {x: x, y: y, z: y}
    # y turns into x's article: y and its follower z now belong to x's cluster
    conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (ARTICLE, y))
    link(conn, [y])
    assert stored_roots(conn) == true_roots(conn) == {x: x, y: x, z: x}


def test_rows_without_a_root_are_grouped_from_entries(conn: sqlite3.Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [a, b])
    # as linked before migration 6
    conn.execute("UPDATE dedup_fingerprints SET root = NULL")
    conn._dedup_tail = dedup._Tail()  # type: ignore[attr-defined]
    c = add(conn, "再转载", reprint(2), feed="c")
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "near")
    assert stored_roots(conn)[c] == a


def test_a_stale_root_in_a_candidate_row_still_links_to_the_true_root(
        conn: sqlite3.Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "转载", reprint(1), feed="b")
    link(conn, [a, b])
    # another process moved b's cluster and this row was not told: b names itself
    conn.execute("UPDATE dedup_fingerprints SET root = entry_id")
    conn._dedup_tail = dedup._Tail()  # type: ignore[attr-defined]
    c = add(conn, "再转载", reprint(1), feed="c")  # b's text: the best evidence is b's
    link(conn, [c])
    assert link_of(conn, c)[:2] == (a, "exact")  # duplicate_of always names a root


def relink_and_roll_back(conn: sqlite3.Connection, entry_id: int, text: str) -> None:
    with pytest.raises(RuntimeError), store.transaction(conn):
        conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (text, entry_id))
        dedup.link_entries(conn, [entry_id], SETTINGS)
        raise RuntimeError("the refresh fails after dedup")


def fresh_link(path: Path, entry_id: int) -> tuple:
    """What a connection with nothing in memory makes of ``entry_id``."""
    other = store.connect(path)
    with store.transaction(other):
        dedup._link(other, [entry_id], SETTINGS, {}, force=True)
    return link_of(other, entry_id)


def test_a_rolled_back_root_move_is_undone_in_memory_too(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db")
    r = add(conn, "R", ARTICLE, feed="r")
    e = add(conn, "E", OTHER, feed="e")
    f = add(conn, "F", OTHER.replace("毫米", "厘米", 1), feed="f")
    link(conn, [r, e, f])
    assert link_of(conn, f)[0] == e
    relink_and_roll_back(conn, e, ARTICLE)  # e (and f with it) would have moved to r
    n = add(conn, "N", OTHER.replace("毫米", "厘米", 1), feed="n")  # f's text
    link(conn, [n])
    assert link_of(conn, n)[0] == e == fresh_link(tmp_path / "db", n)[0]
    assert conn._dedup_tail.light[f][-1] == e  # type: ignore[attr-defined]  # not r


def test_a_root_moved_by_another_connection_is_not_linked_to(tmp_path: Path) -> None:
    path = tmp_path / "db"
    mine, theirs = store.connect(path), store.connect(path)
    r = add(mine, "R", ARTICLE, feed="r")
    x = add(mine, "X", OTHER, feed="x")
    f = add(mine, "F", OTHER.replace("毫米", "厘米", 1), feed="f")
    link(mine, [r, x, f])
    link(mine, [add(mine, "U", "无关" * 80, feed="u")])  # this connection has read f's row
    mine.commit()
    # the other connection moves x (and f with it) to r, then makes x an original again
    for text in (ARTICLE, OTHER.replace("毫米", "分米", 1)):
        theirs.execute("UPDATE entries SET content_text = ? WHERE id = ?", (text, x))
        theirs.commit()
        link(theirs, [x])
    assert link_of(theirs, f)[0] == r and link_of(theirs, x)[0] is None
    n = add(mine, "N", OTHER.replace("毫米", "厘米", 1), feed="n")  # f's text
    mine.commit()
    link(mine, [n])
    assert link_of(mine, n)[0] == r == fresh_link(path, n)[0]  # f's root now, not x


def test_a_rolled_back_reindex_leaves_the_bucket_range_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 2)
    path = tmp_path / "db"
    first = store.connect(path)
    later = T0 + timedelta(days=60)  # another bucket: the highest, and b alone in it
    a = add(first, "A", ARTICLE, feed="a")
    link(first, [a])
    b = add(first, "B", OTHER, feed="b", when=later)
    link(first, [b])
    first.close()
    conn = store.connect(path)
    relink_and_roll_back(conn, b, "无关" * 80)  # deleted b's postings, then rolled back
    n = add(conn, "N", OTHER.replace("毫米", "厘米", 1), feed="n",
            when=later + timedelta(hours=1))
    link(conn, [n])
    assert link_of(conn, n)[0] == b == fresh_link(path, n)[0]


def test_statement_shapes_do_not_grow_with_the_candidates(
        conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each distinct statement text is compiled and kept in SQLite's statement cache: an IN
    list as long as the candidates made one per count, and the daemon's memory grew with
    them (1 MiB per 1,000 entries of bench/soak.py)."""
    sentences = [f"第{i}句：这是一段各不相同的新闻正文，编号{i * 7}，内容用于测试。"
                 for i in range(40)]
    texts = ["\n".join(sentences[j] for j in range(i % 7, 40, 1 + i % 5)) for i in range(60)]
    ids = [add(conn, f"标题{i}", text, feed=f"f{i % 3}") for i, text in enumerate(texts)]
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 4)  # most candidates come from the postings
    shapes: set[str] = set()
    # expanded SQL: numbers, strings and blobs back to one placeholder each
    literal = re.compile(r"X'[0-9A-Fa-f]*'|'(?:[^']|'')*'|-?\b\d+(?:\.\d+)?\b")
    conn.set_trace_callback(lambda sql: shapes.add(literal.sub("?", sql)))
    try:
        for entry_id in ids:
            link(conn, [entry_id])
    finally:
        conn.set_trace_callback(None)
    candidates = [len(dedup._candidates(conn, dedup._tail(conn), fingerprint.compute(
        f"标题{i}", text, None, SETTINGS), before=None, exclude=ids[i])) for i, text in
        enumerate(texts)]
    assert max(candidates) >= 20 and len(set(candidates)) >= 5  # many counts were seen
    assert len(shapes) <= 25, len(shapes)


def test_the_memory_index_holds_one_id_or_a_list() -> None:
    tail = dedup._Tail()
    light = (0, 500, 490, None, "h", "t", None, None)
    tail.add(1, [10, 20], light)
    tail.add(2, [20, 30], light)
    assert tail.index == {10: 1, 20: [1, 2], 30: 2}
    tail.remove(1)
    assert tail.index == {20: [2], 30: 2}
    tail.add(2, [40], light)  # re-indexed: its old keys go
    assert tail.index == {20: [], 40: 2} and tail.keys_of == {2: [40]}
    tail.add(3, [40], light)
    assert tail.index[40] == [2, 3]
