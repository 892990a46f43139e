"""When is a feed due next?  Pure functions of stored state: no clock, no network.

The daemon, ``scrape --once`` and a future multi-machine worker all ask the same question
of the same database row, so the answer must depend on nothing else: the caller passes
``now`` and a ``random.Random``, and the tests pin both.

The rules, and the complaint each one answers:
- a failing feed backs off exponentially but is never dropped from polling (Miniflux stops
  after a few errors: miniflux #1893, #4261); the backoff is capped at 24 h;
- every delay carries jitter, including the capped one and a Retry-After, so feeds that
  fail together do not retry together (miniflux #3130: every failed feed retried at +1 h);
- the server's hints (Cache-Control max-age / Expires, RSS ``<ttl>``, Retry-After) may only
  stretch the configured interval, never shorten it: they are requests to poll less;
- a shortened interval takes effect at once (a reload, a restart): a stored due time later
  than anything the current interval, hints and backoff allow is brought forward
  (``clamp_due``), instead of making the feed wait out the old interval.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Failures back off exponentially from the interval up to this cap: a feed broken for a
#: week is still tried every day, never dropped (Miniflux drops it after 3 errors, #1893).
MAX_BACKOFF = 24 * 3600
#: Spread around the nominal time, as a fraction of the delay, so that feeds added together
#: (or failing together) do not stay synchronised (Miniflux #3130).  With the 30 min
#: default interval this is a 6-minute window, from the interval up (never below it, see
#: ``jittered``): 100 feeds failing in the same second retry spread over 360 seconds.
JITTER = 0.1
#: Servers' hints may stretch the interval, but not past this: a max-age of a year on a
#: news feed is a misconfiguration, not a wish.
MAX_HINT = 24 * 3600

#: Adaptive mode's window and longest interval.  The shape follows Miniflux's
#: ``entry_frequency`` scheduler: weekly entry count -> interval, at most 24 h (its
#: SCHEDULER_ENTRY_FREQUENCY_MAX_INTERVAL default); the feed's own interval is the floor.
ADAPTIVE_WINDOW = 7 * 24 * 3600
ADAPTIVE_MAX = 24 * 3600

# ``max-age`` only: ``s-maxage`` is addressed to shared caches, and we are a private client.
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-cache|no-store)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Outcome:
    """What the refresh that just finished learned."""

    ok: bool
    max_age: int | None = None  # seconds, from Cache-Control max-age or Expires
    ttl_minutes: int | None = None  # RSS <ttl>
    retry_after: float | None = None  # seconds, from Retry-After
    #: An interval derived from the feed's publishing rate (``adaptive_interval``); when
    #: given it replaces the configured interval for a successful refresh.
    adaptive: int | None = None


def cache_lifetime(headers: Mapping[str, str], now: datetime) -> int | None:
    """Seconds the response says it stays fresh: Cache-Control max-age, else Expires.

    ``headers`` have lower-case names (as ``fetch.FetchResult.headers``).  As RFC 9111
    (4.2.1, 4.2.3) says, an ``Age`` is subtracted from max-age, and Expires is measured
    from the server's own ``Date`` when it sends one, so that a skewed clock on either
    side does not turn a 10-minute lifetime into zero or into a day.
    """
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        return 0
    age = _int_or_none(headers.get("age")) or 0
    if m := _MAX_AGE.search(control):
        return max(0, int(m.group(1)) - age)
    expires = headers.get("expires")
    if expires is None:
        return None
    when = http_date(expires)
    if when is None:
        return 0  # RFC 9111 5.3: an invalid Expires (often "0" or "-1") means already stale
    reference = http_date(headers.get("date", "")) or now
    return max(0, int((when - reference).total_seconds()) - age)


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def http_date(text: str) -> datetime | None:
    """An HTTP date (Expires, Retry-After), in UTC; None if unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return when


def jittered(seconds: float, rng: random.Random, spread: float = JITTER,
             ceiling: float | None = None, floor: float = 0.0) -> float:
    """``seconds`` moved by up to +-``spread`` of itself, never above ``ceiling`` nor below
    ``floor`` (the feed's interval: "the shortest time between two polls", as the options
    table says; a jitter of -10% polled a 1-hour feed after 55.8 minutes, found in review).

    Clipping after jittering would put every capped delay on the ceiling itself (all
    feeds failing for a day would retry in the same second); instead the window is
    shifted below the ceiling, so capped delays stay spread; and above the floor, its width
    kept (a window halved put twice as many feeds of one run in each second).
    """
    low, high = seconds * (1 - spread), seconds * (1 + spread)
    if ceiling is not None and high > ceiling:
        high = ceiling
        low = min(low, ceiling * (1 - spread))
    if low < floor:
        low, high = floor, floor + (high - low)
        if ceiling is not None:
            high = max(low, min(high, ceiling))
    return rng.uniform(low, high)


