"""Each source's quirks, on the repository's own fixtures (tests/fixtures/): no ../shared needed.

The fixtures reproduce what ../shared/DESIGN.md ("Sources, as they arrive") lists for ZAKER
and 快科技; tests/fixtures/README.md says which file carries which quirk.  Expected values
come from the fixture files themselves (regular expressions over the raw HTML) or are
written out here, never from the output under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import dbread
import pytest
import yaml
from selectolax.lexbor import LexborHTMLParser
from server import FeedServer

from scraper import storage as store
from scraper.cli import main
from scraper.config import DedupSettings
from scraper.core import fingerprint
from scraper.core.normalize import Normalized, normalize
from scraper.core.parse import parse_feed
from scraper.core.rules import SiteRule, resolve_rule, rule_from_mapping
from scraper.dedup import link_entries

FIXTURES = Path(__file__).parent / "fixtures"
PROXY = "https://img-proxy.example/?{url}"
SETTINGS = DedupSettings()

ZAKER_LINK = "http://www.myzaker.com/article/64ec0a1b8e9f0912d73c51a9"
TRIMMED_LINK = "http://www.myzaker.com/article/64ec2f7c8e9f0912d73c7b10"
MYDRIVERS_LINK = "https://news.mydrivers.com/1/925/925310.htm"
OTHER_LINK = "https://news.mydrivers.com/1/925/925402.htm"
#: The GBK feed's titles, typed out here so that a wrong decoding cannot agree with itself.
GBK_TITLES = [
    "图书馆机器人一夜整理3万册图书 网友：比我理书架还快",
    "记者探访图书馆夜间巡架机器人：闭馆后它才开始上班",
]
#: Lines that are site boilerplate, never article text.
ZAKER_CREDITS = ("ZAKER 科技出品", "文 / 林小舟", "编辑 周一帆")
MYDRIVERS_BOILERPLATE = ("如需转载", "责任编辑", "文章纠错", "原文链接", "话题标签", "THE END")


def raw(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def clean(name: str, link: str, rule: SiteRule | None = None) -> Normalized:
    """What the pipeline does to an entry: the builtin rule for the link's host, then ``rule``."""
    return normalize(raw(name), link, resolve_rule(link, rule, {}))


def img_srcs(html: str) -> list[str]:
    return [n.attributes.get("src") or "" for n in LexborHTMLParser(html).css("img")]


def paragraphs(html: str) -> list[str]:
    """The text of every <p> of the raw fixture, tags dropped (boilerplate included)."""
    return [re.sub(r"<[^>]+>", "", p).strip() for p in re.findall(r"<p[^>]*>(.*?)</p>", html, re.S)]


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# --- feeds ------------------------------------------------------------------------------------


def test_feeds_carry_the_article_files() -> None:
    """Guards the fixtures: each feed entry is its article file, byte for byte."""
    zaker = parse_feed((FIXTURES / "zaker.xml").read_bytes(),
                       {"content-type": "application/rss+xml; charset=utf-8"})
    assert [(e.url, e.content_html) for e in zaker.entries] == [
        (ZAKER_LINK, raw("zaker_robot.html").strip()),
        (TRIMMED_LINK, raw("zaker_robot_trimmed.html").strip()),
    ]
    assert zaker.problem is None


@pytest.mark.parametrize("content_type", [
    "application/rss+xml; charset=gbk",
    "text/xml; charset=GB2312",  # a common mislabel: GBK text under the narrower name
    "application/rss+xml",  # no charset: only the XML declaration says gbk
    None,  # no Content-Type at all
])  # fmt: skip
def test_gbk_feed_decodes(content_type: str | None) -> None:
    body = (FIXTURES / "mydrivers_gbk.xml").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # the fixture really is GBK, not UTF-8 with a GBK label
    headers = {} if content_type is None else {"content-type": content_type}
    feed = parse_feed(body, headers)
    assert [e.title for e in feed.entries] == GBK_TITLES
    assert [e.author for e in feed.entries] == ["快科技（原驱动之家）"] * 2
    assert [e.content_html for e in feed.entries] == [
        raw("mydrivers_robot.html").strip(), raw("mydrivers_robot_other.html").strip()]


# --- ZAKER --------------------------------------------------------------------------------------


def test_zaker_credit_lines_and_trailing_divs_are_gone() -> None:
    source = raw("zaker_robot.html")
    assert all(line in source for line in ZAKER_CREDITS[:2])  # the fixture has them
    assert 'id="recommend_bottom"' in source and 'id="article_bottom"' in source
    out = clean("zaker_robot.html", ZAKER_LINK)
    for line in ZAKER_CREDITS:
        assert line not in out.text and line not in out.html, line
    for marker in ("zkspan", "recommend_bottom", "article_bottom", "img_box", "<div", "class="):
        assert marker not in out.html, marker
    assert "<p></p>" not in out.html
    trimmed = clean("zaker_robot_trimmed.html", TRIMMED_LINK)
    assert "编辑" not in trimmed.text and "周一帆" not in trimmed.text


