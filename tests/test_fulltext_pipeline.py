"""`fulltext: true` through the real pipeline: the article from the page, and no SSRF.

The page server is loopback, so the config allow-lists 127.0.0.1 by address, the way a
user would for a page host on their own network; every other private address stays refused.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import dbread
import pytest
import yaml
from selectolax.lexbor import LexborHTMLParser
from server import FeedServer, Response
from test_fulltext import FOOTER, PARAGRAPHS, RELATED, semantic_page

from scraper.cli import main


def item(title: str, link: str, body: str) -> str:
    return (f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<guid>{escape(link)}</guid><description><![CDATA[{body}]]></description></item>")


def test_fulltext_fetches_the_article_and_refuses_private_targets(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve("/article.html", semantic_page().encode(), "text/html; charset=utf-8")
    feed_server.route("/to-private", Response(
        status=302, headers={"Location": "http://127.0.0.2/admin"}, etag=False))
    links = {
        "good": feed_server.url("/article.html"),
        "loopback2": f"http://127.0.0.2:{feed_server.port}/article.html",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "redirect": feed_server.url("/to-private"),
    }
    items = "".join(item(name, link, f"<p>摘要：{name} 的订阅内容。</p>")
                    for name, link in links.items())
    feed_server.serve("/feed.xml", f'<rss version="2.0"><channel><title>t</title>{items}'
                                   "</channel></rss>".encode())
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({
        "fetch": {"allow_private": ["127.0.0.1"], "retries": 0, "timeout": 5},
        "feeds": [{"name": "ft", "url": feed_server.url("/feed.xml"), "fulltext": True}],
    }), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database, "--workers", "0"]) == 0
    log = capsys.readouterr().err  # logs go to stderr
    texts = dict(dbread.rows(database, "SELECT title, content_text FROM entries"))

    good = texts["good"]
    for paragraph in PARAGRAPHS:
        assert paragraph.strip()[:20] in good
    assert not any(t in good for t in RELATED)
    assert not any(f in good for f in FOOTER)
    assert "订阅内容" not in good  # the page replaced the feed's teaser

    for name in ("loopback2", "metadata", "redirect"):
        assert texts[name] == f"摘要：{name} 的订阅内容。", name  # the feed's content is kept
    assert "127.0.0.2" in log and "169.254.169.254" in log
    assert log.count("feed content kept: refused") == 3
    # The page fetcher never asked anything of the private targets it was sent to.
    assert feed_server.requests_to("/admin") == []


FIXTURES = Path(__file__).parent / "fixtures"


def page_parts() -> tuple[list[str], list[str]]:
    """tests/fixtures/news_page.html read apart: the article body's text blocks, and the
    lines of everything around it (navigation, breadcrumb, related box, footer)."""
    tree = LexborHTMLParser((FIXTURES / "news_page.html").read_text("utf-8"))
    body = tree.css_first("div.article-body")
    assert body is not None
    blocks = [t.strip() for t in body.text(separator="\n").split("\n") if t.strip()]
    around = [n.text(separator=" ", strip=True) for n in
              tree.css("nav li, div.breadcrumb a, article h1, div.article-meta, aside li, "
                       "aside h3, footer p")]
    return blocks, around


# SQLite only: extraction happens before storage; the test above runs on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_fulltext_page_from_a_fixture_stores_only_the_article_and_fetches_nothing_else(
        tmp_path: Path, database: str, feed_server: FeedServer) -> None:
    """Runs without ../shared: the generic extractor (trafilatura) on a whole news page."""
    feed_server.serve("/news/1.html", (FIXTURES / "news_page.html").read_bytes(),
                      "text/html; charset=utf-8")
    feed_server.serve("/feed.xml", (
        '<rss version="2.0"><channel><title>t</title>'
        + item("夜间巡架机器人进馆半年", feed_server.url("/news/1.html"),
               "<p>摘要：机器人进馆半年的订阅摘要。</p>")
        + "</channel></rss>").encode())
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({
        "fetch": {"allow_private": ["127.0.0.1"], "retries": 0, "timeout": 5},
        "feeds": [{"name": "ft", "url": feed_server.url("/feed.xml"), "fulltext": True}],
    }), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database, "--workers", "0"]) == 0
    (text, html), = dbread.rows(database, "SELECT content_text, content_html FROM entries")

    blocks, around = page_parts()
    assert len(blocks) == 5 and len(around) >= 14
    lines = text.split("\n")
    for block in blocks:  # the bare text after the image's div is a paragraph of its own
        assert block in lines, block
    for line in around:
        assert line not in text, line
    assert "订阅摘要" not in text  # the page replaced the feed's teaser
    assert feed_server.url("/images/2023/robot-shelf.jpg") in html  # the lazy image's real URL
    # Only the feed and the page were requested: nothing on the page was fetched.
    assert {r.path for r in feed_server.requests} == {"/feed.xml", "/news/1.html"}
