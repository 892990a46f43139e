"""The due decision, without a clock: ``now`` and the random source are pinned here."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from scraper.core import schedule
from scraper.core.schedule import (
    JITTER,
    MAX_BACKOFF,
    MAX_HINT,
    Outcome,
    adaptive_interval,
    cache_lifetime,
    delay_after,
    next_due,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
INTERVAL = 30 * 60
OK = Outcome(ok=True)
FAILED = Outcome(ok=False)


def delays(interval: int, errors: int, outcome: Outcome, n: int = 200) -> list[float]:
    rng = random.Random(1234)
    return [delay_after(interval, errors, outcome, rng) for _ in range(n)]


def within_jitter(values: list[float], nominal: float) -> bool:
    return all(nominal * (1 - JITTER) - 1e-6 <= v <= nominal * (1 + JITTER) + 1e-6
               for v in values)


def past_the_interval(values: list[float], interval: float) -> bool:
    """The interval is "the shortest time between two polls" (docs/configuration.md): the
    jitter's window of the same width starts there."""
    return all(interval - 1e-6 <= v <= interval * (1 + 2 * JITTER) + 1e-6 for v in values)


# -- HTTP caching headers ------------------------------------------------------------------

def test_cache_control_max_age() -> None:
    assert cache_lifetime({"cache-control": "public, max-age=3600"}, NOW) == 3600
    assert cache_lifetime({"cache-control": 'max-age="600"'}, NOW) == 600


def test_cache_control_age_is_subtracted() -> None:
    # A response that sat in a CDN for 10 minutes has 50 minutes of its hour left.
    assert cache_lifetime({"cache-control": "max-age=3600", "age": "600"}, NOW) == 3000


def test_s_maxage_is_for_shared_caches_not_us() -> None:
    assert cache_lifetime({"cache-control": "s-maxage=86400"}, NOW) is None


def test_no_cache_and_no_store_mean_zero() -> None:
    assert cache_lifetime({"cache-control": "no-cache"}, NOW) == 0
    assert cache_lifetime({"cache-control": "private, no-store, max-age=600"}, NOW) == 0


def test_expires_is_measured_from_the_servers_date() -> None:
    # The server's clock is an hour behind ours: Expires - Date is still 2 hours.
    headers = {"expires": "Wed, 01 May 2024 13:00:00 GMT", "date": "Wed, 01 May 2024 11:00:00 GMT"}
    assert cache_lifetime(headers, NOW) == 7200


def test_expires_without_date_uses_now() -> None:
    assert cache_lifetime({"expires": "Wed, 01 May 2024 12:20:00 GMT"}, NOW) == 1200
    assert cache_lifetime({"expires": "Wed, 01 May 2024 11:00:00 GMT"}, NOW) == 0


def test_invalid_expires_means_stale_and_max_age_wins_over_expires() -> None:
    assert cache_lifetime({"expires": "0"}, NOW) == 0
    headers = {"cache-control": "max-age=60", "expires": "Wed, 01 May 2024 20:00:00 GMT"}
    assert cache_lifetime(headers, NOW) == 60


def test_no_caching_headers() -> None:
    assert cache_lifetime({}, NOW) is None


# -- each hint stretches the interval, never shortens it -------------------------------------

def test_plain_success_is_the_interval_with_jitter() -> None:
    assert past_the_interval(delays(INTERVAL, 0, OK), INTERVAL)


def test_max_age_longer_than_interval_stretches_it() -> None:
    assert within_jitter(delays(INTERVAL, 0, Outcome(ok=True, max_age=7200)), 7200)


def test_max_age_shorter_than_interval_does_not_shorten_it() -> None:
    assert past_the_interval(delays(INTERVAL, 0, Outcome(ok=True, max_age=60)), INTERVAL)


def test_rss_ttl_stretches_the_interval() -> None:
    assert within_jitter(delays(INTERVAL, 0, Outcome(ok=True, ttl_minutes=120)), 7200)


def test_the_longer_of_ttl_and_max_age_wins() -> None:
    outcome = Outcome(ok=True, max_age=3600, ttl_minutes=180)
    assert within_jitter(delays(INTERVAL, 0, outcome), 180 * 60)


def test_hints_are_capped() -> None:
    values = delays(INTERVAL, 0, Outcome(ok=True, max_age=365 * 86400))
    assert max(values) <= MAX_HINT
    assert min(values) >= MAX_HINT * (1 - JITTER)