def test_zaker_paragraphs_and_inline_notes_survive() -> None:
    """A gray <zkspan> inside a real paragraph is content; only whole credit lines go."""
    out = clean("zaker_robot.html", ZAKER_LINK)
    kept = [p for p in paragraphs(raw("zaker_robot.html")) if p and p not in ZAKER_CREDITS]
    assert len(kept) == 6
    assert "（数据由馆方提供）" in "".join(kept)
    assert [squash(p) for p in out.text.split("\n")] == [squash(p) for p in kept]


def test_zaker_lazy_images_resolve_from_data_original() -> None:
    source = raw("zaker_robot.html")
    originals = re.findall(r'data-original="([^"]+)"', source)
    assert len(originals) == 2 and all(u.startswith("http://zkres") for u in originals)
    out = clean("zaker_robot.html", ZAKER_LINK)
    assert img_srcs(out.html) == originals  # not the loading GIF in src
    assert "loading.gif" not in out.html
    assert out.image == originals[0]
    for img in LexborHTMLParser(out.html).css("img"):
        assert img.attributes.get("referrerpolicy") == "no-referrer"


def test_zaker_images_go_through_the_proxy_the_rules_name() -> None:
    """ZAKER's image host refuses hot-linked requests: feeds.yaml names a proxy for http."""
    originals = re.findall(r'data-original="([^"]+)"', raw("zaker_robot.html"))
    rule = rule_from_mapping({"profile": "zaker", "image_proxy": PROXY})
    out = clean("zaker_robot.html", ZAKER_LINK, rule)
    expected = ["https://img-proxy.example/?" + u for u in originals]
    assert img_srcs(out.html) == expected
    assert out.image == expected[0]
    assert normalize(out.html, ZAKER_LINK, resolve_rule(ZAKER_LINK, rule, {})) == out  # once


# --- 快科技 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "link"), [
    ("mydrivers_robot.html", MYDRIVERS_LINK),
    ("mydrivers_robot_other.html", OTHER_LINK),
])  # fmt: skip
def test_mydrivers_boilerplate_is_gone(name: str, link: str) -> None:
    source = raw(name)
    for cls in ("end", "zhuanzai", "url", "bqian"):
        assert f'<p class="{cls}"' in source, cls  # the fixture has every block
    out = clean(name, link)
    for line in MYDRIVERS_BOILERPLATE:
        assert line not in out.text and line not in out.html, line
    for marker in ("end_article", "/tag/", "javascript:", "#", "class="):
        assert marker not in out.html, marker
    boiler = re.compile(r'<p class="(?:end|zhuanzai|url|bqian)"')
    kept = [p for p in paragraphs(boiler.split(source, 1)[0]) if p]
    assert [squash(p) for p in out.text.split("\n")] == [squash(p) for p in kept]


def test_mydrivers_centered_images_are_kept_without_proxy() -> None:
    source = raw("mydrivers_robot.html").split('<p class="end"', 1)[0]
    centered = re.findall(r'<p align="center"><a [^>]*><img [^>]*\bsrc="([^"]+)"', source)
    assert len(centered) == 2 and all(u.startswith("https://img1.mydrivers.com/") for u in centered)
    out = clean("mydrivers_robot.html", MYDRIVERS_LINK)
    assert img_srcs(out.html) == centered
    assert out.image == centered[0]
    # An http-only proxy leaves https images alone; a proxy scoped to the host takes them.
    http_only = clean("mydrivers_robot.html", MYDRIVERS_LINK, SiteRule(image_proxy=PROXY))
    assert img_srcs(http_only.html) == centered
    by_host = SiteRule(image_proxy=PROXY, image_proxy_hosts=("mydrivers.com",))
    scoped = clean("mydrivers_robot.html", MYDRIVERS_LINK, by_host)
    assert img_srcs(scoped.html) == ["https://img-proxy.example/?" + u for u in centered]


# --- reprints --------------------------------------------------------------------------------


