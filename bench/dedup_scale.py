"""Per-article dedup cost (fingerprint + index lookup + insert) with many entries stored.

    .venv/bin/python bench/dedup_scale.py                          # 100k stored entries
    .venv/bin/python bench/dedup_scale.py --sizes 100000 1000000   # the 1M run: minutes
    .venv/bin/python bench/dedup_scale.py --per-call 30            # entries per link call

For each size the bench bulk-loads that many synthetic entries straight into the tables
(``entries``, ``dedup_fingerprints``, ``dedup_index`` with as many random keys per entry as
a real article gets: random keys are what unrelated articles' band keys look like; all of
them inside the dedup window, published over its 14 days and fetched just now), then times
``--sample`` real articles built from the corpus (half of them reprints of earlier sample
articles, so the confirmation path runs too) through the production calls, 50 per
transaction like a feed refresh:

- fingerprint: ``fingerprint.compute`` (runs in the worker processes in production);
- link: ``dedup.link_entries`` with that fingerprint (index lookup, confirmation, the
  fingerprint row and key inserts, the window's pruning), one entry per call by default (the
  worst case: a refresh bringing one new entry pays the call's fixed costs alone; the
  pipeline passes all of a refresh's entries in one call);
- commit: the transaction's COMMIT (with the WAL checkpoints it runs), shared out over its
  articles, and a last checkpoint after the samples (what the commits left in the WAL).
  Index writes cost their time here, not in the insert: each key lands on a random page of
  the key table's B-tree, and the commits write those pages back.

The baseline is the same measurement on an empty database in the same run; the ratio shows
what the stored entries cost.  Memory: the RSS growth while the samples are linked (SQLite's
page cache, bounded by store.CACHE_KIB; dedup keeps nothing between calls) and the whole
process's peak (the bulk load's).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from corpus import cipher  # noqa: E402
from dedup_quality import base_texts, edit  # noqa: E402

from scraper import dedup  # noqa: E402
from scraper import storage as store  # noqa: E402
from scraper.core import fingerprint  # noqa: E402
from scraper.storage import dedup as dedup_index  # noqa: E402

NOW = "2024-06-01T00:00:00Z"
NOW_TS = 1717200000
#: The default dedup window (``DedupSettings.window_days``): the fillers' dates spread over it.
WINDOW_SECONDS = 14 * 86400
CACHE_MB: int | None = None
#: Entries per ``link_entries`` call: 1 is a daemon refresh that brings one new entry (the
#: call's fixed costs, about 50 µs, all on that entry); a cold refresh of a 30-entry feed
#: shares them out (``--per-call 30``).
PER_CALL = 1
#: ``--aging``: each sample ages a stored entry out of the window (see :func:`arrival`).
AGING = False


def markov_model(texts: list[str]) -> dict[str, list[str]]:
    """Order-2 character model of the corpus: novel text with the corpus' character statistics,
    so that new sample articles overlap each other as much as unrelated news does."""
    model: dict[str, list[str]] = {}
    for text in texts:
        flat = text.replace("\n", "")
        for i in range(len(flat) - 2):
            model.setdefault(flat[i : i + 2], []).append(flat[i + 2])
    return model


def markov_text(model: dict[str, list[str]], chars: int, rng: random.Random) -> str:
    state = rng.choice(list(model))
    out = [state]
    size = 2
    while size < chars:
        nxt = model.get(state)
        if not nxt:
            state = rng.choice(list(model))
            out.append("\n" + state)
            size += 2
            continue
        c = rng.choice(nxt)
        out.append(c)
        state = state[1] + c
        size += 1
        if c == "。" and rng.random() < 0.3:
            out.append("\n")
    return "".join(out)


def sample_articles(count: int, rng: random.Random, chars: int = 1500) -> list[tuple[str, str]]:
    """(title, text): new articles (about ``chars`` characters) and, every other one, a reprint
    of an earlier one with 1% edits."""
    model = markov_model(base_texts())
    out: list[tuple[str, str]] = []
    for n in range(count):
        if out and n % 2:
            title, text = rng.choice(out)
            out.append((title + " 转载", edit(0.01)(text, rng, [text])))
        else:
            text = cipher(markov_text(model, chars, rng), rng)
            out.append((text[:20], text))
    return out


def arrival(n: int, count: int) -> str:
    """When filler ``n`` of ``count`` was fetched: with ``--aging``, spread over the window
    before the samples in id order, so that each sample ages one filler out (the steady
    state: as many entries leave the window as enter it); else all at NOW."""
    if not AGING or not count:
        return NOW
    return _iso(NOW_TS - WINDOW_SECONDS + n * WINDOW_SECONDS // count)


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def bulk_load(conn, count: int, keys_per_entry: int, rng: np.random.Generator) -> None:
    """``count`` filler entries with fingerprints and random keys, published over the window
    before the samples and fetched (see :func:`arrival`) inside it."""
    chunk = 10_000  # (50,000 made the load's Python lists the bench's peak RSS: 388 MB)
    start_id = 1
    with store.transaction(conn):
        for offset in range(0, count, chunk):
            n = min(chunk, count - offset)
            ids = np.arange(start_id + offset, start_id + offset + n)
            ts = NOW_TS - rng.integers(0, WINDOW_SECONDS, n)
            keys = rng.integers(-(2**63), 2**63 - 1, (n, keys_per_entry), dtype=np.int64)
            # Random sketches, as unrelated articles' are: the rows are as large as real ones.
            sketches = rng.integers(0, 2**16, (n, fingerprint.SKETCH_BINS), dtype=np.uint16)
            conn.executemany(
                "INSERT INTO entries (id, feed, entry_key, title, published, fetched_at, "
                "updated_at) VALUES (?, 'filler', ?, ?, ?, ?, ?)",
                [(int(i), f"k{i}", f"filler {i}", NOW, arrival(i, count), NOW)
                 for i in ids.tolist()])
            conn.executemany(
                "INSERT INTO dedup_fingerprints (entry_id, ts, arrived, canonical_url, "
                "text_hash, title, length, keys, sketch, shingles) "
                "VALUES (?, ?, ?, ?, ?, ?, 1500, ?, ?, 1490)",
                [(i, t, arrival(i, count), f"https://example.org/{i}", f"{i:064x}",
                  f"filler{i}", k.tobytes(), sk.tobytes())
                 for i, t, k, sk in zip(ids.tolist(), ts.tolist(), np.sort(keys, axis=1),
                                        sketches, strict=True)])
            flat = np.column_stack([keys.ravel(), np.repeat(ids, keys_per_entry)])
            flat = flat[np.lexsort((flat[:, 1], flat[:, 0]))]  # (fewer pages written per chunk)
            conn.executemany("INSERT OR IGNORE INTO dedup_index (key, entry_id) VALUES (?, ?)",
                             flat.tolist())


def measure(size: int, articles: list[tuple[str, str]], settings: dedup.DedupSettings,
            directory: Path, seed: int) -> dict[str, float]:
    path = directory / f"scale-{size}.db"
    conn = store.connect(path)
    if CACHE_MB:
        conn.execute(f"PRAGMA cache_size = {-CACHE_MB * 1024}")
    probe = fingerprint.compute(*articles[0], "https://example.org/x", settings)
    keys_per_entry = len(probe.index_keys())
    t0 = time.perf_counter()
    if size:
        bulk_load(conn, size, keys_per_entry, np.random.default_rng(seed))
        # The load's gigabyte is written back now, not by the first timed commits' fsync.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.sync()
    load_s = time.perf_counter() - t0
    rss_before = _rss()
    fp_times: list[float] = []
    link_times: list[float] = []
    commit_times: list[float] = []
    links = 0
    batch = 50
    for start in range(0, len(articles), batch):
        committing = 0.0
        with store.transaction(conn):
            ids = []
            for n, (title, text) in enumerate(articles[start : start + batch], start=start):
                cur = conn.execute(
                    "INSERT INTO entries (feed, entry_key, url, title, content_text, published, "
                    "fetched_at, updated_at) VALUES ('sample', ?, ?, ?, ?, ?, ?, ?)",
                    (f"s{n}", f"https://example.org/s/{n}", title, text, NOW,
                     arrival(size + n + 1, size), NOW))
                ids.append(int(cur.lastrowid))
            items = list(zip(ids, articles[start : start + batch], strict=True))
            for first in range(0, len(items), PER_CALL):
                call = items[first : first + PER_CALL]
                fps = {}
                for entry_id, (title, text) in call:
                    t1 = time.perf_counter()
                    fps[entry_id] = fingerprint.compute(
                        title, text, f"https://example.org/e/{entry_id}", settings)
                    fp_times.append(time.perf_counter() - t1)
                t2 = time.perf_counter()
                links += len(dedup.link_entries(conn, list(fps), settings, fps))
                link_times += [(time.perf_counter() - t2) / len(call)] * len(call)
            committing = time.perf_counter()
        commit_times += [(time.perf_counter() - committing) / len(ids)] * len(ids)
    # What the commits left in the WAL is written back to the database by the next
    # checkpoint: its cost is theirs (shared out like a commit's), whatever checkpoint
    # interval left it there.
    t3 = time.perf_counter()
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    commit_times = [c + (time.perf_counter() - t3) / len(commit_times) for c in commit_times]
    rss_growth = _rss() - rss_before
    aged = max(dedup_index.pruned_below(conn) - 1, 0)  # entries pruned out of the window
    conn.close()
    db_mb = sum(p.stat().st_size for p in directory.glob(f"scale-{size}.db*")) / 2**20
    for p in directory.glob(f"scale-{size}.db*"):
        p.unlink()
    total = [a + b + c for a, b, c in zip(fp_times, link_times, commit_times, strict=True)]
    return {
        "size": size, "load_s": load_s, "db_mb": db_mb, "links": links,
        "fp_ms": statistics.mean(fp_times) * 1e3, "link_ms": statistics.mean(link_times) * 1e3,
        "commit_ms": statistics.mean(commit_times) * 1e3,
        "total_ms": statistics.mean(total) * 1e3,
        "p95_ms": sorted(total)[int(len(total) * 0.95)] * 1e3,
        "keys": keys_per_entry, "rss_growth_mb": rss_growth / 2**20, "aged": aged,
    }


def _rss() -> int:
    """Resident set size now (bytes), from /proc: ru_maxrss is only the peak."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000],
                        help="stored entries to measure at (default 100000; add 1000000 by hand)")
    parser.add_argument("--sample", type=int, default=12_288,
                        help="articles timed per size (default 12288, as the bench always "
                             "timed)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    parser.add_argument("--bands", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--per-call", type=int, default=1, metavar="N",
                        help="entries per link_entries call (default 1: a refresh bringing "
                             "one new entry; the pipeline passes all of a refresh's entries)")
    parser.add_argument("--aging", action="store_true",
                        help="the steady state: each sample article ages one stored entry out "
                             "of the window, whose keys the link call prunes")
    parser.add_argument("--cache-mb", type=int, default=None,
                        help="PRAGMA cache_size for the connection (default: SQLite's 2 MB)")
    args = parser.parse_args(argv)
    settings = dedup.DedupSettings()
    if args.bands:
        settings = replace(settings, bands=args.bands)
    if args.rows:
        settings = replace(settings, rows=args.rows)
    global CACHE_MB, PER_CALL, AGING
    CACHE_MB = args.cache_mb
    AGING = args.aging
    PER_CALL = max(1, min(args.per_call, 50))
    articles = sample_articles(args.sample, random.Random(args.seed))
    chars = statistics.mean(len(t) for _, t in articles)
    print(f"{args.sample} sample articles (mean {chars:.0f} characters, half reprints); "
          f"shingle {settings.shingle}, {settings.bands} bands x {settings.rows} rows; "
          f"{PER_CALL} per link_entries call"
          f"{'; each ages one stored entry out' if AGING else ''}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        base = measure(0, articles, settings, directory, args.seed)
        print(f"{'stored':>9} {'keys':>5} {'load s':>7} {'db MB':>7} {'fp ms':>6} {'link ms':>7} "
              f"{'commit':>6} {'total ms':>8} {'p95 ms':>7} {'x base':>6} {'links':>6} "
              f"{'RSS +MB':>7} {'aged':>6}")
        for size in [0, *args.sizes]:
            r = base if size == 0 else measure(size, articles, settings, directory, args.seed)
            print(f"{r['size']:>9} {r['keys']:>5} {r['load_s']:7.1f} {r['db_mb']:7.0f} "
                  f"{r['fp_ms']:6.3f} {r['link_ms']:7.3f} {r['commit_ms']:6.3f} "
                  f"{r['total_ms']:8.3f} "
                  f"{r['p95_ms']:7.3f} {r['total_ms'] / base['total_ms']:6.2f} {r['links']:>6} "
                  f"{r['rss_growth_mb']:7.1f} {r['aged']:>6}",
                  flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB; RSS +MB = growth while the samples are linked (SQLite's "
          f"page cache, not the stored entries); aged = stored entries pruned out of the "
          f"window (--aging); target: total <= 1.5 ms per article at 1M stored (issue 15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
