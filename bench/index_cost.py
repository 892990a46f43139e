"""What the search index costs the writer of a cold run: the poll bench's entries stored with
the real schema and ``storage.write_entries``, with and without the FTS5 triggers.

Run by hand (not a test):

    .venv/bin/python bench/index_cost.py            # 1,000 feeds x 17 entries, as bench/poll.py
    .venv/bin/python bench/index_cost.py --feeds 200 --entries 30

The entries are bench/poll.py's (each article's CJK characters through a substitution of its
own), parsed and normalized by the workers' own code (``prepare.prepare_feed``) before the
clock starts; then each feed's entries are written in a transaction of their own, as a cold
``scrape --once`` writes them, and the same again in one transaction.  Dedup is left out: this
measures the entries table and its index alone.  ``--same-text`` gives every entry one
article's text: few distinct trigrams, FTS5's cheap case, to show what its cost follows.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from poll import build_feeds  # noqa: E402  (bench/poll.py, beside this file)

from scraper import storage  # noqa: E402
from scraper.config import DedupSettings, FeedConfig  # noqa: E402
from scraper.core.decide import EntryData  # noqa: E402
from scraper.prepare import prepare_feed  # noqa: E402
from scraper.storage.entries import write_entries  # noqa: E402

_TRIGGERS = ("entries_ai", "entries_au", "entries_ad")


def entries(n_feeds: int, n_entries: int, same_text: bool) -> list[list[EntryData]]:
    """Each feed's entries as the workers hand them to the writer."""
    out = []
    for i, body in enumerate(build_feeds(n_feeds, n_entries)):
        url = f"https://bench.example/{i}/"
        prepared = prepare_feed(body, {"content-type": "application/rss+xml"}, url,
                                FeedConfig(name=f"f{i}", url=url), {}, DedupSettings(), {})
        out.append([p.data() for p in prepared.entries])
    if same_text:
        text = out[0][0].content_text
        out = [[replace(e, content_text=text) for e in feed] for feed in out]
    return out


def write(path: Path, feeds: list[list[EntryData]], index: bool, per_feed: bool) -> float:
    """Seconds to store every entry: a transaction a feed, or one for all."""
    conn = storage.connect(path)  # migrated: the real schema
    if not index:
        for trigger in _TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger}")
    now = datetime.now(UTC)
    started = time.perf_counter()
    if per_feed:
        for n, feed in enumerate(feeds):
            with storage.transaction(conn):
                write_entries(conn, f"f{n}", feed, [], now)
    else:
        with storage.transaction(conn):
            for n, feed in enumerate(feeds):
                write_entries(conn, f"f{n}", feed, [], now)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=17)
    parser.add_argument("--same-text", action="store_true",
                        help="every entry one article's text (few distinct trigrams)")
    args = parser.parse_args()
    feeds = entries(args.feeds, args.entries, args.same_text)
    total = sum(map(len, feeds))
    chars = sum(len(e.content_text) + len(e.title or "") for f in feeds for e in f) / total
    print(f"{total} entries, {chars:.0f} characters of title and text each; SQLite "
          f"{sqlite3.sqlite_version}")
    base = None
    for index, per_feed in ((False, True), (True, True), (True, False)):
        with tempfile.TemporaryDirectory(prefix="index-cost-") as tmp:
            seconds = write(Path(tmp) / "bench.db", feeds, index, per_feed)
        base = base or seconds
        print(f"{'with' if index else 'without'} the search index, "
              f"{'a transaction a feed' if per_feed else 'one transaction'}: {seconds:.2f} s = "
              f"{seconds / total * 1000:.3f} ms an entry ({seconds / base:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
