"""``scrape search``: the full-text index over titles and texts, through the command line,
against a database ``scrape --once`` filled from feeds served on 127.0.0.1 (tests/stored.py),
on both backends (SQLite's FTS5 trigram table, PostgreSQL's pg_trgm indexes): one query finds
the same entries on each.  The index's own shape and the upgrade that builds it are
SQLite's."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import stored
from server import FeedServer

from scraper import storage
from scraper.cli import main
from scraper.storage import schema


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The articles stored on each backend in turn (a file path or a URL), once per module:
    the tests that take it only read (search never writes: see the last test)."""
    folder = tmp_path_factory.mktemp("search")
    url = None
    if request.param == "postgresql":
        pg_server = request.getfixturevalue("pg_server")
        url = pg_server.create_database()
    server = FeedServer().start()
    try:
        filled = stored.fill(folder, server, database=url)[1]
    finally:
        server.stop()
    yield filled
    if url is not None:
        from scraper.storage import pg

        pg.close_pools()
        pg_server.drop_database(url)


@pytest.fixture
def sqlite_db(tmp_path: Path, feed_server: FeedServer) -> Path:
    return Path(stored.fill(tmp_path, feed_server)[1])


def search(capsys: pytest.CaptureFixture[str], db: str | Path, *args: str) -> list[dict]:
    assert main(["search", *args, "--json", "--db", str(db)]) == 0
    return json.loads(capsys.readouterr().out)


def keys(found: list[dict]) -> list[tuple[str, str]]:
    """(feed, title) of each match, in the order given."""
    return [(f["feed"], f["title"]) for f in found]


def expected(*words: str, duplicates: bool = False) -> list[tuple[str, str]]:
    """What a search for ``words`` must return, newest first, from the articles served."""
    hits = [a for a in stored.holding(*words) if duplicates or a.key != "fold-reprint"]
    return [(a.feed, a.title) for a in sorted(hits, key=lambda a: a.published, reverse=True)]


