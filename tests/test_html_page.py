"""An HTML page given as a feed: the error says so and lists the feeds the page links
(issue 16, point 10c)."""

from __future__ import annotations

import json
from pathlib import Path

import dbread
import pytest
import yaml
from server import FeedServer

from scraper.cli import main
from scraper.core.parse import ParseError, parse_feed

GOOD = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>good</title>
<item><title>A story</title><link>http://example.com/s1</link></item></channel></rss>"""


def page(head: str) -> bytes:
    return (f"<!DOCTYPE html>\n<html><head><title>A blog</title>{head}</head>"
            "<body><p>Welcome &amp; <b>hello</p></body></html>").encode()


def alternate(href: str, kind: str = "application/rss+xml") -> str:
    return f'<link rel="alternate" type="{kind}" href="{href}">'


def error_for(body: bytes, url: str = "https://example.com/blog/") -> str:
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {"content-type": "text/html; charset=utf-8"}, url)
    return str(caught.value)


def test_the_linked_feeds_are_resolved_against_the_page() -> None:
    head = alternate("/rss.xml") + alternate("atom.xml", "application/atom+xml")
    assert error_for(page(head)) == ("not a feed: an HTML page; it links these feeds: "
                                     "https://example.com/rss.xml, "
                                     "https://example.com/blog/atom.xml")


def test_a_page_without_feed_links_says_so() -> None:
    head = '<link rel="stylesheet" href="s.css">' + alternate("/fr", "text/html")
    assert error_for(page(head)) == "not a feed: an HTML page; it links no feeds"


def test_base_href_and_an_xhtml_page() -> None:
    xhtml = (b'<?xml version="1.0"?>\n<!-- generated -->\n'
             b'<html xmlns="http://www.w3.org/1999/xhtml"><head><base href="https://cdn.example/x/"/>'
             b'<link rel="Alternate" type="application/RSS+xml; charset=utf-8" href="feed"/>'
             b"</head><body/></html>")
    assert error_for(xhtml).endswith("it links these feeds: https://cdn.example/x/feed")


def test_many_links_stay_one_line() -> None:
    head = "".join(alternate(f"/c{i}.xml") for i in range(12))
    head += alternate("javascript:alert(1)") + alternate("/c0.xml")
    line = error_for(page(head))
    assert "\n" not in line
    assert "https://example.com/c4.xml and 7 more" in line
    assert "c5.xml" not in line and "javascript" not in line


def test_links_that_are_not_urls_are_skipped() -> None:
    head = ('<base href="http://[broken/">' + alternate("http://[::1/x") + alternate("/ok.xml")
            + alternate("/tab\tbed.xml"))
    assert error_for(page(head)).endswith(
        "it links these feeds: https://example.com/ok.xml, https://example.com/tabbed.xml")


def test_other_documents_keep_their_reason() -> None:
    assert "HTML page" not in error_for(b"<notfeed><x>1</x></notfeed>")


# SQLite only: a feed error is stored as any other, which the pipeline tests cover on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_scrape_once_names_the_linked_feeds(tmp_path: Path, database: str,
                                            feed_server: FeedServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    head = alternate("/rss.xml") + alternate("feeds/atom.xml", "application/atom+xml")
    feed_server.serve("/blog/index.html", page(head), "text/html; charset=utf-8")
    feed_server.serve("/good.xml", GOOD)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "page", "url": feed_server.url("/blog/index.html")},
        {"name": "good", "url": feed_server.url("/good.xml")}]}), "utf-8")
    db = database
    rss, atom = feed_server.url("/rss.xml"), feed_server.url("/blog/feeds/atom.xml")
    expected = f"not a feed: an HTML page; it links these feeds: {rss}, {atom}"

    assert main(["--once", "--config", str(cfg), "--db", db]) == 1
    out, err = capsys.readouterr()
    line = next(x for x in out.splitlines() if x.startswith("page "))
    assert line.endswith(expected)
    assert "Traceback" not in out + err

    stored = dbread.rows(db, "SELECT feed, title FROM entries")
    assert stored == [("good", "A story")]

    assert main(["status", "--json", "--config", str(cfg), "--db", db]) == 0
    report = json.loads(capsys.readouterr().out)
    errors = {f["name"]: f["last_error"] for f in report["feeds"]}
    assert errors == {"page": expected, "good": None}

    assert main(["status", "--config", str(cfg), "--db", db]) == 0
    table = capsys.readouterr().out
    row = next(x for x in table.splitlines() if x.startswith("page "))
    assert "not a feed: an HTML page; it links these feeds: http" in row
