"""Running the daemon for real in tests: a ``scrape`` subprocess on a test's folder, its JSON
log read back as events, and the loopback feeds such tests serve.  Shared by
test_daemon_run.py, test_batched_outcomes.py and test_pg_daemons.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from corpus import Post, post_link, rss_feed, rss_item
from server import Request, Response

from scraper import storage as store

REPO = Path(__file__).resolve().parent.parent
#: The issue's bound for a graceful stop.
EXIT_DEADLINE = 30.0



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
    db: Path | str

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
def running_daemon(tmp_path: Path, config_text: str | None, *args: str, log_name: str = "d.log",
                   db: str | None = None, **settings: str) -> Iterator[Running]:
    """A daemon subprocess on ``tmp_path``'s feeds.yaml (written unless None) and scrape.db
    (or ``db``: a path or a PostgreSQL URL)."""
    config, log_path = tmp_path / "feeds.yaml", tmp_path / log_name
    db = db or str(tmp_path / "scrape.db")
    if config_text is not None:
        config.write_text(config_text, encoding="utf-8")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scraper", "--config", str(config), "--db", str(db),
             "--workers", "1", "--log-format", "json", "-v", *args],
            cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
            env=env(**{"SCRAPE_HEARTBEAT": "1", "SCRAPE_TICK": "0.2", **settings}),
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


def duplicate_rows(db: Path | str) -> list[tuple[Any, ...]]:
    conn = store.open_existing(db)
    try:
        return [tuple(r) for r in conn.execute(
            "SELECT feed, entry_key, COUNT(*) FROM entries GROUP BY feed, entry_key "
            "HAVING COUNT(*) > 1").fetchall()]
    finally:
        conn.close()
