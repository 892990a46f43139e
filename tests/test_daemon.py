"""The daemon's own helpers, in-process: settings, the log line, reload, the restart's
schedule, one database thread, and the claims several daemons share (issue 5).  The daemon
run for real, as a subprocess, is tests/test_daemon_run.py."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from corpus import corpus_posts, seed_posts
from daemonrun import Rotating, feeds_yaml, static_feed
from server import FeedServer

from scraper import daemon, refresh
from scraper import storage as store
from scraper.config import ConfigError, DaemonSettings, daemon_settings, load_config
from scraper.core import decide

# -- in-process: the helpers -----------------------------------------------------------------

def test_daemon_timings_come_from_the_config_with_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("daemon:\n  heartbeat: 1m\n  tick: 0.5\nfeeds: []\n", encoding="utf-8")
    config = load_config(path)
    assert config.daemon == DaemonSettings(heartbeat=60.0, tick=0.5)
    assert daemon_settings(config, {}) == config.daemon
    s = daemon_settings(config, {"SCRAPE_HEARTBEAT": "1", "SCRAPE_CONFIG_POLL": "0",
                                 "SCRAPE_SHUTDOWN_GRACE": "2.5"})
    assert (s.heartbeat, s.config_poll, s.shutdown_grace, s.tick) == (1.0, 0.0, 2.5, 0.5)
    with pytest.raises(ConfigError, match="SCRAPE_HEARTBEAT"):
        daemon_settings(config, {"SCRAPE_HEARTBEAT": "0"})
    with pytest.raises(ConfigError, match="SCRAPE_SHUTDOWN_GRACE"):
        daemon_settings(config, {"SCRAPE_SHUTDOWN_GRACE": "soon"})
    for block, field in (("heartbeat: 0", "heartbeat"), ("tick: soon", "tick"),
                         ("sweep: 60", "sweep")):
        path.write_text(f"daemon:\n  {block}\nfeeds: []\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=f"^feeds.yaml: daemon: {field}: "):
            load_config(path)


def test_one_log_line_per_refresh_carries_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = store.utcnow()
    result = refresh.FeedResult(feed="zaker", status="ok", new=3, updated=1, duplicates=2,
                                 unchanged=7, http_status=200,
                                 next_due_at=now + timedelta(seconds=60))
    with caplog.at_level(logging.INFO, logger="scraper.daemon"):
        daemon.log_refresh("zaker", result, 0.4567, now)
        daemon.log_refresh("broken", refresh.FeedResult(feed="broken", status="error",
                                                         error="HTTP 503"), 1.0, now)
    ok, failed = caplog.records
    assert ok.levelno == logging.INFO and failed.levelno == logging.WARNING
    fields: dict[str, Any] = ok.fields  # type: ignore[attr-defined]
    assert {k: fields[k] for k in ("feed", "status", "new", "updated", "duplicates",
                                   "duration")} == {
        "feed": "zaker", "status": "ok", "new": 3, "updated": 1, "duplicates": 2,
        "duration": 0.457}
    assert fields["next_due_at"] == store.iso(now + timedelta(seconds=60))
    assert "zaker" in ok.getMessage() and "new=3" in ok.getMessage()
    assert "HTTP 503" in failed.getMessage()


def test_reload_refuses_an_invalid_config_and_applies_a_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(feeds_yaml({"a": "http://127.0.0.1:9/a.xml"}), encoding="utf-8")
    config = load_config(path)
    conn = store.connect(tmp_path / "x.db")
    d = daemon.Daemon(config, conn)
    path.write_text("feeds:\n  - name: b\n    url: ftp://nope\n", encoding="utf-8")
    assert asyncio.run(d.reload("test")) is False
    assert d.config is config and list(d.feeds) == ["a"]
    path.write_text(feeds_yaml({"a": "http://127.0.0.1:9/a2.xml", "b": "http://127.0.0.1:9/b"}),
                    encoding="utf-8")
    conn.execute("UPDATE feeds SET etag = 'x', next_due_at = '2999-01-01T00:00:00Z'")
    assert asyncio.run(d.reload("test")) is True
    assert sorted(d.feeds) == ["a", "b"]
    rows = {r["name"]: dict(r) for r in conn.execute("SELECT * FROM feeds")}
    # A moved feed forgets the old URL's validators and is due at once.
    assert rows["a"]["url"].endswith("/a2.xml") and rows["a"]["etag"] is None
    assert rows["a"]["next_due_at"] is None and "b" in rows
    conn.close()


def test_a_restart_keeps_the_schedule_and_new_feeds_are_due_now(feed_server: FeedServer,
                                                                tmp_path: Path) -> None:
    feed_server.serve("/old.xml", static_feed(seed_posts(), "old", "https://old.example"))
    feed_server.serve("/new.xml", static_feed(seed_posts(), "new", "https://new.example"))
    path = tmp_path / "feeds.yaml"
    path.write_text(feeds_yaml({"old": feed_server.url("/old.xml"),
                                "new": feed_server.url("/new.xml")}, interval="1h"),
                    encoding="utf-8")
    conn = store.connect(tmp_path / "x.db")
    later = store.utcnow() + timedelta(minutes=40)
    # "old" was refreshed by an earlier run of the daemon: its row says when it is due.
    conn.execute("INSERT INTO feeds (name, url, last_fetch_at, next_due_at) VALUES (?,?,?,?)",
                 ("old", feed_server.url("/old.xml"), store.iso(store.utcnow()),
                  store.iso(later)))
    d = daemon.Daemon(load_config(path), conn, workers=0,
                      settings=DaemonSettings(config_poll=0, tick=0.05))

    async def scenario() -> None:
        serving = asyncio.create_task(d.serve())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if d.refreshes >= 1 and not d.running and _ > 10:
                break
        d.request_stop("test")
        assert await serving == 0

    asyncio.run(scenario())
    assert len(feed_server.requests_to("/new.xml")) == 1  # never fetched: due at once
    assert feed_server.requests_to("/old.xml") == []      # not due: left alone
    assert store.feed_state(conn, "old")["next_due_at"] == store.iso(later)
    new_due = store.parse_iso(store.feed_state(conn, "new")["next_due_at"])
    assert new_due is not None and new_due - store.utcnow() > timedelta(minutes=50)
    conn.close()


class ThreadRecorder:
    """A connection stand-in that notes which thread runs each statement."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.recording = False
        self.threads: Counter[int] = Counter()

    def _note(self) -> None:
        if self.recording:
            self.threads[threading.get_ident()] += 1

    def execute(self, *args: Any) -> sqlite3.Cursor:
        self._note()
        return self._conn.execute(*args)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        self._note()
        return self._conn.executemany(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_all_database_work_runs_on_one_thread(feed_server: FeedServer, tmp_path: Path) -> None:
    # The pipeline writes from its database thread; the daemon's heartbeat, claims and
    # reloads must use that same thread, or they land inside a refresh's transaction
    # ("cannot start a transaction within a transaction", or worse, silently).
    posts = corpus_posts()
    for name in ("x", "y"):
        feed_server.route(f"/{name}.xml", Rotating(posts, f"https://{name}.example"))
    path = tmp_path / "feeds.yaml"
    path.write_text(feeds_yaml({n: feed_server.url(f"/{n}.xml") for n in ("x", "y")},
                               interval="1s"), encoding="utf-8")
    recorder = ThreadRecorder(store.connect(tmp_path / "x.db"))
    d = daemon.Daemon(load_config(path), recorder, workers=0,  # type: ignore[arg-type]
                      settings=DaemonSettings(heartbeat=0.02, tick=0.03, config_poll=0.05))

    async def scenario() -> None:
        serving = asyncio.create_task(d.serve())
        while d.refresher is None:
            await asyncio.sleep(0.01)
        recorder.recording = True
        for _ in range(60):
            await asyncio.sleep(0.05)
            if _ == 20:
                path.write_text(feeds_yaml({n: feed_server.url(f"/{n}.xml") for n in "xy"},
                                           interval="2s"), encoding="utf-8")
            if d.refreshes >= 6 and _ > 30:
                break
        recorder.recording = False
        d.request_stop("test")
        assert await serving == 0

    asyncio.run(scenario())
    assert d.refreshes >= 4
    assert len(recorder.threads) == 1, recorder.threads
    assert threading.get_ident() not in recorder.threads  # not the event loop's thread
    recorder.close()


def never_dead(_holder: str) -> bool:
    return False


def claim(conn: store.Connection, who: str, names: list[str], *, limit: int = 100,
          per_host: int = 100, at: datetime | None = None) -> store.Claimed:
    now = at or store.utcnow()
    return store.claim_due(conn, names, claimant=who, now=now,
                           until=now + timedelta(seconds=60), limit=limit,
                           per_host=per_host, is_dead=never_dead)


def test_each_due_feed_is_claimed_by_one_process_once_per_due_time(database: str) -> None:
    conn = store.connect(database)
    names = [f"f{i}" for i in range(6)]
    store.sync_feeds(conn, [(n, f"http://h{i}.example/feed") for i, n in enumerate(names)])
    first = claim(conn, "a:1", names, limit=2)
    assert len(first.names) == 2 and first.more and not first.full_hosts
    second = claim(conn, "b:2", names)
    assert not set(first.names) & set(second.names)
    assert sorted(first.names + second.names) == names
    assert claim(conn, "c:3", names).names == []
    # The refresh's outcome moves the due time and releases the claim in one transaction:
    # the feed is free, but not due again for this due time.
    done = first.names[0]
    plan = decide.decide(store.utcnow(), decide.FeedFacts(url="http://x", interval=600),
                         decide.Attempt(status=200), random.Random(1))
    store.apply_plan(conn, done, plan, claimant="a:1")
    state = store.feed_state(conn, done)
    assert state["claimed_by"] is None and state["next_due_at"] is not None
    assert claim(conn, "c:3", names).names == []
    # A claim expires: a process that died cannot hold its feeds for ever.
    later = store.utcnow() + timedelta(seconds=120)
    assert sorted(claim(conn, "c:3", names, at=later).names) == sorted(
        n for n in names if n != done)
    conn.close()


def test_claims_keep_the_per_host_limit_across_processes(database: str) -> None:
    conn = store.connect(database)
    names = [f"f{i}" for i in range(5)]
    store.sync_feeds(conn, [(n, f"http://one.example/{n}") for n in names]
                     + [("other", "http://two.example/feed")])
    a = claim(conn, "a:1", names, per_host=2)
    assert len(a.names) == 2 and a.full_hosts == {"one.example"} and not a.more
    b = claim(conn, "b:2", [*names, "other"], per_host=2)
    assert b.names == ["other"]  # one.example is full, whoever holds its claims
    store.release_claim(conn, a.names[0], "a:1")
    assert len(claim(conn, "b:2", names, per_host=2).names) == 1
    conn.close()


def test_a_claim_of_ours_that_nothing_runs_is_taken_again(database: str) -> None:
    """A release that failed (a full disk, a lock) leaves our name on the row; the feed must
    not be lost to us until a restart, expired claim or not."""
    conn = store.connect(database)
    store.sync_feeds(conn, [("a", "http://one.example/a"), ("b", "http://one.example/b")])
    assert claim(conn, "me:1", ["a"]).names == ["a"]  # and its release never happens
    later = store.utcnow() + timedelta(seconds=120)  # past the claim's expiry
    assert claim(conn, "me:1", ["a", "b"], at=later).names == ["a", "b"]
    # Not yet expired and still asked for: ours to take again as well.
    assert claim(conn, "me:1", ["a"], at=later).names == ["a"]
    # While we run it (the caller leaves it out of the names), it counts against the host.
    assert claim(conn, "me:1", ["b"], per_host=1, at=later).names == []
    conn.close()
