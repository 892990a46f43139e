"""A 200 that sends the document already stored, or the same entries rebuilt at another
time, costs what a 304 does (issue 18): no parse, no worker.  Real HTTP on loopback from a
server without validators (every answer a 200), on both database backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path

import pytest
import yaml
from server import FeedServer, Response

from scraper import storage as store
from scraper.cli import main
from scraper.config import load_config
from scraper.net.fetch import Fetcher
from scraper.refresh import FeedResult, Refresher

ITEMS = ("<item><title>一</title><guid>a</guid><description>第一条短讯。</description></item>"
         "<item><title>二</title><guid>b</guid><description>第二条短讯。</description></item>")
FEED = f'<rss version="2.0"><channel><title>t</title>{ITEMS}</channel></rss>'.encode()
#: The same entries in a document rebuilt at another time (a channel's build date).
RESTAMPED = FEED.replace(b"<title>t</title>", b"<title>t</title><lastBuildDate>"
                         b"Mon, 07 Dec 2026 12:00:00 GMT</lastBuildDate>")
#: The same entries in a document that changed elsewhere (the channel's title).
RETITLED = RESTAMPED.replace(b"<title>t</title>", b"<title>t2</title>")


class CountingExecutor(Executor):
    """Runs each job inline and counts them: the worker pool's stand-in, so a test sees
    whether a refresh handed it any work."""

    def __init__(self) -> None:
        self.jobs = 0

    def submit(self, fn: Callable, /, *args: object, **kwargs: object) -> Future:
        self.jobs += 1
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def once_json(cfg: Path, db: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["--once", "--json", "--config", str(cfg), "--db", str(db)]) == 0
    (line,) = json.loads(capsys.readouterr().out)["feeds"]
    return line


def refresh(cfg: Path, db: str) -> tuple[FeedResult, int]:
    """One refresh of the config's feed through a pool that counts its jobs."""
    config = load_config(cfg)
    conn = store.connect(db)
    pool = CountingExecutor()

    async def run() -> FeedResult:
        async with Fetcher(config.fetch) as fetcher:
            refresher = Refresher(config, conn, fetcher, executor=pool)
            try:
                return await refresher.refresh(config.feeds[0])
            finally:
                refresher.close()

    try:
        return asyncio.run(run()), pool.jobs
    finally:
        conn.close()


def test_the_same_document_again_is_not_modified_and_needs_no_worker(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    def serve(body: bytes) -> None:  # a server without validators: every answer a 200
        feed_server.route("/f.xml", Response(body=body, etag=False,
                                             headers={"Content-Type": "text/xml"}))

    serve(FEED)
    cfg, db = tmp_path / "feeds.yaml", database
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": "f", "url": feed_server.url("/f.xml")}]}))

    first = once_json(cfg, db, capsys)
    assert (first["status"], first["http_status"], first["new"]) == ("ok", 200, 2)
    again = once_json(cfg, db, capsys)
    assert (again["status"], again["http_status"]) == ("not-modified", 200)
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert not any(r.headers.get("if-none-match") for r in feed_server.requests_to("/f.xml"))

    result, jobs = refresh(cfg, db)
    assert (result.status, result.http_status, jobs) == ("not-modified", 200, 0)

    # The feed rebuilt with a new build time and the same entries: no worker either.
    serve(RESTAMPED)
    result, jobs = refresh(cfg, db)
    assert (result.status, result.http_status, jobs) == ("not-modified", 200, 0)

    # A change elsewhere in the channel is parsed (in the pool), then stored as seen.
    serve(RETITLED)
    result, jobs = refresh(cfg, db)
    assert (result.status, result.new, result.unchanged) == ("ok", 0, 2)
    assert jobs > 0
    result, jobs = refresh(cfg, db)
    assert (result.status, result.http_status, jobs) == ("not-modified", 200, 0)

    # A changed entry is parsed and stored.
    serve(RETITLED.replace("第二条".encode(), "第二条（更正）".encode()))
    result, jobs = refresh(cfg, db)
    assert (result.status, result.updated, result.unchanged, jobs > 0) == ("ok", 1, 1, True)
