"""Local feed files (issue 20, point 4): ``url: file:///path`` or a plain path relative to
feeds.yaml, read from disk, with the file's mtime and size standing in for the conditional
GET; and a file link in feed content never read."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import dbread
import pytest
import yaml
from server import FeedServer

from scraper.cli import main


def rss(items: list[tuple[str, str]]) -> str:
    """An RSS 2.0 document of (title, text) items, each with its own link and GUID."""
    body = "".join(
        f"<item><title>{escape(title)}</title><link>https://example.org/{i}</link>"
        f"<guid>item-{i}</guid><description>{escape(text)}</description></item>"
        for i, (title, text) in enumerate(items))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>local</title><link>https://example.org/</link>{body}</channel></rss>")


def write_config(folder: Path, feeds: list[dict], **top: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "feeds.yaml"
    path.write_text(yaml.safe_dump({"feeds": feeds, **top}, allow_unicode=True), "utf-8")
    return path


def run(cfg: Path, db: str | None = None) -> int:
    """``scrape --once`` into ``db`` (the ``database`` fixture), else an SQLite file beside
    the config (the tests that run on SQLite alone)."""
    return main(["--once", "--config", str(cfg), "--db", db or str(cfg.parent / "t.db")])


query = dbread.rows


ITEMS = [("本地源第一篇", "一条写在磁盘上的新闻。"), ("本地源第二篇", "另一条写在磁盘上的新闻。")]
OTHER = [("绝对路径的源", "用 file:// 地址读到的文章。")]


# SQLite only: reading file: feeds does not depend on the backend (pipeline tests cover PG).
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_a_relative_path_and_a_file_url_are_read_from_disk(tmp_path: Path,
                                                           database: str) -> None:
    config_dir = tmp_path / "conf"
    (config_dir / "feeds").mkdir(parents=True)
    (config_dir / "feeds" / "a.xml").write_text(rss(ITEMS), "utf-8")
    elsewhere = tmp_path / "elsewhere" / "b.xml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(rss(OTHER), "utf-8")
    # The relative path is resolved against feeds.yaml's folder, not the working directory
    # (the test runs from the repository's root).
    cfg = write_config(config_dir, [{"name": "rel", "url": "feeds/a.xml"},
                                    {"name": "abs", "url": elsewhere.as_uri()}])
    assert run(cfg, database) == 0
    titles = dict(query(database, "SELECT title, feed FROM entries"))
    assert titles == {**{t: "rel" for t, _ in ITEMS}, **{t: "abs" for t, _ in OTHER}}


@SQLITE_ONLY
def test_an_unchanged_file_is_not_modified_and_a_changed_one_is_read_again(
        tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "a.xml"
    feed.write_text(rss(ITEMS), "utf-8")
    cfg = write_config(tmp_path, [{"name": "a", "url": "a.xml"}])
    assert run(cfg, database) == 0
    assert query(database, "SELECT COUNT(*) FROM entries") == [(len(ITEMS),)]
    first_tag = query(database, "SELECT etag FROM feeds")[0][0]
    capsys.readouterr()

    assert run(cfg, database) == 0
    assert query(database, "SELECT last_status FROM feeds") == [(304,)]
    assert " not-modified " in capsys.readouterr().out

    # Same size, new text, a later mtime (set, not waited for): the mtime alone tells.
    edited = [(ITEMS[0][0], ITEMS[0][1].replace("新闻", "消息"))] + ITEMS[1:]
    text = rss(edited)
    assert len(text.encode()) == feed.stat().st_size
    feed.write_text(text, "utf-8")
    stat = feed.stat()
    os.utime(feed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert run(cfg, database) == 0
    assert query(database, "SELECT last_status FROM feeds") == [(200,)]
    assert query(database, "SELECT etag FROM feeds")[0][0] != first_tag
    stored = {t: x for t, x in query(database, "SELECT title, content_text FROM entries")}
    assert "消息" in stored[ITEMS[0][0]]
    assert "total: 1 feeds, 1 ok, 0 failed; 0 new, 1 updated" in capsys.readouterr().out

    # A new item: a different size.
    feed.write_text(rss([*edited, ("本地源第三篇", "后来写进文件的新闻。")]), "utf-8")
    assert run(cfg, database) == 0
    assert query(database, "SELECT COUNT(*) FROM entries") == [(len(ITEMS) + 1,)]


@SQLITE_ONLY
def test_a_missing_file_fails_its_feed_alone_with_one_line_naming_the_path(
        tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.xml").write_text(rss(ITEMS), "utf-8")
    cfg = write_config(tmp_path, [{"name": "a", "url": "a.xml"},
                                  {"name": "gone", "url": "feeds/gone.xml"},
                                  {"name": "folder", "url": str(tmp_path)}])
    assert run(cfg, database) == 1
    captured = capsys.readouterr()
    gone = [line for line in captured.out.splitlines() if line.startswith("gone ")]
    assert len(gone) == 1 and str(tmp_path / "feeds" / "gone.xml") in gone[0], captured.out
    assert "no such file" in gone[0]
    folder = [line for line in captured.out.splitlines() if line.startswith("folder ")]
    assert "not a regular file" in folder[0]
    assert "Traceback" not in captured.err
    assert query(database, "SELECT COUNT(*) FROM entries WHERE feed = 'a'") == [(len(ITEMS),)]
    errors = dict(query(database, "SELECT name, last_error FROM feeds"))
    assert str(tmp_path / "feeds" / "gone.xml") in errors["gone"]


@SQLITE_ONLY
def test_a_file_over_the_body_cap_is_a_feed_error(
        tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.xml").write_text(rss(ITEMS), "utf-8")
    cfg = write_config(tmp_path, [{"name": "a", "url": "a.xml"}], fetch={"max_bytes": 100})
    assert run(cfg, database) == 1
    assert "raise fetch.max_bytes" in capsys.readouterr().out
    assert query(database, "SELECT COUNT(*) FROM entries") == [(0,)]


@pytest.mark.parametrize(("url", "problem"), [
    ("file://example.org/etc/feed.xml", "url: expected file:///absolute/path (no host)"),
    ("file:relative.xml", "url: expected file:///absolute/path (no host)"),
    ("ftp://example.org/feed.xml", "url: expected an http(s) URL"),
    ("file:///tmp/a%00b.xml", "url: a path cannot hold a NUL character"),  # not exit 1's
    ("feeds/a\0b.xml", "url: a path cannot hold a NUL character"),  # "internal error"
    # A web address or RSSHub route missing its scheme would be read as a file forever.
    ("www.example.com/rss", "url: 'www.example.com/rss' is neither a file nor a URL; did you "
                            "mean 'https://www.example.com/rss'?"),
    ("rsshub/zaker/focusread", "url: 'rsshub/zaker/focusread' is neither a file nor a URL; "
                               "did you mean 'rsshub:/zaker/focusread'?"),
])
# SQLite only: the config is refused before any database is opened.
def test_a_bad_file_url_is_a_config_error_naming_file_feed_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, problem: str) -> None:
    cfg = write_config(tmp_path, [{"name": "a", "url": url}])
    assert run(cfg) == 2
    err = capsys.readouterr().err
    assert f"feeds.yaml: feeds[0] 'a': {problem}" in err
    assert len(err.strip().splitlines()) == 1


SECRET = "本机的秘密文件内容"


# SQLite only: about what full text fetches; the entry is stored as in the tests above.
@pytest.mark.parametrize("served", ["local", "http"])
def test_a_file_link_in_feed_content_is_never_read(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str],
        served: str) -> None:
    """Local feeds come from the user's config; a link inside a feed comes from whoever
    wrote the feed, and full text must never turn it into a read of this machine's files."""
    secret = tmp_path / "secret.html"
    secret.write_text(f"<html><body><article><p>{SECRET}</p>" * 20 + "</body></html>", "utf-8")
    text = "订阅源里原本的摘要文字。"
    document = rss([("指向本机文件的文章", text)]).replace(
        "https://example.org/0", secret.as_uri())
    if served == "local":
        (tmp_path / "a.xml").write_text(document, "utf-8")
        url = "a.xml"
    else:
        feed_server.serve("/a.xml", document.encode(), "application/rss+xml")
        url = feed_server.url("/a.xml")
    cfg = write_config(tmp_path, [{"name": "a", "url": url, "fulltext": True}])
    assert run(cfg) == 0
    stored = query(cfg.parent / "t.db", "SELECT url, content_text, content_html FROM entries")
    assert [row[0] for row in stored] == [secret.as_uri()]
    assert text in stored[0][1]
    assert SECRET not in stored[0][1] + stored[0][2]
    assert "scheme 'file' is not http(s)" in capsys.readouterr().err