def test_retry_after_on_failure_is_waited_at_least() -> None:
    outcome = Outcome(ok=False, retry_after=4 * 3600)
    values = delays(INTERVAL, 1, outcome)
    assert min(values) >= 4 * 3600
    assert max(values) <= 4 * 3600 * (1 + JITTER)


def test_retry_after_shorter_than_backoff_does_not_shorten_it() -> None:
    values = delays(INTERVAL, 4, Outcome(ok=False, retry_after=10))
    assert within_jitter(values, INTERVAL * 8)


def test_retry_after_is_capped_like_the_backoff() -> None:
    values = delays(INTERVAL, 1, Outcome(ok=False, retry_after=30 * 86400))
    assert max(values) <= MAX_BACKOFF * (1 + JITTER)
    assert min(values) >= MAX_BACKOFF


# -- backoff ---------------------------------------------------------------------------------

def test_backoff_doubles_per_consecutive_error() -> None:
    medians = [statistics.median(delays(INTERVAL, n, FAILED)) for n in range(1, 6)]
    for n, median in enumerate(medians, start=1):
        assert within_jitter([median], INTERVAL * 2 ** (n - 1)), (n, median)
    assert all(b > a * 1.5 for a, b in zip(medians, medians[1:], strict=False))


def test_backoff_is_capped_at_24_hours() -> None:
    for errors in (7, 8, 10, 50, 10_000):  # 30 min * 2**(7-1) = 32 h: capped from 7 on
        values = delays(INTERVAL, errors, FAILED)
        assert max(values) <= MAX_BACKOFF, errors
        assert min(values) >= MAX_BACKOFF * (1 - JITTER), errors


def test_a_failing_feed_is_never_dropped() -> None:
    # However long it fails, it has a next due time within a day.
    rng = random.Random(7)
    when = NOW
    for errors in range(1, 400):
        due = next_due(when, INTERVAL, errors, FAILED, rng)
        assert when < due <= when + timedelta(seconds=MAX_BACKOFF)
        when = due


def test_a_success_resets_the_backoff() -> None:
    assert statistics.median(delays(INTERVAL, 8, FAILED)) > 20 * 3600
    # The pipeline records a success with error_count 0: back to the plain interval.
    assert past_the_interval(delays(INTERVAL, 0, OK), INTERVAL)


def test_short_intervals_still_back_off() -> None:
    values = delays(2, 3, FAILED)
    assert within_jitter(values, 8)


# -- jitter spread ---------------------------------------------------------------------------

@pytest.mark.parametrize("errors", [1, 3, 6, 40])
def test_feeds_failing_together_do_not_retry_in_the_same_second(errors: int) -> None:
    rng = random.Random(99)
    seconds = [int(next_due(NOW, INTERVAL, errors, FAILED, rng).timestamp())
               for _ in range(200)]
    # 200 feeds failing in the same second: with a jitter window of 20% over >= 30 min they land on
    # well over 150 distinct seconds (a collision-free spread would be 200).
    assert len(set(seconds)) >= 150, errors
    # ...and the biggest pile-up in any one second is small.
    assert max(seconds.count(s) for s in set(seconds)) <= 10  # 5% of them at most


def test_capped_delays_stay_spread() -> None:
    # Clipping jittered delays at the cap would put half of them on the cap itself.
    values = [round(v) for v in delays(INTERVAL, 30, FAILED, n=300)]
    assert values.count(MAX_BACKOFF) <= 3
    assert len(set(values)) >= 250


def test_one_hosts_retry_after_does_not_synchronise_its_feeds() -> None:
    rng = random.Random(5)
    seconds = {int(next_due(NOW, INTERVAL, 1, Outcome(ok=False, retry_after=3600), rng)
                   .timestamp()) for _ in range(100)}
    assert len(seconds) >= 80


def test_successful_feeds_drift_apart_too() -> None:
    rng = random.Random(3)
    seconds = {int(next_due(NOW, INTERVAL, 0, OK, rng).timestamp()) for _ in range(100)}
    assert len(seconds) >= 80


def test_next_due_is_now_plus_delay() -> None:
    rng_a, rng_b = random.Random(11), random.Random(11)
    due = next_due(NOW, INTERVAL, 0, OK, rng_a)
    assert due == NOW + timedelta(seconds=delay_after(INTERVAL, 0, OK, rng_b))


