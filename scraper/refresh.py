"""One refresh of a set of feeds: fetch -> parse -> normalize -> fingerprint -> dedup -> store.

Where the time goes decides the shape:
- fetching is I/O: many feeds at once on one event loop, under the fetcher's limits
  (``fetch.concurrency`` feeds between their claim and their write);
- parsing, normalizing and fingerprinting are CPU: they run in worker processes, so the
  event loop keeps fetching while they work and both cores are used (``workers``);
- entries the database already has with the same raw hash are not normalized again, and a
  200 of the document last stored (its hash kept in the feed's row) is not parsed at all, so
  a warm run over unchanged feeds costs a conditional GET, or a hash, per feed;
- each feed's writes of entries are one transaction, on the database thread (one writer), so
  a crash loses at most the refreshes in flight and a re-run finishes them without duplicate
  rows;
- the outcome of a poll that stores nothing (a 304, a 200 of the stored document) is written
  behind, many per transaction (``Refresher.flush``): one commit per poll was most of a warm
  poll's database cost.  A crash loses the outcomes not yet written: those feeds stay claimed
  until the claim expires or its process is seen dead, and are polled again (no entry rows,
  so no duplicates).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from scraper import storage as store
from scraper.claimant import CLAIMANT, claim_is_dead
from scraper.config import (
    Config,
    ConfigError,
    FeedConfig,
    FetchSettings,
    daemon_settings,
)
from scraper.core import decide, schedule
from scraper.core.digest import document_digest
from scraper.net import local
from scraper.net.fetch import Fetcher
from scraper.version import __version__
from scraper.workers import close_executor, make_executor

if TYPE_CHECKING:
    from scraper import prepare

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment only: every claim lasts this many seconds instead of ``claim_seconds``'s
#: reckoning.  Shorter, a dead machine's feeds are taken over sooner, but a refresh that
#: outlasts its claim may be done a second time by another worker (the tests' crash runs).
LEASE_ENV = "SCRAPE_CLAIM_LEASE"

#: A worker row silent this long is deleted (``storage.forget_workers``): ``status`` shows
#: a stopped or killed worker for a day.
FORGET_WORKERS_AFTER = timedelta(days=1)

#: Outcomes written behind (``Refresher.flush``) wait at most this many seconds, or until this
#: many wait: a 304's claim is held that much longer, and a ``kill -9`` loses at most that
#: many polls (they are done again, as the refreshes in flight are).
FLUSH_AFTER = 0.1
FLUSH_AT = 64


@dataclass
class FeedResult:
    feed: str
    status: str = "ok"  # ok | not-modified | error | busy
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Duplicate links this refresh made: this feed's copies of stories already stored, and
    #: an earlier root (maybe another feed's) that a more complete copy from this feed took
    #: over, so the run's total counts every link made.
    duplicates: int = 0
    error: str | None = None
    warning: str | None = None
    http_status: int | None = None
    seconds: float = 0.0
    #: When the feed is due next, as recorded (None when nothing could be recorded).
    next_due_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status == "error"


def claim_seconds(feed: FeedConfig, fetch: FetchSettings) -> float:
    """How long a claim on ``feed`` lasts: the longest a refresh can take (its fetch deadline
    per attempt, four times over for full-text pages and the worker queue) plus a minute.
    A killed process's claim frees the feed after this, at most.  ``SCRAPE_CLAIM_LEASE``
    replaces it."""
    if fixed := os.environ.get(LEASE_ENV, "").strip():
        try:
            seconds = float(fixed)
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise ConfigError(f"{LEASE_ENV}: expected a positive number of seconds, "
                              f"got {fixed!r}")
        return seconds
    return (feed.timeout or fetch.timeout) * (fetch.retries + 1) * 4 + 60


def worker_row(kind: str, state: str, interval: float, started_at: datetime,
               now: datetime) -> store.Worker:
    """This process's ``workers`` row (``kind`` daemon or once), named as its claims are."""
    return store.Worker(name=CLAIMANT, host=socket.gethostname(), pid=os.getpid(), kind=kind,
                        state=state, started_at=store.iso(started_at) or "",
                        heartbeat_at=store.iso(now) or "", heartbeat_interval=interval,
                        version=__version__)


