"""The daemon, run for real: a subprocess against loopback feeds with 2 s intervals.

What must hold (issue 5): repeated refreshes of every feed; SIGHUP after adding a feed
picks it up, an invalid config is refused and the old one stays; SIGTERM lets in-flight
refreshes finish, abandons the hopeless ones at the deadline and exits 0 within 30 s with a
database that passes ``PRAGMA integrity_check``; ``scrape --once`` in a loop beside the
daemon gives no error, no "database is locked" and no duplicate row.  The daemon's own
helpers (settings, stale claims, the log line, reload) are tested in-process first.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from corpus import Post, corpus_posts, post_link, rss_feed, rss_item, seed_posts
from server import FeedServer, Request, Response, hang

from scraper import daemon
from scraper import refresh as pipeline
from scraper import storage as store
from scraper.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
#: The issue's bound for a graceful stop.
EXIT_DEADLINE = 30.0


# -- in-process: the helpers -----------------------------------------------------------------

def test_settings_from_env() -> None:
    s = daemon.Settings.from_env({"SCRAPE_HEARTBEAT": "1", "SCRAPE_CONFIG_POLL": "0",
                                  "SCRAPE_SHUTDOWN_GRACE": "2.5"})
    assert (s.heartbeat, s.config_poll, s.shutdown_grace) == (1.0, 0.0, 2.5)
    assert daemon.Settings.from_env({}) == daemon.Settings()
    with pytest.raises(ConfigError, match="SCRAPE_HEARTBEAT"):
        daemon.Settings.from_env({"SCRAPE_HEARTBEAT": "0"})
    with pytest.raises(ConfigError, match="SCRAPE_SHUTDOWN_GRACE"):
        daemon.Settings.from_env({"SCRAPE_SHUTDOWN_GRACE": "soon"})


def test_one_log_line_per_refresh_carries_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = store.utcnow()
    result = pipeline.FeedResult(feed="zaker", status="ok", new=3, updated=1, duplicates=2,
                                 unchanged=7, http_status=200)
    with caplog.at_level(logging.INFO, logger="scraper.daemon"):
        daemon.log_refresh("zaker", result, 0.4567, now, now)
        daemon.log_refresh("broken", pipeline.FeedResult(feed="broken", status="error",
                                                         error="HTTP 503"), 1.0, now, now)
    ok, failed = caplog.records
    assert ok.levelno == logging.INFO and failed.levelno == logging.WARNING
    fields: dict[str, Any] = ok.fields  # type: ignore[attr-defined]
    assert {k: fields[k] for k in ("feed", "status", "new", "updated", "duplicates",
                                   "duration")} == {
        "feed": "zaker", "status": "ok", "new": 3, "updated": 1, "duplicates": 2,
        "duration": 0.457}
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
                      settings=daemon.Settings(config_poll=0))
    next_runs: dict[str, datetime] = {}

    async def scenario() -> None:
        serving = asyncio.create_task(d.serve())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if d.refreshes >= 1 and not d.running:
                break
        assert d.scheduler is not None
        for name in ("old", "new"):
            job = d.scheduler.get_job(f"feed:{name}")
            assert job is not None, name
            next_runs[name] = job.next_run_time
        d.request_stop("test")
        assert await serving == 0

    asyncio.run(scenario())
    assert len(feed_server.requests_to("/new.xml")) == 1  # never fetched: due at once
    assert feed_server.requests_to("/old.xml") == []      # not due: left alone
    assert next_runs["old"] == store.parse_iso(store.iso(later))
    new_due = store.parse_iso(store.feed_state(conn, "new")["next_due_at"])
    assert new_due is not None and next_runs["new"] == new_due
    assert new_due - store.utcnow() > timedelta(minutes=50)  # 1 h +- 10% jitter
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


def test_release_memory_finds_glibc_malloc_trim() -> None:
    # The daemon's RSS only stays flat with the trim (bench/soak.py); on glibc, which CI and
    # the python-slim image run, it must really be found and called.
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: release_memory() is a no-op here")
    assert daemon._MALLOC_TRIM is not None
    assert daemon.release_memory() in (True, False)


#: Run in a fresh interpreter (mallopt is process-wide): frees a 4 MiB mapped block, which
#: on glibc's default raises its mmap threshold to 4 MiB, then prints how many bytes of a
#: new 1 MiB block are mapped (mallinfo2's hblkhd).
_MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from scraper.daemon import fix_mmap_threshold
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytearray(4 << 20)
del big
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def test_fixed_mmap_threshold_keeps_large_blocks_off_the_heap() -> None:
    # Without the fix a 1 MiB block freed after a bigger one lands in the heap (and the
    # daemon's heap grew with its Bloom filters: bench/soak.py); with it, it is mapped.
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallinfo2 and mallopt are glibc's")
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")

    def mapped(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _MAPPED_AFTER_A_BIG_FREE, mode],
                              capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent.parent)
        return int(done.stdout)

    assert mapped("default") == 0  # the trap the fix is for, as glibc behaves
    assert mapped("fixed") >= 1 << 20


def test_the_reexec_adds_only_what_the_user_has_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from scraper import cli

    if sys.platform != "linux" or cli.find_malloc_trim() is None:
        pytest.skip("the daemon re-executes itself on glibc only")
    execs: list[dict[str, str]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        execs.append(env)

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(cli, "_REEXECUTED", False)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.delenv(cli.REEXEC_MARK, raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # the user's own
    cli.use_malloc_for_the_daemon()
    [env] = execs
    assert env["PYTHONMALLOC"] == "malloc" and env["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert env[cli.REEXEC_MARK] == "PYTHONMALLOC"
    # In the re-executed process: what the exec added goes, so the workers do not inherit
    # it; the user's threshold stays.
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    monkeypatch.setenv(cli.REEXEC_MARK, env[cli.REEXEC_MARK])
    cli.use_malloc_for_the_daemon()
    assert len(execs) == 1 and cli.allocator() == "malloc"
    assert "PYTHONMALLOC" not in os.environ and cli.REEXEC_MARK not in os.environ
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_all_database_work_runs_on_one_thread(feed_server: FeedServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The pipeline writes from its database thread; the daemon's heartbeat, due-time reads,
    # sweeps and reloads must use that same thread, or they land inside a refresh's
    # transaction ("cannot start a transaction within a transaction", or worse, silently).
    # The heartbeat's memory trim runs there too, off the event loop.
    trims: list[int] = []
    monkeypatch.setattr(daemon, "release_memory", lambda: trims.append(threading.get_ident()))
    posts = corpus_posts()
    for name in ("x", "y"):
        feed_server.route(f"/{name}.xml", Rotating(posts, f"https://{name}.example"))
    path = tmp_path / "feeds.yaml"
    path.write_text(feeds_yaml({n: feed_server.url(f"/{n}.xml") for n in ("x", "y")},
                               interval="1s"), encoding="utf-8")
    recorder = ThreadRecorder(store.connect(tmp_path / "x.db"))
    d = daemon.Daemon(load_config(path), recorder, workers=0,  # type: ignore[arg-type]
                      settings=daemon.Settings(heartbeat=0.02, sweep=0.03, config_poll=0.05))

    async def scenario() -> None:
        serving = asyncio.create_task(d.serve())
        while d.refresher is None or d.scheduler is None:
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
    assert trims and set(trims) == set(recorder.threads)
    recorder.close()


# -- the subprocess harness --------------------------------------------------------------------

def feeds_yaml(feeds: dict[str, str], interval: str = "2s",
               extra: dict[str, dict[str, Any]] | None = None) -> str:
    lines = ["fetch:", "  per_host: 16", "  retries: 0", "feeds:"]
    for name, url in feeds.items():
        lines += [f"  - name: {name}", f"    url: {url}", f"    interval: {interval}"]
        for key, value in (extra or {}).get(name, {}).items():
            lines.append(f"    {key}: {value}")
    return "\n".join(lines) + "\n"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log_path: Path
    config: Path
    db: Path

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                with suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def refreshes(self, feed: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == "refresh" and e["feed"] == feed]

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def env(**settings: str) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(settings)
    return out


def scrape(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scraper", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


@contextmanager
def running_daemon(tmp_path: Path, config_text: str, **settings: str) -> Iterator[Running]:
    config, db, log_path = tmp_path / "feeds.yaml", tmp_path / "scrape.db", tmp_path / "d.log"
    config.write_text(config_text, encoding="utf-8")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scraper", "--config", str(config), "--db", str(db),
             "--workers", "1", "--log-format", "json"],
            cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
            env=env(SCRAPE_HEARTBEAT="1", SCRAPE_SWEEP="1", **settings),
            start_new_session=True)  # its own process group: the daemon and its workers
    try:
        yield Running(proc, log_path, config, db)
    finally:
        # A failed test must not leave the daemon's pool workers behind: they outlive a
        # killed parent (each holds its own call-queue pipe open).
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"daemon exited ({proc.returncode}) while waiting for {what}\n{tail}")
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{tail}")


def environ_of(pid: int) -> bytes:
    """The environment ``pid`` was started with (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` other than its leader (the daemon's workers
    and their fork server: the daemon runs in its own session)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        if int(fields[2]) == pgid and pid != pgid:  # state, ppid, pgrp
            out.append(pid)
    return out


def static_feed(posts: list[Post], title: str, base: str) -> bytes:
    return rss_feed(title, [rss_item(p, post_link(p, base)) for p in posts])


class Rotating:
    """A feed whose window over the posts moves one item per request (new entries keep
    coming), and which records how many requests it served at the same time."""

    def __init__(self, posts: list[Post], base: str, delay: float = 0.0, size: int = 5) -> None:
        self.posts, self.base, self.delay, self.size = posts, base, delay, size
        self.count = 0
        self.active = 0
        self.max_active = 0
        self.served: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, _req: Request) -> Response:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            start = self.count
            self.count += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            window = [self.posts[(start + i) % len(self.posts)] for i in range(self.size)]
            links = [post_link(p, self.base) for p in window]
            with self._lock:
                self.served.update(links)
            body = rss_feed(self.base, [rss_item(p, link) for p, link in zip(window, links,
                                                                             strict=True)])
            return Response(body=body, headers={"Content-Type": "application/rss+xml"},
                            etag=False)
        finally:
            with self._lock:
                self.active -= 1


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def duplicate_rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT feed, entry_key, COUNT(*) FROM entries "
                            "GROUP BY feed, entry_key HAVING COUNT(*) > 1").fetchall()
    finally:
        conn.close()


# -- the daemon, for real ----------------------------------------------------------------------

@pytest.mark.slow
def test_daemon_refreshes_reloads_and_stops_gracefully(feed_server: FeedServer,
                                                       tmp_path: Path) -> None:
    posts = corpus_posts()
    zaker = [p for p in posts if p.site == "ZAKER"]
    mydrivers = [p for p in posts if p.site != "ZAKER"]
    feed_server.serve("/a.xml", static_feed(zaker, "zaker", "https://a.example"))
    feed_server.serve("/b.xml", static_feed(mydrivers, "mydrivers", "https://b.example"))
    feed_server.serve("/c.xml", static_feed(seed_posts(), "seeds", "https://c.example"))
    feed_server.serve("/d.xml", static_feed(zaker[:2], "late", "https://d.example"))
    slow = Rotating(mydrivers, "https://slow.example", delay=2.0)
    feed_server.route("/slow.xml", slow)
    feed_server.route("/hang.xml", hang(120))
    feeds = {n: feed_server.url(f"/{n}.xml") for n in ("a", "b", "c", "slow", "hang")}
    hang_timeout = {"hang": {"timeout": "60s"}}
    with running_daemon(tmp_path, feeds_yaml(feeds, extra=hang_timeout),
                        SCRAPE_CONFIG_POLL="0", SCRAPE_SHUTDOWN_GRACE="5") as d:
        def requests(path: str) -> int:
            return len(feed_server.requests_to(path))

        # Repeated refreshes of every feed.
        wait_for(lambda: all(requests(f"/{n}.xml") >= 3 for n in "abc")
                 and requests("/slow.xml") >= 2, 25, "three refreshes of every feed",
                 d.proc, d.log_path)
        lines = d.refreshes("a")
        assert len(lines) >= 2
        first = lines[0]
        assert first["status"] == "ok" and first["new"] == len(zaker)
        assert {"feed", "status", "new", "updated", "duplicates", "duration"} <= first.keys()
        assert any(line["status"] == "not-modified" for line in lines[1:])  # ETag -> 304
        assert d.refreshes("b")[0]["new"] == len(mydrivers)
        # Every request of a feed came from one refresh at a time.
        assert slow.max_active == 1

        # On glibc the daemon re-executed itself on malloc (its RSS stays flat with the
        # heartbeat's trim); its worker processes, started after, kept pymalloc.
        if platform.libc_ver()[0] == "glibc" and "PYTHONMALLOC" not in os.environ:
            start = next(e for e in d.events() if e.get("event") == "start")
            assert start["allocator"] == "malloc"
            assert b"PYTHONMALLOC=malloc" in environ_of(d.proc.pid)
            # ...with glibc's mmap threshold fixed from its first allocation.
            assert b"MALLOC_MMAP_THRESHOLD_=131072" in environ_of(d.proc.pid)
            workers = group_members(d.proc.pid)
            assert workers, "no worker process found"
            assert all(b"PYTHONMALLOC" not in environ_of(p) for p in workers)
            assert all(b"MALLOC_MMAP_THRESHOLD_" not in environ_of(p) for p in workers)

        # The health check sees the heartbeat of the live daemon.
        assert scrape("status", "--check", "--db", str(d.db), cwd=tmp_path).returncode == 0
        # The heartbeat records the daemon's memory: its RSS as /proc shows it (the trim
        # and the refreshes move it between the two readings, never by half).
        shown = scrape("status", "--json", "--db", str(d.db), cwd=tmp_path)
        memory = json.loads(shown.stdout)["daemon"]["memory"]
        if sys.platform == "linux":
            with open(f"/proc/{d.proc.pid}/statm", encoding="ascii") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            assert rss / 2 < memory["rss_bytes"] < rss * 2, (memory, rss)
            assert memory["unmerged_entries"] > 0  # the feeds' entries, not merged yet

        # An invalid config is refused; the daemon keeps going with the old one.
        d.config.write_text(feeds_yaml({**feeds, "d": "ftp://not-http/"}, extra=hang_timeout),
                            encoding="utf-8")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e.get("event") == "reload-refused" for e in d.events()), 10,
                 "the refusal of the invalid config", d.proc, d.log_path)
        refused = next(e for e in d.events() if e.get("event") == "reload-refused")
        assert "feeds[5] 'd'" in refused["error"] and "url" in refused["error"]
        before = requests("/a.xml")
        wait_for(lambda: requests("/a.xml") >= before + 2, 10, "refreshes after the refusal",
                 d.proc, d.log_path)
        assert requests("/d.xml") == 0

        # SIGHUP with a valid config adding a feed: the feed is picked up.
        d.config.write_text(feeds_yaml({**feeds, "d": feed_server.url("/d.xml")},
                                       extra=hang_timeout), encoding="utf-8")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: requests("/d.xml") >= 2, 15, "the added feed's refreshes",
                 d.proc, d.log_path)
        reload = next(e for e in d.events() if e.get("event") == "reload")
        assert reload["added"] == ["d"]

        # SIGTERM while a refresh is in flight (the slow feed takes 2 s to answer; the
        # hanging one never answers and must be abandoned at the grace deadline).
        seen = requests("/slow.xml")
        wait_for(lambda: requests("/slow.xml") > seen, 10, "a slow refresh in flight",
                 d.proc, d.log_path)
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            code = d.proc.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {EXIT_DEADLINE} s of SIGTERM\n{d.log_text()[-3000:]}")
        elapsed = time.monotonic() - started
        assert code == 0, d.log_text()[-3000:]
        assert elapsed < EXIT_DEADLINE

        events = d.events()
        stop = next(i for i, e in enumerate(events) if e.get("event") == "stop")
        after = events[stop + 1:]
        # The refresh in flight was let finish...
        assert any(e.get("event") == "refresh" and e["feed"] == "slow" and e["status"] == "ok"
                   for e in after), after
        # ...the hopeless one abandoned, and nothing new started.
        assert [e["feed"] for e in after if e.get("event") == "abandoned"] == ["hang"]
        assert not [e for e in after if e.get("event") == "refresh" and e["feed"] != "slow"]
        assert any(e.get("event") == "stopped" for e in after)
        assert "Traceback" not in d.log_text()

    assert integrity(d.db) == "ok"
    conn = sqlite3.connect(d.db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM feeds WHERE claimed_by IS NOT NULL"
                            ).fetchone()[0] == 0
        state = conn.execute("SELECT value FROM meta WHERE key = 'daemon.state'").fetchone()[0]
        assert state == "stopped"
        # The running daemon's memory figures went with it.
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'daemon.memory'"
                            ).fetchone()[0] == 0
        # The schedule is in the rows: every feed that was refreshed has its next visit.
        due = dict(conn.execute("SELECT name, next_due_at FROM feeds").fetchall())
        assert all(due[n] for n in ("a", "b", "c", "d", "slow"))
        assert due["hang"] is None  # abandoned before its first outcome: due at next start
    finally:
        conn.close()
    assert duplicate_rows(d.db) == []
    # A stopped daemon is not a healthy one.
    assert scrape("status", "--check", "--db", str(d.db), cwd=tmp_path).returncode == 1


@pytest.mark.slow
def test_once_runs_beside_the_daemon(feed_server: FeedServer, tmp_path: Path) -> None:
    posts = corpus_posts() + seed_posts()
    rotating = {name: Rotating(posts[i:] + posts[:i], f"https://{name}.example", delay=0.3)
                for i, name in enumerate(("r1", "r2", "r3"))}
    for name, handler in rotating.items():
        feed_server.route(f"/{name}.xml", handler)
    late = Rotating(posts, "https://late.example")
    feed_server.route("/late.xml", late)
    feeds = {n: feed_server.url(f"/{n}.xml") for n in rotating}
    with running_daemon(tmp_path, feeds_yaml(feeds), SCRAPE_CONFIG_POLL="0.5") as d:
        wait_for(lambda: all(len(d.refreshes(n)) >= 1 for n in rotating), 20,
                 "the daemon's first refreshes", d.proc, d.log_path)
        outputs: list[str] = []
        started = time.monotonic()
        while len(outputs) < 6 or time.monotonic() - started < 8:
            if len(outputs) == 2:
                # An edit of feeds.yaml (no signal) is picked up by the mtime watch.
                d.config.write_text(feeds_yaml({**feeds, "late": feed_server.url("/late.xml")}),
                                    encoding="utf-8")
            done = scrape("--once", "--config", str(d.config), "--db", str(d.db),
                          "--workers", "0", cwd=tmp_path)
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 0, outputs[-1]
            statuses = [line.split()[1] for line in done.stdout.splitlines()[1:-1]]
            assert statuses and "error" not in statuses, outputs[-1]
        wait_for(lambda: len(d.refreshes("late")) >= 1, 10, "the daemon refreshing the feed "
                 "added by editing feeds.yaml", d.proc, d.log_path)
        # The one-shot runs move the rows' due times; the daemon follows and keeps going.
        wait_for(lambda: all(len(d.refreshes(n)) >= 2 for n in rotating), 10,
                 "the daemon's refreshes after the one-shot runs", d.proc, d.log_path)
        # Ctrl-C in a terminal: SIGINT to the whole process group, workers included.  They
        # must not die of it (a broken pool would fail the refreshes in flight).
        os.killpg(d.proc.pid, signal.SIGINT)
        assert d.proc.wait(timeout=EXIT_DEADLINE) == 0
        log = d.log_text()

    everything = "\n".join(outputs) + log
    assert "database is locked" not in everything
    assert "Traceback" not in everything
    # No error, and no warning either: e.g. "heartbeat not written" would mean the daemon's
    # own writes collided with a refresh's transaction on the shared connection.
    noisy = [e for e in d.events() if e.get("level") in ("warning", "error", "critical")]
    assert noisy == []
    assert not [e for e in d.events() if e.get("event") == "refresh" and e["status"] == "error"]
    # The per-feed claim: never two refreshes of one feed at once, across the processes.
    assert all(h.max_active == 1 for h in rotating.values()), \
        {n: h.max_active for n, h in rotating.items()}
    assert duplicate_rows(d.db) == []
    assert integrity(d.db) == "ok"
    conn = sqlite3.connect(d.db)
    try:
        # Each item a feed served is stored exactly once (by link, as well as by key).
        for name, handler in rotating.items():
            links = [r[0] for r in conn.execute("SELECT url FROM entries WHERE feed = ?",
                                                (name,))]
            assert sorted(links) == sorted(handler.served), name
    finally:
        conn.close()
