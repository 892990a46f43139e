"""Issue 19, point 3: the cluster's root is its best member, not the first seen.

Through ``dedup.link_entries`` (what a refresh calls, inside its transaction), ``explain``
and ``rebuild``: a full article takes the cluster over from its teaser, the source takes it
over from reprints fetched before it, and every member follows the move.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scraper import storage as store
from scraper.dedup import DedupSettings, explain, link_entries, rebuild
from scraper.storage import Connection

SETTINGS = DedupSettings()
T0 = datetime(2024, 12, 5, 0, 0, tzinfo=UTC)
ARTICLE = "\n".join(
    f"第{i}段：长城汽车今天发布全新一代越野平台，新平台采用非承载式车身结构，可兼容燃油、混动和"
    f"纯电三种动力形式，首款车型计划于明年上市，第{i}批经销商将在{i + 2}月开始接受预订。"
    for i in range(1, 9))


@pytest.fixture
def conn(database: str) -> Iterator[Connection]:
    """SQLite's database, then PostgreSQL's."""
    connection = store.connect(database)
    yield connection
    connection.close()


def add(conn: Connection, feed: str, text: str, published_h: float,
        fetched_h: float) -> int:
    """An entry published ``published_h`` and fetched ``fetched_h`` hours after T0, linked
    in its own transaction (one refresh)."""
    published = store.iso(T0 + timedelta(hours=published_h))
    fetched = store.iso(T0 + timedelta(hours=fetched_h))
    with store.transaction(conn):
        cur = conn.execute(
            "INSERT INTO entries (feed, entry_key, title, published, content_text, fetched_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (feed, feed, "长城汽车发布全新越野平台", published, text, fetched, fetched))
        entry_id = int(cur.fetchone()[0])
        link_entries(conn, [entry_id], SETTINGS)
    return entry_id


def links(conn: Connection) -> dict[int, int | None]:
    return dict(conn.execute("SELECT id, duplicate_of FROM entries").fetchall())


# SQLite only: choosing the root does not depend on the backend; the prune test runs on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_the_article_takes_the_cluster_over_from_its_teaser(conn: Connection) -> None:
    teaser = add(conn, "teaser", ARTICLE.split("\n")[0][:60] + "……点击查看全文", 0, 0)
    article = add(conn, "article", ARTICLE, 1, 1)
    assert links(conn) == {teaser: article, article: None}
    report = explain(conn, article, SETTINGS)
    assert report["summary"] == "the cluster's root: its most complete member"
    assert report["duplicates"] == 1
    (cand,) = [c for c in report["candidates"] if c["id"] == teaser]
    assert cand["decision"].startswith("earlier entry (it links here by")
    # and from the teaser's side: the later article is its root, which it did not join
    (cand,) = [c for c in explain(conn, teaser, SETTINGS)["candidates"] if c["id"] == article]
    assert "more complete: the cluster moved to it" in cand["decision"]


@SQLITE_ONLY
def test_the_source_takes_the_cluster_over_from_reprints_fetched_first(
        conn: Connection) -> None:
    # Two reprints arrive first (published 3 and 4 hours after the source), then the source.
    first = add(conn, "reprint-a", ARTICLE, 3, 5)
    second = add(conn, "reprint-b", ARTICLE, 4, 6)
    assert links(conn) == {first: None, second: first}
    source = add(conn, "source", ARTICLE, 0, 7)
    assert links(conn) == {first: source, second: source, source: None}
    # a rebuild, in id order, comes to the same cluster
    before = conn.execute("SELECT id, duplicate_of, dup_method FROM entries").fetchall()
    rebuild(conn, SETTINGS)
    assert conn.execute("SELECT id, duplicate_of, dup_method FROM entries").fetchall() == before


@SQLITE_ONLY
def test_a_reprint_published_later_does_not_take_the_cluster(conn: Connection) -> None:
    source = add(conn, "source", ARTICLE, 0, 0)
    reprint = add(conn, "reprint", ARTICLE + "\n（来源：长城汽车）", 3, 3)  # a credit line
    assert links(conn) == {source: None, reprint: source}


@SQLITE_ONLY
def test_a_story_follows_its_cluster_to_a_new_root(conn: Connection) -> None:
    """A teaser in a story, then its article: the article takes the cluster over and is in
    the teaser's story too (a story belongs to clusters, whichever member is the root)."""
    teaser = add(conn, "teaser", ARTICLE.split("\n")[0][:60] + "……点击查看全文", 0, 0)
    # (set by hand: this test is about the move, not the story rule)
    conn.execute("UPDATE entries SET story = ? WHERE id = ?", (teaser, teaser))
    article = add(conn, "article", ARTICLE, 1, 1)
    assert links(conn)[teaser] == article
    stories = dict(conn.execute("SELECT id, story FROM entries").fetchall())
    assert stories == {teaser: teaser, article: teaser}


def test_prune_makes_the_best_remaining_member_the_root(conn: Connection,
                                                        tmp_path: Path) -> None:
    """``feeds prune`` of the feed whose entry was a cluster's root: the new root is the
    best member left (the reprint's full article), not the oldest (the teaser)."""
    from scraper import app
    from scraper.config import config_from_data

    teaser = add(conn, "teaser", ARTICLE.split("\n")[0][:60] + "……点击查看全文", 0, 0)
    source = add(conn, "source", ARTICLE, 1, 1)
    reprint = add(conn, "reprint", ARTICLE, 3, 3)
    assert links(conn) == {teaser: source, source: None, reprint: source}
    config = config_from_data({"feeds": [{"name": "teaser", "url": "https://t.example/"},
                                         {"name": "reprint", "url": "https://r.example/"}]},
                              tmp_path / "feeds.yaml")
    done = app.Scraper(config, conn).prune_feeds(["source"])
    assert done["promoted"] == 1
    assert links(conn) == {teaser: reprint, reprint: None}
    roots = dict(conn.execute("SELECT entry_id, root FROM dedup_fingerprints").fetchall())
    assert roots == {teaser: reprint, reprint: reprint}