class Refresher:
    """Refreshes feeds into one database; shared by ``scrape --once`` and the daemon.

    The order of one refresh: claim, read the feed's row, fetch, parse (worker), ask storage
    which entries it has, normalize what is new (worker), decide (``core.decide``), apply the
    plan in one transaction with dedup inside it.  The refresher decides nothing itself.
    """

    def __init__(self, config: Config, conn: store.Connection, fetcher: Fetcher,
                 executor: Executor | None = None, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = store.utcnow,
                 make_executor: Callable[[], Executor | None] | None = None) -> None:
        self.config = config
        self.conn = conn
        self.fetcher = fetcher
        self.executor = executor
        self.make_executor = make_executor
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scraper-db")
        #: Outcomes handed over and not yet written: appended on the loop's thread, taken on
        #: the database thread (a deque: both ends are atomic).
        self._outcomes: collections.deque[tuple[str, decide.FeedWrite]] = collections.deque()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_queued = False
        #: Claims asked for (``_claim``) and not yet taken, as the outcomes above.
        self._claims: collections.deque[tuple[FeedConfig, asyncio.Future[dict | None]]] = (
            collections.deque())
        self._claims_queued = False
        self._starting = asyncio.Lock()  # one pool started, however many feeds need it at once
        self.rng = rng or random.Random()
        self.clock = clock

    async def _cpu(self, fn: Callable, *args: object) -> object:
        if self.executor is None and self.make_executor is not None:
            # Made on first use (a warm run where every feed answers 304 never pays for it),
            # in a thread: starting it waits for the fork server (workers.make_executor).
            async with self._starting:
                if self.make_executor is not None:
                    self.executor = await asyncio.to_thread(self.make_executor)
                    self.make_executor = None
        if self.executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def db(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the database thread, after writing the outcomes handed over so far:
        what it reads (the daemon's claim of due feeds, above all) sees every refresh that
        has returned.

        All reads and writes of ``conn`` go through one thread, one call at a time: the
        transactions never interleave, and dedup's work (milliseconds per entry against a
        large index) never stalls the event loop, where it would eat into other feeds'
        fetch deadlines (measured: 37 of 200 bench feeds timed out when it ran on the loop).
        """
        return await self._call(self._flushed, fn, *args)

    def _flushed(self, fn: Callable[..., T], *args: object) -> T:
        self.flush()
        return fn(*args)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the database thread without writing the outcomes first: a refresh's
        own calls about its feed, which no pending outcome concerns (the feed is claimed)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def _hand_over(self, name: str, write: decide.FeedWrite) -> None:
        """Queue an outcome that stores no entries, to be written by ``flush`` on the
        database thread within ``FLUSH_AFTER`` seconds, or at once when ``FLUSH_AT`` wait."""
        self._outcomes.append((name, write))
        if len(self._outcomes) >= FLUSH_AT:
            self._flush_soon()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_AFTER,
                                                                      self._flush_soon)

    def _flush_soon(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._flush_queued:
            self._flush_queued = True
            self._db_thread.submit(self.flush)

    def flush(self) -> None:
        """Write the outcomes handed over (``_hand_over``) in one transaction, on the
        database thread (or inline once it is gone).  A failure is logged, not raised (no
        caller waits for it), and the outcomes go back to the front of the queue for the next
        flush: dropped, their feeds would stay claimed by this process with their old due
        times, and be polled again at once."""
        self._flush_queued = False
        writes = [self._outcomes.popleft() for _ in range(len(self._outcomes))]
        if not writes:
            return
        try:
            store.record_outcomes(self.conn, writes, CLAIMANT)
        except Exception as exc:  # noqa: BLE001  (no caller to raise to; see above)
            self._outcomes.extendleft(reversed(writes))
            log.warning("%d polls' outcomes not stored yet (tried again at the next write): "
                        "%s", len(writes), exc)

    def close(self) -> None:
        """Stop the database thread, then write the outcomes still waiting (inline)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._db_thread.shutdown(wait=True)
        self.flush()
        close_executor(self.executor, abandoned=False)
        self.executor = None

    async def refresh_many(self, feeds: Iterable[FeedConfig],
                           on_done: Callable[[FeedResult], None] | None = None
                           ) -> list[FeedResult]:
        """Refresh ``feeds``, ``fetch.concurrency`` at once as the daemon does.  A feed keeps
        its place from its claim to its write, so the bodies and prepared entries waiting
        for the worker pool or the database thread are never more than that: with every
        feed started at once, a cold run of 1,000 feeds held nearly all of them (peak RSS
        276-292 MiB, bench/poll.py) while the pool and the writer worked through them."""
        room = asyncio.Semaphore(max(1, self.fetcher.settings.concurrency))

        async def one(feed: FeedConfig) -> FeedResult:
            async with room:
                result = await self.refresh(feed)
            if on_done:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(f) for f in feeds)))

    async def refresh(self, feed: FeedConfig, *, claimed: bool = False) -> FeedResult:
        """Refresh one feed; ``claimed``: the caller (the daemon's loop) holds its claim."""
        started = time.perf_counter()
        result = FeedResult(feed=feed.name)
        # The database locked past the busy timeout (DatabaseLocked), or unreachable (a
        # PostgreSQL server gone): this feed fails alone, and nothing more is written for it
        # (recording the failure or releasing the claim would meet the same error again).
        # Its claim expires, or dies with this process (``claim_is_dead``); this process
        # may take it again at once.
        state = None
        if not claimed:
            try:
                state = await self._claim(feed)
            except store.DatabaseError as exc:
                result.status, result.error = "error", f"not stored: {exc}"
                return result
            if state is None:
                result.status = "busy"
                result.warning = "skipped: another process is refreshing this feed"
                return result
        locked = False
        try:
            await self._refresh(feed, result, state)
        except store.DatabaseError as exc:
            locked = True
            result.status, result.error = "error", f"not stored: {exc}"
        except Exception as exc:  # one feed's bug must not stop the others
            log.exception("%s: unexpected failure", feed.name)
            result.status, result.error = "error", f"internal error: {type(exc).__name__}: {exc}"
            await self._call(self._write, feed, result, decide.Attempt(error=result.error))
        finally:
            if result.next_due_at is None and not locked:
                # no outcome recorded (recording releases it)
                await self._call(store.release_claim, self.conn, feed.name, CLAIMANT)
        result.seconds = time.perf_counter() - started
        return result

    async def _claim(self, feed: FeedConfig) -> dict | None:
        """Claim ``feed`` together with the feeds asked for while the database thread was
        busy, in one transaction (``_claim_batch``): its row as read, or None when another
        process holds it.  One claim transaction a feed was 0.18 ms of the database
        thread's time (a commit each), which a warm ``--once`` waited on."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict | None] = loop.create_future()
        self._claims.append((feed, future))
        if not self._claims_queued:
            self._claims_queued = True
            self._db_thread.submit(self._claim_batch, loop)
        return await future

    def _claim_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: claim every feed waiting, then answer each on the loop."""
        self._claims_queued = False
        batch = [self._claims.popleft() for _ in range(len(self._claims))]
        if not batch:
            return
        try:  # whatever fails (a bad SCRAPE_CLAIM_LEASE too) is every claimant's answer
            now = self.clock()
            wanted = [(feed.name, feed.url,
                       now + timedelta(seconds=claim_seconds(feed, self.fetcher.settings)))
                      for feed, _ in batch]
            taken = store.claim_feeds(self.conn, wanted, claimant=CLAIMANT, now=now,
                                      is_dead=claim_is_dead)
        except BaseException as exc:  # noqa: BLE001  (raised in each claimant's task)
            loop.call_soon_threadsafe(_answer, batch, {}, exc)
        else:
            loop.call_soon_threadsafe(_answer, batch, taken, None)

    async def _refresh(self, feed: FeedConfig, result: FeedResult,
                       state: dict | None = None) -> None:
        """``state``: the feed's row as its claim read it, else read here."""
        if state is None:
            state = await self._call(store.feed_state, self.conn, feed.name)
        if local.is_local(feed.url):  # from the user's config only; see net/local.py
            fetched = await local.fetch_local(feed.url, etag=state.get("etag"),
                                              max_bytes=self.fetcher.settings.max_bytes)
        else:
            fetched = await self.fetcher.fetch(feed.url, etag=state.get("etag"),
                                               last_modified=state.get("last_modified"),
                                               timeout=feed.timeout)
        result.http_status = fetched.status
        attempt = decide.Attempt(status=fetched.status, headers=fetched.headers,
                                 retry_after=fetched.retry_after)
        if not fetched.ok:
            # Who refused, when we know (an RSSHub instance, a Cloudflare challenge).
            error = fetched.refusal(self.config.rsshub_base) or fetched.error
            result.status, result.error = "error", error
            await self._write_behind(feed, result, _failed(attempt, error), state)
            return
        body_hash = (None if fetched.body is None
                     else document_digest(fetched.body, fetched.headers, fetched.url))
        if fetched.not_modified or (body_hash and body_hash == state.get("body_hash")):
            # The same entries as the last document stored, its build time aside (a server
            # without validators, or rebuilding the feed on every request): a 304 in all
            # but name, no worker.
            result.status = "not-modified"
            await self._write_behind(feed, result, replace(attempt, not_modified=True), state)
            return
        attempt = replace(attempt, body_hash=body_hash)
        # Imported at the first document to parse, not with this module: a run of 304s and
        # stored documents never loads the parsers, selectolax, nh3 or numpy (0.2 s and more).
        from scraper import prepare
        from scraper.core.parse import ParseError

        try:
            scan = await self._cpu(prepare.scan_feed, fetched.body, fetched.headers,
                                   fetched.url)
        except ParseError as exc:
            # A 200 that is not a feed may be a refusal too (rsshub.app's notice is text/plain).
            error = fetched.refusal(self.config.rsshub_base) or str(exc)
            result.status, result.error = "error", error
            await self._write_behind(feed, result, _failed(attempt, error), state)
            return
        assert isinstance(scan, prepare.FeedScan)
        attempt = replace(attempt, ttl=scan.ttl)
        if scan.problem:
            result.warning = f"malformed feed, entries kept: {scan.problem}"
            log.warning("%s: %s", feed.name, result.warning,
                        extra={"fields": {"event": "malformed", "feed": feed.name}})
        keys = [key for key, _ in scan.identities]
        known = await self._call(store.known_hashes, self.conn, feed.name, keys)
        if all(known.get(key) == raw for key, raw in scan.identities):
            await self._write_behind(feed, result, attempt, state, len(keys))
            return
        prepared = await self._cpu(prepare.prepare_feed, fetched.body, fetched.headers,
                                   fetched.url, feed, self.config.sites, self.config.dedup,
                                   known)
        assert isinstance(prepared, prepare.PreparedFeed)
        if feed.fulltext:
            await self._fulltext(feed, prepared.entries, known)
        await self._call(self._write, feed, result, attempt, prepared.entries, known,
                         prepared.unchanged)

    async def _fulltext(self, feed: FeedConfig, entries: list[prepare.Prepared],
                        known: Mapping[str, str]) -> None:
        """Replace new entries' feed content with the article from their page."""
        from scraper import prepare

        async def one(index: int, item: prepare.Prepared) -> None:
            url = item.entry.url
            if not url or item.key in known:
                return
            page = await self.fetcher.fetch(url, guard=True, timeout=feed.timeout,
                                            accept="text/html,application/xhtml+xml,*/*;q=0.8")
            if not page.ok or not page.body:
                log.warning("%s: full text of %s not fetched, feed content kept: %s",
                            feed.name, url, page.error or f"HTTP {page.status}",
                            extra={"fields": {"event": "fulltext-failed", "feed": feed.name,
                                              "url": url}})
                return
            entries[index] = await self._cpu(prepare.prepare_fulltext, page.body, page.headers,
                                             page.url, item, feed, self.config.sites,
                                             self.config.dedup)

        await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))

    async def _write_behind(self, feed: FeedConfig, result: FeedResult, attempt: decide.Attempt,
                           state: dict, unchanged: int = 0) -> None:
        """A poll that stores nothing (a 304, the entries stored, a failure): decide here
        (from the row read at its start, which the claim kept as it was) and hand the outcome
        to ``flush``."""
        recent = []
        if feed.adaptive and attempt.error is None:
            recent = await self._call(self._recent, feed, self.clock())
        plan = self._decide(feed, state, attempt, recent, unchanged=unchanged)
        self._hand_over(feed.name, plan.feed)
        result.unchanged, result.next_due_at = plan.unchanged, plan.feed.next_due_at

    def _recent(self, feed: FeedConfig, now: datetime) -> list[datetime | None]:
        since = now - timedelta(seconds=schedule.ADAPTIVE_WINDOW)
        return store.recent_dates(self.conn, feed.name, since)

    def _decide(self, feed: FeedConfig, state: dict, attempt: decide.Attempt,
                recent: list[datetime | None], entries: list[prepare.Prepared] | None = None,
                known: Mapping[str, str] | None = None, unchanged: int = 0) -> decide.Plan:
        facts = decide.FeedFacts(url=feed.url, interval=feed.interval, adaptive=feed.adaptive,
                                 error_count=int(state.get("error_count") or 0),
                                 entry_count=int(state.get("entry_count") or 0),
                                 ttl=state.get("ttl"), cache_max_age=state.get("cache_max_age"))
        return decide.decide(self.clock(), facts, attempt, self.rng,
                             entries=[p.data() for p in entries or []], known=known,
                             unchanged=unchanged, recent=recent)

    def _write(self, feed: FeedConfig, result: FeedResult, attempt: decide.Attempt,
               entries: list[prepare.Prepared] | None = None,
               known: Mapping[str, str] | None = None, unchanged: int = 0) -> None:
        """Decide, then apply the plan (on the database thread: one transaction)."""
        state = store.feed_state(self.conn, feed.name)
        recent: list[datetime | None] = []
        if feed.adaptive and attempt.error is None:
            recent = self._recent(feed, self.clock())
        items = entries or []
        plan = self._decide(feed, state, attempt, recent, items, known, unchanged)
        prints = {p.key: p.fingerprint for p in items if p.fingerprint is not None}
        touched = [e.key for e in (*plan.new, *plan.updated)]

        def link(ids: list[int]) -> None:
            from scraper import dedup  # numpy: only once there are entries to link

            fingerprints = {i: prints[k] for i, k in zip(ids, touched, strict=True)
                            if k in prints}
            links = dedup.link_entries(self.conn, ids, self.config.dedup, fingerprints)
            result.duplicates = sum(1 for x in links if x.duplicate_of is not None)

        def lock() -> None:
            keyed = [prints[k] for k in touched if k in prints]
            if keyed:  # no keys, no locks; and a 304 needs no dedup (nor numpy)
                from scraper import dedup

                dedup.lock_entries(self.conn, keyed)

        store.apply_plan(self.conn, feed.name, plan, claimant=CLAIMANT, link=link, lock=lock)
        result.new, result.updated = len(plan.new), len(plan.updated)
        result.unchanged = plan.unchanged
        result.next_due_at = plan.feed.next_due_at