# -- adaptive mode ---------------------------------------------------------------------------

def hours_ago(*hours: float) -> list[datetime]:
    return [NOW - timedelta(hours=h) for h in hours]


def test_adaptive_busy_feed_is_polled_at_its_floor() -> None:
    published = hours_ago(*[i * 0.25 for i in range(1, 500)])  # four posts an hour
    assert adaptive_interval(published, NOW, floor=INTERVAL) == INTERVAL


def test_adaptive_follows_a_moderate_rate() -> None:
    published = hours_ago(*range(1, 7 * 24, 12))  # two a day: 14 in the week
    assert adaptive_interval(published, NOW, floor=5 * 60) == 7 * 86400 // 14


def test_adaptive_quiet_and_silent_feeds_get_the_ceiling() -> None:
    assert adaptive_interval(hours_ago(100), NOW, floor=INTERVAL) == schedule.ADAPTIVE_MAX
    assert adaptive_interval([], NOW, floor=INTERVAL) == schedule.ADAPTIVE_MAX
    # Old entries are outside the window: no evidence of a rate.
    assert adaptive_interval(hours_ago(24 * 30, 24 * 31), NOW, floor=INTERVAL) \
        == schedule.ADAPTIVE_MAX


def test_adaptive_ignores_future_and_undated_entries() -> None:
    future = [NOW + timedelta(hours=h) for h in range(1, 200)]
    assert adaptive_interval([*future, None], NOW, floor=INTERVAL) == schedule.ADAPTIVE_MAX


def test_adaptive_interval_replaces_the_configured_one_on_success() -> None:
    values = delays(INTERVAL, 0, Outcome(ok=True, adaptive=6 * 3600))
    assert within_jitter(values, 6 * 3600)
    # ...but not the backoff of a failure.
    values = delays(INTERVAL, 1, Outcome(ok=False, adaptive=6 * 3600))
    assert past_the_interval(values, INTERVAL)


# -- a shortened interval (clamp_due) ------------------------------------------------------

LAST = NOW - timedelta(minutes=5)  # the last fetch


def stored(when: datetime) -> datetime:
    """As the database keeps it: whole seconds."""
    return when.replace(microsecond=0)


def scheduled(outcome: Outcome, interval: int, errors: int = 0,
              rng: random.Random | None = None) -> schedule.Scheduled:
    """The row a refresh at LAST with ``outcome`` leaves under ``interval``."""
    due = next_due(LAST, interval, errors, outcome, rng or random.Random(7))
    retry_at = LAST + timedelta(seconds=outcome.retry_after) if outcome.retry_after else None
    return schedule.Scheduled(last_fetch=LAST, next_due=stored(due), error_count=errors,
                              max_age=outcome.max_age, ttl_minutes=outcome.ttl_minutes,
                              retry_after_at=retry_at)


def clamped(state: schedule.Scheduled, interval: int, n: int = 200,
            adaptive: bool = False) -> list[float]:
    """Seconds from the last fetch to the clamped due time, over ``n`` random draws."""
    rng = random.Random(99)
    out = []
    for _ in range(n):
        due = schedule.clamp_due(state, interval, rng, adaptive=adaptive)
        assert due is not None
        out.append((due - LAST).total_seconds())
    return out


def test_a_shortened_interval_brings_the_due_time_within_the_new_one() -> None:
    # Scheduled under 30 minutes, now configured at 1 minute: due 1 min to 1 min +20 % after the
    # last fetch (already past here: due at once), spread by the jitter.
    values = clamped(scheduled(OK, INTERVAL), 60)
    assert past_the_interval(values, 60) and len({round(v) for v in values}) > 5


@pytest.mark.parametrize(("outcome", "errors"), [
    (OK, 0), (Outcome(ok=True, ttl_minutes=120), 0), (Outcome(ok=True, max_age=7200), 0),
    (FAILED, 1), (FAILED, 4), (Outcome(ok=False, retry_after=5400), 1),
    (Outcome(ok=True, max_age=10 ** 7), 0)])
def test_a_due_time_the_current_settings_gave_is_left_alone(outcome: Outcome,
                                                            errors: int) -> None:
    # A restart or a reload that changed nothing moves nothing, whatever the jitter drew.
    for seed in range(100):
        state = scheduled(outcome, INTERVAL, errors, random.Random(seed))
        assert schedule.clamp_due(state, INTERVAL, random.Random(seed)) == state.next_due


