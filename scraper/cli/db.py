"""``scrape db copy SRC DST``: an SQLite database into PostgreSQL, for users who move up."""

from __future__ import annotations

import argparse
import sys

from scraper import app


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = subparsers.add_parser(
        "db", parents=[common], help="move a database: scrape db copy SRC DST",
        description="Database maintenance. 'copy' moves an SQLite database into PostgreSQL.")
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    copy = sub.add_parser(
        "copy", parents=[common], help="copy an SQLite database into an empty PostgreSQL one",
        description="Copy every feed, entry (ids kept: links, stories and export records "
                    "stay valid), export record and the dedup index from the SQLite file SRC "
                    "into the PostgreSQL database DST, which must be empty (createdb it "
                    "first; its tables are created here). SRC is only read, and may be in "
                    "use; stop the daemons before switching them to DST. One transaction: a "
                    "copy that fails leaves DST empty. --db and --config are not used.")
    copy.add_argument("source", metavar="SRC", help="the SQLite database file")
    copy.add_argument("target", metavar="DST",
                      help="postgresql://user@host:port/dbname (a password in the URL, or "
                           "in ~/.pgpass, PGPASSWORD)")
    copy.set_defaults(func=_cmd_copy)


def _cmd_copy(args: argparse.Namespace) -> int:
    tty = sys.stderr.isatty()

    def progress(table: str, done: int, total: int) -> None:
        if tty:
            print(f"\r\033[Kcopying {table}: {done}/{total}", end="", file=sys.stderr,
                  flush=True)

    counts = app.copy_database(args.source, args.target, progress)
    if tty:
        print(file=sys.stderr)
    width = max(len(table) for table in counts)
    for table, n in counts.items():
        print(f"{table:<{width}}  {n}")
    print("copied: every table's count matches the source's")
    return 0