def _answer(batch: list[tuple[FeedConfig, asyncio.Future[dict | None]]],
            taken: Mapping[str, dict], error: BaseException | None) -> None:
    """Each claimant's answer from ``Refresher._claim_batch`` (on the loop)."""
    for feed, future in batch:
        if future.done():  # its refresh was cancelled meanwhile
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(taken.get(feed.name))


def _failed(attempt: decide.Attempt, error: str | None) -> decide.Attempt:
    return replace(attempt, error=error or "failed")


async def run_once(config: Config, conn: store.Connection, feeds: list[FeedConfig], *,
                   workers: int | None = None, retry_base: float = 1.0,
                   on_done: Callable[[FeedResult], None] | None = None) -> list[FeedResult]:
    """Refresh ``feeds`` once (the body of ``scrape --once``), with a ``workers`` row
    (kind "once") that beats while the run lasts and is marked stopped at its end."""
    store.sync_feeds(conn, [(f.name, f.url) for f in config.feeds])
    started = store.utcnow()
    interval = daemon_settings(config).heartbeat
    store.forget_workers(conn, started - FORGET_WORKERS_AFTER)
    store.put_worker(conn, worker_row("once", "running", interval, started, started))
    async with Fetcher(config.fetch, retry_base=retry_base) as fetcher:
        refresher = Refresher(config, conn, fetcher,
                              make_executor=lambda: make_executor(workers, started=True))
        beats = asyncio.create_task(_beat_once(refresher, interval, started))
        try:
            return await refresher.refresh_many(feeds, on_done)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            refresher.close()
            try:
                store.stop_worker(conn, CLAIMANT, store.utcnow())
            except Exception as exc:  # noqa: BLE001  (the refreshes are stored already)
                log.warning("the worker row was not marked stopped: %s", exc)


async def _beat_once(refresher: Refresher, interval: float, started: datetime) -> None:
    """A ``--once`` run's heartbeat, every ``interval`` until cancelled: a long run stays
    alive in ``scrape status``."""
    while True:
        await asyncio.sleep(interval)
        row = worker_row("once", "running", interval, started, store.utcnow())
        try:
            await refresher.db(store.put_worker, refresher.conn, row)
        except Exception as exc:  # noqa: BLE001  (a missed beat must not stop the run)
            log.warning("heartbeat not written: %s", exc)
