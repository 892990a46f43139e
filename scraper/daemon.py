"""The long-running ``scrape``: refresh every feed when it is due, for months.

One asyncio loop holds, for the whole life of the process, one ``Fetcher`` (one HTTP
connection pool), one process pool for the CPU work and one SQLite connection (the only
writer in this process).  APScheduler 3.x (``AsyncIOScheduler``) is the timer: one
date job per feed, set from ``feeds.next_due_at``, plus interval jobs for the heartbeat, the
config watch and a sweep.

Why it is shaped this way:
- **The database is the schedule.**  A job only says "look at this feed now"; when it
  fires, the feed's row decides (``schedule.is_due``), and after a refresh the next job is
  set from the ``next_due_at`` the pipeline wrote.  A restart therefore keeps the schedule,
  feeds never fetched are due at once, and a ``scrape --once`` that refreshed a feed in the
  meantime simply moves the daemon's next visit.
- **APScheduler's job only starts the refresh; the refresh is our own task.**  Its asyncio
  executor cancels running jobs on shutdown, and a date job that is refused for
  ``max_instances`` is dropped for good: neither is acceptable for a refresh.  Our tasks are
  tracked per feed (a feed is never refreshed twice at once in this process; the pipeline's
  row claim covers other processes) and each one sets its feed's next job when it ends,
  whatever happened.  A periodic sweep re-adds a job for any feed that has none, so no
  failure path can silently drop a feed from polling.
- **misfire_grace_time=None**: APScheduler 3's default (1 s) skips, and for a date job
  deletes, a run that is more than a second late, which a busy loop easily is.
- **Shutdown** stops the timer first, lets the refreshes in flight finish until the grace
  deadline, then cancels the rest.  Every write is one synchronous transaction with no
  ``await`` inside, so a cancelled refresh leaves no half-written feed; its row keeps the
  old ``next_due_at`` and it is due again at the next start.

Tuning through the environment (the CLI belongs to ``cli.py``): ``SCRAPE_HEARTBEAT``
(seconds between heartbeats), ``SCRAPE_CONFIG_POLL`` (seconds between feeds.yaml checks;
0 turns the watch off, SIGHUP still reloads), ``SCRAPE_SHUTDOWN_GRACE`` (seconds in-flight
refreshes get after SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scraper import dedup
from scraper import refresh as pipeline
from scraper import status as meta_keys
from scraper import storage as store
from scraper.cli import MMAP_THRESHOLD, allocator, find_malloc_trim, libc_function
from scraper.config import Config, ConfigError, FeedConfig, load_config, select_feeds
from scraper.core import schedule
from scraper.net.fetch import Fetcher
from scraper.version import __version__

log = logging.getLogger(__name__)
T = TypeVar("T")


_MALLOC_TRIM = find_malloc_trim()


def release_memory() -> bool:
    """Hand the C heap's free pages back to the system; True if anything was released.

    Why: the refresh work (SQLite, NumPy arrays of a dedup merge, parsed feeds) frees as much
    as it allocates, but glibc keeps freed pages mapped wherever a live block sits above
    them, and its mmap threshold rises to the largest block freed, so later large blocks come
    from the heap too.  RSS then crept up in steps of 1-2 MiB while Python's and SQLite's
    own memory stayed flat: +9 MiB over bench/soak.py's hour after the page cache filled.
    ``malloc_trim(0)`` (every arena since glibc 2.8) gives those pages back: bench/memory.py,
    sampling just before and just after a trim, measured 93 and 84 MiB at 10,000 entries.
    It took 0.1 ms on a fresh process (it walks the free lists), so every heartbeat can.
    """
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))


def resident_bytes() -> int | None:
    """This process's resident memory (RSS), from /proc; None where there is no /proc.
    What ``top`` shows, so that the heartbeat's figure and the user's can be compared."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


