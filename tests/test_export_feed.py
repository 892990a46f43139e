"""`scrape export feed`: one merged Atom/RSS feed, each story once, duplicates as related links.

Read back with feedparser (the library our own users and most readers rely on): the
document must not be bozo, entry links must be unique and no duplicate may be an entry.
On both backends (``database``: an SQLite file or a PostgreSQL URL).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest

import scraper
from scraper import storage as store
from scraper.cli import main
from scraper.config import load_config
from scraper.export import Selection, feed

FEEDS = {"zaker": "https://rsshub.app/zaker/channel/13", "kkj": "https://rsshub.app/mydrivers",
         "ithome": "https://www.ithome.com/rss/"}


@pytest.fixture
def db(database: str) -> Iterator[store.Connection]:
    conn = store.connect(database)
    conn.executemany("INSERT INTO feeds (name, url) VALUES (?, ?)", FEEDS.items())
    yield conn
    conn.close()


def add(conn: store.Connection, feed_name: str, key: str, title: str, url: str | None,
        published: str, duplicate_of: int | None = None, html: str = "<p>正文</p>") -> int:
    row = conn.execute(
        "INSERT INTO entries (feed, entry_key, url, title, published, content_html, summary, "
        "fetched_at, updated_at, duplicate_of, dup_method, dup_score) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (feed_name, key, url, title, published, html, "摘要", published, published,
         duplicate_of, "near" if duplicate_of else None, 0.9 if duplicate_of else None)
    ).fetchone()
    return int(row[0])


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n"
                    f"  - name: zaker\n    url: {FEEDS['zaker']}\n"
                    "    categories: [新媒体, ZAKER, channel]\n    author: ZAKER\n"
                    f"  - name: kkj\n    url: {FEEDS['kkj']}\n"
                    "    categories: [新媒体, 快科技（原驱动之家）]\n", "utf-8")
    return path


@pytest.fixture
def stream(db: store.Connection) -> dict[str, int]:
    """Three stories: one carried by three feeds, one by two, one alone; plus oddities."""
    ids: dict[str, int] = {}
    ids["leica"] = add(db, "zaker", "1", "雷军：小米和徕卡的合作深度空前！联调后夜拍不会是“傻亮”",
                       "https://example.org/zaker/1", "2022-05-23T16:31:40Z")
    ids["leica-kkj"] = add(db, "kkj", "2", "雷军：小米和徕卡合作深度空前",
                           "https://example.org/kkj/2", "2022-05-23T17:00:00Z", ids["leica"])
    ids["leica-it"] = add(db, "ithome", "3", "小米徕卡合作：夜拍不会是傻亮",
                          "https://example.org/it/3", "2022-05-23T18:00:00Z", ids["leica"])
    ids["loongson"] = add(db, "kkj", "4", "100%国产芯+操作系统 <龙芯> & \"PC\"",
                          "https://example.org/kkj/4?a=1&b=2", "2022-05-09T02:00:00Z")
    ids["loongson-z"] = add(db, "zaker", "5", "100% 国产芯 + 操作系统",
                            "https://example.org/zaker/5", "2022-05-09T03:00:00Z", ids["loongson"])
    ids["alone"] = add(db, "ithome", "6", "控制字符\x01\x0b标题", "https://example.org/it/6",
                       "2022-06-01T00:00:00Z", html="<p>a\x02b</p>")
    # same link as an original, not linked by dedup (dedup off, or rebuilt): shown once
    ids["same-link"] = add(db, "zaker", "7", "同一链接", "https://example.org/it/6",
                           "2022-05-30T00:00:00Z")
    ids["no-link"] = add(db, "zaker", "8", "没有链接", None, "2022-05-01T00:00:00Z")
    return ids


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_merged_feed_parses_clean_and_carries_each_story_once(
        db: store.Connection, stream: dict[str, int], tmp_path: Path, fmt: str) -> None:
    config = load_config(config_file(tmp_path))
    body, count = feed.build_feed(db, config, fmt=fmt, limit=50)
    parsed = feedparser.parse(body)
    assert parsed.bozo is False or parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == ("atom10" if fmt == "atom" else "rss20")
    # leica, loongson, alone, no-link ("same-link" repeats alone's link: left out)
    assert count == len(parsed.entries) == 4

    # (feedparser shows the id of an entry without a link as its "link": look at the links)
    links = [link.href for e in parsed.entries for link in e.get("links", [])
             if link.rel == "alternate" and link.href.startswith("https:")]
    assert len(links) == len(set(links)) == 3
    duplicate_links = {"https://example.org/kkj/2", "https://example.org/it/3",
                       "https://example.org/zaker/5"}
    assert not duplicate_links & set(links)
    ids = [e.id for e in parsed.entries]
    assert len(set(ids)) == len(ids)

    by_link = {e.get("link"): e for e in parsed.entries}
    leica = by_link["https://example.org/zaker/1"]
    assert leica.title == "雷军：小米和徕卡的合作深度空前！联调后夜拍不会是“傻亮”"
    assert sorted(link.href for link in leica.links if link.rel == "related") == [
        "https://example.org/it/3", "https://example.org/kkj/2"]
    assert leica.source.title == "zaker"
    assert leica.author == "ZAKER"
    loongson = by_link["https://example.org/kkj/4?a=1&b=2"]
    assert loongson.title == "100%国产芯+操作系统 <龙芯> & \"PC\""
    assert [link.href for link in loongson.links if link.rel == "related"] == [
        "https://example.org/zaker/5"]
    assert loongson.source.title == "kkj"
    assert loongson.author == "kkj"  # no author in the config: the feed's name
    # the source feed's address too, as the format has it
    source_href = loongson.source.get("href") or loongson.source.get("link")
    assert source_href == FEEDS["kkj"]
    # characters XML cannot carry are gone, the rest is intact
    assert by_link["https://example.org/it/6"].title == "控制字符标题"
    # newest first
    dates = [e.published_parsed for e in parsed.entries]
    assert dates == sorted(dates, reverse=True)
    # the feed's categories travel with the entry
    assert [t.term for t in leica.tags] == ["新媒体", "ZAKER", "channel"]


def test_limit_takes_the_latest_stories(db: store.Connection, stream: dict[str, int]) -> None:
    body, count = feed.build_feed(db, None, limit=2)
    parsed = feedparser.parse(body)
    assert count == 2
    assert [e.link for e in parsed.entries] == ["https://example.org/it/6",
                                                 "https://example.org/zaker/1"]


def test_since_and_feed_filters(db: store.Connection, stream: dict[str, int]) -> None:
    body, _ = feed.build_feed(db, None, selection=Selection(since="2022-05-20T00:00:00Z",
                                                             feeds=("zaker",)))
    parsed = feedparser.parse(body)
    assert [e.title for e in parsed.entries] == ["同一链接",
                                                 "雷军：小米和徕卡的合作深度空前！联调后夜拍不会是“傻亮”"]


def test_empty_database_gives_a_valid_empty_feed(db: store.Connection) -> None:
    for fmt in ("atom", "rss"):
        body, count = feed.build_feed(db, None, fmt=fmt)
        parsed = feedparser.parse(body)
        assert count == 0 and not parsed.bozo and parsed.entries == []


def test_entry_ids_do_not_depend_on_the_database(tmp_path: Path, database: str) -> None:
    """Readers key on ids: a feed rebuilt from a new database (or moved to PostgreSQL)
    must not repeat stories."""
    one = store.connect(database)
    two = store.connect(tmp_path / "two.db")
    add(two, "x", "filler", "filler", "https://example.org/filler", "2021-01-01T00:00:00Z")
    for conn in (one, two):
        add(conn, "zaker", "guid-1", "t", "https://example.org/t", "2022-05-23T00:00:00Z")
    ids = [feedparser.parse(feed.build_feed(c, None, limit=1)[0]).entries[0].id
           for c in (one, two)]
    assert ids[0] == ids[1]


def test_command_line_writes_the_file(db: store.Connection, stream: dict[str, int],
                                      tmp_path: Path, database: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", str(config_file(tmp_path)), "--db", database]
    out = tmp_path / "public" / "feed.xml"
    assert main(["export", "feed", str(out), "--format", "rss", "--limit", "3",
                 "--title", "合并", "--link", "https://example.org/feed.xml", *args]) == 0
    parsed = feedparser.parse(out.read_bytes())
    assert not parsed.bozo and parsed.version == "rss20" and len(parsed.entries) == 3
    assert parsed.feed.title == "合并"
    capsys.readouterr()
    assert main(["export", "feed", "-", *args]) == 0
    parsed = feedparser.parse(capsys.readouterr().out.encode())
    assert not parsed.bozo and parsed.version == "atom10" and len(parsed.entries) == 4
    assert Counter(e.link for e in parsed.entries if "link" in e).most_common(1)[0][1] == 1
    with pytest.raises(SystemExit):
        main(["export", "feed", str(out), "--limit", "0", *args])


def test_python_api_writes_the_feed(db: store.Connection, stream: dict[str, int],
                                    tmp_path: Path, database: str) -> None:
    config = scraper.load(config_file(tmp_path))
    out = tmp_path / "feed.atom"
    with scraper.open_scraper(config, database) as app:
        assert app.export_feed(out, limit=2) == 2
    parsed = feedparser.parse(out.read_bytes())
    assert not parsed.bozo and [e.link for e in parsed.entries] == [
        "https://example.org/it/6", "https://example.org/zaker/1"]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


SITE = "https://news.example.com/"
CHANNEL_LINKS = {
    # case: (options, config's extra lines or None for no config, the expected link)
    "--link": (["--link", "https://example.net/merged.xml"], "",
               "https://example.net/merged.xml"),
    "site_url": ([], f"site_url: {SITE}\n", SITE),
    "--link over site_url": (["--link", "https://example.net/m.xml"], f"site_url: {SITE}\n",
                             "https://example.net/m.xml"),
    "the first configured feed's site": ([], "", origin(FEEDS["zaker"])),
    "the first selected feed's site": (["--feed", "kkj"], "", origin(FEEDS["kkj"])),
    "--db alone: the first stored feed's site": ([], None, origin(FEEDS[sorted(FEEDS)[0]])),
}


@pytest.mark.parametrize("case", list(CHANNEL_LINKS))
def test_the_channel_link_is_a_real_url(
        db: store.Connection, stream: dict[str, int], tmp_path: Path, database: str,
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    options, extra, expected = CHANNEL_LINKS[case]
    args = ["--db", database, *options]
    if extra is None:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")  # no feeds.yaml
    else:
        config = config_file(tmp_path)
        config.write_text(extra + config.read_text("utf-8"), "utf-8")
        args += ["--config", str(config)]
    out = tmp_path / "merged.xml"
    assert main(["export", "feed", str(out), "--format", "rss", *args]) == 0
    assert ET.parse(out).getroot().findtext("channel/link") == expected
    assert feedparser.parse(out.read_bytes()).feed.link == expected
    if "--link" not in options:  # Atom: the site is the alternate link (--link is self)
        assert main(["export", "feed", str(out), *args]) == 0
        links = ET.parse(out).getroot().findall(f"{{{feed.ATOM}}}link[@rel='alternate']")
        assert [link.get("href") for link in links] == [expected]


def test_an_rss_feed_with_no_site_at_all_is_refused(
        tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """No --link, no site_url and no feed to take a site from: there is no real URL to put
    in the channel's <link>, and a made-up one (urn:...) breaks readers."""
    store.connect(database).close()
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", "utf-8")
    out = tmp_path / "merged.xml"
    assert main(["export", "feed", str(out), "--format", "rss", "--config", str(config),
                 "--db", database]) == 2
    assert "--link URL" in capsys.readouterr().err and not out.exists()


def test_site_url_must_be_an_http_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("site_url: news.example.com\nfeeds: []\n", "utf-8")
    assert main(["export", "feed", "-", "--config", str(config)]) == 2
    assert "feeds.yaml: site_url: expected an http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize("link", ["javascript:alert(1)", "notaurl", "http://[::1/feed"])
def test_link_must_be_an_http_url(tmp_path: Path, link: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """As site_url: the feed's id and self link go to every reader of the export."""
    with pytest.raises(SystemExit) as exit_:
        main(["export", "feed", "-", "--link", link, "--db", str(tmp_path / "x.db")])
    assert exit_.value.code == 2
    assert f"--link: expected an http(s) URL, got {link!r}" in capsys.readouterr().err
