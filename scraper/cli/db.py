"""``scrape db copy SRC DST``: an SQLite database into PostgreSQL, for users who move up."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import TYPE_CHECKING

from scraper import app
from scraper.config import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm


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
    given = [f"--{name}" for name in ("db", "config") if getattr(args, name, None)]
    if given:  # silently ignored, they would seem to choose a database they do not
        raise ConfigError(f"db copy: {' and '.join(given)} not used here: SRC and DST name "
                          "the two databases")
    with _Bars(enabled=sys.stderr.isatty()) as progress:
        counts = app.copy_database(args.source, args.target, progress)
    width = max(len(table) for table in counts)
    for table, n in counts.items():
        print(f"{table:<{width}}  {n}")
    print("copied: every table's count matches the source's")
    return 0


class _Bars:
    """A progress bar per table on a terminal (rows, rate, time left: a million entries
    take most of an hour), nothing elsewhere; the refresh's bar (cli/report.py) in style."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: tqdm | None = None
        self._table = ""

    def __call__(self, table: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if table != self._table or self._bar is None:
            from tqdm import tqdm

            self.close()
            columns, rows = shutil.get_terminal_size()  # (a 0 x 0 pty: the fallback)
            self._bar = tqdm(total=total, desc=f"copying {table}", unit="row",
                             unit_scale=total >= 10_000, file=sys.stderr, leave=False,
                             ncols=columns, nrows=rows)
            self._table = table
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
