"""The fast paths of dedup and fingerprint give what the plain steps give, bit for bit.

Each shortcut here replaced a slower computation that stored data or links depend on: the
sketch estimate in big integers, the merge-based exact score, the fused shingle set of a
candidate's text, the key lists built straight from the fingerprint's fields, the
multi-row merge and the grouped postings lookup."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus_posts
from test_dedup import ARTICLE, OTHER, SETTINGS, add, link, link_of, store_corpus
from test_fingerprint_steps import _texts

from scraper import dedup
from scraper import storage as store
from scraper.core import fingerprint


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
        assert dedup._agreeing_bins(int.from_bytes(a.tobytes(), "little"), b.tobytes()) == want
    top = np.full(fingerprint.SKETCH_BINS, 0x8000, dtype=np.uint16)
    zero = np.zeros(fingerprint.SKETCH_BINS, dtype=np.uint16)
    assert dedup._agreeing_bins(int.from_bytes(top.tobytes(), "little"), zero.tobytes()) == 0


def test_screen_estimates_are_those_of_estimate_jaccard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few candidates take the plain-Python path, many NumPy's: the same floats either way."""
    texts = [ARTICLE, ARTICLE.replace("深圳", "广州", 2), OTHER, ARTICLE[: len(ARTICLE) // 2],
             OTHER + ARTICLE]
    fps = [fingerprint.compute(f"t{i}", t, None, SETTINGS) for i, t in enumerate(texts)]
    light = {i + 1: (0, fp.length, fp.shingles, fp.sketch, fp.text_hash, fp.title, None, None)
             for i, fp in enumerate(fps)}
    mine = fps[0]
    few = dedup._screen(mine, light, set(), SETTINGS)
    monkeypatch.setattr(dedup, "_NUMPY_FROM", 0)
    many = dedup._screen(mine, light, set(), SETTINGS)
    assert few == many
    sketches = np.frombuffer(b"".join(fp.sketch for fp in fps), dtype=np.uint16)
    want = fingerprint.estimate_jaccard(np.frombuffer(mine.sketch, dtype=np.uint16),
                                        sketches.reshape(len(fps), -1)).tolist()
    assert [few[1][i + 1][0] for i in range(len(fps))] == want


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


def test_key_lists_are_those_of_the_fingerprint_methods() -> None:
    for i, text in enumerate(_texts()[:120]):
        for url in (None, f"https://example.org/{i}"):
            fp = fingerprint.compute(text[:20], text, url, SETTINGS)
            keys = sorted({key for _, key in fp.index_keys()})
            assert dedup._index_keys(fp) == keys
            assert dedup._keys_blob(keys) == np.array(keys, dtype=np.int64).tobytes()
            kinds_of: dict[int, str] = {}
            for kind, key in fp.probe_keys():
                kinds_of.setdefault(key, kind)
            wide = [k for k, kind in kinds_of.items() if kind not in dedup._SHORT_KINDS]
            narrow = [k for k, kind in kinds_of.items() if kind in dedup._SHORT_KINDS]
            assert dedup._probe_lookups(fp) == (kinds_of, wide, narrow)
            assert list(dedup._probe_lookups(fp)[0].items()) == list(kinds_of.items())


def test_a_merge_of_any_size_stores_every_posting_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges insert _MERGE_ROWS postings a statement, the last chunk padded with copies."""
    for rows in (1, 7, 256):
        monkeypatch.setattr(dedup, "_MERGE_ROWS", rows)
        monkeypatch.setattr(dedup, "_MERGE_SQL", (
            "INSERT OR IGNORE INTO dedup_postings (bucket, key, entry_id) VALUES "
            + ", ".join(["(?, ?, ?)"] * rows)))
        monkeypatch.setattr(dedup, "MERGE_ENTRIES", 3)
        conn = store.connect(tmp_path / f"merge{rows}.db")
        store_corpus(conn, corpus_posts())
        dedup._merge(conn, dedup._tail(conn))
        want = sorted(
            (dedup._bucket(ts), key, entry_id)
            for entry_id, ts, blob in conn.execute("SELECT entry_id, ts, keys FROM "
                                                   "dedup_fingerprints")
            for key in np.frombuffer(blob, dtype=np.int64).tolist())
        got = [tuple(r) for r in conn.execute("SELECT bucket, key, entry_id FROM dedup_postings "
                                              "ORDER BY 1, 2, 3")]
        assert got == want
        conn.close()


def _postings_candidates(conn: sqlite3.Connection, fp: fingerprint.Fingerprint, before: int,
                         low: int, high: int) -> dict[int, tuple[set[int], tuple]]:
    """The postings level's candidates as one row per posting joined to its fingerprint
    (the lookup before it was grouped by entry)."""
    keys = list(dedup._probe_lookups(fp)[0])
    marks = ",".join("?" * len(keys))
    out: dict[int, tuple[set[int], tuple]] = {}
    for row in conn.execute(
            f"SELECT p.key, p.entry_id, {dedup._LOOKUP_COLUMNS} FROM dedup_postings p JOIN "
            f"dedup_fingerprints f ON f.entry_id = p.entry_id WHERE p.key IN ({marks}) AND "
            "p.entry_id < ? AND f.ts BETWEEN ? AND ?", [*keys, before, low, high]):
        out.setdefault(row[1], (set(), tuple(row[2:])))[0].add(row[0])
    return out


def test_the_grouped_lookup_finds_what_one_row_per_posting_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "MERGE_ENTRIES", 1)  # everything in the postings
    conn = store.connect(tmp_path / "grouped.db")
    ids = [add(conn, f"标题{i}", ARTICLE.replace("深圳", f"广州{i}", 1), feed=f"f{i}")
           for i in range(6)]
    link(conn, ids)
    assert conn.execute("SELECT count(*) FROM dedup_postings").fetchone()[0] > 0
    last = add(conn, "标题", ARTICLE.replace("深圳", "广州", 1), feed="z")
    entry = dedup._load_entries(conn, [last])[0]
    fp = fingerprint.compute(entry.title, entry.text, entry.url, SETTINGS)
    tail = dedup._tail(conn)
    assert not tail.keys_of
    found = dedup._candidates(conn, tail, fp, before=last, exclude=last, ts=entry.ts,
                              settings=SETTINGS)
    window = max(SETTINGS.window_seconds, SETTINGS.title_window_seconds)
    want = _postings_candidates(conn, fp, last, entry.ts - window, entry.ts + window)
    assert set(found) == set(want) == set(ids)
    kinds_of = dedup._probe_lookups(fp)[0]
    for entry_id, cand in found.items():
        keys, row = want[entry_id]
        assert cand.kinds == {kinds_of[k] for k in keys}
        assert cand.bands == sum(kinds_of[k] == "near" for k in keys)
        assert (cand.ts, cand.length, cand.shingles, cand.sketch, cand.text_hash,
                cand.title) == row[:6]
    link(conn, [last])
    assert link_of(conn, last)[:2] == (ids[0], "near")
    conn.close()


def test_linking_without_the_text_gives_the_same_links(tmp_path: Path) -> None:
    """Given every fingerprint, link_entries does not read the entries' texts; the links and
    stored rows are those of a call that computes them from the text."""
    states = []
    for given in (False, True):
        conn = store.connect(tmp_path / f"given{given}.db")
        ids = [add(conn, f"标题{i}", text, feed=f"f{i}") for i, text in
               enumerate([ARTICLE, ARTICLE.replace("深圳", "广州", 1), OTHER, "短" * 30])]
        for entry_id in ids:
            entry = dedup._load_entries(conn, [entry_id])[0]
            fps = ({entry_id: fingerprint.compute(entry.title, entry.text, entry.url, SETTINGS)}
                   if given else None)
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
