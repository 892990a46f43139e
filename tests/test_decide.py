"""core.decide: what a refresh writes, from plain data (no database, no network, no clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from scraper.core import schedule
from scraper.core.decide import Attempt, EntryData, FeedFacts, classify, decide

NOW = datetime(2025, 8, 28, 12, 0, tzinfo=UTC)
FEED = FeedFacts(url="https://a.example/feed.xml", interval=600, error_count=0, entry_count=4)


def entry(key: str, raw: str = "h", published: str | None = None) -> EntryData:
    return EntryData(key=key, raw_hash=raw, title=key, published=published)


def rng() -> random.Random:
    return random.Random(7)


def test_new_updated_and_unchanged_entries() -> None:
    entries = [entry("a", "1"), entry("b", "2"), entry("c", "3"), entry("a", "9")]
    plan = decide(NOW, FEED, Attempt(status=200), rng(), entries=entries,
                  known={"b": "2", "c": "old"}, unchanged=5)
    assert [e.key for e in plan.new] == ["a"] and plan.new[0].raw_hash == "1"  # first wins
    assert [e.key for e in plan.updated] == ["c"]
    assert plan.unchanged == 6  # b, plus the five the caller already found unchanged
    write = plan.feed
    assert write.ok and write.error_count == 0 and write.status == 200
    assert write.fetched_at == NOW and write.url == FEED.url


def test_success_keeps_validators_and_hints_and_schedules_the_interval() -> None:
    headers = {"etag": '"v2"', "last-modified": "Thu, 28 Aug 2025 11:00:00 GMT",
               "cache-control": "max-age=3600"}
    plan = decide(NOW, FEED, Attempt(status=200, headers=headers, ttl=30), rng())
    write = plan.feed
    assert (write.etag, write.last_modified) == ('"v2"', "Thu, 28 Aug 2025 11:00:00 GMT")
    assert (write.cache_max_age, write.ttl) == (3600, 30)
    # max-age (1 h) stretches the 10 min interval; jitter is within 10%.
    assert timedelta(minutes=54) <= write.next_due_at - NOW <= timedelta(minutes=66)
    assert plan.new == () and plan.updated == ()


def test_not_modified_counts_every_stored_entry_unchanged() -> None:
    plan = decide(NOW, FEED, Attempt(status=304, not_modified=True), rng(),
                  entries=[entry("x")])
    assert plan.unchanged == FEED.entry_count and plan.new == ()
    assert plan.feed.ok and plan.feed.status == 304


def test_not_modified_keeps_the_hints_of_the_last_document() -> None:
    """A 304 has no document (no <ttl>) and often no cache headers: the feed's ttl and
    max-age stay in force until a 200 changes them."""
    hinted = FeedFacts(url=FEED.url, interval=600, ttl=120, cache_max_age=5400)
    plan = decide(NOW, hinted, Attempt(status=304, not_modified=True), rng())
    assert (plan.feed.ttl, plan.feed.cache_max_age) == (120, 5400)
    assert plan.feed.next_due_at >= NOW + timedelta(minutes=100)  # 2 h, less the jitter
    # A 304 with its own cache header overrides the stored max-age; a 200 replaces both.
    fresh = decide(NOW, hinted, Attempt(status=304, not_modified=True,
                                        headers={"cache-control": "max-age=60"}), rng())
    assert fresh.feed.cache_max_age == 60 and fresh.feed.ttl == 120
    full = decide(NOW, hinted, Attempt(status=200), rng())
    assert (full.feed.ttl, full.feed.cache_max_age) == (None, None)


def test_a_failure_backs_off_and_writes_no_entries() -> None:
    failing = FeedFacts(url=FEED.url, interval=600, error_count=2)
    plan = decide(NOW, failing, Attempt(status=503, error="HTTP 503", retry_after=7200),
                  rng(), entries=[entry("a")], known={})
    write = plan.feed
    assert not write.ok and write.error == "HTTP 503" and write.error_count == 3
    assert plan.new == () and plan.updated == ()
    assert write.retry_after_at == NOW + timedelta(hours=2)
    assert write.next_due_at >= NOW + timedelta(hours=2)  # Retry-After is "not before"
    # Without Retry-After: the third consecutive failure waits 4 intervals, +-10%.
    plain = decide(NOW, failing, Attempt(error="timed out"), rng()).feed
    assert timedelta(minutes=36) <= plain.next_due_at - NOW <= timedelta(minutes=44)
    assert plain.retry_after_at is None and plain.etag is None


def test_same_inputs_same_plan() -> None:
    args = (NOW, FEED, Attempt(status=200), )
    assert decide(*args, rng(), entries=[entry("a")]) == decide(*args, rng(),
                                                               entries=[entry("a")])


def test_adaptive_counts_stored_and_new_entries() -> None:
    adaptive = FeedFacts(url=FEED.url, interval=60, adaptive=True)
    recent = [NOW - timedelta(hours=3 * i) for i in range(1, 40)]
    new = [entry(f"n{i}", published=(NOW - timedelta(hours=i)).isoformat())
           for i in range(9)]
    plan = decide(NOW, adaptive, Attempt(status=200), rng(), entries=new, known={},
                  recent=recent)
    expected = schedule.ADAPTIVE_WINDOW / 48  # 39 stored + 9 new in the week
    delay = (plan.feed.next_due_at - NOW).total_seconds()
    assert expected * 0.89 <= delay <= expected * 1.11


def test_classify_is_by_key_and_raw_hash() -> None:
    new, updated, same = classify([entry("a", "1"), entry("b", "2")], {"a": "1"})
    assert [e.key for e in new] == ["b"] and updated == () and same == 1
