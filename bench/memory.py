"""Where the daemon's memory goes, in minutes instead of bench/soak.py's hour.

    PYTHONMALLOC=malloc .venv/bin/python bench/memory.py   # 16,000 entries, as the daemon
    .venv/bin/python bench/memory.py                 # the same on pymalloc
    .venv/bin/python bench/memory.py --entries 40000 --every 4000

Links bench/soak.py's articles (``soak.article``: distinct, or with ``--shared-sentences``
ever more candidates each) in this process, a few per ``link_entries`` call, one
transaction per call.  It prints three figures as it goes:
- the process's RSS;
- what Python allocated (tracemalloc);
- what SQLite allocated (``sqlite3_memory_used()`` of the libsqlite3 the sqlite3 module
  loaded, through ctypes).
RSS growth that appears in neither of the other two figures is C-level memory outside SQLite,
or heap fragmentation.  Like the daemon's heartbeat, it calls ``daemon.release_memory()``
(glibc's ``malloc_trim``) every ``--trim-every`` entries: 450 is the 30-s heartbeat at
bench/soak.py's 15 entries a second; ``--trim-every 0`` shows the heap without it.  The
daemon runs on glibc's malloc (``PYTHONMALLOC=malloc``, see ``cli.use_malloc_for_the_daemon``):
run this bench the same way to see its memory.

It found the statement-cache leak of an IN list per candidate count:
SQLite's memory went 16.7 -> 32 MiB over 16,000 entries, against 16.7 flat with the join
(the page cache, store.CACHE_KIB, is the 16 MiB).

Not a test: figures for a human to read.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import corpus_posts, seed_posts  # noqa: E402
from soak import article, sentence_pool  # noqa: E402

from scraper import daemon, dedup  # noqa: E402
from scraper import storage as store  # noqa: E402
from scraper.core import fingerprint  # noqa: E402

STAMP = "2024-06-01T00:00:00Z"


def sqlite_memory() -> ctypes._CFuncPtr | None:
    """``sqlite3_memory_used`` of the shared libsqlite3, or None when it cannot be found
    (a Python built with SQLite linked in statically)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        func = ctypes.CDLL(name).sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_int64
    return func


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=16_000)
    parser.add_argument("--per-call", type=int, default=2, help="entries per link call")
    parser.add_argument("--every", type=int, default=2_000, help="entries between lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shared-sentences", action="store_true",
                        help="bench/soak.py's option: articles whose candidates keep growing")
    parser.add_argument("--trim-every", type=int, default=450, metavar="N",
                        help="entries between daemon.release_memory() calls (0: never)")
    args = parser.parse_args(argv)
    sentences = sentence_pool(corpus_posts() + seed_posts())
    if not sentences:
        print("no corpus: ../shared/corpus is needed beside the repository", file=sys.stderr)
        return 2
    settings = dedup.DedupSettings()
    used = sqlite_memory()
    tracemalloc.start()
    started = time.perf_counter()
    print(f"Python allocator: {os.environ.get('PYTHONMALLOC') or 'pymalloc'}; "
          f"trim every {args.trim_every or 'never'} entries")
    print(f"{'entries':>8} {'seconds':>8} {'RSS MiB':>8} {'Python MiB':>10} {'SQLite MiB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        conn = store.connect(Path(tmp) / "memory.db")
        done = 0
        while done < args.entries:
            with store.transaction(conn):
                fps = {}
                for _ in range(min(args.per_call, args.entries - done)):
                    done += 1
                    text = "\n".join(article(sentences, f"{args.seed}-{done}",
                                              args.shared_sentences))
                    url = f"https://example.org/{done}"
                    cur = conn.execute(
                        "INSERT INTO entries (feed, entry_key, url, title, content_text, "
                        "published, fetched_at, updated_at) VALUES ('f', ?, ?, ?, ?, ?, ?, ?)",
                        (url, url, text[:20], text, STAMP, STAMP, STAMP))
                    entry_id = int(cur.lastrowid or 0)
                    fps[entry_id] = fingerprint.compute(text[:20], text, url, settings)
                dedup.link_entries(conn, list(fps), settings, fps)
            if args.trim_every and done % args.trim_every < args.per_call:
                daemon.release_memory()
            if done % args.every < args.per_call or done == args.entries:
                sqlite_mib = f"{used() / 2**20:10.1f}" if used else f"{'-':>10}"
                print(f"{done:8d} {time.perf_counter() - started:8.0f} {rss_mib():8.1f} "
                      f"{tracemalloc.get_traced_memory()[0] / 2**20:10.1f} {sqlite_mib}",
                      flush=True)
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
