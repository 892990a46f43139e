"""A Hexo post whose entry became a duplicate after it was written (its feed updated it into
a reprint of another entry, or a rebuild linked it) stayed in the folder, and the export
said nothing: the story was published twice.  The export leaves the file (the folder is the
user's) and names it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from server import FeedServer, Response

from scraper.cli import main

ORIGINAL = "龙芯中科发布新一代处理器，性能提升明显，面向桌面与服务器市场，软件生态同步完善。" * 4
OTHER = "国产大模型迎来新一轮更新，推理成本下降一半，多家云厂商宣布接入并开放试用服务。" * 4


def rss(guid: str, text: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t'
            f"</title><link>https://{guid}.example/</link><item><title>{guid} news</title>"
            f"<guid>https://{guid}.example/1</guid><link>https://{guid}.example/1</link>"
            f"<pubDate>Tue, 01 Dec 2026 08:00:00 +0000</pubDate>"
            f"<description>{text}</description></item></channel></rss>").encode()


def test_a_post_whose_entry_became_a_duplicate_is_named(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    texts = {"a": ORIGINAL, "b": OTHER}
    for name in texts:
        feed_server.route(f"/{name}.xml",
                          lambda _r, n=name: Response(body=rss(n, texts[n]), etag=False))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": n, "url": feed_server.url(f"/{n}.xml")} for n in texts]}))
    base = ["--config", str(cfg), "--db", str(tmp_path / "scrape.db")]
    posts = tmp_path / "posts"
    assert main(["--once", "--feed", "a", *base]) == 0
    assert main(["--once", "--feed", "b", *base]) == 0
    assert main(["export", "hexo", str(posts), *base]) == 0
    written = sorted(posts.rglob("*.md"))
    assert len(written) == 2
    capsys.readouterr()

    texts["b"] = ORIGINAL  # b's entry rewritten into a reprint of a's
    assert main(["--once", "--feed", "b", *base]) == 0
    assert main(["export", "hexo", str(posts), *base]) == 0
    err = capsys.readouterr().err
    stale = [p for p in written if str(p) in err]
    assert len(stale) == 1 and "is now a duplicate of #1" in err
    assert stale[0].exists()  # left where it is: the user removes it
