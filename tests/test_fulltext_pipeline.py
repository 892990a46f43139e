"""`fulltext: true` through the real pipeline: the article from the page, and no SSRF.

The page server is loopback, so the config allow-lists 127.0.0.1 by address, the way a
user would for a page host on their own network; every other private address stays refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from server import FeedServer, Response
from test_fulltext import FOOTER, PARAGRAPHS, RELATED, semantic_page

from scraper.cli import main


def item(title: str, link: str, body: str) -> str:
    return (f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<guid>{escape(link)}</guid><description><![CDATA[{body}]]></description></item>")


def test_fulltext_fetches_the_article_and_refuses_private_targets(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
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
    db = tmp_path / "x.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db), "--workers", "0"]) == 0
    log = capsys.readouterr().err  # logs go to stderr
    conn = sqlite3.connect(db)
    texts = dict(conn.execute("SELECT title, content_text FROM entries").fetchall())
    conn.close()

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
