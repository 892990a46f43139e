"""A body its Content-Encoding does not describe (a common server misconfiguration) fails
its feed with a fetch error that says so, never an internal error, and fails it alone."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest
import server as srv
from server import FeedServer

from scraper.cli import main
from scraper.config import FetchSettings
from scraper.net.fetch import Fetcher, FetchResult

RSS = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
       b"<item><title>one</title><link>http://example.org/1</link></item></channel></rss>")


def fetch(url: str) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(FetchSettings(retries=0)) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(go())


@pytest.mark.parametrize(("encoding", "body", "says"), [
    ("gzip", RSS, "not valid gzip, though the server says Content-Encoding: gzip "
                  "(it looks uncompressed)"),
    ("x-gzip", b"\x1f\x8b" + bytes(range(200)), "not valid gzip, though the server says "
                                                "Content-Encoding: x-gzip"),
    ("deflate", b"\xff" * 300, "not valid deflate data, though the server says "
                               "Content-Encoding: deflate"),
    # A valid start, then garbage: the error comes from a later chunk, not the header.
    ("gzip", srv.gzipped(RSS)[:20] + b"\xff" * 200_000, "not valid gzip"),
])
def test_a_body_not_in_its_encoding_is_a_fetch_error(
        feed_server: FeedServer, encoding: str, body: bytes, says: str) -> None:
    feed_server.serve("/feed", body, **{"Content-Encoding": encoding})
    result = fetch(feed_server.url("/feed"))
    assert not result.ok and says in (result.error or "")
    assert "Error -3" not in (result.error or "")


def test_an_error_answer_in_a_wrong_encoding_keeps_its_status(feed_server: FeedServer) -> None:
    feed_server.route("/gone", srv.Response(status=410, body=b"<html>gone</html>", etag=False,
                                            headers={"Content-Encoding": "gzip"}))
    result = fetch(feed_server.url("/gone"))
    assert result.error == "HTTP 410 Gone"


def test_the_feed_fails_alone_without_an_internal_error(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve("/bad", RSS, **{"Content-Encoding": "gzip"})
    feed_server.serve("/good", zlib.compress(RSS), **{"Content-Encoding": "deflate"})
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(f"feeds:\n  - name: bad\n    url: {feed_server.url('/bad')}\n"
                   f"  - name: good\n    url: {feed_server.url('/good')}\n", encoding="utf-8")
    code = main(["--once", "--workers", "0", "--config", str(cfg),
                 "--db", str(tmp_path / "s.db")])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1
    assert "internal error" not in text
    bad = [line for line in text.splitlines() if "bad" in line and "not valid gzip" in line]
    assert bad, text
