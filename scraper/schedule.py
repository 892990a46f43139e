"""When is a feed due next?  Pure functions of stored state: no clock, no network.

The daemon, ``scrape --once`` and a future multi-machine worker all ask the same question
of the same database row, so the answer must depend on nothing else.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

#: Failures back off exponentially from the interval up to this cap: a feed broken for a
#: week is still tried every day, never dropped (Miniflux drops it after 3 errors, #1893).
MAX_BACKOFF = 24 * 3600
#: Spread around the nominal time, as a fraction of the delay, so that feeds added together
#: (or failing together) do not stay synchronised (Miniflux #3130).
JITTER = 0.1
#: Servers' hints may stretch the interval, but not past this: a max-age of a year on a
#: news feed is a misconfiguration, not a wish.
MAX_HINT = 24 * 3600

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Outcome:
    """What the refresh that just finished learned."""

    ok: bool
    max_age: int | None = None  # seconds, from Cache-Control max-age or Expires
    ttl_minutes: int | None = None  # RSS <ttl>
    retry_after: float | None = None  # seconds, from Retry-After


def cache_lifetime(headers: dict[str, str], now: datetime) -> int | None:
    """Seconds the response says it stays fresh: Cache-Control max-age, else Expires."""
    control = headers.get("cache-control", "")
    if "no-cache" in control.lower() or "no-store" in control.lower():
        return 0
    if m := _MAX_AGE.search(control):
        return int(m.group(1))
    expires = headers.get("expires")
    if expires:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return 0  # RFC 9111: an invalid Expires means already stale
        if when.tzinfo is None:
            return None
        return max(0, int((when - now).total_seconds()))
    return None


def jittered(seconds: float, rng: random.Random, spread: float = JITTER) -> float:
    return seconds * (1 + rng.uniform(-spread, spread))


def delay_after(interval: int, error_count: int, outcome: Outcome, rng: random.Random) -> float:
    """Seconds until the next refresh."""
    if not outcome.ok:
        # error_count already counts this failure: 1 -> interval, 2 -> 2x, 3 -> 4x, ...
        backoff = min(MAX_BACKOFF, interval * 2 ** max(0, error_count - 1))
        delay = jittered(backoff, rng)
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, MAX_BACKOFF))
        return min(delay, MAX_BACKOFF * (1 + JITTER))
    base = float(interval)
    hints = [h for h in (outcome.max_age,
                         outcome.ttl_minutes * 60 if outcome.ttl_minutes else None) if h]
    if hints:
        base = max(base, min(max(hints), MAX_HINT))
    if outcome.retry_after is not None:
        base = max(base, min(outcome.retry_after, MAX_HINT))
    return jittered(base, rng)


def next_due(now: datetime, interval: int, error_count: int, outcome: Outcome,
             rng: random.Random) -> datetime:
    return now + timedelta(seconds=delay_after(interval, error_count, outcome, rng))


def is_due(next_due_at: datetime | None, now: datetime) -> bool:
    """A feed never fetched is due; otherwise when its time has come."""
    return next_due_at is None or next_due_at <= now
