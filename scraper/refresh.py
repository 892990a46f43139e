"""One refresh of a set of feeds: fetch -> parse -> normalize -> fingerprint -> dedup -> store.

Where the time goes decides the shape:
- fetching is I/O: all feeds at once on one event loop, under the fetcher's limits;
- parsing, normalizing and fingerprinting are CPU: they run in worker processes, so the
  event loop keeps fetching while they work and both cores are used (``workers``);
- entries the database already has with the same raw hash are not normalized again, so a
  warm run over unchanged feeds costs a conditional GET, or one parse, per feed;
- each feed's writes are one transaction, on the event loop's thread (one writer), so a crash
  loses at most the refresh in flight and a re-run finishes it without duplicate rows.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from scraper import dedup
from scraper import storage as store
from scraper.config import Config, FeedConfig
from scraper.core import fingerprint, fulltext, normalize, rules, schedule
from scraper.core.parse import ParsedEntry, ParseError, parse_feed
from scraper.net.fetch import Fetcher, FetchResult

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How often a worker checks that the main process still runs (a sleep, not a busy loop).
ORPHAN_CHECK_SECONDS = 2.0

#: Who holds a feed's claim: unique per process, readable in `scrape status`.
CLAIMANT = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Prepared:
    """An entry ready to store: what the feed sent plus what normalize made of it."""

    entry: ParsedEntry
    key: str
    raw_hash: str
    content_html: str
    content_text: str
    summary: str
    image: str | None
    fingerprint: fingerprint.Fingerprint | None = None


@dataclass
class FeedResult:
    feed: str
    status: str = "ok"  # ok | not-modified | error | busy
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    error: str | None = None
    warning: str | None = None
    http_status: int | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "error"


@dataclass
class PreparedFeed:
    """What a worker sends back for one feed document: only the new or changed entries."""

    entries: list[Prepared]
    unchanged: int
    problem: str | None
    ttl: int | None


@dataclass
class FeedScan:
    """A document's entry identities: (key, raw hash) in document order, the first of a key."""

    identities: list[tuple[str, str]]
    problem: str | None
    ttl: int | None


def scan_feed(body: bytes, headers: Mapping[str, str], url: str) -> FeedScan:
    """Parse only, so the database is asked about this document's entries and no others.

    Handing the worker every key its feed ever had would grow with the feed's history
    (a soak run's daemon RSS crept up with it); a second parse costs ~30 µs per item on the
    fast path (bench/parse.py), and a document with nothing new needs no second pass at all.
    """
    parsed = parse_feed(body, headers, url)
    seen: dict[str, str] = {}
    for entry in parsed.entries:
        seen.setdefault(entry.key, entry.raw_hash)
    return FeedScan(list(seen.items()), parsed.problem, parsed.ttl)


def prepare_feed(body: bytes, headers: Mapping[str, str], url: str, feed: FeedConfig,
                 sites: Mapping[str, rules.SiteRule], settings: dedup.DedupSettings,
                 known: Mapping[str, str]) -> PreparedFeed:
    """Parse and normalize the entries that are new or changed (runs in a worker process)."""
    parsed = parse_feed(body, headers, url)
    out: list[Prepared] = []
    unchanged = 0
    seen: set[str] = set()
    for entry in parsed.entries:
        key = entry.key
        if key in seen:
            continue  # the same entry twice in one document: the first wins
        seen.add(key)
        raw_hash = entry.raw_hash
        if known.get(key) == raw_hash:
            unchanged += 1
            continue
        out.append(prepare_entry(entry, key, raw_hash, feed, sites, settings))
    return PreparedFeed(out, unchanged, parsed.problem, parsed.ttl)


def prepare_entry(entry: ParsedEntry, key: str, raw_hash: str, feed: FeedConfig,
                  sites: Mapping[str, rules.SiteRule], settings: dedup.DedupSettings,
                  html: str | None = None) -> Prepared:
    base = entry.url or feed.url
    rule = rules.resolve_rule(base, feed.rule, dict(sites))
    clean = normalize.normalize(entry.content_html if html is None else html, base, rule)
    fp = fingerprint.compute(entry.title, clean.text, entry.url, settings)
    return Prepared(entry=entry, key=key, raw_hash=raw_hash, content_html=clean.html,
                    content_text=clean.text, summary=clean.summary, image=clean.image,
                    fingerprint=fp)


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers are forked from a clean server process, not from a parent that
    # runs threads (APScheduler, test servers), which fork would copy mid-lock.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["scraper.refresh"])
    return ctx


