"""A shortened interval takes effect at once (issue 16, point 13), in the real daemon.

Feeds fetched under ``interval: 30m``, then the config says ``2s``: after the daemon reloads
it (the feeds.yaml watch) or restarts, every feed is fetched again within a few of the new
intervals, except those whose server asked for later (an RSS ``<ttl>``, a Retry-After).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from server import FeedServer, Response

REPO = Path(__file__).resolve().parent.parent
#: Generous: the new interval is 2 s, and every feed is due at once after the change.
DEADLINE = 40.0


def rss(ttl_minutes: int | None = None) -> bytes:
    ttl = f"<ttl>{ttl_minutes}</ttl>" if ttl_minutes else ""
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            f"<link>https://x.example/</link>{ttl}<item><title>a</title>"
            f"<link>https://x.example/1</link><description>hello</description></item>"
            f"</channel></rss>").encode()


#: Feeds that must come back at the new interval: plain ones and one failing without a hint
#: (its backoff is counted from the new interval).
PROMPT = ["a", "b", "c", "d", "broken"]
#: Feeds whose server asked for later: a 60-minute <ttl>, a 503 with Retry-After: 1 h.
HINTED = ["ttl", "limited"]


def serve_feeds(server: FeedServer) -> None:
    feed = {"Content-Type": "application/rss+xml"}
    for name in ("a", "b", "c", "d"):
        server.route(f"/{name}.xml", Response(body=rss(), headers=feed))
    server.route("/ttl.xml", Response(body=rss(ttl_minutes=60), headers=feed))
    server.route("/broken.xml", Response(status=503, body=b"down"))
    server.route("/limited.xml", Response(status=503, body=b"later",
                                          headers={"Retry-After": "3600"}))


def config(server: FeedServer, interval: str, database: str) -> str:
    lines = ["fetch: {retries: 0}", f"database: '{database}'", "feeds:"]
    for name in PROMPT + HINTED:
        lines.append(f"  - {{name: {name}, url: '{server.url(f'/{name}.xml')}', "
                     f"interval: {interval}}}")
    return "\n".join(lines) + "\n"


@contextmanager
def daemon(work: Path, log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    environ = dict(os.environ, SCRAPE_TICK="0.2", SCRAPE_CONFIG_POLL="0.2",
                   SCRAPE_HEARTBEAT="1")
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    with (work / log_name).open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scraper", "--workers", "0", "-v"],
                                cwd=work, env=environ, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (work / log_name).read_text(errors="replace")[-3000:]
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def requests(server: FeedServer, name: str) -> int:
    return len(server.requests_to(f"/{name}.xml"))


def wait_until(done: dict[str, int], server: FeedServer, proc: subprocess.Popen[bytes],
               log: Path, what: str) -> None:
    """Until each feed of ``done`` has had at least that many requests."""
    deadline = time.monotonic() + DEADLINE
    while not all(requests(server, n) >= count for n, count in done.items()):
        if proc.poll() is not None or time.monotonic() > deadline:
            seen = {n: requests(server, n) for n in done}
            pytest.fail(f"{what}: {seen}, wanted {done}\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def first_round(server: FeedServer, work: Path, database: str) -> None:
    """Every feed fetched once under a 30-minute interval, by a daemon now stopped."""
    (work / "feeds.yaml").write_text(config(server, "30m", database), encoding="utf-8")
    with daemon(work, "first.log") as proc:
        wait_until(dict.fromkeys(PROMPT + HINTED, 1), server, proc, work / "first.log",
                   "the first fetch of every feed")


# SQLite only: the reload logic does not depend on the backend (test_pg_daemons: daemons on PG).
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
@pytest.mark.slow
def test_a_shorter_interval_applies_at_once_after_a_reload(feed_server: FeedServer,
                                                           tmp_path: Path,
                                                           database: str) -> None:
    serve_feeds(feed_server)
    (tmp_path / "feeds.yaml").write_text(config(feed_server, "30m", database),
                                         encoding="utf-8")
    with daemon(tmp_path, "d.log") as proc:
        wait_until(dict.fromkeys(PROMPT + HINTED, 1), feed_server, proc, tmp_path / "d.log",
                   "the first fetch of every feed")
        before = {n: requests(feed_server, n) for n in PROMPT + HINTED}
        (tmp_path / "feeds.yaml").write_text(config(feed_server, "2s", database),
                                             encoding="utf-8")
        wait_until({n: before[n] + 2 for n in PROMPT}, feed_server, proc, tmp_path / "d.log",
                   "two more fetches of every feed after the reload")
    assert "config reloaded" in (tmp_path / "d.log").read_text(encoding="utf-8")
    # The servers that asked for an hour get their hour.
    assert {n: requests(feed_server, n) for n in HINTED} == {n: before[n] for n in HINTED}


# SQLite only: the schedule a restart reads back is the rows the reload test above reads
# on both backends; a second daemon run on PostgreSQL would add seconds and no check.
@pytest.mark.slow
def test_a_shorter_interval_applies_at_once_after_a_restart(feed_server: FeedServer,
                                                            tmp_path: Path) -> None:
    serve_feeds(feed_server)
    database = str(tmp_path / "scrape.db")
    first_round(feed_server, tmp_path, database)
    before = {n: requests(feed_server, n) for n in PROMPT + HINTED}
    (tmp_path / "feeds.yaml").write_text(config(feed_server, "2s", database),
                                         encoding="utf-8")
    with daemon(tmp_path, "second.log") as proc:
        wait_until({n: before[n] + 2 for n in PROMPT}, feed_server, proc,
                   tmp_path / "second.log", "two more fetches of every feed after the restart")
    assert {n: requests(feed_server, n) for n in HINTED} == {n: before[n] for n in HINTED}
