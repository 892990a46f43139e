"""A database filled the real way, for the tests of the commands that read it back (search,
list, show, Datasette): two feeds served on 127.0.0.1, stored by ``scrape --once``.

The articles are written for these tests.  Each test's expectations come from ``ARTICLES``
(which words an article holds, its feed, its date), never from a command's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import yaml
from server import FeedServer

from scraper.cli import main


@dataclass(frozen=True)
class Article:
    feed: str
    key: str
    title: str
    text: str
    published: datetime


def _day(day: int, hour: int = 8) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


#: A reprint is the same article in another feed (the same title and text), which dedup links.
FOLD_TEXT = ("华为今天在深圳发布了新款折叠屏手机，这款手机采用了全新的铰链设计，展开后屏幕尺寸"
             "达到八英寸，售价为一万二千元起。发布会上，华为还介绍了新的操作系统版本，并表示"
             "将在下个月开始在全国门店销售，首批货量充足，消费者可以在官方商城预约购买。")

ARTICLES = [
    Article("alpha", "fold", "华为发布新款折叠屏手机", FOLD_TEXT, _day(3)),
    Article("alpha", "apple", "苹果公司公布季度财报",
            "苹果公司公布了最新一季的财报，服务业务收入创下新高，硬件销售与去年持平，"
            "分析师认为下一季度的增长将主要来自服务与可穿戴设备。", _day(4)),
    Article("alpha", "weather", "明日天气：北方降温",
            "明天北京有小雨，气温下降八度，傍晚风力较大，市民出行请注意保暖并携带雨具。",
            _day(5)),
    Article("beta", "fold-reprint", "华为发布新款折叠屏手机", FOLD_TEXT, _day(3, 10)),
    Article("beta", "housing", "上海二手房成交量回升",
            "上海本月二手房成交量环比回升百分之十二，中介机构表示，改善型需求入市明显，"
            "但价格整体保持平稳，没有出现明显上涨。", _day(6)),
    Article("beta", "python", "Python 3.14 released: free-threading AND a new REPL",
            "The Python 3.14 release makes the free-threaded build supported; \"-X gil=0\" "
            "turns the global interpreter lock off. The new REPL colours its output.",
            _day(2)),
]


def feed_xml(name: str, articles: list[Article]) -> bytes:
    items = "".join(
        f"<item><title>{escape(a.title)}</title><link>https://{name}.example/{a.key}</link>"
        f"<guid>{name}-{a.key}</guid><pubDate>{format_datetime(a.published)}</pubDate>"
        f"<description>{escape('<p>' + escape(a.text) + '</p>')}</description></item>"
        for a in articles)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{name}</title><link>https://{name}.example/</link>{items}"
            "</channel></rss>").encode()


def serve(server: FeedServer, articles: list[Article]) -> None:
    for name in sorted({a.feed for a in articles}):
        server.serve(f"/{name}.xml", feed_xml(name, [a for a in articles if a.feed == name]))


def fill(tmp_path: Path, server: FeedServer, articles: list[Article] = ARTICLES,
         database: str | None = None) -> tuple[Path, str]:
    """(feeds.yaml, database) after ``scrape --once`` stored ``articles`` in ``database``
    (a file path or a ``postgresql://`` URL; default: scrape.db in ``tmp_path``)."""
    serve(server, articles)
    config = tmp_path / "feeds.yaml"
    feeds = [{"name": name, "url": server.url(f"/{name}.xml")}
             for name in sorted({a.feed for a in articles})]
    config.write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), "utf-8")
    db = database or str(tmp_path / "scrape.db")
    for feed in feeds:  # one after the other: the reprint's feed (beta) is stored second
        assert main(["--once", "--config", str(config), "--db", str(db), "--workers", "0",
                     "--feed", feed["name"]]) == 0
    return config, db


def holding(*words: str, articles: list[Article] = ARTICLES) -> list[Article]:
    """The articles whose title or text contains every word (case-insensitive)."""
    return [a for a in articles
            if all(w.casefold() in (a.title + " " + a.text).casefold() for w in words)]
