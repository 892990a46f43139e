"""Soak test of the daemon: does its memory stay flat over hours of refreshes?

Runs ``scrape`` (the daemon, as a subprocess) against 200 loopback feeds polled every
10 s for an hour by default, samples the resident memory (RSS) of the daemon and of its
worker processes, and prints the figures at the start (after the first round of
refreshes, once the imports and caches are warm) and at the end, then stops the daemon
with SIGTERM and checks the exit code and the database.

The feeds are a mix meant to exercise every path a months-long run takes:
- "fresh" feeds (70%) publish one new, distinct entry per request (:func:`article`), so
  every refresh writes and the dedup index keeps growing;
- "static" feeds (20%) answer 304 Not Modified after the first fetch;
- "broken" feeds (10%) answer 500, so the backoff path runs too.

Usage:
    python bench/soak.py                      # one hour (the issue's figure)
    python bench/soak.py --duration 300       # a five-minute check
    python bench/soak.py --duration 300 --feeds 50 --interval 5 --sample 30

Not a test: it takes as long as you ask, and memory figures are for a human to read.
Expect the daemon's RSS to climb during the first minutes by up to SQLite's page cache
(``store.CACHE_KIB``, 16 MiB) as the database grows past it, then stay flat: that cache
is bounded, a leak is not.  Read the windows' minima and medians at the end (see
:func:`windows`), not two single samples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from corpus import Post, corpus_posts, post_link, rss_feed, rss_item, seed_posts  # noqa: E402
from dedup_scale import cipher  # noqa: E402
from server import FeedServer, Request, Response  # noqa: E402

from scraper import dedup, status  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def sentence_pool(posts: list[Post]) -> list[str]:
    """The corpus's sentences, to draw distinct articles from (as bench/ingest.py does)."""
    from selectolax.lexbor import LexborHTMLParser

    out = []
    for post in posts:
        text = LexborHTMLParser(post.body).text(separator="\n")
        parts = text.replace("\n", "。").split("。")
        out += [s.strip() + "。" for s in parts if len(s.strip()) > 12]
    return out


def article(sentences: list[str], seed: str, shared: bool = False) -> list[str]:
    """16 sentences drawn from the corpus, each CJK character then mapped through a
    substitution of the article's own (``dedup_scale.cipher``), as unrelated news is.

    Why the substitution: articles made of the corpus's few hundred sentences share one or two
    sentences with more and more stored articles as the database grows, so every new one had
    more candidates than the last (``bench/memory.py --shared-sentences``: 21 s per 2,000
    entries at first, 76 s by 12,000), and the per-refresh work and its transient memory grew
    with them: the hour-long soak's RSS crept up 2-4 MiB an hour, and bench/memory.py's
    98.6 -> 102.8 MiB from 4,000 to 12,000 entries.  Ciphered articles keep a constant
    candidate count (11-12 s per 2,000 entries throughout), and bench/memory.py stayed within
    102-106 MiB over the same range.  ``shared`` keeps the old draw, to watch that case.
    """
    rng = random.Random(seed)
    drawn = rng.sample(sentences, 16)
    if shared:
        return drawn
    return cipher("\n".join(drawn), rng).split("\n")


class FreshFeed:
    """One new entry per request: a window of 5 items sliding over an endless sequence.

    Every entry is a distinct article (:func:`article`), as most entries of real feeds are.
    Reusing the same dozen articles under new GUIDs instead would make every entry a
    duplicate of clusters that grow without end, and the dedup work per entry with them:
    memory would then follow the data, which says nothing about leaks.
    """

    def __init__(self, name: str, posts: list[Post], sentences: list[str],
                 shared: bool = False) -> None:
        self.name, self.posts, self.sentences, self.shared = name, posts, sentences, shared
        self.count = 0
        self._lock = threading.Lock()

    def item(self, n: int) -> str:
        post = self.posts[n % len(self.posts)]
        drawn = article(self.sentences, f"{self.name}-{n}", self.shared)
        body = "".join("<p>" + "".join(drawn[k:k + 4]) + "</p>" for k in range(0, 16, 4))
        link = post_link(post, f"https://{self.name}.example") + f"?n={n}"
        return rss_item(post, link, guid=f"{self.name}-{n}", body=body).replace(
            f"<title>{escape(post.title)}", f"<title>{escape(post.title)} #{n}", 1)

    def __call__(self, _req: Request) -> Response:
        with self._lock:
            start = self.count
            self.count += 1
        items = [self.item(n) for n in range(start, start + 5)]
        return Response(body=rss_feed(self.name, items),
                        headers={"Content-Type": "application/rss+xml"}, etag=False)


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, RSS of ``pid`` and all its descendants), in bytes, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))

    def rss(p: int) -> int:
        try:
            with open(f"/proc/{p}/statm", encoding="ascii") as f:
                return int(f.read().split()[1]) * PAGE
        except OSError:
            return 0

    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss(p)
        stack.extend(children.get(p, []))
    return rss(pid), total