#: glibc's ``mallopt`` parameter number of M_MMAP_THRESHOLD (``<malloc.h>``).
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at its default, 128 KiB, for the life of the process; True
    if set (False without glibc).

    Why: glibc raises the threshold to the size of every mapped block freed (up to 32 MiB),
    after which blocks of that size come from the heap.  The daemon's large blocks (a dedup
    merge's arrays, Bloom filters read and written, fetched feed bodies) then land between
    small long-lived objects, and the heap fragments as the filters grow with the data.
    bench/soak.py for an hour, the daemon's memory read after each heartbeat's trim and
    fitted against time and the fill of dedup's memory level: the heap (mallinfo2 ``arena``)
    grew +4.4 MiB an hour on glibc's default, +2.4 with this call after the imports, and
    +0.5, +0.35 and +0.9 (three runs) with the threshold fixed from the process's start
    (``MALLOC_MMAP_THRESHOLD_``, which the daemon's re-exec sets: ``cli.REEXEC_ENV``); RSS
    +3.3 on the default, +2.2 and +1.9 to +2.3 with the fix, of which the Bloom filters'
    growth with the data is +1.3.  This call covers a daemon that was not re-executed (the
    user chose ``PYTHONMALLOC``).  Setting the threshold turns glibc's adjustment off; each
    large block is then mapped and unmapped, a few µs.
    """
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


#: Retry delay for a feed another process holds (``scrape --once`` refreshing it): a
#: refresh takes seconds, so a short wait usually finds the row updated, and the visit then
#: only reschedules.  Never more often than the feed's own interval.
BUSY_RETRY = 30.0
#: When a job finds the feed's row due "now" right after refreshing it (the pipeline could
#: not record the outcome), this is the floor before the next try, to rule out a hot loop.
MIN_DELAY = 1.0
#: Seconds cancelled refreshes get to unwind after the grace deadline.
CANCEL_WAIT = 3.0


@dataclass(frozen=True)
class Settings:
    """Timings of the daemon's own housekeeping (not of the feeds: those are in feeds.yaml)."""

    #: Seconds between heartbeats.  ``scrape status --check`` calls the daemon dead after
    #: three missed beats, so 30 s gives a 90 s detection time, close to Docker's default
    #: health-check period (30 s x 3 retries).
    heartbeat: float = 30.0
    #: Seconds between checks of feeds.yaml's mtime; 0 turns the watch off.
    config_poll: float = 2.0
    #: Seconds in-flight refreshes get after SIGTERM.  The issue's bound is an exit within
    #: 30 s; this leaves 5 s to cancel, close the pool and the database.
    shutdown_grace: float = 25.0
    #: Seconds between sweeps that re-add a lost feed job and follow rows moved earlier.
    sweep: float = 60.0

    ENV = {"heartbeat": "SCRAPE_HEARTBEAT", "config_poll": "SCRAPE_CONFIG_POLL",
           "shutdown_grace": "SCRAPE_SHUTDOWN_GRACE", "sweep": "SCRAPE_SWEEP"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, float] = {}
        for f in fields(cls):
            name = cls.ENV.get(f.name)
            raw = env.get(name) if name else None
            if raw is None or not raw.strip():
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected seconds, got {raw!r}") from None
            if value < 0 or (value == 0 and f.name != "config_poll"):
                raise ConfigError(f"{name}: expected a positive number of seconds, got {raw!r}")
            values[f.name] = value
        return cls(**values)


def run(args: argparse.Namespace) -> int:
    """``scrape`` without ``--once``: run until SIGTERM/SIGINT, then exit 0."""
    settings = Settings.from_env()
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # (a user's own setting wins)
        fix_mmap_threshold()
    config = load_config(getattr(args, "config", None) or "feeds.yaml")
    names = getattr(args, "feed", None)
    select_feeds(config, names)  # a wrong --feed is a usage error before anything starts
    db = getattr(args, "db", None)
    conn = store.connect(Path(db) if db else config.database)
    try:
        daemon = Daemon(config, conn, workers=getattr(args, "workers", None),
                        settings=settings, only=names,
                        db_from_args=bool(getattr(args, "db", None)))
        return asyncio.run(daemon.serve())
    finally:
        conn.close()


def start_forkserver_deaf_to_sigint() -> None:
    """Start the pool's fork server with SIGINT ignored, so its workers ignore it too.

    Ctrl-C in a terminal sends SIGINT to the whole process group.  Workers forked with the
    default handler die of KeyboardInterrupt, the pool breaks, and every refresh in flight
    is recorded as a failure while the daemon is trying to stop gracefully (seen by hand:
    "BrokenProcessPool: A child process terminated abruptly").  An ignored signal survives
    exec, the fork server keeps the disposition it started with as the one to restore in
    its children, so starting it here, once, covers every worker of every pool.  The
    preload must be the one ``pipeline.make_executor`` asks for: the server is started
    once per process and later requests reuse it.
    """
    import multiprocessing.forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(["scraper.refresh"])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class Daemon:
    """The scheduler loop over ``pipeline.Refresher``; ``serve()`` runs it until stopped.

    Database discipline: once serving, every use of ``conn`` goes through the refresher's
    database thread (``Refresher.db``), the one thread the pipeline itself writes from, so
    the daemon's own reads and writes (due times, heartbeat, reload) never land inside a
    refresh's transaction.  Hence one ``Refresher`` for the whole life of the process: a
    second one would bring a second database thread.
    """

    def __init__(self, config: Config, conn: sqlite3.Connection, *, workers: int | None = None,
                 settings: Settings | None = None, only: list[str] | None = None,
                 db_from_args: bool = True, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = store.utcnow) -> None:
        self.config = config
        self.conn = conn
        self.workers = workers
        self.settings = settings or Settings()
        self.only = only
        self.db_from_args = db_from_args
        self.rng = rng or random.Random()
        self.clock = clock
        self.feeds: dict[str, FeedConfig] = {f.name: f for f in self._select(config)}
        self.running: dict[str, asyncio.Task[None]] = {}
        self._firing: set[str] = set()  # timers that went off and are reading their row
        self._chores: dict[str, asyncio.Task[None]] = {}  # heartbeat, sweep, config watch
        self.refreshes = 0  # completed refreshes, for tests and the log
        self.stopping = False
        self.fetcher: Fetcher | None = None
        self.refresher: pipeline.Refresher | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._retired: list[tuple[Fetcher, set[asyncio.Task[None]]]] = []
        self._background: set[asyncio.Future[object]] = set()  # keeps fire-and-forget alive
        self._reload_lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self._abandon: asyncio.Event | None = None
        self._config_key: tuple[int, int, int] | None = None
        self._config_missing = False
        self._started_at = store.iso(clock())

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` where the pipeline runs its database work (inline before serving)."""
        if self.refresher is None:
            return fn(*args)
        return await self.refresher.db(fn, *args)

    # -- life cycle ----------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop, self._abandon = asyncio.Event(), asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._install_signals(loop)
        # Nothing else uses the connection yet: these run inline.
        store.sync_feeds(self.conn, [(f.name, f.url) for f in self.config.feeds])
        self._warn_other_daemon()
        try:
            await self._start_up(loop)
            await self._stop.wait()
        finally:
            await self._shutdown()
        return 0

    async def _start_up(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.workers != 0:
            start_forkserver_deaf_to_sigint()
        self.fetcher = Fetcher(self.config.fetch)
        self.refresher = pipeline.Refresher(self.config, self.conn, self.fetcher,
                                            pipeline.make_executor(self.workers))
        self._config_key = self._stat_config()
        self.scheduler = AsyncIOScheduler(
            event_loop=loop, timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1})
        self.scheduler.start()
        dues = await self._db(self._due_times)
        for name in self.feeds:
            self._schedule(name, dues.get(name) or self.clock())
        self._add_interval(self._heartbeat_job, self.settings.heartbeat, "heartbeat")
        if self.settings.config_poll > 0:
            self._add_interval(self._config_job, self.settings.config_poll, "config-watch")
        self._add_interval(self._sweep_job, self.settings.sweep, "sweep")
        await self._db(self._trim_and_beat)
        python_malloc = allocator()
        log.info("daemon started (pid %d, scrape %s): %d feeds from %s, database %s, "
                 "allocator %s", os.getpid(), __version__, len(self.feeds), self.config.path,
                 await self._db(self._db_name), python_malloc,
                 extra={"fields": {"event": "start", "feeds": len(self.feeds),
                                   "allocator": python_malloc}})

    def request_stop(self, reason: str = "request") -> None:
        if self._stop is None:
            return
        if self.stopping or self._stop.is_set():
            # A second signal: the user does not want to wait for the grace period.
            log.warning("%s again: abandoning the refreshes in flight now", reason)
            assert self._abandon is not None
            self._abandon.set()
            return
        log.info("%s: stopping; no new refreshes, %d in flight get up to %g s to finish",
                 reason, len(self.running), self.settings.shutdown_grace,
                 extra={"fields": {"event": "stop", "signal": reason,
                                   "in_flight": len(self.running)}})
        self._stop.set()

    def request_reload(self, reason: str = "SIGHUP") -> None:
        if self.stopping:
            return
        self._config_key = self._stat_config()  # this reload covers the current file
        self._spawn(self.reload(reason))

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Future[object] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig, handler in ((signal.SIGTERM, self.request_stop),
                             (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler, sig.name)

    async def _shutdown(self) -> None:
        self.stopping = True
        with contextlib.suppress(Exception):
            await self._db(self._beat, "stopping")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # no new work; our refresh tasks are not its
        abandoned = await self._drain(self.settings.shutdown_grace)
        for task in [*self._background, *self._chores.values()]:
            task.cancel()
        for fetcher in [self.fetcher, *(f for f, _ in self._retired)]:
            if fetcher is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fetcher.aclose(), CANCEL_WAIT)
        refresher, self.refresher = self.refresher, None
        if refresher is not None:
            _close_executor(refresher.executor, abandoned=bool(abandoned))
            refresher.executor = None
            # Waits for the database thread's current call: a transaction that a cancelled
            # refresh had started still commits (or rolls back) before the connection closes.
            refresher.close()
        self._beat("stopped")  # inline: the database thread is gone, nothing else writes
        log.info("daemon stopped (%d refreshes done, %d abandoned)", self.refreshes,
                 len(abandoned), extra={"fields": {"event": "stopped",
                                                   "refreshes": self.refreshes,
                                                   "abandoned": sorted(abandoned)}})

    async def _drain(self, grace: float) -> list[str]:
        """Wait for the refreshes in flight until ``grace`` runs out; cancel the rest."""
        assert self._abandon is not None
        deadline = time.monotonic() + grace
        abandon = asyncio.ensure_future(self._abandon.wait())
        try:
            while self.running and not self._abandon.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.wait([*self.running.values(), abandon], timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandon.cancel()
        left = dict(self.running)
        for name, task in left.items():
            log.warning("%s: refresh abandoned at the shutdown deadline; it is due again at "
                        "the next start", name,
                        extra={"fields": {"event": "abandoned", "feed": name}})
            task.cancel()
        if left:
            await asyncio.wait(list(left.values()), timeout=CANCEL_WAIT)
        return sorted(left)

    def _warn_other_daemon(self) -> None:
        """Say so when this database already has a live daemon, or had one that crashed."""
        health = meta_keys.daemon_health(self.conn, self.clock())
        pid, host = health.pid, health.host
        if health.state not in ("running", "stopping") or not pid or (
                pid == str(os.getpid()) and host == socket.gethostname()):
            return
        if pipeline.claim_is_dead(f"{host}:{pid}"):
            log.warning("the previous daemon (pid %s) did not stop cleanly; its refreshes in "
                        "flight are due again now", pid)
        elif health.healthy:
            log.warning("another daemon (pid %s on %s) has a fresh heartbeat on this "
                        "database; both will run, and the per-feed claims keep them from "
                        "refreshing the same feed at once", pid, host)

    # -- scheduling ----------------------------------------------------------------------

    def _add_interval(self, func: Callable[[], Coroutine[Any, Any, None]], seconds: float,
                      job_id: str) -> None:
        """Run ``func`` every ``seconds``, skipping a turn while the previous one still runs.

        The job itself only starts a task and returns: a chore waiting for a busy database
        thread must not make APScheduler log "maximum number of running instances reached"
        at every tick.
        """
        assert self.scheduler is not None

        async def tick() -> None:
            current = self._chores.get(job_id)
            if self.stopping or (current is not None and not current.done()):
                return
            self._chores[job_id] = asyncio.create_task(func(), name=job_id)

        self.scheduler.add_job(tick, "interval", seconds=seconds, id=job_id, name=job_id,
                               replace_existing=True)

    @staticmethod
    def _job_id(name: str) -> str:
        return f"feed:{name}"

    def _schedule(self, name: str, when: datetime) -> None:
        """Set the feed's one timer job to ``when`` (now if that is past)."""
        if self.stopping or self.scheduler is None or name not in self.feeds:
            return
        now = self.clock()
        self.scheduler.add_job(self._fire, "date", run_date=max(when, now), args=[name],
                               id=self._job_id(name), name=f"refresh {name}",
                               replace_existing=True)

    def _unschedule(self, name: str) -> None:
        if self.scheduler is None:
            return
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(self._job_id(name))

    def _due_times(self) -> dict[str, datetime | None]:
        return {r["name"]: store.parse_iso(r["next_due_at"])
                for r in self.conn.execute("SELECT name, next_due_at FROM feeds")}

    def _due_time(self, name: str) -> datetime | None:
        row = self.conn.execute("SELECT next_due_at FROM feeds WHERE name = ?",
                                (name,)).fetchone()
        return store.parse_iso(row[0]) if row else None

    def _busy(self, name: str) -> bool:
        return name in self.running or name in self._firing

    async def _fire(self, name: str) -> None:
        """The timer of one feed went off: refresh it if its row says it is due."""
        if self.stopping or name not in self.feeds or self._busy(name):
            return  # a running refresh sets the next timer itself when it ends
        self._firing.add(name)
        try:
            due = await self._db(self._due_time, name)
        finally:
            self._firing.discard(name)
        if self.stopping or name not in self.feeds or name in self.running:
            return  # things changed while the row was read
        if not schedule.is_due(due, self.clock()):
            assert due is not None
            self._schedule(name, due)  # someone (scrape --once) refreshed it meanwhile
            return
        assert self.refresher is not None
        task = asyncio.create_task(self._refresh(self.refresher, self.feeds[name]),
                                   name=f"refresh:{name}")
        self.running[name] = task

    async def _refresh(self, refresher: pipeline.Refresher, feed: FeedConfig) -> None:
        """One refresh, then the feed's next timer; the feed counts as running until both
        are done, so neither a sweep nor a stray timer sees it without one."""
        started = time.perf_counter()
        try:
            result: pipeline.FeedResult | None = None
            try:
                result = await refresher.refresh(feed)
            except asyncio.CancelledError:
                raise
            except Exception:  # the pipeline handles feed errors; this is a bug
                log.exception("%s: refresh failed outside the pipeline's error handling",
                              feed.name)
            self.refreshes += 1
            try:
                await self._after(feed, result, time.perf_counter() - started)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let a logging or database hiccup leave the feed without a timer.
                log.exception("%s: could not reschedule; retrying in its interval", feed.name)
                self._schedule(feed.name, self.clock() + timedelta(seconds=feed.interval))
        finally:
            if self.running.get(feed.name) is asyncio.current_task():
                del self.running[feed.name]
            self._reap_fetchers()

    async def _after(self, feed: FeedConfig, result: pipeline.FeedResult | None,
                     seconds: float) -> None:
        """Log the refresh and set the feed's next timer from its row."""
        if result is not None and result.status == "busy":
            wait = schedule.jittered(min(float(feed.interval), BUSY_RETRY), self.rng)
            due = self.clock() + timedelta(seconds=wait)
        else:
            due = await self._db(self._due_time, feed.name)
            now = self.clock()
            if due is None or due <= now:
                floor = max(MIN_DELAY, schedule.jittered(float(feed.interval), self.rng))
                due = now + timedelta(seconds=floor)
        log_refresh(feed.name, result, seconds, due, self.clock())
        if (result is not None and result.error and "BrokenProcessPool" in result.error
                and not self.stopping):
            self._replace_executor()
        self._schedule(feed.name, due)

    def _replace_executor(self) -> None:
        """A worker process died (OOM killer, a crash): the pool refuses all work from then
        on, so every later refresh would fail.  Start a new one."""
        if self.refresher is None:
            return
        old, self.refresher.executor = self.refresher.executor, pipeline.make_executor(
            self.workers)
        log.warning("the worker pool broke (a worker process died); started a new one")
        if old is not None:
            with contextlib.suppress(Exception):
                old.shutdown(wait=False, cancel_futures=True)

    # -- housekeeping jobs ---------------------------------------------------------------

    async def _heartbeat_job(self) -> None:
        if not self.stopping:
            # In the database thread: a trim walks the heap (a few ms), and the loop must not
            # wait for it.  One call, so that a stop requested meanwhile queues its
            # "stopping" beat after this one, never before it.
            await self._db(self._trim_and_beat)

    def _trim_and_beat(self) -> None:
        """The heartbeat: trim first, so the memory it records is what the trim left."""
        release_memory()
        self._beat("running")

    def _beat(self, state: str) -> None:
        """Record that the loop is alive; ``scrape status --check`` reads it."""
        now = store.iso(self.clock())
        values = {meta_keys.HEARTBEAT: now, meta_keys.STATE: state,
                  meta_keys.HEARTBEAT_INTERVAL: f"{self.settings.heartbeat:g}",
                  meta_keys.PID: str(os.getpid()), meta_keys.HOST: socket.gethostname(),
                  meta_keys.STARTED: self._started_at or now, meta_keys.VERSION: __version__}
        memory = self._memory() if state == "running" else None
        try:
            with store.transaction(self.conn):
                for key, value in values.items():
                    store.set_meta(self.conn, key, value)
                # A stopping daemon's figures would be shown as current: none is better.
                if memory is None:
                    self.conn.execute("DELETE FROM meta WHERE key = ?", (meta_keys.MEMORY,))
                else:
                    store.set_meta(self.conn, meta_keys.MEMORY, memory)
        except sqlite3.Error as exc:
            log.warning("heartbeat not written: %s", exc)

    def _memory(self) -> str | None:
        """The memory figures ``scrape status`` shows (``status.MEMORY``), as JSON; None
        where there is no /proc.  A diagnostic: its failure must not cost the heartbeat."""
        try:
            rss = resident_bytes()
            return None if rss is None else json.dumps({"rss_bytes": rss,
                                                        **dedup.held(self.conn)})
        except Exception:  # noqa: BLE001
            log.debug("memory figures not taken", exc_info=True)
            return None

    async def _config_job(self) -> None:
        key = self._stat_config()
        if key is None:
            if not self._config_missing:
                log.warning("%s: cannot read it any more; keeping the current config",
                            self.config.path)
                self._config_missing = True
            return
        self._config_missing = False
        if key != self._config_key and not self.stopping:
            self._config_key = key
            await self.reload(f"{self.config.path.name} changed")

    def _stat_config(self) -> tuple[int, int, int] | None:
        try:
            st = Path(self.config.path).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def _sweep_job(self) -> None:
        await self.sweep()

    async def sweep(self) -> None:
        """Give every feed a timer, and follow rows whose due time moved earlier."""
        if self.stopping or self.scheduler is None:
            return
        dues = await self._db(self._due_times)
        for name in self.feeds:
            if self._busy(name) or self.stopping:
                continue
            job = self.scheduler.get_job(self._job_id(name))
            due = dues.get(name) or self.clock()
            if job is None:
                log.warning("%s: had no timer; rescheduled from its row", name)
                self._schedule(name, due)
            elif job.next_run_time is not None and due < job.next_run_time - timedelta(
                    seconds=1):
                self._schedule(name, due)

    # -- reload --------------------------------------------------------------------------

    def _select(self, config: Config) -> list[FeedConfig]:

        return select_feeds(config, self.only)

    async def reload(self, reason: str) -> bool:
        """Load feeds.yaml again and apply it; an invalid file changes nothing."""
        lock = self._reload_lock or asyncio.Lock()
        async with lock:
            try:
                new = load_config(self.config.path)
                selected = self._select(new)
            except ConfigError as exc:
                log.error("config reload (%s) refused, the previous config stays in force: %s",
                          reason, exc, extra={"fields": {"event": "reload-refused",
                                                         "reason": reason, "error": str(exc)}})
                return False
            except Exception as exc:  # a validator's bug must not take the daemon down
                log.exception("config reload (%s) refused, the previous config stays in "
                              "force: %s: %s", reason, type(exc).__name__, exc)
                return False
            await self._apply(new, selected, reason)
            return True

    async def _apply(self, new: Config, selected: list[FeedConfig], reason: str) -> None:
        old_feeds, new_feeds = self.feeds, {f.name: f for f in selected}
        added = sorted(new_feeds.keys() - old_feeds.keys())
        removed = sorted(old_feeds.keys() - new_feeds.keys())
        changed = sorted(n for n in new_feeds.keys() & old_feeds.keys()
                         if new_feeds[n] != old_feeds[n])
        if new.database != self.config.database and not self.db_from_args:
            log.warning("config reload: 'database' changed to %s; the daemon keeps %s until "
                        "it is restarted", new.database, self.config.database)
        moved = [n for n in changed if new_feeds[n].url != old_feeds[n].url]
        shorter = {n: new_feeds[n].interval for n in changed if n not in moved
                   and new_feeds[n].interval < old_feeds[n].interval}
        dues = await self._db(self._apply_rows, new, moved, shorter)
        if self.stopping:
            return
        if new.fetch != self.config.fetch and self.refresher is not None:
            # In-flight refreshes finish with the old client; it is closed when they end.
            if self.fetcher is not None:
                self._retired.append((self.fetcher, set(self.running.values())))
            self.fetcher = self.refresher.fetcher = Fetcher(new.fetch)
            self._reap_fetchers()
        if self.refresher is not None:
            self.refresher.config = new
        self.config, self.feeds = new, new_feeds
        for name in removed:
            self._unschedule(name)
        for name in added + changed:
            if not self._busy(name):
                self._schedule(name, dues.get(name) or self.clock())
        log.info("config reloaded (%s): %d feeds; added: %s; removed: %s; changed: %s",
                 reason, len(new_feeds), ", ".join(added) or "-", ", ".join(removed) or "-",
                 ", ".join(changed) or "-",
                 extra={"fields": {"event": "reload", "reason": reason,
                                   "feeds": len(new_feeds), "added": added,
                                   "removed": removed, "changed": changed}})

    def _apply_rows(self, new: Config, moved: list[str],
                    shorter: dict[str, int]) -> dict[str, datetime | None]:
        """The reload's database side (on the database thread): rows for new feeds, a moved
        feed's validators dropped, a shortened interval brought forward."""
        store.sync_feeds(self.conn, [(f.name, f.url) for f in new.feeds])
        now = self.clock()
        with store.transaction(self.conn):
            for name in moved:
                # The validators (ETag, Last-Modified) belong to the old URL; fetch anew now.
                self.conn.execute("UPDATE feeds SET etag = NULL, last_modified = NULL, "
                                  "next_due_at = NULL WHERE name = ?", (name,))
            for name, interval in shorter.items():
                # A shorter interval takes effect now, not after the old, longer wait
                # (a failing feed keeps its backoff).
                soon = store.iso(now + timedelta(seconds=schedule.jittered(interval, self.rng)))
                self.conn.execute(
                    "UPDATE feeds SET next_due_at = ? WHERE name = ? AND error_count = 0 "
                    "AND (next_due_at IS NULL OR next_due_at > ?)", (soon, name, soon))
        return self._due_times()

    def _reap_fetchers(self) -> None:
        """Close replaced HTTP clients once the refreshes that used them have ended."""
        if self.stopping:
            return  # _shutdown closes them all
        keep = []
        for fetcher, users in self._retired:
            if all(t.done() for t in users):
                self._spawn(fetcher.aclose())
            else:
                keep.append((fetcher, users))
        self._retired = keep

    def _db_name(self) -> str:
        row = self.conn.execute("PRAGMA database_list").fetchone()
        return str(row[2]) if row else "?"


def _close_executor(executor: Executor | None, abandoned: bool) -> None:
    if executor is None:
        return
    if abandoned:
        # A worker may still be busy with an abandoned feed's CPU work; waiting for it
        # could break the 30 s promise.  ``_processes`` is ProcessPoolExecutor's own
        # (CPython 3.11-3.13), hence the getattr.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
    else:
        executor.shutdown(wait=True, cancel_futures=True)


def log_refresh(name: str, result: pipeline.FeedResult | None, seconds: float,
                due: datetime, now: datetime) -> None:
    """The one log line per refresh: feed, status, counts, duration, next visit."""
    if result is None:
        status, error = "error", "internal error (see the traceback above)"
        new = updated = duplicates = unchanged = 0
        http_status = None
    else:
        status, error = result.status, result.error
        new, updated = result.new, result.updated
        duplicates, unchanged = result.duplicates, result.unchanged
        http_status = result.http_status
    wait = max(0.0, (due - now).total_seconds())
    fields = {"event": "refresh", "feed": name, "status": status, "new": new,
              "updated": updated, "duplicates": duplicates, "unchanged": unchanged,
              "duration": round(seconds, 3), "http_status": http_status,
              "next_due_at": store.iso(due), "error": error}
    if result is not None and result.warning:
        fields["warning"] = result.warning
    level = logging.WARNING if status == "error" else logging.INFO
    tail = f" error: {error}" if error else ""
    log.log(level, "refresh %s: %s new=%d updated=%d duplicates=%d unchanged=%d "
            "in %.2fs, next in %.0fs%s", name, status, new, updated, duplicates, unchanged,
            seconds, wait, tail, extra={"fields": fields})
