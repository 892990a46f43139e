"""A database the commands cannot use is one line naming the file, exit 2, and nothing written.

Every command meets every kind of bad database: random bytes, a folder, a folder that does
not exist, a newer release's schema, an older one (read commands), a lock held past the busy
timeout.  The file is compared byte for byte afterwards, and the folder's listing too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server import FeedServer, Request, Response

from scraper import storage as store
from scraper.cli import main

REPO = Path(__file__).resolve().parent.parent

#: Every command, with the output it would write (relative to the test's folder).
COMMANDS = {
    "once": ["--once", "--workers", "0"],
    "status": ["status"],
    "status --check": ["status", "--check"],
    "dups": ["dups"],
    "dups --explain": ["dups", "--explain", "1"],
    "dedup --rebuild": ["dedup", "--rebuild"],
    "export jsonl": ["export", "jsonl", "out.jsonl"],
    "export feed": ["export", "feed", "out.xml"],
    "export hexo": ["export", "hexo", "posts"],
}
READERS = {"status", "status --check", "dups", "dups --explain", "export jsonl",
           "export feed", "export hexo"}


def item(n: int, text: str) -> str:
    return (f"<item><title>第{n}条：{text[:12]}</title><link>https://example.org/{n}</link>"
            f"<guid>g{n}</guid><description>&lt;p&gt;{text}&lt;/p&gt;</description></item>")


def rss(*items: str) -> bytes:
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            f"<link>https://example.org/</link>{''.join(items)}</channel></rss>").encode()


def feed_config(folder: Path, feeds: dict[str, str] | None = None) -> Path:
    feeds = feeds or {"a": "http://127.0.0.1:9/a.xml"}  # never reached: the database fails
    lines = ["feeds:"] + [f"  - name: {n}\n    url: {u}" for n, u in feeds.items()]
    path = folder / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every file under ``folder`` and its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def run(command: str, db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([*COMMANDS[command], "--db", str(db)])
    return code, capsys.readouterr().err


def newer_database(path: Path) -> None:
    conn = store.connect(path)
    conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 1}")
    conn.close()


def older_database(path: Path) -> None:
    """A database as the release before the newest migration left it (built from the
    schema's own migrations, so the test needs no old code)."""
    conn = sqlite3.connect(path)
    for script in store.MIGRATIONS[:-1]:
        conn.executescript(script.sqlite)
    conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) - 1}")
    conn.execute("PRAGMA journal_mode = WAL")  # as every release left it
    conn.commit()
    conn.close()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder, with a feeds.yaml (dedup --rebuild and --once need one)."""
    feed_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


BAD = {
    "random bytes": (lambda p: p.write_bytes(os.urandom(65536)), "not an SQLite database"),
    "a folder": (lambda p: p.mkdir(), "is a folder, not a database file"),
    "a newer release's": (newer_database, "made by a newer release of scrape"),
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_database_is_one_line_exit_2_and_nothing_written(
        folder: Path, command: str, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    make, problem = BAD[kind]
    db = folder / "x.db"
    make(db)
    before = listing(folder)
    code, err = run(command, db, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(db) in err and problem in err
    assert listing(folder) == before  # the file byte for byte, and no file beside it


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_database_in_a_folder_that_does_not_exist(
        folder: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = folder / "no-such-folder" / "x.db"
    before = listing(folder)
    code, err = run(command, db, capsys)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(db) in err
    if command in READERS or command == "dedup --rebuild":
        assert f"no database at {db}" in err
    else:  # the writer creates a database file, not its folder (a mistyped --db)
        assert "the folder" in err and "does not exist" in err
    # status --check is the health check: a missing database is an unhealthy daemon (1)
    assert code == (1 if command.startswith("status") else 2)
    assert listing(folder) == before


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_read_command_on_an_older_schema_says_what_upgrades_it(
        folder: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = folder / "old.db"
    older_database(db)
    before = listing(folder)
    code, err = run(command, db, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(db) in err and "scrape --once" in err
    assert f"schema version {len(store.MIGRATIONS) - 1}" in err
    assert listing(folder) == before


def test_a_write_command_upgrades_an_older_schema(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = folder / "old.db"
    older_database(db)
    assert run("dedup --rebuild", db, capsys)[0] == 0
    assert run("status", db, capsys)[0] == 0  # readable now


def test_a_bad_busy_timeout_is_a_one_line_error(
        folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(store.db.BUSY_TIMEOUT_ENV, "soon")
    code, err = run("once", folder / "x.db", capsys)
    assert code == 2 and store.db.BUSY_TIMEOUT_ENV in err and "'soon'" in err
    assert not (folder / "x.db").exists()


def test_the_real_command_line_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it (a traceback would come from the
    interpreter, after main)."""
    feed_config(tmp_path)
    db = tmp_path / "x.db"
    db.write_bytes(os.urandom(65536))
    before = db.read_bytes()
    for command in ("once", "status", "export feed"):
        done = subprocess.run([sys.executable, "-m", "scraper", *COMMANDS[command],
                               "--db", str(db)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"scrape: {db}: not an SQLite database\n"
    assert db.read_bytes() == before


@pytest.mark.parametrize("kind", [*BAD, "a missing folder"])
def test_the_daemon_does_not_start_on_a_bad_database(tmp_path: Path, kind: str) -> None:
    feed_config(tmp_path)
    if kind == "a missing folder":
        db, problem = tmp_path / "no-such-folder" / "x.db", "does not exist"
    else:
        db, problem = tmp_path / "x.db", BAD[kind][1]
        BAD[kind][0](db)
    before = listing(tmp_path)
    done = subprocess.run([sys.executable, "-m", "scraper", "--db", str(db)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and str(db) in done.stderr and problem in done.stderr
    assert listing(tmp_path) == before


# -- a database locked past the busy timeout -----------------------------------------------

class Locker:
    """Holds the database's write lock from the server's thread, as another process would."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.conn: sqlite3.Connection | None = None
        self.took = threading.Event()

    def lock(self) -> None:
        self.conn = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.took.set()

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


def stored_entries(db: Path, feed: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM entries WHERE feed = ?", (feed,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # no tables yet
    finally:
        conn.close()


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[Locker]:
    held = Locker(tmp_path / "scrape.db")
    try:
        yield held
    finally:
        held.release()


def test_a_lock_held_past_the_busy_timeout_fails_that_feed_alone(
        tmp_path: Path, feed_server: FeedServer, locker: Locker) -> None:
    """Feed "free" is stored; feed "held" answers only once "free" is in the database, and
    takes the write lock as it answers: its own write meets the lock and fails, alone."""
    feed_server.serve("/free.xml", rss(item(1, "一条不受影响的新闻，照常保存。")))

    def held(_request: Request) -> Response:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing
        while stored_entries(locker.db, "free") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        locker.lock()
        return Response(body=rss(item(2, "这一条遇到被锁住的数据库。")),
                        headers={"Content-Type": "application/rss+xml"})

    feed_server.route("/held.xml", held)
    config = feed_config(tmp_path, {"free": feed_server.url("/free.xml"),
                                    "held": feed_server.url("/held.xml")})
    env = {**os.environ, "PYTHONPATH": str(REPO), store.db.BUSY_TIMEOUT_ENV: "0.2"}
    done = subprocess.run([sys.executable, "-m", "scraper", "--once", "--workers", "0",
                           "--config", str(config), "--db", str(locker.db)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert locker.took.is_set()
    assert done.returncode == 1, done.stdout + done.stderr  # a feed failed, the others stored
    assert "Traceback" not in done.stderr + done.stdout
    line = next(li for li in done.stdout.splitlines() if li.startswith("held "))
    assert "error" in line and f"{locker.db}: locked by another process" in line
    assert "0.2 s" in line
    locker.release()
    assert stored_entries(locker.db, "free") == 1
    assert stored_entries(locker.db, "held") == 0


def test_the_daemon_fails_a_locked_feed_alone_and_keeps_running(
        tmp_path: Path, feed_server: FeedServer, locker: Locker) -> None:
    """The same lock under the daemon: the feed's refresh line says what happened, the
    other feed is stored, no traceback, and once the lock is gone the feed is stored too."""
    feed_server.serve("/free.xml", rss(item(1, "一条不受影响的新闻，照常保存。")))
    answered = threading.Event()

    def held(_request: Request) -> Response:
        if not answered.is_set():  # the first time: once "free" is stored, take the lock
            deadline = time.monotonic() + 60  # a guard against a hang, not a timing
            while stored_entries(locker.db, "free") == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            locker.lock()
            answered.set()
        return Response(body=rss(item(2, "这一条遇到被锁住的数据库。")),
                        headers={"Content-Type": "application/rss+xml"})

    feed_server.route("/held.xml", held)
    config = feed_config(tmp_path, {"free": feed_server.url("/free.xml"),
                                    "held": feed_server.url("/held.xml")})
    log_path = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), store.db.BUSY_TIMEOUT_ENV: "0.2",
           "SCRAPE_TICK": "0.2", "SCRAPE_HEARTBEAT": "1"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "scraper", "--config", str(config),
                                 "--db", str(locker.db), "--workers", "0", "-v",
                                 "--log-format", "json"], cwd=tmp_path, stdout=log_file,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        def refreshes(feed: str) -> list[dict]:
            lines = log_path.read_text("utf-8", errors="replace").splitlines()
            events = [json.loads(line) for line in lines if line.startswith("{")]
            return [e for e in events if e.get("event") == "refresh" and e["feed"] == feed]

        def wait_for(check: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 60  # a guard against a hang, not a timing
            while not check() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert check(), log_path.read_text("utf-8", errors="replace")[-3000:]

        wait_for(lambda: any(e["status"] == "error" for e in refreshes("held")))
        failed = next(e for e in refreshes("held") if e["status"] == "error")
        assert f"{locker.db}: locked by another process" in failed["error"]
        assert [e["status"] for e in refreshes("free")][:1] == ["ok"]
        locker.release()
        wait_for(lambda: stored_entries(locker.db, "held") == 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "Traceback" not in log_path.read_text("utf-8", errors="replace")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
