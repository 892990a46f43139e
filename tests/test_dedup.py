"""Deduplication: the corpus' reprints linked, related stories apart, links stable across runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from corpus import DISTINCT_GROUPS, DUPLICATE_GROUPS, Post, corpus_posts, group_posts, post_link
from selectolax.lexbor import LexborHTMLParser

from scraper import dedup
from scraper import storage as store
from scraper.cli import build_parser
from scraper.core import fingerprint, similarity
from scraper.dedup import DedupSettings, dedup_from_mapping, explain, link_entries, rebuild
from scraper.storage import Connection

SETTINGS = DedupSettings()
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def post_text(post: Post) -> str:
    """Plain text of a post as normalize.py would leave it: 快科技's end block is boilerplate
    its site rule removes (p.zhuanzai, p.url, p.bqian, "- THE END -")."""
    text = LexborHTMLParser(post.body).text(separator="\n")
    lines = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith(("如需转载", "- THE END -")):
            break
        if line:
            lines.append(line)
    return "\n".join(lines)


@pytest.fixture
def conn(database: str) -> Iterator[Connection]:
    """The database the linking tests run on: SQLite's, then PostgreSQL's."""
    connection = store.connect(database)
    yield connection
    connection.close()


def add(conn: Connection, title: str, text: str, *, feed: str = "f",
        url: str | None = None, when: datetime = T0, key: str | None = None,
        seen: datetime = T0) -> int:
    """An entry published ``when``, fetched (arrived) ``seen``."""
    stamp = store.iso(when)
    cur = conn.execute(
        "INSERT INTO entries (feed, entry_key, url, title, published, content_text, fetched_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (feed, key or f"{title}|{url}|{stamp}|{len(text)}", url, title, stamp, text,
         store.iso(seen), store.iso(seen)))
    return int(cur.fetchone()[0])


def link(conn: Connection, ids: list[int],
         settings: DedupSettings = SETTINGS) -> list[dedup.Link]:
    with store.transaction(conn):
        return link_entries(conn, ids, settings)


def link_of(conn: Connection, entry_id: int) -> tuple:
    row = conn.execute("SELECT duplicate_of, dup_method, dup_score FROM entries WHERE id = ?",
                       (entry_id,)).fetchone()
    return tuple(row)


def snapshot(conn: Connection) -> list[tuple]:
    """Links, fingerprints and the key index."""
    return [tuple(r) for r in conn.execute(
        "SELECT e.id, e.duplicate_of, e.dup_method, e.dup_score, f.ts, f.text_hash, f.keys, "
        "f.sketch, f.shingles, f.root FROM entries e LEFT JOIN dedup_fingerprints f "
        "ON f.entry_id = e.id ORDER BY e.id")] + [
        tuple(r) for r in conn.execute("SELECT * FROM dedup_index ORDER BY 1, 2")]


def indexed(conn: Connection) -> set[int]:
    """The entries that have keys in the index."""
    return {r[0] for r in conn.execute("SELECT DISTINCT entry_id FROM dedup_index")}


def store_corpus(conn: Connection, posts: list[Post]) -> dict[Path, int]:
    ids = {}
    with store.transaction(conn):
        for post in posts:
            ids[post.path] = add(conn, post.title, post_text(post), feed=post.site,
                                 url=post_link(post), when=post.date, key=post.slug)
        link_entries(conn, list(ids.values()), SETTINGS)
    return ids


# -- settings -----------------------------------------------------------------------------

def test_settings_defaults_and_overrides() -> None:
    assert dedup_from_mapping({}, "dedup") == DedupSettings()
    assert dedup_from_mapping(None, "dedup") == DedupSettings()
    custom = dedup_from_mapping({"threshold": 0.9, "window_days": 3, "shingle": 5,
                                 "title_window_hours": 24}, "dedup")
    assert (custom.threshold, custom.window_days, custom.shingle) == (0.9, 3.0, 5)
    assert custom.title_window_seconds == 24 * 3600


@pytest.mark.parametrize(("data", "message"), [
    ({"threshold": "high"}, "threshold: expected a number between 0 and 1, got 'high'"),
    ({"threshold": 1.5}, "threshold: expected a number between 0 and 1, got 1.5"),
    ({"threshold": True}, "threshold: expected a number between 0 and 1, got True"),
    ({"title_threshold": 0}, "title_threshold: expected a number between 0 and 1, got 0"),
    ({"window_days": -1}, "window_days: expected a positive number up to 3650, got -1"),
    ({"window_days": 1e7}, "window_days: expected a positive number up to 3650, got 1"),
    ({"title_window_hours": 0}, "title_window_hours: expected a positive number up to 87600"),
    ({"shingle": 4.5}, "shingle: expected a whole number from 2 to 16, got 4.5"),
    ({"bands": 0}, "bands: expected a whole number from 1 to 256, got 0"),
    ({"rows": True}, "rows: expected a whole number from 1 to 32, got True"),
    ({"treshold": 0.8}, "treshold: unknown key (expected one of: threshold, "),
    (["threshold"], "expected a mapping of dedup settings"),
])
def test_settings_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        dedup_from_mapping(data, "dedup")
    assert str(info.value).startswith(message)


def test_config_prefixes_the_file(tmp_path: Path) -> None:
    from scraper.config import ConfigError, load_config

    path = tmp_path / "feeds.yaml"
    path.write_text("dedup:\n  threshold: high\nfeeds:\n  - name: a\n    url: https://e.org/f\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^feeds.yaml: dedup: threshold: expected a number"):
        load_config(path)


def test_store_creates_the_dedup_tables(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "x.db")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(dedup_fingerprints)")}
    assert {"entry_id", "ts", "text_hash", "keys", "sketch", "shingles", "root"} <= columns
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"dedup_index", "dedup_window"} <= tables
    assert not tables & {"dedup_postings", "dedup_state", "dedup_filters"}


# -- the corpus ---------------------------------------------------------------------------

def best_member(name: str, group: list[Post]) -> Post:
    """The root a duplicate group should have (issue 19: the most complete member, ties to
    the earliest published): the corpus README says 快科技 trimmed about a quarter of the
    龙芯 press release, so ZAKER's copy is the more complete; the other groups are one text,
    and the earliest published (the first of those, in the order given) is the root."""
    if name == "龙芯 PC":
        return next(p for p in group if "ZAKER" in p.path.parts)
    return min(group, key=lambda p: p.date)


def test_corpus_duplicates_linked_and_related_stories_apart(conn: Connection) -> None:
    posts = corpus_posts()
    ids = store_corpus(conn, posts)
    for name, members in DUPLICATE_GROUPS.items():
        posted = sorted(group_posts(posts, members), key=lambda p: ids[p.path])
        root = ids[best_member(name, posted).path]
        assert link_of(conn, root)[0] is None, name
        for other in (ids[p.path] for p in posted if ids[p.path] != root):
            duplicate_of, method, score = link_of(conn, other)
            assert duplicate_of == root, name
            assert method in ("exact", "near") and score >= SETTINGS.threshold, name
    for name, members in DISTINCT_GROUPS.items():
        for post in group_posts(posts, members):
            assert link_of(conn, ids[post.path]) == (None, None, None), (name, post.title)
    methods = dict(conn.execute("SELECT dup_method, count(*) FROM entries "
                                "WHERE duplicate_of IS NOT NULL GROUP BY 1").fetchall())
    # 00后少年 and 12.88元 are the same text once folded; 龙芯 is a trimmed reprint
    assert methods == {"exact": 2, "near": 1}


def test_corpus_in_reverse_order_links_to_the_best_member(conn: Connection) -> None:
    """The order entries arrive in does not decide the root: the reversed corpus has the same
    roots as the corpus in order."""
    posts = list(reversed(corpus_posts()))
    ids = store_corpus(conn, posts)
    linked = conn.execute("SELECT id, duplicate_of FROM entries "
                          "WHERE duplicate_of IS NOT NULL").fetchall()
    assert len(linked) == 3
    for name, members in DUPLICATE_GROUPS.items():
        posted = sorted(group_posts(posts, members), key=lambda p: ids[p.path])
        root = ids[best_member(name, posted).path]
        assert all(link_of(conn, ids[p.path])[0] == root for p in posted
                   if ids[p.path] != root), name
    longxin = group_posts(posts, DUPLICATE_GROUPS["龙芯 PC"])
    zaker = ids[best_member("龙芯 PC", longxin).path]
    trimmed = next(ids[p.path] for p in longxin if ids[p.path] != zaker)
    # the trimmed copy arrives first here: the complete one takes the cluster over
    assert trimmed < zaker and link_of(conn, trimmed)[:2] == (zaker, "near")


def test_second_run_changes_nothing(conn: Connection) -> None:
    ids = list(store_corpus(conn, corpus_posts()).values())
    before = snapshot(conn)
    links = link(conn, ids)
    assert snapshot(conn) == before
    assert sorted((lk.entry_id, lk.duplicate_of, lk.method) for lk in links) == sorted(
        (r[0], r[1], r[2]) for r in conn.execute(
            "SELECT id, duplicate_of, dup_method FROM entries WHERE duplicate_of IS NOT NULL"))
    # given precomputed fingerprints (the pipeline's path), still nothing changes
    rows = conn.execute("SELECT id, title, content_text, url FROM entries").fetchall()
    fps = {r[0]: fingerprint.compute(r[1], r[2], r[3], SETTINGS) for r in rows}
    with store.transaction(conn):
        link_entries(conn, ids, SETTINGS, fps)
    assert snapshot(conn) == before


# -- levels -------------------------------------------------------------------------------

ARTICLE = "\n".join(
    f"第{i}段：记者从发布会现场获悉，新款设备在第{i}季度上市，售价为{i * 1000 + 99}元，"
    f"首批供货城市包括北京、上海和深圳等{i + 3}个城市。" for i in range(1, 16))
OTHER = "\n".join(
    f"另一篇报道第{i}部分：气象台预计本周末将有{i}毫米降雨，提醒市民出行注意安全，"
    f"并关注{i + 2}号预警信号。" for i in range(1, 16))


def test_url_with_tracking_params_links_across_feeds(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE, feed="a", url="https://news.example.com/2024/1.html")
    b = add(conn, "别的标题", OTHER, feed="b",
            url="HTTPS://News.Example.com/2024/1.html?utm_source=rss&spm=1#top")
    link(conn, [a, b])
    assert link_of(conn, b) == (a, "url", 1.0)


def test_edited_reprint_with_header_is_near(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE, feed="a")
    header = "编者按：本文转载自合作媒体，观点不代表本站立场。\n"
    reprint = header + ARTICLE.replace("深圳", "广州", 3)
    b = add(conn, "转载", reprint.replace("，", " , "), feed="b", when=T0 + timedelta(hours=5))
    c = add(conn, "无关", OTHER, feed="c")
    link(conn, [a, b, c])
    duplicate_of, method, score = link_of(conn, b)
    assert (duplicate_of, method) == (a, "near") and score >= 0.8
    assert link_of(conn, c) == (None, None, None)


def test_same_event_sharing_most_paragraphs_is_not_linked(conn: Connection) -> None:
    paras = ARTICLE.split("\n")
    mixed = "\n".join(paras[:9] + OTHER.split("\n")[:7])  # 9 of 15 paragraphs shared
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "同一事件的另一篇", mixed)
    link(conn, [a, b])
    assert link_of(conn, b) == (None, None, None)
    report = explain(conn, b, SETTINGS)
    assert report["candidates"] and report["candidates"][0]["id"] == a
    assert report["candidates"][0]["containment"] < SETTINGS.threshold
    assert report["candidates"][0]["decision"] == "no link"


def test_link_follows_to_the_cluster_root(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE, url="https://a.example/1")
    b = add(conn, "转载", ARTICLE, feed="b", url="https://b.example/1")
    c = add(conn, "另一篇", OTHER, feed="c", url="https://b.example/1?from=timeline")
    link(conn, [a, b, c])
    assert link_of(conn, b) == (a, "exact", 1.0)
    assert link_of(conn, c) == (a, "url", 1.0)  # matched b by URL; b's root is a


def test_outside_the_window_is_not_compared(conn: Connection) -> None:
    a = add(conn, "原文", ARTICLE)
    b = add(conn, "一个月后", ARTICLE, feed="b", when=T0 + timedelta(days=30))
    link(conn, [a, b])
    assert link_of(conn, b) == (None, None, None)
    rebuild(conn, replace(SETTINGS, window_days=60))  # rebuild commits on its own
    assert link_of(conn, b) == (a, "exact", 1.0)


def test_short_teaser_links_by_title_within_the_window(conn: Connection) -> None:
    a = add(conn, "小米12S Ultra 7月4日发布：徕卡影像加持", ARTICLE, feed="full")
    teaser = add(conn, "小米 12S Ultra 7 月 4 日发布，徕卡影像加持", "点击阅读全文。", feed="t",
                 when=T0 + timedelta(hours=20))
    late = add(conn, "小米12S Ultra 7月4日发布：徕卡影像加持", "点击阅读全文。", feed="u",
               when=T0 + timedelta(hours=100))
    unrelated = add(conn, "华为发布新款平板电脑", "点击阅读全文。", feed="v",
                    when=T0 + timedelta(hours=1))
    link(conn, [a, teaser, late, unrelated])
    duplicate_of, method, score = link_of(conn, teaser)
    assert (duplicate_of, method) == (a, "title") and score >= SETTINGS.title_threshold
    assert link_of(conn, late) == (None, None, None)  # 100 h > 72 h
    assert link_of(conn, unrelated) == (None, None, None)


def test_short_text_contained_in_an_article_links_to_it(conn: Connection) -> None:
    a = add(conn, "发布会全文", ARTICLE, feed="full")
    lead = ARTICLE.split("\n")[0]  # the first paragraph, as a summary-only feed sends it
    assert len(fingerprint.fold_text(lead)) < SETTINGS.short_chars
    b = add(conn, "完全不同的标题", lead, feed="summary", when=T0 + timedelta(hours=1))
    link(conn, [a, b])
    duplicate_of, method, score = link_of(conn, b)
    assert (duplicate_of, method) == (a, "near") and score >= SETTINGS.threshold
    # the same lead four days later (past the 72 h title window, inside the 14-day one): a
    # short text is only evidence close in time, and explain says so
    c = add(conn, "完全不同的标题", lead, feed="late", when=T0 + timedelta(hours=97))
    link(conn, [c])
    assert link_of(conn, c) == (None, None, None)
    reasons = {x["id"]: x["reason"] for x in explain(conn, c, SETTINGS)["candidates"]}
    assert "97 h apart (title window 72 h)" in reasons[a]


def test_no_self_or_forward_links(conn: Connection) -> None:
    ids = [add(conn, "同题", ARTICLE, feed=f"f{i}", when=T0 + timedelta(hours=i))
           for i in range(4)]
    link(conn, list(reversed(ids)))  # processing order does not matter: id order is used
    rows = conn.execute("SELECT id, duplicate_of FROM entries ORDER BY id").fetchall()
    assert rows[0][1] is None
    assert all(dup == ids[0] for _, dup in rows[1:])


def test_updated_entry_is_relinked_and_its_duplicates_follow(conn: Connection) -> None:
    x = add(conn, "X", ARTICLE, feed="x")
    y = add(conn, "Y", OTHER, feed="y")
    z = add(conn, "Z", OTHER, feed="z")
    link(conn, [x, y, z])
    assert link_of(conn, z)[0] == y
    # y's content changes into x's article: y now duplicates x, and z follows y to x
    conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (ARTICLE, y))
    link(conn, [y])
    assert link_of(conn, y)[:2] == (x, "exact")
    assert link_of(conn, z)[0] == x
    # and an entry whose content stops matching loses its link
    conn.execute("UPDATE entries SET content_text = ? WHERE id = ?", (OTHER + "\n补充。", y))
    link(conn, [y])
    assert link_of(conn, y) == (None, None, None)


# -- explain and rebuild --------------------------------------------------------------------

def test_explain_shows_scores_and_reason(conn: Connection) -> None:
    posts = corpus_posts()
    ids = store_corpus(conn, posts)
    first, second = sorted(ids[p.path] for p in group_posts(posts, DUPLICATE_GROUPS["龙芯 PC"]))
    report = explain(conn, second, SETTINGS)
    assert report["duplicate_of"] == first and report["method"] == "near"
    top = report["candidates"][0]
    assert top["id"] == first and top["decision"] == "near"
    assert 0.8 <= top["containment"] < 0.95 and top["jaccard"] < top["containment"]
    assert "containment" in top["reason"]
    # the root itself: its candidate is later and links to it
    root_report = explain(conn, first, SETTINGS)
    assert root_report["duplicate_of"] is None and root_report["duplicates"] == 1
    assert root_report["candidates"][0]["later"]
    with pytest.raises(KeyError):
        explain(conn, 99999, SETTINGS)


def test_rebuild_applies_new_thresholds(conn: Connection) -> None:
    posts = corpus_posts()
    ids = store_corpus(conn, posts)
    before = snapshot(conn)
    strict = replace(SETTINGS, threshold=0.95)
    calls: list[tuple[int, int]] = []
    result = rebuild(conn, strict, progress=lambda done, total: calls.append((done, total)))
    assert result["entries"] == len(ids) and result["by_method"] == {"exact": 2}
    assert calls[-1] == (len(ids), len(ids))
    assert rebuild(conn, SETTINGS)["by_method"] == {"exact": 2, "near": 1}
    assert snapshot(conn) == before


# -- CLI ----------------------------------------------------------------------------------

def test_cli_dups_and_rebuild(tmp_path: Path, database: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from scraper.cli import main

    db = database
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - name: a\n    url: https://e.org/f\n", encoding="utf-8")
    conn = store.connect(db)
    posts = corpus_posts()
    ids = store_corpus(conn, posts)
    conn.close()
    args = ["--config", str(config), "--db", str(db)]
    assert main(["dups", *args]) == 0
    out = capsys.readouterr().out
    assert "100%国产芯+操作系统" in out and "(near 0.8" in out and "(exact 1.00)" in out
    longxin = max(ids[p.path] for p in group_posts(posts, DUPLICATE_GROUPS["龙芯 PC"]))
    assert main(["dups", "--explain", str(longxin), *args]) == 0
    out = capsys.readouterr().out
    assert "containment 0.8" in out and "-> near" in out
    assert main(["dedup", "--rebuild", *args]) == 0
    assert "rebuilt 12 entries" in capsys.readouterr().out
    assert main(["dups", "--explain", "424242", *args]) == 2


def test_the_parser_has_the_dedup_commands() -> None:
    parser = build_parser()
    assert parser.parse_args(["dups", "--explain", "7"]).explain == 7
    assert parser.parse_args(["dedup", "--rebuild"]).rebuild


# -- the sketch screen ----------------------------------------------------------------------

def _spy_similarity(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the exact scores computed (dedup calls fingerprint.similarity for each)."""
    calls: list[int] = []
    real = fingerprint.similarity

    def spy(a: object, b: object) -> tuple[float, float]:
        calls.append(1)
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(fingerprint, "similarity", spy)
    return calls


