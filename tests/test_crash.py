"""A `scrape --once` killed mid-run leaves a consistent database; the next run finishes it
(on each backend: PostgreSQL rolls the killed connection's transaction back itself)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
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
