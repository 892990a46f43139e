"""Parsing: encodings, formats, hostile documents, and the two parser paths agreeing."""

from __future__ import annotations

import corpus
import pytest
import server as srv

from scraper.core import parse
from scraper.core.parse import ParseError, parse_feed

POSTS = corpus.corpus_posts()
UTF8 = {"content-type": "application/rss+xml; charset=utf-8"}


def test_rss_entries_carry_every_field() -> None:
    feed = parse_feed(corpus.posts_feed(POSTS), UTF8)
    assert [e.title for e in feed.entries] == [p.title for p in POSTS]
    first, post = feed.entries[0], POSTS[0]
    assert first.url == corpus.post_link(post)
    assert first.author == post.author
    assert first.published == post.date.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first.content_html == post.body
    assert feed.problem is None


def test_atom_entries_carry_every_field() -> None:
    atom = corpus.atom_feed("a", [corpus.atom_entry(p, corpus.post_link(p)) for p in POSTS])
    feed = parse_feed(atom, {"content-type": "application/atom+xml"})
    assert [(e.title, e.url, e.content_html) for e in feed.entries] == [
        (p.title, corpus.post_link(p), p.body) for p in POSTS]


@pytest.mark.parametrize("headers", [
    {"content-type": "application/rss+xml"},  # declared only in the XML declaration
    {"content-type": "text/xml; charset=gb2312"},
    {"content-type": "text/xml; charset=GBK"},
    {},
])
def test_gbk_feeds_read_as_chinese(headers: dict[str, str]) -> None:
    items = [corpus.rss_item(p, corpus.post_link(p)) for p in POSTS]
    body = corpus.rss_feed("gbk", items, encoding="gbk")
    feed = parse_feed(body, headers)
    assert [e.title for e in feed.entries] == [p.title for p in POSTS]


def test_gb18030_only_characters_survive_a_gb2312_label() -> None:
    # 𠀀 (U+20000) and "镕" are outside GB2312; real "gb2312" feeds contain such characters.
    body = ('<?xml version="1.0" encoding="gb2312"?><rss version="2.0"><channel><title>t'
            "</title><item><title>朱镕基 𠀀</title><link>http://x/1</link></item>"
            "</channel></rss>").encode("gb18030")
    feed = parse_feed(body, {"content-type": "text/xml; charset=gb2312"})
    assert feed.entries[0].title == "朱镕基 𠀀"


def test_undeclared_gbk_without_header_is_guessed() -> None:
    body = ('<rss version="2.0"><channel><title>t</title><item><title>快科技新闻</title>'
            "<link>http://x/1</link></item></channel></rss>").encode("gbk")
    assert parse_feed(body, {}).entries[0].title == "快科技新闻"


def test_entity_bomb_is_refused_quickly() -> None:
    with pytest.raises(ParseError, match="entity-expansion guard"):
        parse_feed(srv.entity_bomb(1_000_000), {})


def test_doctype_without_entities_is_stripped_and_parsed() -> None:
    body = (b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ELEMENT rss ANY>]>\n'
            b'<rss version="2.0"><channel><title>t</title><item><title>a</title>'
            b"<link>http://x/a</link></item></channel></rss>")
    assert [e.title for e in parse_feed(body, {}).entries] == ["a"]


def test_random_bytes_are_not_a_feed() -> None:
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(srv.random_bytes(4096).body, {})  # type: ignore[arg-type]


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(b"<html><body><p>hello</p></body></html>", {"content-type": "text/html"})


def test_malformed_feed_keeps_entries_and_names_the_problem() -> None:
    good = corpus.posts_feed(POSTS[:3])
    broken = good.replace(b"</channel>", b"<oops></channel>")
    feed = parse_feed(broken, UTF8)
    assert [e.title for e in feed.entries] == [p.title for p in POSTS[:3]]
    assert feed.problem and "mismatched tag" in feed.problem


def test_fast_and_loose_paths_agree() -> None:
    """An entry must keep its key and hash whichever parser read the document: a stray ``&``
    outside the items sends the same feed down feedparser's tolerant path."""
    body = corpus.posts_feed(POSTS)
    broken = body.replace(b"</channel>", b"<generator>a & b</generator></channel>", 1)
    fast, loose = parse_feed(body, UTF8), parse_feed(broken, UTF8)
    assert fast.problem is None and loose.problem  # one parse each way
    assert [(e.key, e.raw_hash) for e in fast.entries] == \
        [(e.key, e.raw_hash) for e in loose.entries]
    bare = (b'<rss version="2.0"><channel><title>b</title><item><title>t</title>'
            b"<description>body</description></item></channel></rss>")
    bare_broken = bare.replace(b"<title>b</title>", b"<title>b & c</title>")
    assert parse_feed(bare, {}).entries[0].key == parse_feed(bare_broken, {}).entries[0].key


def test_entry_key_prefers_guid_then_link_then_content() -> None:
    e = parse.ParsedEntry(guid=None, url=None, title="t", author=None, published=None,
                          content_html="c")
    assert e.key.startswith("sha256:")
    assert parse.ParsedEntry("g", "http://l", "t", None, None, "c").key == "g"
    assert parse.ParsedEntry(None, "http://l", "t", None, None, "c").key == "http://l"


def test_rss_ttl_is_read() -> None:
    body = corpus.posts_feed(POSTS[:1]).replace(b"<channel>", b"<channel><ttl>60</ttl>")
    assert parse_feed(body, UTF8).ttl == 60


def test_control_characters_never_reach_titles_authors_or_content() -> None:
    """A title carrying a terminal escape (OSC to retitle the window, CSI to recolour) must
    not be stored: `scrape list`, `show` and `search` print titles and texts to a terminal.
    &#27; is not legal XML 1.0, so that feed goes through feedparser; &#155; (C1 CSI) is, so
    that one goes through the fast path."""
    for escape in ("&#27;]2;pwned&#7;", "&#155;31m"):
        body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t'
                f'</title><item><title>新闻{escape}标题</title><author>编辑{escape}</author>'
                f'<link>https://example.org/1</link><description>正文{escape}内容'
                '</description></item></channel></rss>').encode()
        [entry] = parse_feed(body, {}).entries
        for text in (entry.title, entry.author or "", entry.content_html):
            assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text), (escape, text)
        assert entry.title.startswith("新闻") and entry.title.endswith("标题")