@dataclass
class Sample:
    t: float
    rss: int
    tree: int
    refreshes: int
    errors: int
    entries: int
    db_bytes: int
    #: Bytes of Bloom filters the daemon held at its last heartbeat (``dedup.held``).
    filters: int = 0


def rss_parts(pid: int) -> str:
    """The daemon's RSS split as /proc/PID/status does: anonymous memory (the heaps: what a
    leak grows), file pages (code and libraries) and shared memory (SQLite's WAL index)."""
    parts = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    name, value = line.split(":")
                    parts[name[3:]] = int(value.split()[0]) / 1024
    except OSError:
        return "gone"
    return ", ".join(f"{name} {value:.1f} MiB" for name, value in parts.items())


def count_events(log: Path) -> tuple[int, int, int]:
    """(refresh lines, refresh lines with status error, 'database is locked' mentions)."""
    refreshes = errors = locked = 0
    with log.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if "database is locked" in line:
                locked += 1
            if not line.startswith("{") or '"event": "refresh"' not in line:
                continue
            refreshes += 1
            try:
                if json.loads(line).get("status") == "error":
                    errors += 1
            except json.JSONDecodeError:
                pass
    return refreshes, errors, locked


def read_rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one read-only query of the daemon's database; none when it cannot be
    read yet (not created, or a table not migrated): the soak samples from the first second."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return []
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def filter_bytes(db: Path) -> tuple[int, int]:
    """(bytes of every bucket's Bloom filter in the database, bytes of the largest
    ``dedup._FILTERS_KEPT``): the daemon keeps up to that many filters in memory, and they grow
    with their buckets' keys, so its RSS may grow by as much as the second figure does, with
    the data and not with time.  (0, 0) before the first merge."""
    sizes = sorted((r[0] for r in read_rows(db, "SELECT length(bits) FROM dedup_filters")),
                   reverse=True)
    return sum(sizes), sum(sizes[:dedup._FILTERS_KEPT])


def held_filters(db: Path) -> int:
    """Bytes of Bloom filters the daemon held at its last heartbeat (``scrape status``'s
    memory line, ``status.MEMORY``); 0 before the first."""
    rows = read_rows(db, "SELECT value FROM meta WHERE key = ?", (status.MEMORY,))
    memory = status.parse_memory(rows[0][0] if rows else None) or {}
    return memory.get("filter_bytes", 0)


def entry_count(db: Path) -> int:
    rows = read_rows(db, "SELECT COUNT(*) FROM entries")
    return rows[0][0] if rows else 0


def mib(n: int) -> str:
    return f"{n / 1048576:7.1f} MiB"


