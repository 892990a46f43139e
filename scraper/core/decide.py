"""What a refresh writes, decided from plain data: no database, no network, no clock.

The refresh gathers facts (the feed's stored state, what the fetch and the parse found, the
stored raw hashes) and storage applies the :class:`Plan` that :func:`decide` returns, in one
transaction.  As lemon24/reader's ``Decider``/``Pipeline`` split: the rules about what is new,
what changed and when to come back are tested with plain values, and a second storage
backend only applies a plan.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scraper.core import schedule


@dataclass(frozen=True)
class EntryData:
    """One entry as stored: what the feed sent and what normalize made of it."""

    key: str
    raw_hash: str
    url: str | None = None
    guid: str | None = None
    title: str | None = None
    author: str | None = None
    published: str | None = None  # ISO 8601 UTC text, as stored
    content_html: str = ""
    content_text: str = ""
    summary: str = ""
    image: str | None = None
    raw_html: str = ""


@dataclass(frozen=True)
class FeedFacts:
    """The feed as configured and as its row stands before this refresh."""

    url: str
    interval: int
    adaptive: bool = False
    error_count: int = 0
    entry_count: int = 0
    #: The last 200's hints (``<ttl>`` minutes, max-age seconds): in force through 304s.
    ttl: int | None = None
    cache_max_age: int | None = None


@dataclass(frozen=True)
class Attempt:
    """What the fetch and the parse found.  ``error`` set means the refresh failed."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    retry_after: float | None = None  # seconds, from Retry-After
    not_modified: bool = False
    ttl: int | None = None  # RSS <ttl>, minutes
    #: The 200's document (``core.digest.document_digest``), stored once its entries are.
    body_hash: str | None = None


@dataclass(frozen=True)
class FeedWrite:
    """The feed row after the refresh.  ``etag``/``last_modified`` None keep the stored ones;
    a failure writes only the ``last_*``, error and due-time columns."""

    ok: bool
    url: str
    fetched_at: datetime
    status: int | None
    next_due_at: datetime
    error_count: int
    error: str | None = None
    retry_after_at: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    cache_max_age: int | None = None
    ttl: int | None = None
    body_hash: str | None = None  # None keeps the stored one


@dataclass(frozen=True)
class Plan:
    feed: FeedWrite
    new: tuple[EntryData, ...] = ()
    updated: tuple[EntryData, ...] = ()
    unchanged: int = 0


def classify(entries: Sequence[EntryData], known: Mapping[str, str]
             ) -> tuple[tuple[EntryData, ...], tuple[EntryData, ...], int]:
    """(new, updated, unchanged count): an entry is new when its key is not stored, updated
    when its raw hash differs from the stored one.  The first of a key wins, as in the
    document."""
    new: list[EntryData] = []
    updated: list[EntryData] = []
    unchanged = 0
    seen: set[str] = set()
    for entry in entries:
        if entry.key in seen:
            continue
        seen.add(entry.key)
        stored = known.get(entry.key)
        if stored is None:
            new.append(entry)
        elif stored != entry.raw_hash:
            updated.append(entry)
        else:
            unchanged += 1
    return tuple(new), tuple(updated), unchanged


def decide(now: datetime, feed: FeedFacts, attempt: Attempt, rng: random.Random, *,
           entries: Sequence[EntryData] = (), known: Mapping[str, str] | None = None,
           unchanged: int = 0, recent: Sequence[datetime | None] = ()) -> Plan:
    """The plan of one refresh.

    ``entries`` are the document's entries that may have changed, ``known`` the stored raw
    hashes of their keys, ``unchanged`` how many more the caller already found unchanged.
    ``recent`` are the stored entries' dates inside the adaptive window (only read for an
    ``adaptive`` feed): with the new entries' dates they set the publishing rate.
    """
    if attempt.error is not None:
        errors = feed.error_count + 1
        due = schedule.next_due(now, feed.interval, errors,
                                schedule.Outcome(ok=False, retry_after=attempt.retry_after), rng)
        retry_at = (now + timedelta(seconds=attempt.retry_after)
                    if attempt.retry_after else None)
        return Plan(FeedWrite(ok=False, url=feed.url, fetched_at=now, status=attempt.status,
                              next_due_at=due, error_count=errors, error=attempt.error,
                              retry_after_at=retry_at))
    if attempt.not_modified:
        new, updated, unchanged = (), (), feed.entry_count
    else:
        new, updated, same = classify(entries, known or {})
        unchanged += same
    adaptive = None
    if feed.adaptive:
        dates = [*recent, *(_date(e.published) or now for e in new)]
        adaptive = schedule.adaptive_interval(dates, now, floor=feed.interval)
    max_age = schedule.cache_lifetime(attempt.headers, now)
    ttl = feed.ttl if attempt.not_modified and attempt.ttl is None else attempt.ttl
    if attempt.not_modified and max_age is None:
        max_age = feed.cache_max_age
    # Kept as the schedule honours them: a max-age or <ttl> of 20 digits (seen in review)
    # overflowed the database's 64-bit column, and the feed failed at every poll.
    if max_age is not None:
        max_age = min(max_age, schedule.MAX_HINT)
    if ttl is not None:
        ttl = min(ttl, schedule.MAX_HINT // 60)
    due = schedule.next_due(now, feed.interval, 0,
                            schedule.Outcome(ok=True, max_age=max_age, ttl_minutes=ttl,
                                             adaptive=adaptive), rng)
    write = FeedWrite(ok=True, url=feed.url, fetched_at=now, status=attempt.status,
                      next_due_at=due, error_count=0, etag=attempt.headers.get("etag"),
                      last_modified=attempt.headers.get("last-modified"),
                      cache_max_age=max_age, ttl=ttl, body_hash=attempt.body_hash)
    return Plan(write, new, updated, unchanged)


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
