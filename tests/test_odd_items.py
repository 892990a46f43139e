"""Items whose dates, links or hints are odd in ways real generators produce (found by an
exploratory review): each must be stored, dated or undated truthfully, and exportable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from server import FeedServer, Response

from scraper.cli import main
from scraper.core.parse import parse_feed

RSS = {"content-type": "application/rss+xml; charset=utf-8"}
ARTICLE = "<p>Long enough to be an article of its own, with some words in it.</p>"


def rss(items: str, channel: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>t</title><link>https://blog.example.org/</link>{channel}{items}"
            "</channel></rss>").encode()


def item(title: str, extra: str) -> str:
    """An item whose text is its own (the same text twice would be linked as a reprint, and
    left out of the exports)."""
    words = " ".join(f"{title.lower()}{n}" for n in range(12))
    return f"<item><title>{title}</title>{extra}<description><![CDATA[{ARTICLE}<p>{words}</p>" \
           "]]></description></item>"


def serve_and_store(tmp_path: Path, feed_server: FeedServer, name: str,
                    response: Response) -> Path:
    """``name``'s document served, a feeds.yaml for it, and one ``--once`` run: the database."""
    feed_server.route(f"/{name}.xml", response)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": name,
                                              "url": feed_server.url(f"/{name}.xml")}]}))
    db = tmp_path / "scrape.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 0
    return db


def exported(tmp_path: Path, db: Path) -> list[dict]:
    """Every entry of ``db`` as ``scrape export jsonl`` writes it."""
    out = tmp_path / "out.jsonl"
    assert main(["--db", str(db), "export", "jsonl", str(out)]) == 0
    return [json.loads(line) for line in out.read_text("utf-8").splitlines()]


