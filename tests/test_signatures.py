"""Boilerplate by signature: a builtin profile applies wherever its site's markers are.

Every feed here is served from 127.0.0.1, a host no builtin rule is keyed by, so only the
signatures in the article HTML can say whose footer the text carries.  The articles are the
repository's fixtures (tests/fixtures/README.md), through ``scrape --once`` and
``scrape export jsonl -`` / ``scrape dups --json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.sax.saxutils import escape

import corpus
import pytest
import yaml
from selectolax.lexbor import LexborHTMLParser
from server import FeedServer

from scraper.cli import main
from scraper.core.normalize import normalize
from scraper.core.rules import SiteRule, signed_profiles

FIXTURES = Path(__file__).parent / "fixtures"

#: 快科技's footer lines as its pages print them (tests/fixtures/README.md): the reprint
#: notice, the topic-tag label, the editor line and its correction link, the end mark.
FOOTER = ("如需转载", "话题标签", "责任编辑", "文章纠错", "原文链接", "THE END", "#")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text("utf-8")


def body_sentences(html: str) -> list[str]:
    """The first clause of each of the article's own paragraphs (the <p>s without a class)."""
    out = []
    for p in LexborHTMLParser(html).css("p"):
        text = re.sub(r"\s+", " ", p.text()).strip()
        if not p.attributes.get("class") and len(text) > 30 and not any(
                f in text for f in FOOTER):
            out.append(text.split("，")[0])
    assert out, "the fixture has body paragraphs"
    return out


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """An RSS 2.0 feed of (title, link, html) items, dated a minute apart."""
    xml = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<guid>{escape(link)}</guid>"
        f"<pubDate>Mon, 28 Aug 2023 10:{i:02d}:00 GMT</pubDate>"
        f"<description><![CDATA[{html}]]></description></item>"
        for i, (title, link, html) in enumerate(items))
    return f'<rss version="2.0"><channel><title>t</title>{xml}</channel></rss>'.encode()


def run_once(tmp_path: Path, feeds: list[dict[str, object]], db: str) -> str:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"fetch": {"retries": 0, "timeout": 5}, "feeds": feeds},
                                  allow_unicode=True), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", db, "--workers", "0"]) == 0
    return db


def exported(db: str, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    capsys.readouterr()
    assert main(["export", "jsonl", "-", "--db", db, "--include-duplicates"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return {row["title"]: row for row in rows}


# SQLite only: cleaning happens before storage, linking is tests/test_dedup_*'s on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_mydrivers_footer_goes_wherever_the_article_is_served_from(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    articles = {
        "快科技原文": fixture("mydrivers_robot.html"),
        "快科技另一篇": fixture("mydrivers_robot_other.html"),
        "转载带快科技尾注": fixture("zaker_reprint_footer.html"),
    }
    # A page without any site's markers, whose lines look like a footer to a careless rule.
    plain = ("<p>市图书馆今天发布公告，夜间巡架机器人将于下月起在分馆推广使用。</p>"
             '<p class="url">责任编辑：张三</p><p class="end">完</p>'
             '<p class="zhuanzai">如需转载请注明出处：本地晚报</p><p>话题标签：图书馆</p>')
    items = [(t, f"{feed_server.url('/a/')}{i}.html", h)
             for i, (t, h) in enumerate([*articles.items(), ("无标记", plain)])]
    feed_server.serve("/mirror.xml", rss(items))
    db = run_once(tmp_path, [{
        "name": "mirror", "url": feed_server.url("/mirror.xml"),
        # A host-less rule of the feed's own: it adds to the signed profile.
        "rules": {"drop_lines": ["本文由.{0,20}整理"]},
    }], database)
    rows = exported(db, capsys)

    for title, html in articles.items():
        text, stored = rows[title]["content_text"], rows[title]["content_html"]
        for line in FOOTER:
            assert line not in text, (title, line)
        assert "end_article" not in stored, title
        for sentence in body_sentences(html):
            assert re.sub(r"\s", "", sentence) in re.sub(r"\s", "", text), (title, sentence)

    kept = rows["无标记"]["content_text"]
    for line in ("责任编辑：张三", "完", "如需转载请注明出处：本地晚报", "话题标签：图书馆"):
        assert line in kept.split("\n"), line


def test_feed_rules_add_to_the_signed_profile() -> None:
    html = fixture("mydrivers_robot.html") + "<p>本文由机器人频道整理</p>"
    text = normalize(html, "http://127.0.0.1/a.html",
                     SiteRule(drop_lines=("本文由.{0,20}整理",))).text
    assert "本文由" not in text and "如需转载" not in text and "责任编辑" not in text


def test_a_generic_class_is_not_a_signature() -> None:
    """`p.end`, `p.url`, `.content`: class names any site may use leave the page alone."""
    html = ('<div class="content"><p>今天的新闻正文，共有两段内容。</p>'
            '<p class="end">- THE END -</p><p class="url">原文链接：某网</p>'
            '<p class="bqian">标签：图书馆</p></div>')
    text = normalize(html, "http://127.0.0.1/a.html", SiteRule()).text
    assert text.split("\n") == ["今天的新闻正文，共有两段内容。", "- THE END -",
                                "原文链接：某网", "标签：图书馆"]


@SQLITE_ONLY
def test_trimmed_reprint_keeping_its_source_footer_is_linked(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The 快科技 cut of the article (two of six paragraphs plus the whole footer, served
    from a mirror) is a reprint of ZAKER's full text: the footer must not hide it."""
    feed_server.serve("/zaker.xml", rss([
        ("图书馆机器人一夜整理3万册书", feed_server.url("/z/1.html"),
         fixture("zaker_robot.html"))]))
    feed_server.serve("/mirror.xml", rss([
        ("图书馆机器人一夜整理3万册书？", feed_server.url("/m/1.html"),
         fixture("mydrivers_robot_trimmed.html"))]))
    db = run_once(tmp_path, [
        {"name": "zaker", "url": feed_server.url("/zaker.xml")},
        {"name": "mirror", "url": feed_server.url("/mirror.xml")},
    ], database)
    capsys.readouterr()
    assert main(["dups", "--json", "--db", db]) == 0
    clusters = json.loads(capsys.readouterr().out)["clusters"]
    assert len(clusters) == 1
    members = {clusters[0]["feed"], *(d["feed"] for d in clusters[0]["duplicates"])}
    assert members == {"zaker", "mirror"}


@pytest.mark.parametrize("post", corpus.corpus_posts(), ids=lambda p: p.slug[:20])
def test_each_corpus_post_carries_its_own_site_signature_only(post: corpus.Post) -> None:
    """Every real post is recognised as its site's, and never as the other site's."""
    want = ("zaker",) if "ZAKER" in post.path.parts else ("mydrivers",)
    assert signed_profiles(post.body, LexborHTMLParser(post.body)) == want
