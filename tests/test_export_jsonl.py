"""`scrape export jsonl`: every stored field, one object per line, duplicate links both ways;
on both backends (``database``: an SQLite file or a PostgreSQL URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from server import FeedServer

import scraper
from scraper import storage as store
from scraper.cli import main
from scraper.export import Selection, jsonl


@pytest.fixture
def db(database: str) -> Iterator[store.Connection]:
    conn = store.connect(database)
    yield conn
    conn.close()


def add(conn: store.Connection, feed: str, key: str, title: str, published: str,
        duplicate_of: int | None = None, stamp: str = "2024-01-01T00:00:00Z") -> int:
    row = conn.execute(
        "INSERT INTO entries (feed, entry_key, url, guid, title, author, published, "
        "content_html, content_text, summary, image, raw_html, raw_hash, fetched_at, "
        "updated_at, duplicate_of, dup_method, dup_score) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (feed, key, f"https://example.org/{feed}/{key}", f"guid-{key}", title, "作者",
         published, f"<p>{title}</p>", title, title[:5], "https://img.example.org/1.jpg",
         f"<div class=raw>{title}</div>", f"hash-{key}", stamp, stamp, duplicate_of,
         "exact" if duplicate_of else None, 1.0 if duplicate_of else None)).fetchone()
    return int(row[0])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def columns(conn: store.Connection) -> list[str]:
    return [column[0] for column in conn.execute("SELECT * FROM entries LIMIT 0").description]


def test_every_field_and_duplicate_links(db: store.Connection, tmp_path: Path) -> None:
    a = add(db, "zaker", "1", "雷军：是徕卡找的我们", "2022-06-28T01:50:00Z")
    b = add(db, "kkj", "2", "雷军：是徕卡找的我们（转载）", "2022-06-28T02:00:00Z", duplicate_of=a)
    c = add(db, "ithome", "3", "别的新闻 \"quoted\"\n第二行", "2022-06-29T00:00:00Z")
    out = tmp_path / "out" / "entries.jsonl"
    assert jsonl.export_jsonl(db, out) == 2
    records = read(out)
    assert [r["id"] for r in records] == [a, c]
    first = records[0]
    for name in columns(db):
        assert name in first, name
    stored = dict(db.execute("SELECT * FROM entries WHERE id = ?", (a,)).fetchone())
    assert {k: first[k] for k in stored} == stored
    assert first["duplicates"] == [{
        "id": b, "feed": "kkj", "url": "https://example.org/kkj/2",
        "title": "雷军：是徕卡找的我们（转载）", "published": "2022-06-28T02:00:00Z",
        "method": "exact", "score": 1.0}]
    assert first["duplicate_of_url"] is None
    assert records[1]["title"] == "别的新闻 \"quoted\"\n第二行"
    assert records[1]["duplicates"] == []
    # one object per line, whatever the text holds
    assert len(out.read_text("utf-8").splitlines()) == 2

    both = tmp_path / "all.jsonl"
    assert jsonl.export_jsonl(db, both, selection=Selection(include_duplicates=True)) == 3
    dup = {r["id"]: r for r in read(both)}[b]
    assert dup["duplicate_of"] == a and dup["duplicate_of_url"] == "https://example.org/zaker/1"
    assert dup["dup_method"] == "exact"


def test_incremental_appends_only_what_is_new_or_changed(
        db: store.Connection, tmp_path: Path) -> None:
    add(db, "zaker", "1", "一", "2022-05-01T00:00:00Z")
    add(db, "zaker", "2", "二", "2022-05-02T00:00:00Z")
    out = tmp_path / "e.jsonl"
    assert jsonl.export_jsonl(db, out, incremental=True) == 2
    assert jsonl.export_jsonl(db, out, incremental=True) == 0
    three = add(db, "zaker", "3", "三", "2022-05-03T00:00:00Z")
    assert jsonl.export_jsonl(db, out, incremental=True) == 1
    assert [r["id"] for r in read(out)][-1] == three and len(read(out)) == 3
    db.execute("UPDATE entries SET title = '一（更新）', updated_at = '2999-01-01T00:00:00Z' "
               "WHERE entry_key = '1'")
    assert jsonl.export_jsonl(db, out, incremental=True) == 1
    assert read(out)[-1]["title"] == "一（更新）"
    # a full export rewrites the file; the incremental one after it has nothing to add
    assert jsonl.export_jsonl(db, out) == 3 and len(read(out)) == 3
    four = add(db, "zaker", "4", "四", "2022-05-04T00:00:00Z")
    assert jsonl.export_jsonl(db, out, incremental=True) == 1
    assert [r["id"] for r in read(out)][-1] == four


def test_stdout_filters_and_no_raw(db: store.Connection, tmp_path: Path, database: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    add(db, "zaker", "1", "old", "2022-01-01T00:00:00Z")
    add(db, "zaker", "2", "new", "2022-06-01T00:00:00Z")
    add(db, "kkj", "3", "other", "2022-06-02T00:00:00Z")
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("feeds:\n  - name: zaker\n    url: https://example.org/z.xml\n", "utf-8")
    args = ["--config", str(cfg), "--db", database]
    assert main(["export", "jsonl", "-", "--since", "2022-05-01", "--feed", "zaker",
                 "--no-raw", *args]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["title"] for r in records] == ["new"]
    assert "raw_html" not in records[0]
    assert "1 entries" in captured.err


def test_python_api_exports_without_a_config(db: store.Connection, tmp_path: Path,
                                             database: str) -> None:
    a = add(db, "zaker", "1", "一", "2022-05-01T00:00:00Z")
    add(db, "kkj", "2", "一（转载）", "2022-05-01T01:00:00Z", duplicate_of=a)
    out = tmp_path / "api.jsonl"
    with scraper.open_scraper(db=database) as app:
        assert app.export_jsonl(out, incremental=True) == 1
        assert app.export_jsonl(out, incremental=True) == 0
        selection = scraper.Selection(include_duplicates=True, feeds=("kkj",))
        assert app.export_jsonl(tmp_path / "dups.jsonl", selection=selection) == 1
    assert [r["id"] for r in read(out)] == [a]
    assert read(tmp_path / "dups.jsonl")[0]["duplicate_of_url"] == "https://example.org/zaker/1"


def test_what_a_failed_export_staged_is_never_recorded(db: store.Connection) -> None:
    """A full export stages its records on its connection and records them once the file is
    in place.  One that failed before that leaves its staged rows in the connection's
    session (a Python API user's ``Scraper`` goes on with the same connection; on
    PostgreSQL the pooled session outlives the connection object too): the next export
    starts from none of them."""
    from scraper.storage import exports

    first = add(db, "zaker", "1", "一", "2022-05-01T00:00:00Z")
    second = add(db, "zaker", "2", "二", "2022-05-02T00:00:00Z")
    exports.start_staging(db)
    exports.stage(db, [(first, "failed-export")])  # ... and the export fails here
    exports.start_staging(db)
    exports.stage(db, [(second, "hash-2")])
    exports.commit_staged(db, "jsonl:test")
    assert exports.recorded(db, "jsonl:test") == {second: exports.Recorded(None, "hash-2")}


def _feed(site: str, body: str) -> bytes:
    """One item, carried by ``site`` under its own link: the same article on every site."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>{site}</title><link>https://{site}.example.org/</link>"
            f"<item><title>小米发布新款手机</title><link>https://{site}.example.org/1</link>"
            f"<guid>{site}-1</guid><pubDate>Tue, 28 Jun 2022 01:50:00 GMT</pubDate>"
            f"<description><![CDATA[<p>{body}</p>]]></description></item>"
            "</channel></rss>").encode()


