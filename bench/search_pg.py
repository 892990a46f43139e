"""Search on PostgreSQL: which plan ``scrape search`` gets from pg_trgm's GIN indexes, and
what it costs, next to bench/search.py (SQLite's FTS5 table).

Run by hand (not a test; needs PostgreSQL's binaries, as the tests do, or a server's URL):

    .venv/bin/python bench/search_pg.py                    # 50,000 entries, own server
    .venv/bin/python bench/search_pg.py --entries 5000
    .venv/bin/python bench/search_pg.py --db postgresql://user@host/empty_db

The entries are bench/search.py's (../shared/corpus sentences, 16 an entry), one in 1,000
with a phrase of its own (``RARE``).  Each query is the one ``search_entries`` sends (read
off the connection, with the statements around it), run under EXPLAIN ANALYZE twice: after
the bulk insert, when the rows are still in the GIN indexes' pending lists, and after VACUUM
ANALYZE (what autovacuum does soon after); the plan's scan nodes are printed with the time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import pgserver  # noqa: E402
import search as sqlite_bench  # noqa: E402  (bench/search.py: its sentences and rows)

from scraper import storage  # noqa: E402
from scraper.storage import pg  # noqa: E402
from scraper.storage import search as searching  # noqa: E402

#: Planted in one entry of 1,000: a term of 4 characters found in few rows, and its first
#: two characters (too short for a trigram).
RARE = "量子纠缠"


def plant(conn: storage.Connection, n: int) -> None:
    conn.execute("UPDATE entries SET content_text = substr(content_text, 1, 40) || ? || "
                 "substr(content_text, 41) WHERE id % 1000 = 7", (RARE,))


def explain(conn: pg.PgConnection, query: str) -> tuple[float, int, list[str]]:
    """(milliseconds of the search, matches, the scan nodes of its plan)."""
    sent: list[tuple[str, Any]] = []
    real = conn.execute

    def spy(sql: str, params: Any = (), **kw: Any) -> Any:
        sent.append((sql, params))
        return real(sql, params, **kw)

    conn.execute = spy  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        hits = searching.search_entries(conn, query, limit=20)
        took = (time.perf_counter() - started) * 1000
    finally:
        conn.execute = real  # type: ignore[method-assign]
    plan: list[str] = []
    for sql, params in sent:  # again, the SELECT explained (BEGIN, SET LOCAL... as sent)
        if sql.startswith("SELECT"):
            plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql,
                                                   params)]
        else:
            conn.execute(sql, params)
    nodes = [line.strip().lstrip("-> ") for line in plan
             if "Scan" in line or line.startswith("Execution")]
    return took, len(hits), nodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--db", help="an empty database's URL (default: a server of our own)")
    parser.add_argument("--in-order", action="store_true",
                        help="published times rising with the id, as a feed stores them "
                             "(bench/search.py's cycle through the months otherwise)")
    args = parser.parse_args()
    server = None
    url = args.db
    if url is None:
        server = pgserver.PgServer.start()
        if server is None:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql) and no --db")
        url = server.create_database()
    try:
        conn = storage.connect(url)
        assert isinstance(conn, pg.PgConnection)
        with storage.transaction(conn):
            sqlite_bench.fill(conn, args.entries, sqlite_bench.sentences(), random.Random(7))
            plant(conn, args.entries)
            if args.in_order:
                conn.execute("UPDATE entries SET published = to_char(timestamp '2020-01-01' "
                             "+ id * interval '1 minute', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        size = conn.execute(
            "SELECT pg_total_relation_size('entries'), pg_relation_size('entries_text_trgm'), "
            "avg(length(content_text)) FROM entries").fetchone()
        print(f"{args.entries} entries, {float(size[2]):.0f} characters of text each; "
              f"entries {size[0] / 2**20:.0f} MiB with its indexes, entries_text_trgm "
              f"{size[1] / 2**20:.0f} MiB")
        queries = ((f"{len(RARE)} characters, 1 entry in 1,000", RARE),
                   ("2 characters, 1 entry in 1,000 (no trigram)", RARE[:2]),
                   ("2 characters, in most entries (no trigram)", "手机"))
        for when in ("after the insert", "after VACUUM ANALYZE"):
            if when.startswith("after VACUUM"):
                conn.execute("VACUUM ANALYZE entries")
            print(f"-- {when}")
            for label, query in queries:
                took, hits, nodes = explain(conn, query)
                print(f"{label} {query!r}: {took:.1f} ms, {hits} shown")
                for node in nodes:
                    print(f"    {node}")
        conn.close()
    finally:
        pg.close_pools()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
