"""Fingerprints: folding, canonical URLs, and the signature dedup indexes."""

from __future__ import annotations

import pickle
import re
import unicodedata
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from corpus import DUPLICATE_GROUPS, corpus_posts, group_posts
from selectolax.lexbor import LexborHTMLParser

from scraper.core.fingerprint import (
    SKETCH_BINS,
    TITLE_BANDS,
    TITLE_ROWS,
    band_keys,
    canonical_url,
    compute,
    fold_text,
    one_permutation_minhash,
    shingle_hashes,
    shingle_set,
    similarity,
    sketch,
    text_hash,
    title_band_keys,
)
from scraper.core.similarity import estimate_jaccard, title_similarity
from scraper.dedup import DedupSettings

SETTINGS = DedupSettings()


def plain(html: str) -> str:
    return LexborHTMLParser(html).text(separator="\n")


@pytest.mark.parametrize(("a", "b"), [
    ("8 月 28 日", "8月28日"),
    ('" x "', "“x”"),
    ("“00 后少年 40 分钟造一部手机 ”", '"00后少年40分钟造一部手机"'),
    ("８月２８日，ＡＢＣ", "8月28日,abc"),  # full-width digits and letters (NFKC)
    ("Hello, World!", "hello world"),
    ("小米 12S Ultra", "小米12s ultra"),
    ("a_b", "ab"),
])
def test_fold_makes_reprint_variants_equal(a: str, b: str) -> None:
    assert fold_text(a) == fold_text(b)


@pytest.mark.parametrize(("a", "b"), [("8月28日", "8月29日"), ("小米", "华为"), ("abc", "abd")])
def test_fold_keeps_content_apart(a: str, b: str) -> None:
    assert fold_text(a) != fold_text(b)


@pytest.mark.parametrize("text", [
    "plain ascii text, nothing to do",
    "中文，全角标点（不需要 NFKC）",
    "全角数字１２３和字母ＡＢＣ混在中文里",
    "ﬁ ligature, ① circled, Ⅻ roman",
    "",
])
def test_fast_path_agrees_with_full_normalization(text: str) -> None:
    reference = re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text)).casefold()
    reference = re.sub(r"[\W_]+", "", reference)
    assert fold_text(text) == reference
    assert fold_text(fold_text(text)) == fold_text(text)


def test_corpus_reprint_folds_to_the_same_text() -> None:
    """ZAKER's "8 月 28 日" / `" x "` and 快科技's "8月28日" / “x” are one article."""
    zaker, kkj = group_posts(corpus_posts(), DUPLICATE_GROUPS["00后少年"])
    a = fold_text(plain(zaker.body))
    b = fold_text(plain(kkj.body).split("- THE END -")[0])
    assert a == b
    assert text_hash(a) == text_hash(b)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://Example.COM/a/b?utm_source=rss&utm_medium=feed&id=3#comments",
     "https://example.com/a/b?id=3"),
    ("HTTP://news.example.org:80/x/", "http://news.example.org/x"),
    ("https://example.org:443", "https://example.org/"),
    ("https://example.org:8443/x", "https://example.org:8443/x"),
    ("https://m.example.cn/a.html?spm=a2c4g.11186623&from=timeline&isappinstalled=0",
     "https://m.example.cn/a.html"),
    ("https://example.com/p?fbclid=IwAR0&gclid=xyz&b=2&a=1", "https://example.com/p?a=1&b=2"),
    ("https://example.com/Path/Keeps/Case/", "https://example.com/Path/Keeps/Case"),
    ("https://example.com/?", "https://example.com/"),
])
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_survives_garbage() -> None:
    assert canonical_url("http://[::1") == "http://[::1"  # invalid: returned as given


LONG = "".join(f"第{i}段：这是一段用于测试的新闻正文，内容各不相同，编号{i * 7}。"
               for i in range(40))


def test_compute_is_picklable_and_deterministic_across_processes() -> None:
    fp = compute("标题", LONG, "https://example.com/a?utm_source=x", SETTINGS)
    assert pickle.loads(pickle.dumps(fp)) == fp
    # Keys are stored in SQLite and compared across runs: they must not depend on the
    # process (Python's hash() of str is salted per process).
    with ProcessPoolExecutor(max_workers=1) as pool:
        other = pool.submit(compute, "标题", LONG, "https://example.com/a?utm_source=x",
                            SETTINGS).result()
    assert other == fp


def test_compute_fields() -> None:
    fp = compute("小米 12S 发布", LONG, "https://Example.com/a/?utm_source=x", SETTINGS)
    assert fp.canonical_url == "https://example.com/a"
    assert fp.title == "小米12s发布"
    assert fp.length == len(fold_text(LONG))
    assert not fp.short
    assert len(fp.band_keys) == SETTINGS.bands
    assert len(np.frombuffer(fp.signature, dtype=np.uint32)) == SETTINGS.bands * SETTINGS.rows
    assert fp.url_key is not None and fp.lead_key is not None
    # the same text with other spacing and punctuation: the same keys
    spaced = compute("小米 12S 发布", LONG.replace("，", " , "), None, SETTINGS)
    assert spaced.band_keys == fp.band_keys
    assert spaced.text_hash == fp.text_hash


def test_short_text_has_no_band_keys_and_probes_both_title_namespaces() -> None:
    short = compute("小米 12S 发布会定档", "据报道，小米 12S 将于7月4日发布。", None, SETTINGS)
    long = compute("小米 12S 发布会定档", LONG, None, SETTINGS)
    assert short.short and short.band_keys == ()
    # a long entry looks up short entries' title keys only; a short one looks up both
    assert set(long.probe_title_keys) == set(short.title_keys)
    assert set(long.title_keys) <= set(short.probe_title_keys)
    assert not set(long.title_keys) & set(long.probe_title_keys)


