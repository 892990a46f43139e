"""The fast parse path never loses entries feedparser finds (issue 16, point 7).

Every expected count here is computed with feedparser itself, on the same document.
"""

from __future__ import annotations

from pathlib import Path

import dbread
import feedparser
import pytest
import yaml
from server import FeedServer

from scraper.cli import main
from scraper.core.parse import parse_feed

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

# RSS 0.90: the shape of feedparser's tests/wellformed/rdf/rss090_item_title.xml, with more
# items, one of them without a link.
RSS090 = f"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="{RDF}" xmlns="http://my.netscape.com/rdf/simple/0.9/">
<channel><title>Ninety</title><link>http://example.com/</link><description>d</description>
</channel>
<item><title>First of ninety</title><link>http://example.com/1</link></item>
<item><title>Second of ninety</title><link>http://example.com/2</link></item>
<item><title>Third, no link</title></item>
</rdf:RDF>"""

RSS10 = f"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="{RDF}" xmlns="http://purl.org/rss/1.0/">
<channel rdf:about="http://example.com/"><title>One-oh</title><link>http://example.com/</link>
<description>d</description></channel>
<item rdf:about="http://example.com/1"><title>First</title><link>http://example.com/1</link>
</item>
<item rdf:about="http://example.com/2"><title>Second</title><description>body</description>
</item>
</rdf:RDF>"""

ATOM = """<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title>
<entry><title>Titled, no link, no id</title><content>c1</content></entry>
<entry><title>Linked</title><link href="http://example.com/a2"/></entry>
<entry><summary>a summary and nothing else</summary></entry>
</feed>"""

RSS20_BARE = """<rss version="2.0"><channel><title>Bare</title>
<item><title>title only</title></item>
<item><description>description only</description></item>
<item><title>both</title><description>and a body</description></item>
<item><pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate></item>
</channel></rss>"""

# Items beside the channel instead of inside it: fastfeedparser finds none.
RSS20_ITEMS_OUTSIDE = """<rss version="2.0"><channel><title>Outside</title></channel>
<item><title>Beside the channel</title><link>http://example.com/o1</link></item>
</rss>"""

# Microsoft's Channel Definition Format: fastfeedparser raises "Unknown feed type".
CDF = """<CHANNEL HREF="http://example.com/"><TITLE>cdf</TITLE>
<ITEM HREF="http://example.com/c1"><TITLE>A CDF item</TITLE></ITEM></CHANNEL>"""

SHAPES = {"rss090": RSS090, "rss10": RSS10, "atom": ATOM, "rss20-bare": RSS20_BARE,
          "rss20-items-outside": RSS20_ITEMS_OUTSIDE, "cdf": CDF}


def substantial(entry: feedparser.FeedParserDict) -> bool:
    """What our parser keeps: anything with an id, a link, a title or content."""
    return any(entry.get(k) for k in ("id", "link", "title", "summary", "content"))


def feedparser_titles(body: bytes) -> list[str]:
    return [(e.get("title") or "").strip()
            for e in feedparser.parse(body).entries if substantial(e)]


@pytest.mark.parametrize("shape", SHAPES)
def test_parse_feed_finds_what_feedparser_finds(shape: str) -> None:
    body = SHAPES[shape].encode()
    expected = feedparser_titles(body)
    assert expected  # the shape is a feed to feedparser
    feed = parse_feed(body, {})
    assert [e.title for e in feed.entries] == expected
    assert feed.problem is None


@pytest.mark.parametrize("shape", SHAPES)
def test_both_parser_paths_keep_the_same_entries(shape: str) -> None:
    """A stray ``&`` in the channel title sends the document to feedparser's loose path; the
    entries and their keys must not depend on which parser read them."""
    body = SHAPES[shape].encode()
    broken = body.replace(b"<title>", b"<title>&amp; & ", 1).replace(b"<TITLE>", b"<TITLE>& ", 1)
    well, loose = parse_feed(body, {}), parse_feed(broken, {})
    assert well.problem is None and loose.problem  # one parse each way
    assert [(e.key, e.raw_hash) for e in well.entries] == \
        [(e.key, e.raw_hash) for e in loose.entries]


def test_items_without_link_or_guid_are_kept_by_their_hash() -> None:
    entries = parse_feed(RSS20_BARE.encode(), {}).entries
    titled = [e for e in entries if not e.url and not e.guid]
    assert len(titled) == len(entries) == 3
    assert all(e.key.startswith("sha256:") for e in titled)
    assert len({e.key for e in titled}) == 3


def test_an_item_with_nothing_in_it_is_dropped() -> None:
    found = feedparser.parse(RSS20_BARE.encode()).entries
    empty = [e for e in found if not substantial(e)]
    assert len(empty) == 1  # feedparser reports the pubDate-only item
    assert len(parse_feed(RSS20_BARE.encode(), {}).entries) == len(found) - 1


def test_a_feed_with_no_items_is_empty_not_an_error() -> None:
    body = b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    feed = parse_feed(body, {})
    assert feed.entries == [] and feed.problem is None


def test_an_empty_document_feedparser_does_not_know_stays_an_empty_feed() -> None:
    """The second opinion may only add entries: a document fastfeedparser reads as a feed
    with no items is not turned into an error because feedparser cannot name its format."""
    body = f'<rdf:RDF xmlns:rdf="{RDF}"><channel><title>x</title></channel></rdf:RDF>'.encode()
    assert not feedparser.parse(body).get("version")  # feedparser: not a feed it knows
    feed = parse_feed(body, {})
    assert feed.entries == [] and feed.problem is None


# SQLite only: parsing happens before storage, which the pipeline tests cover on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_rss090_is_stored_by_scrape_once(tmp_path: Path, database: str,
                                         feed_server: FeedServer) -> None:
    feed_server.serve("/ninety.rdf", RSS090.encode(), "application/rdf+xml")
    feed_server.serve("/atom.xml", ATOM.encode(), "application/atom+xml")
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "ninety", "url": feed_server.url("/ninety.rdf")},
        {"name": "atom", "url": feed_server.url("/atom.xml")}]}), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database]) == 0
    found = dbread.rows(database, "SELECT feed, title FROM entries")
    stored = {feed: sorted(t for f, t in found if f == feed) for feed in ("ninety", "atom")}
    assert stored["ninety"] == sorted(feedparser_titles(RSS090.encode()))
    assert stored["atom"] == sorted(feedparser_titles(ATOM.encode()))