def test_spaced_reprint_folds_to_the_same_text() -> None:
    """ZAKER's "8 月 28 日" and `" x "` against 快科技's "8月28日" and “x”: one article."""
    zaker = clean("zaker_robot.html", ZAKER_LINK)
    kkj = clean("mydrivers_robot.html", MYDRIVERS_LINK)
    assert "8 月 28 日" in zaker.text and "8月28日" in kkj.text
    assert zaker.text != kkj.text
    a = fingerprint.compute("t", zaker.text, ZAKER_LINK, SETTINGS)
    b = fingerprint.compute("t", kkj.text, MYDRIVERS_LINK, SETTINGS)
    assert a.text_hash == b.text_hash
    other = clean("mydrivers_robot_other.html", OTHER_LINK)
    c = fingerprint.compute("t", other.text, OTHER_LINK, SETTINGS)
    assert c.text_hash != b.text_hash
    assert not set(c.band_keys) & set(b.band_keys)


def _add(conn: store.Connection, feed: str, link: str, title: str, text: str) -> int:
    cur = conn.execute(
        "INSERT INTO entries (feed, entry_key, url, title, published, content_text, fetched_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (feed, link, link, title, "2023-08-28T03:00:00Z", text, "2023-08-28T03:00:00Z",
         "2023-08-28T03:00:00Z"))
    return int(cur.fetchone()[0])


# SQLite only: linking is tests/test_dedup_*'s on PostgreSQL; the scrape --once test runs there.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_link_entries_links_the_reprints_and_not_the_same_topic(database: str) -> None:
    conn = store.connect(database)
    try:
        articles = [
            ("zaker", ZAKER_LINK, "图书馆机器人一夜整理 3 万册图书", "zaker_robot.html"),
            ("mydrivers", MYDRIVERS_LINK, "图书馆机器人一夜整理3万册图书", "mydrivers_robot.html"),
            ("zaker", TRIMMED_LINK, "图书馆来了个书小二", "zaker_robot_trimmed.html"),
            ("mydrivers", OTHER_LINK, "记者探访图书馆夜间巡架机器人", "mydrivers_robot_other.html"),
        ]  # fmt: skip
        with store.transaction(conn):
            ids = [_add(conn, feed, link, title, clean(name, link).text)
                   for feed, link, title, name in articles]
            links = link_entries(conn, ids, SETTINGS)
    finally:
        conn.close()
    first, spaced, trimmed, other = ids
    by_entry = {link.entry_id: link.duplicate_of for link in links}
    assert by_entry == {spaced: first, trimmed: first}
    assert other not in by_entry


# --- end to end ------------------------------------------------------------------------------


def test_scrape_once_cleans_decodes_and_links(tmp_path: Path, database: str,
                                              feed_server: FeedServer) -> None:
    feed_server.serve("/zaker.xml", (FIXTURES / "zaker.xml").read_bytes())
    feed_server.serve("/mydrivers.xml", (FIXTURES / "mydrivers_gbk.xml").read_bytes(),
                      "application/rss+xml")  # no charset in the header
    config = {"feeds": [
        {"name": "zaker", "url": feed_server.url("/zaker.xml"),
         "rules": {"profile": "zaker", "image_proxy": PROXY}},
        {"name": "mydrivers", "url": feed_server.url("/mydrivers.xml")},
    ]}  # fmt: skip
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database]) == 0

    rows = {url: (title, html, text, dup) for url, title, html, text, dup in dbread.rows(
        database, "SELECT url, title, content_html, content_text, duplicate_of FROM entries")}
    ids = dict(dbread.rows(database, "SELECT url, id FROM entries"))
    assert set(rows) == {ZAKER_LINK, TRIMMED_LINK, MYDRIVERS_LINK, OTHER_LINK}
    assert [rows[MYDRIVERS_LINK][0], rows[OTHER_LINK][0]] == GBK_TITLES

    originals = re.findall(r'data-original="([^"]+)"', raw("zaker_robot.html"))
    assert img_srcs(rows[ZAKER_LINK][1]) == ["https://img-proxy.example/?" + u for u in originals]
    for url in (ZAKER_LINK, TRIMMED_LINK):
        for line in ZAKER_CREDITS:
            assert line not in rows[url][2], (url, line)
    for url in (MYDRIVERS_LINK, OTHER_LINK):
        assert all(line not in rows[url][2] for line in MYDRIVERS_BOILERPLATE), url
        assert all(src.startswith("https://img1.mydrivers.com/") for src in img_srcs(rows[url][1]))

    # The two feeds are fetched concurrently: whichever version was stored first is the root.
    reprints = [ZAKER_LINK, MYDRIVERS_LINK, TRIMMED_LINK]
    roots = [url for url in reprints if rows[url][3] is None]
    assert len(roots) == 1, roots
    assert all(rows[url][3] == ids[roots[0]] for url in reprints if url != roots[0])
    assert rows[OTHER_LINK][3] is None
    assert ids[OTHER_LINK] not in {rows[url][3] for url in rows}