def test_similarity_containment_of_a_trimmed_copy() -> None:
    full = fold_text(LONG)
    trimmed = full[: len(full) * 3 // 4]
    a, b = shingle_set(full, 4), shingle_set(trimmed, 4)
    jaccard, containment = similarity(a, b)
    assert containment == pytest.approx(1.0)
    assert 0.6 < jaccard < 0.85
    assert similarity(a, shingle_set("", 4)) == (0.0, 0.0)


def test_one_permutation_minhash_estimates_jaccard() -> None:
    rng = np.random.default_rng(7)
    universe = rng.integers(0, 2**64, 3000, dtype=np.uint64)  # full 64 bits, like _mix output
    a, b = universe[:2000], universe[1000:]  # Jaccard 1000 / 3000
    sig_a = one_permutation_minhash(a, 512)
    sig_b = one_permutation_minhash(b, 512)
    agree = float(np.mean(sig_a == sig_b))
    assert 0.25 < agree < 0.42
    assert np.array_equal(one_permutation_minhash(a, 512), sig_a)
    # densification: a set smaller than the bin count still fills every bin
    tiny = one_permutation_minhash(universe[:5], 64)
    assert len(tiny) == 64 and len(set(tiny.tolist())) > 5


def test_shingle_hashes_short_text() -> None:
    assert len(shingle_hashes("ab", 4)) == 1
    assert len(shingle_hashes("", 4)) == 0
    assert len(shingle_hashes("abcdef", 4)) == 3


def test_title_similarity() -> None:
    a = fold_text("12.88元买入，夫妻俩转手卖了7万多元，结果…...")
    b = fold_text("12.88元买入，夫妻俩转手卖了7万多元，结果来了")
    assert title_similarity(a, b) > 0.8
    assert title_similarity(fold_text("00后女生每周玩三次密室逃脱，结果导致肺部感染"),
                            fold_text("00后女生1周3次密室逃脱致肺部感染 医生提醒")) < 0.6
    assert title_similarity("", "x") == 0.0


def test_sketch_counts_distinct_shingles_and_estimates_jaccard() -> None:
    full = fold_text(LONG)
    trimmed = full[: len(full) * 3 // 4]
    sk_full, n_full = sketch(shingle_hashes(full, 4))
    sk_trim, n_trim = sketch(shingle_hashes(trimmed, 4))
    assert sk_full.dtype == np.uint16 and len(sk_full) == SKETCH_BINS
    assert (n_full, n_trim) == (len(shingle_set(full, 4)), len(shingle_set(trimmed, 4)))
    exact, _ = similarity(shingle_set(full, 4), shingle_set(trimmed, 4))
    estimate = estimate_jaccard(sk_full.tobytes(), sk_trim.tobytes())
    sigma = (exact * (1 - exact) / SKETCH_BINS) ** 0.5
    assert abs(estimate - exact) < 4 * sigma
    # the same text: every bin agrees; unrelated text: almost none do
    assert estimate_jaccard(sk_full.tobytes(), sk_full.tobytes()) == 1.0
    other, _ = sketch(shingle_hashes(fold_text("完全无关的另一篇文章讲的是天气和交通。" * 20), 4))
    assert estimate_jaccard(sk_full.tobytes(), other.tobytes()) < 0.1
    assert len(sketch(shingle_hashes("", 4))[0]) == 0


def test_sketch_of_a_small_set_fills_every_bin() -> None:
    values, distinct = sketch(shingle_hashes(fold_text("短短的一句话而已"), 4))
    assert distinct == 5 and len(values) == SKETCH_BINS and len(set(values.tolist())) > 5


def test_compute_carries_the_sketch() -> None:
    fp = compute("标题", LONG, None, SETTINGS)
    assert fp.shingles == len(shingle_set(fold_text(LONG), SETTINGS.shingle))
    assert np.array_equal(np.frombuffer(fp.sketch, dtype=np.uint16),
                          sketch(shingle_hashes(fold_text(LONG), SETTINGS.shingle))[0])


def test_similarity_agrees_with_a_set_intersection() -> None:
    rng = np.random.default_rng(3)
    universe = np.unique(rng.integers(0, 2**64, 5000, dtype=np.uint64))
    for size_a, size_b in [(100, 3000), (3000, 100), (1, 1), (2500, 2500)]:
        a = np.sort(rng.choice(universe, size_a, replace=False))
        b = np.sort(rng.choice(universe, size_b, replace=False))
        common = len(set(a.tolist()) & set(b.tolist()))
        assert similarity(a, b) == (common / (size_a + size_b - common),
                                    common / min(size_a, size_b))


def test_title_keys_are_the_numpy_signature_bit_for_bit() -> None:
    """Stored keys are compared across runs: the plain-integer title path must give exactly
    the keys of the NumPy functions it replaces (databases indexed before it)."""
    rng = np.random.default_rng(11)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E30)] + list("ab09ß") + ["\U0001F600"]
    titles = ["ab", "aa", "小米", "a" * 60, fold_text("小米 12S Ultra 发布会定档 7 月 4 日")]
    titles += ["".join(rng.choice(alphabet, size)) for size in rng.integers(2, 80, 500)]
    for title in titles:
        signature = one_permutation_minhash(shingle_hashes(title, 2), TITLE_BANDS * TITLE_ROWS)
        expected = band_keys(signature, TITLE_BANDS, TITLE_ROWS, 0x7469746C)  # salt "titl"
        assert title_band_keys(title) == expected, title