class Top(random.Random):
    """Jitter at its very top."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


def test_the_top_of_the_jitter_survives_the_whole_seconds_of_storage() -> None:
    # The fetch at .9 s, stored as .0, and a longest delay of 1985.5 s: the due time at the
    # top of its window, stored as 1986 s past the stored fetch, lies just past "stored fetch
    # time + longest delay"; that is rounding, not an old interval.
    fetched = NOW + timedelta(seconds=0.9)
    interval = 1805
    for outcome, errors in ((OK, 0), (FAILED, 1), (Outcome(ok=False, retry_after=605), 1)):
        due = next_due(fetched, interval, errors, outcome, Top())
        retry_at = fetched + timedelta(seconds=outcome.retry_after or 0)
        state = schedule.Scheduled(last_fetch=stored(fetched), next_due=stored(due),
                                   error_count=errors,
                                   retry_after_at=stored(retry_at) if outcome.retry_after
                                   else None)
        assert schedule.clamp_due(state, interval, random.Random(1)) == state.next_due


def test_a_longer_interval_does_not_postpone_a_due_time() -> None:
    state = scheduled(OK, 60)
    assert schedule.clamp_due(state, INTERVAL, random.Random(1)) == state.next_due


def test_a_stored_ttl_or_max_age_still_stretches_the_new_interval() -> None:
    # <ttl> 2 h under a 4 h interval, now 30 min: the feed asked for 2 h, so 2 h it is.
    old = 4 * 3600
    assert within_jitter(clamped(scheduled(Outcome(ok=True, ttl_minutes=120), old), INTERVAL),
                         7200)
    assert within_jitter(clamped(scheduled(Outcome(ok=True, max_age=5400), old), INTERVAL),
                         5400)


def test_a_failing_feed_keeps_its_backoff_counted_from_the_new_interval() -> None:
    # Three failures in a row: 4 intervals.  30 min -> 2 h; at the new 1 minute, 4 minutes.
    state = scheduled(FAILED, INTERVAL, errors=3)
    assert within_jitter(clamped(state, 60), 4 * 60)
    assert state.error_count == 3  # the count is the row's, untouched


def test_retry_after_is_still_not_before() -> None:
    # A 503 asked for 90 minutes; the backoff under 1 h was longer.  Now 1 minute: the
    # Retry-After still holds (plus its positive jitter), the backoff no longer does.
    state = scheduled(Outcome(ok=False, retry_after=5400), 3 * 3600, errors=2)
    values = clamped(state, 60)
    assert all(5400 <= v <= 5400 * (1 + JITTER) for v in values), (min(values), max(values))
    assert all(LAST + timedelta(seconds=v) <= state.next_due for v in values)


def test_an_adaptive_feed_is_only_held_to_the_adaptive_ceiling() -> None:
    # Its publishing rate is not stored: 20 h may be what it earned, so it stays; a due time
    # past the 24 h ceiling (an interval of 3 days shortened to 1 h) comes within it.
    rate = Outcome(ok=True, adaptive=20 * 3600)
    earned = scheduled(rate, INTERVAL)
    assert schedule.clamp_due(earned, 3600, random.Random(1), adaptive=True) == earned.next_due
    three_days = scheduled(OK, 3 * 86400)
    values = clamped(three_days, 3600, adaptive=True)
    assert all(86400 * (1 - JITTER) <= v <= 86400 for v in values)


def test_a_feed_never_fetched_or_already_due_is_left_alone() -> None:
    never = schedule.Scheduled(last_fetch=None, next_due=None)
    assert schedule.clamp_due(never, 60, random.Random(1)) is None
    due_now = schedule.Scheduled(last_fetch=None, next_due=NOW)
    assert schedule.clamp_due(due_now, 60, random.Random(1)) == NOW


@pytest.mark.parametrize("interval", [80_000, 86_400, 172_800, 604_800])
def test_a_failing_feeds_retry_stays_under_the_cap_and_spread(interval: int) -> None:
    """The interval's floor moved the jitter's window up; it must not carry it past the
    cap (a daily feed retried up to 26.4 h after a failure), nor pile it on the cap."""
    for errors in (1, 2, 5):
        values = delays(interval, errors, FAILED, n=500)
        assert max(values) <= MAX_BACKOFF + 1e-6, (interval, errors, max(values))
        assert len({round(v) for v in values}) > 400, (interval, errors)