def test_a_go_zero_date_is_no_date_and_the_exports_still_work(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """Hugo writes 0001-01-01 for an undated page; stored as "1-01-01...", it failed every
    export of the database."""
    db = serve_and_store(tmp_path, feed_server, "hugo", Response(body=rss(
        item("Dated", "<guid>https://blog.example.org/a</guid>"
             "<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate>")
        + item("Undated", "<guid>https://blog.example.org/b</guid>"
               "<pubDate>Mon, 01 Jan 0001 00:00:00 +0000</pubDate>")), headers=RSS))
    assert main(["--db", str(db), "export", "feed", str(tmp_path / "merged.xml")]) == 0
    assert main(["--db", str(db), "export", "hexo", str(tmp_path / "posts")]) == 0
    dates = {row["title"]: row.get("published") for row in exported(tmp_path, db)}
    assert dates["Undated"] is None
    assert dates["Dated"].startswith("2026-12-01")
    assert len(list((tmp_path / "posts").rglob("*.md"))) == 2


def test_placeholder_dates_are_no_dates() -> None:
    for stamp in ("Mon, 01 Jan 0001 00:00:00 +0000", "Thu, 01 Jan 1970 00:00:00 GMT",
                  "0001-01-01T00:00:00+05:00"):
        body = rss(item("x", f"<guid>https://e.org/1</guid><pubDate>{stamp}</pubDate>"))
        assert parse_feed(body, RSS, "https://e.org/feed").entries[0].published is None, stamp
        # the same through feedparser's path (a malformed document)
        broken = body.replace(b"</channel>", b"<p></channel>")
        assert parse_feed(broken, RSS, "https://e.org/feed").entries[0].published is None


def test_an_undated_item_is_not_dated_by_its_guid() -> None:
    """fastfeedparser reads a GUID that is not a URL as a date when the item has none: "42"
    became 2042, the current year's date."""
    body = rss("".join(item(f"Thread {n}", f'<guid isPermaLink="false">{n}</guid>')
                       for n in ("42", "7", "2024", "nd1")),
               channel="<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate>")
    entries = parse_feed(body, RSS, "https://forum.example/rss").entries
    assert [e.guid for e in entries] == ["42", "7", "2024", "nd1"]
    assert [e.published for e in entries] == [None] * 4


def test_a_dated_item_keeps_its_date_beside_undated_ones() -> None:
    """Each item judged by its own elements: the undated one beside a dated one, or before a
    channel <pubDate> written after the items, is still not dated by its GUID."""
    body = rss(item("a", '<guid isPermaLink="false">1</guid>'
                    "<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate>")
               + item("b", '<guid isPermaLink="false">42</guid>')
               + item("c", '<guid isPermaLink="false">c1</guid>'
                      "<lastBuildDate>Wed, 02 Dec 2026 08:00:00 +0000</lastBuildDate>"))
    entries = parse_feed(body, RSS, "https://forum.example/rss").entries
    assert [e.published for e in entries] == ["2026-12-01T08:00:00Z", None,
                                              "2026-12-02T08:00:00Z"]
    late = rss(item("d", '<guid isPermaLink="false">42</guid>')).replace(
        b"</channel>", b"<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate></channel>")
    assert parse_feed(late, RSS, "https://forum.example/rss").entries[0].published is None


def test_relative_links_are_made_absolute_against_the_site(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """A relative <link> was stored relative, and the content's images and links, resolved
    against it, were all dropped."""
    body = rss('<item><title>One</title><link>/posts/one/</link><description><![CDATA['
               f'{ARTICLE}<p><img src="/img/chart.png"> See <a href="/posts/zero/">the last'
               " one</a>.</p>]]></description></item>")
    db = serve_and_store(tmp_path, feed_server, "blog", Response(body=body, headers=RSS))
    [row] = exported(tmp_path, db)
    assert row["url"] == "https://blog.example.org/posts/one/"
    html = row["content_html"]
    assert "https://blog.example.org/img/chart.png" in html
    assert "https://blog.example.org/posts/zero/" in html


def test_both_parsers_resolve_a_relative_link_against_the_site() -> None:
    """A malformed document goes to feedparser, which resolved links against the document's
    URL (a proxy's, for an RSSHub feed): the same item had another URL by each path."""
    good = rss('<item><title>x</title><link>/p/1</link></item>')
    broken = good.replace(b"</channel>", b"<p></channel>")
    for body in (good, broken):
        entry = parse_feed(body, RSS, "https://rsshub.example/blog/feed").entries[0]
        assert entry.url == "https://blog.example.org/p/1"
        assert entry.key == "/p/1"  # the key stays the link as sent, on either path


def test_a_relative_link_with_no_site_resolves_against_the_document() -> None:
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>x</title><link>p/1.html</link></item></channel></rss>")
    entry = parse_feed(body, RSS, "https://e.org/feeds/all.xml").entries[0]
    assert entry.url == "https://e.org/feeds/p/1.html"


def test_absolute_links_are_kept_as_sent() -> None:
    link = "https://e.org/a b/c.html"  # a space: kept, or every stored entry would change
    body = rss(item("x", f"<link>{link}</link>"))
    assert parse_feed(body, RSS, "https://e.org/feed").entries[0].url == link


def test_absurd_cache_hints_do_not_fail_the_feed(tmp_path: Path,
                                                  feed_server: FeedServer) -> None:
    """A 20-digit max-age or <ttl> overflowed the database's integer column: the feed
    failed at every poll and its entries were never stored."""
    huge = "99999999999999999999"
    body = rss(item("Hinted", "<guid>https://blog.example.org/h</guid>"), f"<ttl>{huge}</ttl>")
    db = serve_and_store(tmp_path, feed_server, "hint", Response(body=body, headers={
        **RSS, "cache-control": f"max-age={huge}"}))
    assert [row["title"] for row in exported(tmp_path, db)] == ["Hinted"]


def test_a_database_holding_a_year_one_date_is_repaired_on_upgrade(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """The rows an earlier release stored with "1-01-01T00:00:00Z" lose that date when the
    database is opened, and its exports work again; real dates stay."""
    db = serve_and_store(tmp_path, feed_server, "two", Response(body=rss(
        item("Old", "<guid>https://blog.example.org/o</guid>"
             "<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate>")
        + item("Older", "<guid>https://blog.example.org/d</guid>"
               "<pubDate>Tue, 01 Dec 2026 09:00:00 +0000</pubDate>")
        + item("Real", "<guid>https://blog.example.org/r</guid>"
               "<pubDate>Wed, 02 Dec 2026 08:00:00 +0000</pubDate>")), headers=RSS))
    with sqlite3.connect(db) as conn:  # as the release before the repair left it
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("UPDATE entries SET published = '1-01-01T00:00:00Z' WHERE title = 'Old'")
        conn.execute("UPDATE entries SET published = '202-05-01T00:00:00Z' "
                     "WHERE title = 'Older'")
        conn.execute(f"PRAGMA user_version = {version - 1}")
    cfg = tmp_path / "feeds.yaml"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 0  # opens, upgrades
    dates = {row["title"]: row.get("published") for row in exported(tmp_path, db)}
    assert dates["Old"] is None and dates["Older"] is None
    assert dates["Real"].startswith("2026-12-02")


def test_utf8_labelled_gb2312_is_read_as_utf8_and_said() -> None:
    """Read as labelled, its Chinese was stored as mojibake without a word."""
    body = ('<?xml version="1.0" encoding="gb2312"?><rss version="2.0"><channel><title>t'
            "</title><item><title>你好，世界</title><guid>https://e.org/1</guid></item>"
            "</channel></rss>").encode()
    for headers in ({"content-type": "text/xml; charset=gb2312"}, {}):
        feed = parse_feed(body, headers, "https://e.org/feed")
        assert feed.entries[0].title == "你好，世界"
        assert feed.problem and "UTF-8" in feed.problem


def test_bytes_no_charset_reads_are_replaced_and_said() -> None:
    """A byte neither the label nor UTF-8 decodes: replaced, and the feed says so."""
    gbk = '<?xml version="1.0" encoding="gbk"?><rss version="2.0"><channel><title>t</title>' \
          '<item><title>新闻</title><guid>https://e.org/1</guid></item></channel></rss>'
    broken = gbk.encode("gb18030").replace("新".encode("gb18030"), b"\x81\x20")
    feed = parse_feed(broken, {}, "https://e.org/feed")
    assert feed.problem and "replaced" in feed.problem
    assert feed.entries[0].guid == "https://e.org/1"


def test_items_sharing_one_guid_are_all_stored(tmp_path: Path, feed_server: FeedServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A generator that gives every item the GUID "0": all but the first were dropped as
    repeats of it, without a word."""
    items = "".join(item(f"Story {n}", f'<guid isPermaLink="false">0</guid>'
                         f"<link>https://blog.example.org/{n}</link>") for n in range(3))
    db = serve_and_store(tmp_path, feed_server, "zero", Response(body=rss(items), headers=RSS))
    assert "share 1 GUID" in capsys.readouterr().out
    assert sorted(row["title"] for row in exported(tmp_path, db)) == [
        "Story 0", "Story 1", "Story 2"]


def test_an_item_repeated_whole_stays_one_entry() -> None:
    one = item("Same", '<guid isPermaLink="false">7</guid><link>https://e.org/7</link>')
    feed = parse_feed(rss(one + one), RSS, "https://e.org/feed")
    assert {e.key for e in feed.entries} == {"7"}
    assert feed.problem is None


def test_a_feeds_warning_names_it_in_json_logs(tmp_path: Path, feed_server: FeedServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A log reader filters by the ``feed`` field; the feed's name was only in the text."""
    items = "".join(item(f"Story {n}", f'<guid isPermaLink="false">0</guid>'
                         f"<link>https://blog.example.org/{n}</link>") for n in range(2))
    feed_server.route("/warned.xml", Response(body=rss(items), headers=RSS))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": "warned",
                                              "url": feed_server.url("/warned.xml")}]}))
    assert main(["--once", "--log-format", "json", "--config", str(cfg),
                 "--db", str(tmp_path / "scrape.db")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    assert [e["feed"] for e in events if e["level"] == "warning"] == ["warned"]


def test_a_pinned_copy_keeps_the_guid_as_its_key() -> None:
    """The same GUID and link twice, the copy's text a little different: one entry, keyed
    by the GUID at every poll (keyed by the link only while the copy is there, it would be
    stored twice)."""
    body = rss(item("Pinned", '<guid isPermaLink="false">g1</guid><link>https://e.org/p</link>')
               + item("Pinned again", '<guid isPermaLink="false">g1</guid>'
                      "<link>https://e.org/p</link>"))
    assert {e.key for e in parse_feed(body, RSS, "https://e.org/feed").entries} == {"g1"}


def test_markup_quoted_in_cdata_is_not_an_item() -> None:
    """An HTML description quoting "<item>" ended the item early: its date went unseen."""
    body = rss('<item><title>x</title><guid>https://e.org/1</guid><description><![CDATA['
               "<item>quoted</item> and <updated>not a date</updated>]]></description>"
               "<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate></item>")
    entry = parse_feed(body, RSS, "https://e.org/feed").entries[0]
    assert entry.published == "2026-12-01T08:00:00Z"
