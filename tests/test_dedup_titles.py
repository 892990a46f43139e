"""Issue 19, point 2: the title rule's guard, through ``dedup.link_entries`` and ``explain``.

A similar title links a short item only when the texts agree, and a generic title (one that
names two stories in the window) never links an item that has nothing beyond its title.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from scraper import storage as store
from scraper.dedup import DedupSettings, explain, link_entries
from scraper.storage import Connection

SETTINGS = DedupSettings()
T0 = datetime(2024, 12, 9, 0, 0, tzinfo=UTC)
#: Two unrelated articles (longer than ``short_chars``), written for this test.
MARKETS = ("沪深两市今日早盘小幅高开，截至午间收盘，上证指数上涨百分之零点五，深证成指上涨百分之"
           "零点八，创业板指上涨百分之一点二。半导体、消费电子和汽车零部件板块涨幅居前，银行和"
           "煤炭板块小幅回调，两市成交额较前一交易日有所放大，北向资金净买入超过三十亿元。")
WEATHER = ("中央气象台今晨发布寒潮蓝色预警，受强冷空气影响，未来三天我国中东部地区将自北向南出现"
           "大风降温天气，气温普遍下降六到八摄氏度，局地降温幅度超过十摄氏度，华北和黄淮等地"
           "还将出现小到中雪，请公众注意防寒保暖并合理安排出行，关注最新预报信息。")


@pytest.fixture
def conn(database: str) -> Iterator[Connection]:
    """SQLite's database, then PostgreSQL's."""
    connection = store.connect(database)
    yield connection
    connection.close()


def add(conn: Connection, feed: str, title: str, text: str, hours: float) -> int:
    when = store.iso(T0 + timedelta(hours=hours))
    with store.transaction(conn):
        cur = conn.execute(
            "INSERT INTO entries (feed, entry_key, title, published, content_text, fetched_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (feed, f"{feed}-{hours}", title, when, text, when, when))
        entry_id = int(cur.fetchone()[0])
        link_entries(conn, [entry_id], SETTINGS)
    return entry_id


def duplicate_of(conn: Connection, entry_id: int) -> int | None:
    return conn.execute("SELECT duplicate_of FROM entries WHERE id = ?",
                        (entry_id,)).fetchone()[0]


def test_a_bare_item_links_by_a_title_only_one_story_carries(
        conn: Connection) -> None:
    article = add(conn, "a", "沪深两市早盘小幅高开", MARKETS, 0)
    bare = add(conn, "b", "沪深两市早盘小幅高开", "沪深两市早盘小幅高开", 1)
    assert duplicate_of(conn, bare) == article


# SQLite only: title decisions do not depend on the backend; the linking test runs on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_a_bare_item_never_links_by_a_generic_title(conn: Connection) -> None:
    add(conn, "a", "早报", MARKETS, 0)
    add(conn, "b", "早报", WEATHER, 1)  # a second story under the same title
    bare = add(conn, "c", "早报", "早报", 2)
    assert duplicate_of(conn, bare) is None
    reasons = [c["reason"] for c in explain(conn, bare, SETTINGS)["candidates"]]
    assert reasons and all("the title is generic (2 stories" in r for r in reasons), reasons


@SQLITE_ONLY
def test_similar_titles_over_disagreeing_texts_do_not_link(conn: Connection) -> None:
    # Two short items (under short_chars) under one title, about different things.
    first = add(conn, "a", "快讯：今日要闻", MARKETS[:80], 0)
    second = add(conn, "b", "快讯：今日要闻", WEATHER[:80], 1)
    assert duplicate_of(conn, second) is None
    cand = explain(conn, second, SETTINGS)["candidates"][0]
    assert cand["id"] == first and cand["title_similarity"] == 1.0
    assert "texts disagree" in cand["reason"]
    # the same text under the same title still links
    third = add(conn, "c", "快讯：今日要闻", MARKETS[:80], 2)
    assert duplicate_of(conn, third) == first


@SQLITE_ONLY
def test_a_bare_item_never_links_to_a_title_with_other_numbers(
        conn: Connection) -> None:
    """Daily template titles are similar (bigram Jaccard above the title threshold) and
    differ only in their date."""
    add(conn, "a", "36氪早报12月7日", MARKETS, 0)
    bare = add(conn, "b", "36氪早报12月8日", "36氪早报12月8日", 20)
    assert duplicate_of(conn, bare) is None
    (cand,) = explain(conn, bare, SETTINGS)["candidates"]
    assert cand["title_similarity"] >= SETTINGS.title_threshold
    assert "the titles differ in numbers or names" in cand["reason"]