def test_incremental_resends_an_original_that_gains_a_duplicate(
        tmp_path: Path, feed_server: FeedServer, database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The original's record names its duplicates and the other feeds carrying it: when a
    reprint arrives after the original was exported, the next incremental export sends the
    original again, though the original's own row did not change."""
    body = ("小米今天在北京发布了新款手机，搭载自研芯片和全新影像系统，" * 6).strip()
    for site in ("a", "b"):
        feed_server.serve(f"/{site}.xml", _feed(site, body))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": site, "url": feed_server.url(f"/{site}.xml")} for site in ("a", "b")]}),
        "utf-8")
    args = ["--config", str(cfg), "--db", database]
    out = tmp_path / "i.jsonl"
    export = ["export", "jsonl", "--incremental", str(out), *args]

    assert main(["--once", "--feed", "b", *args]) == 0
    # b was stored a while before the export (instead of sleeping past the second)
    conn = store.connect(database)
    try:
        with store.transaction(conn):
            conn.execute("UPDATE entries SET updated_at = '2000-01-01T00:00:00Z'")
    finally:
        conn.close()
    assert main(export) == 0
    (original,) = read(out)
    assert original["feed"] == "b" and original["duplicates"] == []

    assert main(["--once", "--feed", "a", *args]) == 0
    capsys.readouterr()
    assert main(export) == 0
    assert "jsonl: 1 entries" in capsys.readouterr().out
    first, again = read(out)
    assert again["id"] == original["id"]
    assert [d["feed"] for d in again["duplicates"]] == ["a"]
    assert again["also_reported_by"] == ["a"]
    assert main(export) == 0  # and nothing more after that
    assert len(read(out)) == 2
