"""``core.digest.document_digest``: which changes to a feed document count (issue 18).  Equal
digests skip the parse, so every change that can reach an entry must change the digest."""

from __future__ import annotations

import pytest

from scraper.core.digest import document_digest

URL = "https://example.com/feed.xml"
HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}
ITEMS = ("<item><title>一</title><guid>a</guid><pubDate>Mon, 07 Dec 2026 08:00:00 GMT</pubDate>"
         "<description>第一条</description></item>"
         "<item><title>二</title><guid>b</guid><description>第二条</description></item>")
RSS = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
       "<lastBuildDate>Mon, 07 Dec 2026 09:00:00 GMT</lastBuildDate><ttl>30</ttl>"
       f"{ITEMS}</channel></rss>")
ATOM = ('<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        "<updated>2026-12-07T09:00:00Z</updated>"
        "<entry><id>a</id><title>一</title><updated>2026-12-07T08:00:00Z</updated></entry>"
        "</feed>")


def digest(text: str, headers: dict[str, str] = HEADERS, url: str = URL) -> str:
    return document_digest(text.encode(), headers, url)


@pytest.mark.parametrize(("doc", "old", "new"), [
    (RSS, "09:00:00 GMT</lastBuildDate>", "10:30:00 GMT</lastBuildDate>"),
    (RSS, "<ttl>", "<pubDate>Mon, 07 Dec 2026 09:00:00 GMT</pubDate><ttl>"),
    (RSS, "</channel>", "<dc:date>2026-12-07T09:00:00Z</dc:date></channel>"),
    (ATOM, "<updated>2026-12-07T09:00:00Z</updated><entry>",
     "<updated>2026-12-07T10:00:00Z</updated><entry>"),
])
def test_a_new_build_time_outside_the_entries_keeps_the_digest(doc: str, old: str,
                                                                new: str) -> None:
    assert old in doc
    assert digest(doc.replace(old, new, 1)) == digest(doc)


@pytest.mark.parametrize(("doc", "old", "new"), [
    (RSS, "第一条", "第一条（更新）"),  # an entry's text
    (RSS, "08:00:00 GMT</pubDate>", "08:05:00 GMT</pubDate>"),  # an entry's own date
    (ATOM, "08:00:00Z</updated></entry>", "08:05:00Z</updated></entry>"),
    (RSS, "<ttl>30</ttl>", "<ttl>60</ttl>"),  # the schedule reads it
    (RSS, "<title>t</title>", "<title>t2</title>"),
    (RSS, '<rss version="2.0">', '<rss version="2.0" xml:base="https://example.org/">'),
    (RSS, "</channel>", "<item><guid>c</guid><title>三</title></item></channel>"),
    (RSS, "<lastBuildDate>Mon", "<lastBuildDate><![CDATA[x]]>Mon"),  # not a plain stamp
])
def test_any_other_change_changes_the_digest(doc: str, old: str, new: str) -> None:
    assert old in doc
    assert digest(doc.replace(old, new, 1)) != digest(doc)


def test_a_stamp_inside_an_entity_declaration_counts() -> None:
    """The DOCTYPE's entities are expanded into the entries that use them."""
    doc = RSS.replace("<rss ", '<!DOCTYPE rss [<!ENTITY d "<pubDate>v1</pubDate>">]><rss ', 1)
    doc = doc.replace("第一条", "第一条&d;")
    assert digest(doc.replace("v1", "v2")) != digest(doc)


def test_the_headers_the_parse_reads_and_the_url_count() -> None:
    assert digest(RSS, {"content-type": "application/rss+xml; charset=gb18030"}) != digest(RSS)
    assert digest(RSS, {**HEADERS, "content-location": "https://example.org/"}) != digest(RSS)
    assert digest(RSS, {**HEADERS, "x-request-id": "1"}) == digest(RSS)
    assert digest(RSS, url="https://example.com/other.xml") != digest(RSS)


def test_an_item_tag_in_the_channel_text_widens_the_span_and_drops_no_entry() -> None:
    doc = RSS.replace("<title>t</title>", "<title>t</title><description><![CDATA[<item>"
                      "]]></description>")
    assert digest(doc.replace("第二条", "第二条！")) != digest(doc)
    # The stamp now sits inside the widened span: it counts, which costs a parse, no entry.
    assert digest(doc.replace("09:00:00 GMT</lastBuildDate>", "10:00:00 GMT</lastBuildDate>")
                  ) != digest(doc)


def test_without_entry_tags_every_byte_counts() -> None:
    utf16 = RSS.replace('encoding="utf-8"', 'encoding="utf-16"')
    restamped = utf16.replace("09:00:00 GMT", "10:00:00 GMT")
    assert document_digest(restamped.encode("utf-16"), HEADERS, URL) != document_digest(
        utf16.encode("utf-16"), HEADERS, URL)
    json_feed = '{"version": "https://jsonfeed.org/version/1.1", "date": "%s", "items": []}'
    assert digest(json_feed % "1") != digest(json_feed % "2")