def test_a_chinese_query_of_three_characters_finds_the_entries_that_contain_it(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 折叠屏 lies inside a clause: unicode61 would take the clause for one word, trigrams not.
    assert expected("折叠屏")  # (the test's own premise)
    assert keys(search(capsys, db, "折叠屏")) == expected("折叠屏")
    assert keys(search(capsys, db, "二手房成交")) == expected("二手房成交")


def test_a_chinese_query_of_two_characters_falls_back_to_a_scan(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Two characters are shorter than a trigram: the index cannot answer, the scan does.
    assert keys(search(capsys, db, "北京")) == expected("北京") != []
    assert keys(search(capsys, db, "公司")) == expected("公司") != []
    assert search(capsys, db, "南京") == [] == expected("南京")


def test_every_word_must_be_found_and_case_does_not_matter(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(search(capsys, db, "python", "REPL")) == expected("python", "REPL") != []
    assert search(capsys, db, "python", "华为") == []
    # a long word and a short one together (the scan)
    assert keys(search(capsys, db, "手机", "深圳")) == expected("手机", "深圳") != []


@pytest.mark.parametrize("query", ['"-X gil=0"', "3.14 AND", 'NEAR("x" y)', "gil=0\"", "-",
                                   "free-threading", "AND OR NOT", "*", "a%_"])
def test_query_syntax_is_searched_as_text_never_an_error(
        db: str, capsys: pytest.CaptureFixture[str], query: str) -> None:
    found = search(capsys, db, query)
    assert keys(found) == expected(*query.split())


def test_matches_come_newest_first_and_duplicates_only_when_asked(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    found = search(capsys, db, "华为", "--include-duplicates")  # (2 characters: the scan)
    assert keys(found) == expected("华为", duplicates=True)
    assert len(found) == 2 and found[0]["duplicate_of"] == found[1]["id"]
    assert keys(search(capsys, db, "华为发布", "--include-duplicates")) == keys(found)
    assert keys(search(capsys, db, "华为发布")) == expected("华为发布") == keys(found)[1:]
    # a query every Chinese article matches: the order is by published time
    everything = search(capsys, db, "，", "--include-duplicates", "--limit", "0")
    assert keys(everything) == expected("，", duplicates=True)
    assert len(everything) == len([a for a in stored.ARTICLES if "，" in a.text]) > 3


def test_feed_since_and_limit_narrow_the_matches(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = [(f, t) for f, t in expected("，") if f == "alpha"]
    assert keys(search(capsys, db, "，", "--feed", "alpha", "--limit", "0")) == alpha
    recent = [a for a in stored.ARTICLES if a.published.day >= 5 and "，" in a.text]
    assert {t for _, t in keys(search(capsys, db, "，", "--since", "2026-11-05"))} == {
        a.title for a in recent}
    assert keys(search(capsys, db, "，", "--limit", "1")) == expected("，")[:1]


def test_the_text_output_names_each_match_and_marks_it(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "折叠屏", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fold = stored.ARTICLES[0]
    assert lines[0].startswith("#") and "[alpha]" in lines[0] and fold.title in lines[0]
    assert "2026-11-03" in lines[0]
    assert "[折叠屏]" in lines[1]  # (not a terminal: brackets)
    assert main(["search", "没有这个词", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "no matches"


def test_an_edited_entry_is_found_by_its_new_text_only(
        tmp_path: Path, feed_server: FeedServer, database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, db = stored.fill(tmp_path, feed_server, database=database)
    edited = [stored.Article(a.feed, a.key, a.title, a.text.replace("北京", "天津"),
                             a.published) for a in stored.ARTICLES]
    stored.serve(feed_server, edited)
    assert main(["--once", "--config", str(config), "--db", str(db), "--workers", "0"]) == 0
    capsys.readouterr()
    assert search(capsys, db, "北京有小") == [] == search(capsys, db, "北京")
    weather = [(a.feed, a.title) for a in edited if "天津" in a.text]
    assert keys(search(capsys, db, "天津有小")) == weather != []


def test_the_upgrade_indexes_the_entries_stored_before_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.db"
    index = next(i for i, m in enumerate(schema.MIGRATIONS) if "entries_fts" in m.sqlite)
    later = schema.MIGRATIONS[index:]
    del schema.MIGRATIONS[index:]  # a database of the release before the index
    try:
        conn = storage.connect(db)
        with storage.transaction(conn):
            conn.executemany(
                "INSERT INTO entries (feed, entry_key, title, content_text, fetched_at, "
                "updated_at) VALUES ('old', ?, ?, ?, '2026-01-01T00:00:00Z', "
                "'2026-01-01T00:00:00Z')",
                [(a.key, a.title, a.text) for a in stored.ARTICLES])
        conn.close()
    finally:
        schema.MIGRATIONS.extend(later)
    # A read command refuses the old schema; a write opens it and upgrades.
    assert main(["search", "折叠屏", "--db", str(db)]) == 2
    assert "older than this release" in capsys.readouterr().err
    storage.connect(db).close()
    found = search(capsys, db, "折叠屏", "--include-duplicates")
    assert sorted(f["title"] for f in found) == sorted(
        a.title for a in stored.holding("折叠屏"))


def test_the_index_is_an_fts5_trigram_table_over_title_and_text(sqlite_db: Path) -> None:
    conn = sqlite3.connect(sqlite_db)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries_fts'").fetchone()[0]
    conn.close()
    assert "fts5" in sql.lower() and "trigram" in sql and 'content="entries"' in sql


def test_postgresql_narrows_a_trigram_with_its_gin_indexes_and_scans_for_a_short_word(
        tmp_path: Path, feed_server: FeedServer, pg_url: str) -> None:
    """pg_trgm's indexes serve ILIKE '%...%' on the title and the text: a word of three
    characters or more is looked up by its trigrams, so the index hands over only rows
    that hold them; two characters make no trigram, and the index can only hand over every
    row (as good as a scan: the planner takes the scan).  Seq scans are priced out here,
    or the planner would take one on six rows anyway."""
    db = stored.fill(tmp_path, feed_server, database=pg_url)[1]
    conn = storage.open_existing(db)
    try:
        conn.execute("SET enable_seqscan = off")

        def from_text_index(word: str) -> int:
            """Rows the text index hands over for ILIKE '%word%' (EXPLAIN ANALYZE)."""
            plan = [row[0] for row in conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT id FROM entries "
                "WHERE title ILIKE ? OR content_text ILIKE ?", (f"%{word}%", f"%{word}%"))]
            node = next(line for line in plan if "Bitmap Index Scan on entries_text_trgm" in line)
            assert any("Bitmap Index Scan on entries_title_trgm" in line for line in plan)
            return int(node.split(" rows=")[1].split()[0])

        # (pg_trgm hashes a trigram of Chinese characters into 3 bytes: the index may hand
        # over a row that does not hold the word, which the recheck drops; never fewer)
        everything = len(stored.ARTICLES)
        for word in ("折叠屏", "二手房成交"):
            assert len(stored.holding(word)) <= from_text_index(word) < everything
        assert from_text_index("折叠") >= everything > len(stored.holding("折叠"))
    finally:
        conn.close()


def test_search_only_reads_and_errors_are_one_line(
        tmp_path: Path, sqlite_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_db
    before = db.read_bytes()
    search(capsys, db, "折叠屏")
    assert db.read_bytes() == before
    assert main(["search", "x", "--db", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert "none.db" in err and len(err.strip().splitlines()) == 1
    assert main(["search", " ", "--db", str(db)]) == 2
    assert capsys.readouterr().err.strip() == "scrape search: the query is empty"