def test_unrelated_candidate_gets_no_exact_score(conn: Connection,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 bands of one row make a candidate of almost any pair sharing a paragraph or two
    loose = replace(SETTINGS, bands=20, rows=1)
    paras = ARTICLE.split("\n")
    related = "\n".join(paras[:2] + OTHER.split("\n"))  # two of 15 paragraphs shared
    a = add(conn, "原文", ARTICLE)
    link(conn, [a], loose)
    b = add(conn, "另一篇", related, feed="b")
    calls = _spy_similarity(monkeypatch)
    link(conn, [b], loose)
    assert link_of(conn, b) == (None, None, None) and calls == []
    # the LSH let it through: explain finds it by a band, and shows its exact score
    found = {c["id"]: c for c in explain(conn, b, loose)["candidates"]}
    assert "near" in found[a]["found_by"] and found[a]["containment"] is not None
    # a real reprint is still scored exactly, and linked
    calls.clear()
    c = add(conn, "转载", ARTICLE.replace("深圳", "广州", 2), feed="c")
    link(conn, [c], loose)
    assert calls and link_of(conn, c)[:2] == (a, "near")


def test_could_reach_keeps_pairs_at_the_threshold() -> None:
    t = SETTINGS.threshold
    for mine, theirs in [(1500.0, 1500.0), (1200.0, 1500.0), (100.0, 1500.0), (90.0, 110.0)]:
        inter = t * min(mine, theirs)
        needed = inter / (mine + theirs - inter)  # the Jaccard of containment == threshold
        sigma = (needed * (1 - needed) / min(fingerprint.SKETCH_BINS, mine, theirs)) ** 0.5
        low = needed - similarity.SKETCH_SIGMAS * sigma
        got = [similarity.could_reach(e, mine, theirs, t)
               for e in (needed, low + 1e-6, low - 1e-3, 0.0)]
        # a short text inside a long one needs so little Jaccard that nothing rules it out
        assert got == [True, True, False, low <= 0], (mine, theirs)
        assert (low <= 0) == (mine == 100.0)
    # unrelated articles of equal size (estimated Jaccard 0.1) are ruled out
    assert not similarity.could_reach(0.1, 1500.0, 1500.0, t)
    # a candidate without a shingle count is never ruled out
    assert similarity.could_reach(0.0, 1500.0, 0, t)


def test_rows_indexed_before_the_sketch_are_scored_exactly_then_filled_in(
        conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    a = add(conn, "原文", ARTICLE)
    link(conn, [a])
    conn.execute("UPDATE dedup_fingerprints SET sketch = NULL, shingles = NULL")  # as in v3
    before = link_of(conn, a), indexed(conn)
    calls = _spy_similarity(monkeypatch)
    b = add(conn, "转载", ARTICLE.replace("深圳", "广州", 2), feed="b")
    link(conn, [b])
    assert calls and link_of(conn, b)[:2] == (a, "near")
    link(conn, [a])  # unchanged: not relinked, but its sketch is stored now
    assert (link_of(conn, a), indexed(conn) - {b}) == before
    row = conn.execute("SELECT sketch, shingles FROM dedup_fingerprints WHERE entry_id = ?",
                       (a,)).fetchone()
    fp = fingerprint.compute("原文", ARTICLE, None, SETTINGS)
    assert (row[0], row[1]) == (fp.sketch, fp.shingles)


# -- migrations ---------------------------------------------------------------------------

def test_a_version_3_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for script in store.MIGRATIONS[:3]:
        old.executescript(script.sqlite)
    old.execute("PRAGMA user_version = 3")
    old.close()
    conn = store.connect(path)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(dedup_fingerprints)")]
    assert columns[-5:] == ["sketch", "shingles", "seq", "root", "arrived"]
    assert store.schema_version(conn) == len(store.MIGRATIONS)
    conn.close()


def test_a_second_process_waits_for_an_upgrade_longer_than_the_busy_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration can hold the write lock for a minute at 1M entries: a process started
    meanwhile waits for it instead of failing with "database is locked"."""
    import threading

    path = tmp_path / "v4.db"
    old = sqlite3.connect(path, check_same_thread=False)
    for script in store.MIGRATIONS[:4]:
        old.executescript(script.sqlite)
    old.execute("PRAGMA journal_mode = WAL")  # as every database store.connect made
    old.execute("PRAGMA user_version = 4")
    old.commit()
    from scraper.storage import db

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # where connect and migrate read them
    monkeypatch.setattr(db, "MIGRATION_WAIT_MS", 20_000)
    old.execute("BEGIN IMMEDIATE")  # stands for the first process's long upgrade
    upgraded = threading.Event()
    opened: list[sqlite3.Connection] = []

    def second() -> None:
        opened.append(store.connect(path))
        upgraded.set()

    thread = threading.Thread(target=second)
    thread.start()
    # it waits for the lock (far longer than its 50 ms busy timeout would allow) ...
    assert not upgraded.wait(0.5)
    old.rollback()
    thread.join(20)
    # ... then migrates
    assert upgraded.is_set() and store.schema_version(opened[0]) == len(store.MIGRATIONS)
    opened[0].close()
    old.close()


def v7_database(path: Path, entries: list[tuple[str, str]]) -> list[int]:
    """A database as the release before migration 8 left it: ``entries`` (title, text)
    linked and their keys merged into dedup_postings under their 28-day bucket, as that
    release's merge wrote them.  Built here from the schema and the fingerprints, so the
    test needs no old code."""
    old = sqlite3.connect(path)
    for script in store.MIGRATIONS[:7]:
        old.executescript(script.sqlite)
    old.execute("PRAGMA user_version = 7")
    stamp = store.iso(T0)
    ts = int(T0.timestamp())
    ids = []
    for i, (title, text) in enumerate(entries, start=1):
        old.execute("INSERT INTO entries (id, feed, entry_key, title, published, content_text, "
                    "fetched_at, updated_at) VALUES (?, 'a', ?, ?, ?, ?, ?, ?)",
                    (i, f"k{i}", title, stamp, text, stamp, stamp))
        fp = fingerprint.compute(title, text, None, SETTINGS)
        keys = sorted({k for _, k in fp.index_keys()})
        old.execute("INSERT INTO dedup_fingerprints (entry_id, ts, canonical_url, text_hash, "
                    "title, length, keys, sketch, shingles, seq, root) "
                    "VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (i, ts, fp.text_hash, fp.title, fp.length,
                     np.array(keys, dtype=np.int64).tobytes(), fp.sketch, fp.shingles, i, i))
        old.executemany("INSERT INTO dedup_postings (bucket, key, entry_id) VALUES (?, ?, ?)",
                        [(ts // (28 * 86400), k, i) for k in keys])
        ids.append(i)
    old.execute("UPDATE dedup_state SET merged_seq = ?, filtered_seq = ?", (len(ids), len(ids)))
    old.commit()
    old.close()
    return ids


def test_a_version_7_index_moves_to_the_key_table_and_still_finds_reprints(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "v7.db"
    a, x = v7_database(path, [("原文", ARTICLE), ("无关", OTHER)])
    conn = store.connect(path)
    assert f"schema from version 7 to {len(store.MIGRATIONS)}" in caplog.text
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"dedup_postings", "dedup_state", "dedup_filters"}
    # every stored key is in the new index, under its entry
    want = sorted((k, entry_id) for entry_id, blob in conn.execute(
        "SELECT entry_id, keys FROM dedup_fingerprints")
        for k in np.frombuffer(blob, dtype=np.int64).tolist())
    assert len(want) > 20
    assert [tuple(r) for r in conn.execute("SELECT key, entry_id FROM dedup_index "
                                           "ORDER BY 1, 2")] == want
    b = add(conn, "转载", ARTICLE.replace("深圳", "广州", 2), feed="b")
    c = add(conn, "转载", OTHER.replace("毫米", "厘米", 1), feed="c")
    link(conn, [b, c])
    assert link_of(conn, b)[:2] == (a, "near") and link_of(conn, c)[:2] == (x, "near")
    before = snapshot(conn)
    link(conn, [a, x])  # unchanged since they were indexed: left alone
    assert snapshot(conn) == before
    assert explain(conn, b, SETTINGS)["candidates"][0]["id"] == a
    conn.close()