def _worker_init(parent: int) -> None:
    """Workers leave signals to the main process, and never outlive it.

    SIGINT (Ctrl-C reaches the whole process group) would kill a worker mid-task and break
    the pool while the main process is stopping gracefully.  And a worker of a SIGKILLed
    main process waits forever: it blocks on its task queue, whose pipe it holds open
    itself, and it holds the fork server's "alive" pipe, so the fork server stays too (seen:
    orphans with parent pid 1 after tests/test_crash.py).  Its parent is the fork server,
    so PR_SET_PDEATHSIG cannot help; a thread that checks on the main process can.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(ORPHAN_CHECK_SECONDS)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                os._exit(0)  # our parent's pid now belongs to another user: it is gone

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def make_executor(workers: int | None = None) -> Executor | None:
    """A process pool for CPU work, or None to work inline (``workers=0``)."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 0:
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                               initializer=_worker_init, initargs=(os.getpid(),))


class Refresher:
    """Refreshes feeds into one database; shared by ``scrape --once`` and the daemon."""

    def __init__(self, config: Config, conn: sqlite3.Connection, fetcher: Fetcher,
                 executor: Executor | None = None, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = store.utcnow,
                 make_executor: Callable[[], Executor | None] | None = None) -> None:
        self.config = config
        self.conn = conn
        self.fetcher = fetcher
        self.executor = executor
        self.make_executor = make_executor
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scraper-db")
        self.rng = rng or random.Random()
        self.clock = clock

    async def _cpu(self, fn: Callable, *args: object) -> object:
        if self.executor is None and self.make_executor is not None:
            # Made on first use: a warm run where every feed answers 304 never pays for it.
            self.executor, self.make_executor = self.make_executor(), None
        if self.executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def db(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the database thread.

        All reads and writes of ``conn`` go through one thread, one call at a time: the
        transactions never interleave, and dedup's work (milliseconds per entry against a
        large index) never stalls the event loop, where it would eat into other feeds'
        fetch deadlines (measured: 37 of 200 bench feeds timed out when it ran on the loop).
        """
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def _known(self, feed_name: str, keys: list[str]) -> dict[str, str]:
        """Stored raw hashes of these entries of the feed (chunked: SQLite's variable limit)."""
        known: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(self.conn.execute(
                f"SELECT entry_key, raw_hash FROM entries WHERE feed = ? "
                f"AND entry_key IN ({marks})", (feed_name, *chunk)).fetchall())
        return known

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    async def refresh_many(self, feeds: Iterable[FeedConfig],
                           on_done: Callable[[FeedResult], None] | None = None
                           ) -> list[FeedResult]:
        async def one(feed: FeedConfig) -> FeedResult:
            result = await self.refresh(feed)
            if on_done:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(f) for f in feeds)))

    async def refresh(self, feed: FeedConfig) -> FeedResult:
        started = time.perf_counter()
        result = FeedResult(feed=feed.name)
        if not await self.db(self._claim, feed):
            result.status = "busy"
            result.warning = "skipped: another process is refreshing this feed"
            return result
        try:
            await self._refresh(feed, result)
        except Exception as exc:  # one feed's bug must not stop the others
            log.exception("%s: unexpected failure", feed.name)
            result.status, result.error = "error", f"internal error: {type(exc).__name__}: {exc}"
            await self.db(self._record_failure, feed, result, None)
        finally:
            await self.db(self._release, feed)
        result.seconds = time.perf_counter() - started
        return result

    def _claim(self, feed: FeedConfig) -> bool:
        """Take the feed for this process, unless another one holds an unexpired claim.

        The claim expires on its own (a killed process cannot hold a feed forever): the
        longest a refresh can take is the fetch deadline per attempt plus full-text pages.
        """
        now = self.clock()
        hold = (feed.timeout or self.fetcher.settings.timeout) * (self.fetcher.settings.retries + 1)
        until = now + timedelta(seconds=hold * 4 + 60)
        with store.transaction(self.conn):
            self.conn.execute("INSERT OR IGNORE INTO feeds (name, url) VALUES (?, ?)",
                              (feed.name, feed.url))
            holder = self.conn.execute("SELECT claimed_by FROM feeds WHERE name = ?",
                                       (feed.name,)).fetchone()[0]
            stale = holder is not None and claim_is_dead(holder)
            cur = self.conn.execute(
                "UPDATE feeds SET claimed_by = ?, claimed_until = ? WHERE name = ? "
                "AND (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ? OR ?)",
                (CLAIMANT, store.iso(until), feed.name, store.iso(now), CLAIMANT, stale))
            return cur.rowcount == 1

    def _release(self, feed: FeedConfig) -> None:
        with store.transaction(self.conn):
            self.conn.execute("UPDATE feeds SET claimed_by = NULL, claimed_until = NULL "
                              "WHERE name = ? AND claimed_by = ?", (feed.name, CLAIMANT))

    async def _refresh(self, feed: FeedConfig, result: FeedResult) -> None:
        state = await self.db(store.feed_state, self.conn, feed.name)
        fetched = await self.fetcher.fetch(feed.url, etag=state.get("etag"),
                                           last_modified=state.get("last_modified"),
                                           timeout=feed.timeout)
        result.http_status = fetched.status
        if not fetched.ok:
            result.status, result.error = "error", fetched.error
            await self.db(self._record_failure, feed, result, fetched)
            return
        if fetched.not_modified:
            result.status = "not-modified"
            result.unchanged = int(state.get("entry_count") or 0)
            await self.db(self._record_success, feed, fetched, None, [], result)
            return
        try:
            scan = await self._cpu(scan_feed, fetched.body, fetched.headers, fetched.url)
        except ParseError as exc:
            result.status, result.error = "error", str(exc)
            await self.db(self._record_failure, feed, result, fetched)
            return
        assert isinstance(scan, FeedScan)
        if scan.problem:
            result.warning = f"malformed feed, entries kept: {scan.problem}"
            log.warning("%s: %s", feed.name, result.warning)
        known = await self.db(self._known, feed.name, [key for key, _ in scan.identities])
        if all(known.get(key) == raw for key, raw in scan.identities):
            result.unchanged = len(scan.identities)
            await self.db(self._record_success, feed, fetched, scan.ttl, [], result)
            return
        prepared = await self._cpu(prepare_feed, fetched.body, fetched.headers, fetched.url,
                                   feed, self.config.sites, self.config.dedup, known)
        assert isinstance(prepared, PreparedFeed)
        if feed.fulltext:
            await self._fulltext(feed, prepared.entries, known)
        result.unchanged = prepared.unchanged
        await self.db(self._record_success, feed, fetched, prepared.ttl, prepared.entries,
                      result)

    async def _fulltext(self, feed: FeedConfig, entries: list[Prepared],
                        known: Mapping[str, str]) -> None:
        """Replace new entries' feed content with the article from their page."""
        async def one(index: int, item: Prepared) -> None:
            url = item.entry.url
            if not url or item.key in known:
                return
            page = await self.fetcher.fetch(url, guard=True, timeout=feed.timeout,
                                            accept="text/html,application/xhtml+xml,*/*;q=0.8")
            if not page.ok or not page.body:
                log.warning("%s: full text of %s not fetched, feed content kept: %s",
                            feed.name, url, page.error or f"HTTP {page.status}")
                return
            entries[index] = await self._cpu(_prepare_fulltext, page.body, page.headers, page.url,
                                             item, feed, self.config.sites, self.config.dedup)

        await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))

    # -- writes (synchronous: one transaction each, never interleaved on the loop) ----------

    def _record_failure(self, feed: FeedConfig, result: FeedResult,
                        fetched: FetchResult | None) -> None:
        now = self.clock()
        state = store.feed_state(self.conn, feed.name)
        errors = int(state.get("error_count") or 0) + 1
        retry_after = fetched.retry_after if fetched else None
        due = schedule.next_due(now, feed.interval, errors,
                                schedule.Outcome(ok=False, retry_after=retry_after), self.rng)
        log.debug("%s: error: %s", feed.name, result.error)
        with store.transaction(self.conn):
            self.conn.execute(
                "UPDATE feeds SET last_fetch_at = ?, last_status = ?, last_error = ?, "
                "last_error_at = ?, error_count = ?, next_due_at = ?, retry_after_at = ? "
                "WHERE name = ?",
                (store.iso(now), fetched.status if fetched else None, result.error, store.iso(now),
                 errors, store.iso(due),
                 store.iso(now + timedelta(seconds=retry_after)) if retry_after else None,
                 feed.name))

    def _adaptive_interval(self, feed: FeedConfig, now: datetime) -> int:
        """The feed's publishing rate over the adaptive window, from its stored entries."""
        since = store.iso(now - timedelta(seconds=schedule.ADAPTIVE_WINDOW))
        rows = self.conn.execute(
            "SELECT COALESCE(published, fetched_at) FROM entries WHERE feed = ? "
            "AND COALESCE(published, fetched_at) >= ?", (feed.name, since)).fetchall()
        return schedule.adaptive_interval((store.parse_iso(r[0]) for r in rows), now,
                                          floor=feed.interval)

    def _record_success(self, feed: FeedConfig, fetched: FetchResult, ttl: int | None,
                        entries: list[Prepared], result: FeedResult) -> None:
        now = self.clock()
        max_age = schedule.cache_lifetime(fetched.headers, now)
        stamp = store.iso(now)
        conn = self.conn
        with store.transaction(conn):
            touched: list[int] = []
            fingerprints: dict[int, fingerprint.Fingerprint] = {}
            for item in entries:
                e = item.entry
                row = conn.execute("SELECT id FROM entries WHERE feed = ? AND entry_key = ?",
                                   (feed.name, item.key)).fetchone()
                values = (e.url, e.guid, e.title, e.author, e.published, item.content_html,
                          item.content_text, item.summary, item.image, e.content_html,
                          item.raw_hash)
                if row is None:
                    cur = conn.execute(
                        "INSERT INTO entries (feed, entry_key, url, guid, title, author, "
                        "published, content_html, content_text, summary, image, raw_html, "
                        "raw_hash, fetched_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (feed.name, item.key, *values, stamp, stamp))
                    entry_id = int(cur.lastrowid or 0)
                    result.new += 1
                else:
                    entry_id = int(row[0])
                    conn.execute(
                        "UPDATE entries SET url = ?, guid = ?, title = ?, author = ?, "
                        "published = ?, content_html = ?, content_text = ?, summary = ?, "
                        "image = ?, raw_html = ?, raw_hash = ?, updated_at = ? WHERE id = ?",
                        (*values, stamp, entry_id))
                    result.updated += 1
                touched.append(entry_id)
                if item.fingerprint is not None:
                    fingerprints[entry_id] = item.fingerprint
            if touched:
                links = dedup.link_entries(conn, touched, self.config.dedup, fingerprints)
                result.duplicates = sum(1 for link in links if link.duplicate_of is not None)
            adaptive = self._adaptive_interval(feed, now) if feed.adaptive else None
            due = schedule.next_due(now, feed.interval, 0,
                                    schedule.Outcome(ok=True, max_age=max_age, ttl_minutes=ttl,
                                                     adaptive=adaptive), self.rng)
            headers = fetched.headers
            conn.execute(
                "UPDATE feeds SET url = ?, etag = COALESCE(?, etag), "
                "last_modified = COALESCE(?, last_modified), last_fetch_at = ?, "
                "last_success_at = ?, last_status = ?, error_count = 0, next_due_at = ?, "
                "retry_after_at = NULL, cache_max_age = ?, ttl = ?, "
                "entry_count = (SELECT COUNT(*) FROM entries WHERE feed = ?) WHERE name = ?",
                (feed.url, headers.get("etag"), headers.get("last-modified"), stamp, stamp,
                 fetched.status, store.iso(due), max_age, ttl, feed.name, feed.name))


def claim_is_dead(holder: str) -> bool:
    """True when a claim was left by a process of this host that no longer runs (killed)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's claim: only its expiry can free it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _prepare_fulltext(body: bytes, headers: Mapping[str, str], url: str, item: Prepared,
                      feed: FeedConfig, sites: Mapping[str, rules.SiteRule],
                      settings: dedup.DedupSettings) -> Prepared:
    """Extract the article from a fetched page; keep the feed's content if none is found."""
    rule = rules.resolve_rule(url, feed.rule, dict(sites))
    html = fulltext.extract_article(fulltext.decode_page(body, headers), url,
                                    rule.content_selector)
    if not html:
        log.warning("%s: no article found in %s, feed content kept", feed.name, url)
        return item
    return prepare_entry(item.entry, item.key, item.raw_hash, feed, sites, settings, html=html)


async def run_once(config: Config, conn: sqlite3.Connection, feeds: list[FeedConfig], *,
                   workers: int | None = None, retry_base: float = 1.0,
                   on_done: Callable[[FeedResult], None] | None = None) -> list[FeedResult]:
    """Refresh ``feeds`` once (the body of ``scrape --once``)."""
    store.sync_feeds(conn, [(f.name, f.url) for f in config.feeds])
    async with Fetcher(config.fetch, retry_base=retry_base) as fetcher:
        refresher = Refresher(config, conn, fetcher,
                              make_executor=lambda: make_executor(workers))
        try:
            return await refresher.refresh_many(feeds, on_done)
        finally:
            refresher.close()