def backoff(interval: int, error_count: int) -> float:
    """The nominal delay after ``error_count`` consecutive failures (this one included).

    1 -> interval, 2 -> 2x, 3 -> 4x, ... up to ``MAX_BACKOFF``.
    """
    exponent = max(0, error_count - 1)
    if exponent > 40:  # 2**40 intervals is past any cap; avoid float overflow on old rows
        return float(MAX_BACKOFF)
    return float(min(MAX_BACKOFF, max(1, interval) * 2 ** exponent))


def delay_after(interval: int, error_count: int, outcome: Outcome, rng: random.Random) -> float:
    """Seconds until the next refresh."""
    if not outcome.ok:
        # The floor stays under the cap's own window: failing feeds of a daily interval
        # still retry spread over the last tenth of the day, not all on the cap.
        delay = jittered(backoff(interval, error_count), rng, ceiling=MAX_BACKOFF,
                         floor=min(float(interval), MAX_BACKOFF * (1 - JITTER)))
    else:
        base = float(outcome.adaptive if outcome.adaptive else interval)
        hints = [h for h in (outcome.max_age,
                             outcome.ttl_minutes * 60 if outcome.ttl_minutes else None) if h]
        if hints:
            base = max(base, float(min(max(hints), MAX_HINT)))
        delay = jittered(base, rng, ceiling=max(interval * (1 + 2 * JITTER), MAX_HINT),
                         floor=float(interval))
    if outcome.retry_after is not None:
        # Retry-After means "not before": wait at least that long, plus a positive jitter,
        # so that the feeds of one rate-limited host do not all come back in one second.
        wait = min(outcome.retry_after, MAX_BACKOFF)
        delay = max(delay, wait + rng.uniform(0, wait * JITTER))
    return delay


def next_due(now: datetime, interval: int, error_count: int, outcome: Outcome,
             rng: random.Random) -> datetime:
    return now + timedelta(seconds=delay_after(interval, error_count, outcome, rng))


def adaptive_interval(published: Iterable[datetime | None], now: datetime, floor: int) -> int:
    """An interval that follows the feed's publishing rate over ``ADAPTIVE_WINDOW``.

    A feed that published ``n`` entries in the window is polled about ``n`` times per
    window, never more often than ``floor`` (the configured interval) and never less often
    than ``ADAPTIVE_MAX``; a feed silent for the whole window gets the longest.  Dates in
    the future (clock skew, scheduled posts) and undated entries are not evidence of a rate
    and are ignored.
    """
    floor = max(1, floor)
    ceiling, window = max(floor, ADAPTIVE_MAX), ADAPTIVE_WINDOW
    start = now - timedelta(seconds=window)
    count = sum(1 for when in published if when is not None and start <= when <= now)
    if count == 0:
        return ceiling
    return int(min(ceiling, max(floor, window / count)))


@dataclass(frozen=True)
class Scheduled:
    """A feed's schedule as its last refresh stored it."""

    last_fetch: datetime | None
    next_due: datetime | None
    error_count: int = 0
    max_age: int | None = None  # seconds
    ttl_minutes: int | None = None
    retry_after_at: datetime | None = None


class _Highest(random.Random):
    """Draws the top of every range: ``delay_after`` with it gives the longest delay its
    rules allow, so the bound in ``clamp_due`` follows those rules instead of copying them."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


_HIGHEST = _Highest()
#: Stored times are whole seconds (``storage.iso`` truncates them), so a stored due time
#: may lie up to a second past the bound computed from the stored fetch time.
_STORED_PRECISION = 1.0


def clamp_due(state: Scheduled, interval: int, rng: random.Random, *,
              adaptive: bool = False) -> datetime | None:
    """The feed's next due time under ``interval``: the stored one, unless it lies later than
    any the last refresh could have got under the current settings (the interval was
    shortened since); then the last fetch plus a new delay, with jitter.

    The stored hints still count: ``<ttl>`` and max-age stretch the interval, Retry-After
    is "not before", a failing feed keeps its backoff (counted from the new interval).  An
    ``adaptive`` feed's rate is not stored, so its bound is the adaptive ceiling: its next
    refresh applies the new floor.  Never later than the stored time; a time already in the
    past means due now.
    """
    if state.next_due is None or state.last_fetch is None:
        return state.next_due
    retry = None
    if state.retry_after_at is not None:
        retry = (state.retry_after_at - state.last_fetch).total_seconds()
    outcome = Outcome(ok=state.error_count == 0, max_age=state.max_age,
                      ttl_minutes=state.ttl_minutes,
                      retry_after=retry if retry and retry > 0 else None,
                      adaptive=max(interval, ADAPTIVE_MAX) if adaptive else None)
    latest = delay_after(interval, state.error_count, outcome, _HIGHEST) + _STORED_PRECISION
    if state.next_due <= state.last_fetch + timedelta(seconds=latest):
        return state.next_due
    return state.last_fetch + timedelta(
        seconds=delay_after(interval, state.error_count, outcome, rng))
