"""The cheap formulations dedup relies on give what the plain ones give, bit for bit.

Each replaced a slower computation that links depend on: the sketch estimate in big
integers, the merge-based exact score, the fused shingle set of a candidate's text, the
keys stored from the fingerprint's fields, and linking from the workers' fingerprints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus_posts
from test_dedup import ARTICLE, OTHER, SETTINGS, add, store_corpus
from test_fingerprint_steps import _texts

from scraper import dedup
from scraper import storage as store
from scraper.core import fingerprint, similarity


def test_agreeing_bins_counts_equal_bins_like_numpy() -> None:
    rng = np.random.default_rng(7)
    for trial in range(3000):
        a = rng.integers(0, 2**16, fingerprint.SKETCH_BINS, dtype=np.uint16)
        b = a.copy()
        changed = rng.choice(fingerprint.SKETCH_BINS, int(rng.integers(0, 129)), replace=False)
        if trial % 2:  # one bit flipped: the carry trick must see every bit of a bin
            flips = rng.integers(0, 16, len(changed)).astype(np.uint16)
            b[changed] = a[changed] ^ (np.uint16(1) << flips)
        else:
            b[changed] = rng.integers(0, 2**16, len(changed), dtype=np.uint16)
        want = int(np.count_nonzero(a == b))
        assert similarity.agreeing_bins(a.tobytes(), b.tobytes()) == want
    top = np.full(fingerprint.SKETCH_BINS, 0x8000, dtype=np.uint16)
    zero = np.zeros(fingerprint.SKETCH_BINS, dtype=np.uint16)
    assert similarity.agreeing_bins(top.tobytes(), zero.tobytes()) == 0


def numpy_estimate_jaccard(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """The plain formulation: the fraction of agreeing bins of one sketch with each row of
    ``theirs``, less the 2**-16 chance agreement."""
    agree = np.count_nonzero(theirs == mine, axis=1) / fingerprint.SKETCH_BINS
    chance = 2.0**-fingerprint.SKETCH_BITS
    return np.maximum(agree - chance, 0.0) / (1.0 - chance)


def test_estimates_are_those_of_numpys_estimate_jaccard() -> None:
    texts = [ARTICLE, ARTICLE.replace("深圳", "广州", 2), OTHER, ARTICLE[: len(ARTICLE) // 2],
             OTHER + ARTICLE, *[t for t in _texts() if len(t) > 100][:40]]
    fps = [fingerprint.compute(f"t{i}", t, None, SETTINGS) for i, t in enumerate(texts)]
    sketches = np.frombuffer(b"".join(fp.sketch for fp in fps), dtype=np.uint16)
    for mine in fps[:8]:
        want = numpy_estimate_jaccard(np.frombuffer(mine.sketch, dtype=np.uint16),
                                      sketches.reshape(len(fps), -1)).tolist()
        assert [similarity.estimate_jaccard(mine.sketch, fp.sketch) for fp in fps] == want
        assert want[fps.index(mine)] == 1.0 and min(want) < 0.2


def test_screen_rules_out_only_what_cannot_reach_the_threshold() -> None:
    mine = fingerprint.compute("t", ARTICLE, None, SETTINGS)
    others = {"reprint": ARTICLE.replace("深圳", "广州", 2), "other": OTHER,
              "half": ARTICLE[: len(ARTICLE) // 2], "short": "短" * 30}
    cands = []
    for i, text in enumerate(others.values(), start=1):
        fp = fingerprint.compute("t", text, None, SETTINGS)
        cands.append(similarity.Candidate(i, 0, fp.length, fp.title, fp.text_hash, {"near"},
                                          1, fp.sketch, fp.shingles, i))
    similarity.screen(mine, cands, SETTINGS)
    out = {name: similarity.ruled_out(mine, c, SETTINGS)
           for name, c in zip(others, cands, strict=True)}
    # the half is contained in the article: it must stay; the short one is judged by title
    assert out == {"reprint": False, "other": True, "half": False, "short": False}
    for c in cands:
        assert c.estimate is not None and c.estimate == similarity.estimate_jaccard(
            mine.sketch, c.sketch)


def test_similarity_is_that_of_a_set_intersection() -> None:
    rng = random.Random(11)
    for _ in range(300):
        pool = [rng.getrandbits(64) for _ in range(rng.choice([1, 5, 300, 2000]))]
        a = {x for x in pool if rng.random() < 0.7}
        b = {x for x in pool if rng.random() < 0.7} or {pool[0]}
        if not a:
            continue
        common = len(a & b)
        got = fingerprint.similarity(np.array(sorted(a), dtype=np.uint64),
                                     np.array(sorted(b), dtype=np.uint64))
        assert got == (common / (len(a) + len(b) - common), common / min(len(a), len(b)))


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_text_shingle_set_is_the_shingle_set_of_the_folded_text(size: int) -> None:
    for text in [*_texts(), "。，" * 40, "ẞ" * 70, "Ａ" * 70]:
        want = fingerprint.shingle_set(fingerprint.fold_text(text), size)
        got = fingerprint.text_shingle_set(text, size)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), text[:20]
        fp = fingerprint.compute("", text, None, dedup.DedupSettings(shingle=size))
        assert fingerprint.shingle_set_of(fp.shingle_set).tobytes() == want.tobytes()


def test_stored_keys_are_those_of_the_fingerprint(database: str) -> None:
    conn = store.connect(database)
    ids = store_corpus(conn, corpus_posts())
    rows = conn.execute("SELECT e.id, e.title, e.content_text, e.url, f.keys FROM entries e "
                        "JOIN dedup_fingerprints f ON f.entry_id = e.id").fetchall()
    assert len(rows) == len(ids)
    for _, title, text, url, blob in rows:
        fp = fingerprint.compute(title, text, url, SETTINGS)
        want = sorted({key for _, key in fp.index_keys()})
        assert np.frombuffer(blob, dtype=np.int64).tolist() == want
    conn.close()


def test_linking_without_the_text_gives_the_same_links(tmp_path: Path) -> None:
    """Given every fingerprint, link_entries does not need the entries' texts; the links and
    stored rows are those of a call that computes them from the text."""
    states = []
    texts = [ARTICLE, ARTICLE.replace("深圳", "广州", 1), OTHER, "短" * 30]
    for given in (False, True):
        conn = store.connect(tmp_path / f"given{given}.db")
        ids = [add(conn, f"标题{i}", text, feed=f"f{i}") for i, text in enumerate(texts)]
        for entry_id, text in zip(ids, texts, strict=True):
            fps = ({entry_id: fingerprint.compute(f"标题{ids.index(entry_id)}", text, None,
                                                  SETTINGS)} if given else None)
            with store.transaction(conn):
                dedup.link_entries(conn, [entry_id], SETTINGS, fps)
        states.append((
            [tuple(r) for r in conn.execute("SELECT id, duplicate_of, dup_method, dup_score "
                                            "FROM entries ORDER BY id")],
            [tuple(r) for r in conn.execute("SELECT entry_id, ts, canonical_url, text_hash, "
                                            "title, length, keys, sketch, shingles, root FROM "
                                            "dedup_fingerprints ORDER BY entry_id")]))
        conn.close()
    assert states[0] == states[1]
    assert states[0][0][1][1] == 1
