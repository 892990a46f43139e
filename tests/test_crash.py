"""A `scrape --once` killed mid-run leaves a consistent database; the next run finishes it
(on each backend: PostgreSQL rolls the killed connection's transaction back itself)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import corpus
import dbread
import server as srv
import yaml
from server import FeedServer

REPO = Path(__file__).resolve().parent.parent
POSTS = corpus.corpus_posts()


def count(db: str, sql: str) -> int:
    if not dbread.exists(db):
        return 0
    try:
        return int(dbread.value(db, sql))
    except sqlite3.OperationalError:
        return 0  # not created yet (a PostgreSQL test database holds the schema already)


def test_kill_mid_run_then_rerun(tmp_path: Path, database: str,
                                 feed_server: FeedServer) -> None:
    feeds = []
    for i in range(6):
        feed_server.serve(f"/f{i}.xml", corpus.posts_feed(POSTS, f"f{i}",
                                                          base=f"https://site{i}.example"))
        feeds.append({"name": f"f{i}", "url": feed_server.url(f"/f{i}.xml")})
    feed_server.route("/slow.xml", srv.hang(60))
    feeds.append({"name": "slow", "url": feed_server.url("/slow.xml"), "timeout": 50})
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": feeds}), "utf-8")
    db = database
    cmd = [sys.executable, "-m", "scraper", "--once", "--config", str(cfg), "--db", db]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count(db, "SELECT COUNT(DISTINCT feed) FROM entries") < 6:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the good feeds were never stored"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the slow feed is still in flight
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not dbread.is_pg(db):
        assert dbread.rows(db, "PRAGMA integrity_check") == [("ok",)]

    feed_server.serve("/slow.xml", corpus.posts_feed(POSTS[:2], "slow"))
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "busy" not in rerun.stdout  # the killed run's claim does not block the feed
    assert count(db, "SELECT COUNT(*) FROM entries") == 6 * len(POSTS) + 2
    assert count(db, "SELECT COUNT(*) FROM (SELECT feed, entry_key FROM entries "
                     "GROUP BY feed, entry_key HAVING COUNT(*) > 1) AS twice") == 0


def test_two_writers_of_one_entry_at_once_make_one_row(pg_url: str) -> None:
    """PostgreSQL only (SQLite has one writer at a time: BEGIN IMMEDIATE).  Two processes
    may write one feed's entry at once when a claim expired under a slow refresh; the
    second writer waits for the first's row, then updates it, instead of failing on the
    unique (feed, key)."""
    from scraper import storage as store
    from scraper.core.decide import EntryData
    from scraper.storage.entries import write_entries

    first, second = store.connect(pg_url), store.connect(pg_url)
    waiting = second.execute("SELECT pg_backend_pid()").fetchone()[0]
    now = store.utcnow()
    done: list[object] = []

    def write_second() -> None:
        try:
            with store.transaction(second):
                done.append(write_entries(second, "f", [EntryData("k", "h2", title="two")],
                                          [], now))
        except Exception as exc:  # noqa: BLE001  (asserted below)
            done.append(exc)

    try:
        with store.transaction(first):
            ids = write_entries(first, "f", [EntryData("k", "h1", title="one")], [], now)
            writer = threading.Thread(target=write_second)
            writer.start()
            deadline = time.monotonic() + 30
            while dbread.rows(pg_url, "SELECT 1 FROM pg_stat_activity WHERE pid = ? AND "
                                      "wait_event_type = 'Lock'", waiting) == []:
                assert writer.is_alive() and time.monotonic() < deadline, done
                time.sleep(0.02)
        writer.join(30)
    finally:
        first.close()
        second.close()
    assert done == [ids]  # the same row, not an error
    assert dbread.rows(pg_url, "SELECT id, raw_hash, title FROM entries") == [
        (ids[0], "h2", "two")]
