"""`scrape --once` keeps at most ``fetch.concurrency`` feeds between their claim and their
write (issue 18): the bodies waiting for the worker pool stay that many however many feeds
there are.  Real HTTP on loopback; the pool's stand-in counts the jobs it holds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import yaml
from server import FeedServer

from scraper import storage as store
from scraper.config import load_config
from scraper.net.fetch import Fetcher
from scraper.refresh import FeedResult, Refresher

FEEDS = 12
CONCURRENCY = 3


class SlowPool(Executor):
    """One thread working each job after a pause, so that jobs pile up here unless the
    refresh holds them back; ``most`` is the largest number submitted and not done."""

    def __init__(self) -> None:
        self.pending = self.most = 0
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1)

    def submit(self, fn: Callable, /, *args: object, **kwargs: object) -> Future:
        with self._lock:
            self.pending += 1
            self.most = max(self.most, self.pending)

        def run() -> object:
            time.sleep(0.02)  # longer than a loopback fetch: the fetches outrun the pool
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.pending -= 1

        return self._thread.submit(run)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._thread.shutdown(wait=wait, cancel_futures=cancel_futures)


def test_bodies_waiting_for_the_pool_stay_within_the_fetch_concurrency(
        tmp_path: Path, feed_server: FeedServer) -> None:
    for n in range(FEEDS):
        feed_server.serve(f"/{n}.xml", (f'<rss version="2.0"><channel><title>{n}</title><item>'
                                        f"<title>第{n}条</title><guid>{n}</guid><description>"
                                        f"第{n}条短讯的正文。</description></item></channel></rss>"
                                        ).encode())
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({
        "fetch": {"concurrency": CONCURRENCY, "per_host": CONCURRENCY},
        "feeds": [{"name": f"f{n}", "url": feed_server.url(f"/{n}.xml")}
                  for n in range(FEEDS)]}))
    config = load_config(cfg)
    conn = store.connect(tmp_path / "x.db")
    pool = SlowPool()

    async def run() -> list[FeedResult]:
        async with Fetcher(config.fetch) as fetcher:
            refresher = Refresher(config, conn, fetcher, executor=pool)
            try:
                return await refresher.refresh_many(config.feeds)
            finally:
                refresher.close()

    try:
        results = asyncio.run(run())
    finally:
        conn.close()
    assert [(r.status, r.new) for r in results] == [("ok", 1)] * FEEDS
    assert 1 <= pool.most <= CONCURRENCY
