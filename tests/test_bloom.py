"""The blocked Bloom filter: never "absent" for a key it holds, and as few false "present" as
its occupancy model says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scraper import bloom


def random_keys(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-(2**63), 2**63 - 1, count, dtype=np.int64, endpoint=True)


def expected_false_positives(bits_per_key: float) -> float:
    """The blocked filter's false-positive rate from first principles: a word holds a Poisson
    number of keys (64 / bits per key on average), each setting ``PROBES`` bits at random;
    a key not held is "present" when its ``PROBES`` bits are all set in its word."""
    mean = 64 / bits_per_key
    return sum(math.exp(-mean) * mean**n / math.factorial(n)
               * (1 - (1 - 1 / 64) ** (bloom.PROBES * n)) ** bloom.PROBES
               for n in range(100))


def test_every_key_added_is_present_whatever_its_sign() -> None:
    keys = np.concatenate([random_keys(50_000, 1),
                           np.array([0, -1, 1, -(2**63), 2**63 - 1], dtype=np.int64)])
    for size in (1, 100, len(keys)):
        f = bloom.Filter.empty(size)  # also far too small: more false positives, no miss
        f.add(keys)
        listed = keys.tolist()
        assert f.select(listed, bloom.probes(listed)) == listed
        assert all(k in f for k in listed[:1000])


@pytest.mark.parametrize("bits_per_key", [8, 16, 32])
def test_false_positives_follow_the_occupancy_model(bits_per_key: int) -> None:
    words = 1 << 14
    held = random_keys(words * 64 // bits_per_key, 2)
    f = bloom.Filter(np.zeros(words, dtype=np.uint64), 0)
    f.add(held)
    others = random_keys(200_000, 3).tolist()
    rate = len(f.select(others, bloom.probes(others))) / len(others)
    expected = expected_false_positives(bits_per_key)
    # 200,000 trials: the binomial's standard deviation is under 4% of the rate at 32 bits
    assert abs(rate - expected) < 0.15 * expected + 2e-4, (rate, expected)


def test_sizing_keeps_false_positives_low_until_overfull() -> None:
    for count in (0, 1, 100, 1000, 123_457, 1_400_000):
        words = bloom.words_for(count)
        assert words >= bloom.MIN_WORDS and words & (words - 1) == 0
        assert words * 64 >= count * bloom.BITS_PER_KEY  # built at 16 bits a key or more
        assert not bloom.overfull(count, words)
        assert bloom.overfull(words * 64 // bloom.MIN_BITS_PER_KEY + 1, words)
    assert expected_false_positives(bloom.MIN_BITS_PER_KEY) < 0.035
    assert expected_false_positives(bloom.BITS_PER_KEY) < 0.006


def test_count_and_overfull_follow_the_keys_added() -> None:
    f = bloom.Filter.of(random_keys(1000, 4))
    assert f.count == 1000 and not f.overfull
    f.add(random_keys(len(f.words) * 64 // bloom.MIN_BITS_PER_KEY, 5))
    assert f.overfull


def test_a_blob_round_trip_keeps_every_answer() -> None:
    f = bloom.Filter.of(random_keys(5000, 6))
    again = bloom.Filter.from_blob(f.blob(), f.count)
    probe = random_keys(20_000, 7).tolist()
    assert again.count == f.count
    assert again.select(probe, bloom.probes(probe)) == f.select(probe, bloom.probes(probe))
    again.add(random_keys(10, 8))  # a copy: the blob it came from is not written
    assert bloom.Filter.from_blob(f.blob(), f.count).select(probe, bloom.probes(probe)) == \
        f.select(probe, bloom.probes(probe))


def test_only_a_power_of_two_words_is_a_filter() -> None:
    with pytest.raises(ValueError, match="power of two"):
        bloom.Filter(np.zeros(100, dtype=np.uint64), 0)
