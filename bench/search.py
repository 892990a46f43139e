"""Search index benchmark: what the full-text index (schema migration 9) costs.

Run by hand (not a test):

    .venv/bin/python bench/search.py                  # 100,000 entries
    .venv/bin/python bench/search.py --entries 20000

Builds a database at the schema version before the index, with entries whose text is drawn
from ../shared/corpus sentences (16 a entry, about the length of a news article; synthetic
Chinese text where the corpus is absent), stored as a refresh stores them (text, clean and
raw HTML), then measures: the upgrade that builds the index (time, file growth), the cost of
one entry insert with and without the index's trigger, the newest 50 entries (``scrape
list``), and a search through the index against the scan short queries fall back to.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import corpus  # noqa: E402

from scraper import storage  # noqa: E402
from scraper.storage import schema, search  # noqa: E402


def sentences() -> list[str]:
    if corpus.shared_present():
        from selectolax.lexbor import LexborHTMLParser

        found = []
        for post in corpus.corpus_posts():
            text = LexborHTMLParser(post.body).text(separator="\n")
            found += [s.strip() + "。" for s in text.replace("\n", "。").split("。")
                      if len(s.strip()) > 12]
        return found
    rng = random.Random(3)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    return ["".join(rng.choices(chars, k=rng.randint(15, 60))) + "。" for _ in range(2000)]


def fill(conn: storage.Connection, n: int, pool: list[str], rng: random.Random,
         start: int = 0) -> None:
    stamp = "2026-01-01T00:00:00Z"
    rows = []
    for i in range(start, start + n):
        text = "".join(rng.sample(pool, 16))
        published = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
        rows.append((f"feed{i % 200}", f"k{i}", f"标题 {i} " + text[:20], text,
                     f"<p>{text}</p>", f"<div><p>{text}</p></div>", published, stamp, stamp))
    conn.executemany("INSERT INTO entries (feed, entry_key, title, content_text, content_html, "
                     "raw_html, published, fetched_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (its path)")
    args = parser.parse_args()
    pool = sentences()
    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp(prefix="bench-search-"))
    db = folder / "bench.db"
    index = schema.MIGRATIONS.index(next(m for m in schema.MIGRATIONS if "entries_fts" in m.sqlite))
    saved = schema.MIGRATIONS[index:]
    del schema.MIGRATIONS[index:]  # the schema before the index
    try:
        conn = storage.connect(db)
        with storage.transaction(conn):
            fill(conn, args.entries, pool, rng)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        before = db.stat().st_size
        conn.close()
    finally:
        schema.MIGRATIONS.extend(saved)
    start = time.perf_counter()
    conn = storage.connect(db)
    upgrade = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = db.stat().st_size
    text = conn.execute("SELECT sum(length(content_text) + length(title)) FROM entries"
                        ).fetchone()[0]
    print(f"{args.entries} entries, {text / args.entries:.0f} characters of title and text "
          f"each; database {before / 2**20:.1f} MiB before the index")
    print(f"upgrade (index built): {upgrade:.1f} s; database {after / 2**20:.1f} MiB "
          f"(+{(after - before) / 2**20:.1f} MiB, +{100 * (after - before) / before:.0f} %)")

    batch = 2000
    for label, drop in (("with the index", False), ("without it", True)):
        if drop:
            conn.execute("DROP TRIGGER entries_ai")
        timings = []
        for round_ in range(3):
            started = time.perf_counter()
            with storage.transaction(conn):
                fill(conn, batch, pool, rng, start=10**7 + round_ * batch + drop * 10**6)
            timings.append((time.perf_counter() - started) / batch)
        print(f"insert {label}: {min(timings) * 1e6:.0f} µs per entry (best of 3 x {batch})")

    started = time.perf_counter()
    newest = search.list_entries(conn, limit=50)
    print(f"list, newest 50: {(time.perf_counter() - started) * 1000:.0f} ms, "
          f"{len(newest)} entries")
    probe = pool[len(pool) // 2]
    pairs = Counter(s[i:i + 2] for s in pool for i in range(len(s) - 1)
                    if s[i:i + 2].isalnum())
    ranked = [pair for pair, _ in pairs.most_common()]
    for label, query in (("search, 6 characters (index)", probe[2:8]),
                         ("search, 2 characters, the commonest pair (scan)", ranked[0]),
                         ("search, 2 characters, a rare pair (scan)", ranked[-1]),
                         ("search, 2 characters found nowhere (scan)", "龘龘")):
        started = time.perf_counter()
        hits = search.search_entries(conn, query, limit=20)
        print(f"{label}: {(time.perf_counter() - started) * 1000:.0f} ms, {len(hits)} hits")
    conn.close()
    if args.keep:
        print(f"kept {db}")
        return 0
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            os.remove(f"{db}{suffix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