def windows(samples: list[Sample], seconds: float
            ) -> list[tuple[float, float, float, float, float]]:
    """(window end, min, median, max, median less the Bloom filters held) of the daemon's RSS
    in MiB per ``seconds``-long window.

    Why: the RSS is a sawtooth (dedup's memory level fills for MERGE_ENTRIES entries, about
    4 minutes here, then a merge empties it; the heartbeat trims the heap every 10 s), and one
    sample a minute lands anywhere on a tooth: two single samples can differ by 5 MiB with
    nothing growing.  The windows' minima and medians show a drift the teeth hide.

    The last figure takes out the Bloom filters the daemon held (``dedup.held``): they
    grow with the data (all of this run's entries land in one 28-day bucket, whose filter
    doubles as it fills), not with time, and the rest is what a leak would grow."""
    # The last sample is taken at the end of the run, a moment past its last boundary: it
    # belongs to the last window, not to one of its own.
    count = max(1, round(samples[-1].t / seconds))
    buckets: list[list[Sample]] = [[] for _ in range(count)]
    for s in samples:
        buckets[min(int(s.t // seconds), count - 1)].append(s)
    out = []
    for n, window in enumerate(buckets):
        if not window:
            continue
        rss = sorted(s.rss / 1048576 for s in window)
        less = sorted((s.rss - s.filters) / 1048576 for s in window)
        out.append(((n + 1) * seconds, rss[0], rss[len(rss) // 2], rss[-1],
                    less[len(less) // 2]))
    return out


def slope_mib_per_hour(samples: list[Sample], less_filters: bool = False) -> float:
    """Least-squares slope of the daemon's RSS over ``samples`` (less the Bloom filters it
    held, with ``less_filters``), in MiB per hour."""
    n = len(samples)
    if n < 2:
        return 0.0
    ys = [s.rss - s.filters if less_filters else s.rss for s in samples]
    mt = sum(s.t for s in samples) / n
    mr = sum(ys) / n
    var = sum((s.t - mt) ** 2 for s in samples)
    cov = sum((s.t - mt) * (y - mr) for s, y in zip(samples, ys, strict=True))
    return cov / var * 3600 / 1048576 if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600, help="seconds (default 3600)")
    parser.add_argument("--feeds", type=int, default=200, help="loopback feeds (default 200)")
    parser.add_argument("--interval", type=int, default=10, help="feed interval, s (default 10)")
    parser.add_argument("--sample", type=float, default=20, help="seconds between samples")
    parser.add_argument("--window", type=float, default=600,
                        help="seconds per window of the RSS summary (default 600)")
    parser.add_argument("--workers", type=int, default=2, help="daemon --workers (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--shared-sentences", action="store_true",
                        help="articles share the corpus's sentences, unciphered: each has more "
                             "candidates than the last (how soaks ran before this option)")
    args = parser.parse_args()

    posts = corpus_posts() + seed_posts()
    sentences = sentence_pool(corpus_posts())
    server = FeedServer().start()
    work = Path(tempfile.mkdtemp(prefix="scrape-soak-"))
    config, db, log = work / "feeds.yaml", work / "scrape.db", work / "daemon.log"
    lines = ["fetch:", "  per_host: 16", "  retries: 0", "feeds:"]
    kinds = {"fresh": 0, "static": 0, "broken": 0}
    for i in range(args.feeds):
        name = f"feed{i:03d}"
        kind = "broken" if i % 10 == 9 else "static" if i % 10 in (7, 8) else "fresh"
        kinds[kind] += 1
        path = f"/{name}.xml"
        if kind == "fresh":
            server.route(path, FreshFeed(name, posts[i % len(posts):] + posts[:i % len(posts)],
                                         sentences, shared=args.shared_sentences))
        elif kind == "static":
            server.serve(path, rss_feed(name, [rss_item(p, post_link(p, f"https://{name}.x"))
                                               for p in posts[:6]]))
        else:
            server.route(path, Response(status=500, body=b"oops", etag=False))
        lines += [f"  - name: {name}", f"    url: {server.url(path)}",
                  f"    interval: {args.interval}s"]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SCRAPE_HEARTBEAT="10")
    print(f"soak: {args.feeds} feeds ({kinds['fresh']} fresh, {kinds['static']} static, "
          f"{kinds['broken']} broken) every {args.interval} s for {args.duration:g} s; "
          f"workers={args.workers}; in {work}", flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scraper", "--config", str(config),
                                 "--db", str(db), "--workers", str(args.workers),
                                 "--log-format", "json"],
                                cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    samples: list[Sample] = []
    warm: Sample | None = None
    warm_parts = end_parts = "not sampled"
    warm_filters = (0, 0)
    print(f"{'t (s)':>7} {'daemon RSS':>12} {'with workers':>13} {'refreshes':>10} "
          f"{'errors':>7} {'entries':>8} {'db + wal':>12}", flush=True)
    try:
        next_sample = started
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                print(f"daemon exited early with {proc.returncode}; see {log}")
                return 1
            if now >= next_sample or now - started >= args.duration:
                rss, tree = tree_rss(proc.pid)
                refreshes, errors, _ = count_events(log)
                size = sum(p.stat().st_size for p in work.glob("scrape.db*"))
                sample = Sample(now - started, rss, tree, refreshes, errors, entry_count(db),
                                size, held_filters(db))
                samples.append(sample)
                print(f"{sample.t:7.0f} {mib(rss):>12} {mib(tree):>13} {refreshes:>10} "
                      f"{errors:>7} {sample.entries:>8} {mib(size):>12}", flush=True)
                # "Start" is the first sample after every feed was refreshed once: the
                # imports, the pool and SQLite's page cache are warm by then.
                if warm is None and refreshes >= args.feeds:
                    warm = sample
                    warm_parts = rss_parts(proc.pid)
                    warm_filters = filter_bytes(db)
                end_parts = rss_parts(proc.pid)
                next_sample += args.sample
            if now - started >= args.duration:
                break
            time.sleep(min(1.0, max(0.05, next_sample - time.monotonic())))
    finally:
        stop_started = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        stop_seconds = time.monotonic() - stop_started
        server.stop()

    end = samples[-1]
    warm = warm or samples[0]
    refreshes, errors, locked = count_events(log)
    conn = sqlite3.connect(db)
    check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    dups = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM entries GROUP BY feed, entry_key "
                        "HAVING COUNT(*) > 1)").fetchone()[0]
    conn.close()
    end_filters = filter_bytes(db)
    half = [s for s in samples if s.t >= end.t / 2]
    print()
    print(f"RSS at start (t={warm.t:.0f} s): daemon {mib(warm.rss)}, with workers "
          f"{mib(warm.tree)}")
    print(f"RSS at end   (t={end.t:.0f} s): daemon {mib(end.rss)}, with workers {mib(end.tree)}")
    print(f"daemon RSS parts at start: {warm_parts}; at end: {end_parts}")
    print(f"change: daemon {(end.rss - warm.rss) / 1048576:+.1f} MiB, with workers "
          f"{(end.tree - warm.tree) / 1048576:+.1f} MiB; second half: daemon "
          f"{(half[-1].rss - half[0].rss) / 1048576:+.1f} MiB")
    print(f"dedup's Bloom filters in the database: {mib(warm_filters[0])} at start, "
          f"{mib(end_filters[0])} at end; the {dedup._FILTERS_KEPT} largest, which the daemon may "
          f"hold in memory: {mib(warm_filters[1])} -> {mib(end_filters[1])}")
    print(f"Bloom filters the daemon held (its heartbeat): {mib(warm.filters)} at start, "
          f"{mib(end.filters)} at end")
    print(f"daemon RSS per {args.window:g} s window, MiB (min / median / max; median less "
          f"the Bloom filters held):")
    for end_t, low, middle, high, less in windows([s for s in samples if s.t >= warm.t],
                                                  args.window):
        print(f"  to {end_t:6.0f} s: {low:6.1f} / {middle:6.1f} / {high:6.1f};  {less:6.1f}")
    print(f"slope of the daemon's RSS over the second half: "
          f"{slope_mib_per_hour(half):+.1f} MiB per hour; less the Bloom filters held: "
          f"{slope_mib_per_hour(half, less_filters=True):+.1f}")
    print(f"refreshes: {refreshes} ({errors} errors, from the broken feeds), entries: "
          f"{end.entries}, duplicate rows: {dups}, 'database is locked': {locked}")
    print(f"SIGTERM -> exit {code} in {stop_seconds:.1f} s; integrity_check: {check}")
    if not args.keep:
        for p in sorted(work.iterdir()):
            p.unlink()
        work.rmdir()
    return 0 if code == 0 and check == "ok" and not dups and not locked else 1


if __name__ == "__main__":
    raise SystemExit(main())
