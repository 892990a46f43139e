"""The ``scrape`` command line: the router.

``scrape`` runs the daemon, ``scrape --once`` one refresh of every enabled feed; the other
commands register themselves through each module's ``register(subparsers, common)``.
Exit codes: 0 success, 1 some feed failed (the others are stored), 2 config or usage error,
70 (sysexits' EX_SOFTWARE) an unexpected error, which is a bug: neither a feed's fault nor
the user's; 141 (128 + SIGPIPE) stdout's reader left early, as in ``scrape list | head``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import select
import sys
import traceback
from collections.abc import Sequence

from scraper.app import select_feeds
from scraper.cli.common import load_from_args, open_from_args, whole
from scraper.config import ConfigError
from scraper.version import __version__

log = logging.getLogger("scraper")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_BUG = 0, 1, 2, 70
#: stdout's reader left (``| head``): 128 + SIGPIPE, what a shell reports for a tool the
#: signal killed, so ``set -o pipefail`` sees the same as for ``seq``; not 1, which here
#: means that a feed failed.
EXIT_READER_GONE = 141


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts; a parent parser for the subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand that is not given --db must not reset the top level's value.
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="feeds file (default: ./feeds.yaml)")
    common.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS,
                        help="SQLite database file, or a postgresql://user@host:port/dbname "
                             "URL (default: 'database:' in the config, else scrape.db "
                             "beside it)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="-v: the info lines (one per refresh); -vv: also debug lines "
                             "and tracebacks; -vvv: also the libraries' (httpx, aiohttp, "
                             "APScheduler, psycopg). Default: warnings and errors only")
    common.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="log line format on stderr (json for log collectors)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="scrape", parents=[common],
        description="Fetch RSS/Atom feeds, clean and deduplicate their articles, store them "
                    "in SQLite. Without a command: run the daemon (or one pass with --once).")
    parser.add_argument("--version", action="version", version=f"scrape {__version__}")
    parser.add_argument("--once", action="store_true",
                        help="refresh every enabled feed once, print a summary, exit")
    parser.add_argument("--feed", action="append", metavar="NAME",
                        help="only this feed (repeatable); the daemon then claims only these")
    parser.add_argument("--json", action="store_true",
                        help="with --once: the summary as one JSON object on stdout")
    parser.add_argument("--workers", type=whole(0), default=None, metavar="N",
                        help="processes for parsing and normalizing (default: one per core; "
                             "0 works inline)")
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from scraper.cli import db, dups, entries, export, feeds, opml, status

    # entries: search, list and show
    for module in (status, dups, entries, export, feeds, opml, db):
        module.register(sub, common)
    return parser


#: Appended to a log line whose traceback is held back below -vv.
TRACEBACK_HINT = "run with -vv for the traceback"


def brief(exc: BaseException) -> str:
    """An exception on one line: its type, and its message when it has one."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _without_traceback(record: logging.LogRecord) -> tuple[logging.LogRecord, str]:
    """A copy of ``record`` with no exception attached, and the exception in one line.

    A copy: the record is shared with every other handler and may be formatted again."""
    exc = record.exc_info[1] if record.exc_info else None
    bare = copy.copy(record)
    bare.exc_info = bare.exc_text = bare.stack_info = None
    return bare, brief(exc) if exc is not None else ""


class TextFormatter(logging.Formatter):
    """``time LEVEL message``; an exception's traceback only when asked for (-vv)."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not (record.exc_info or record.stack_info):
            return super().format(record)
        bare, exc = _without_traceback(record)
        tail = f"{exc}; {TRACEBACK_HINT}" if exc else TRACEBACK_HINT
        return f"{super().format(bare)} ({tail})"


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the logger's name and the record's ``fields``; an
    exception is ``"exception"``: its traceback with -vv, else its one-line summary."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                   "level": record.levelname.lower(), "logger": record.name,
                   "message": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = (self.formatException(record.exc_info) if self.tracebacks
                                    else _without_traceback(record)[1])
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(verbose: int, fmt: str = "text") -> None:
    """Log to stderr by the count of -v.

    None: warnings and errors.  -v: this project's info lines (the daemon's one line per
    refresh, start, reload, stop).  -vv: its debug lines, and tracebacks.  -vvv: every
    library's lines too: httpx's and aiohttp's debug output, and APScheduler's info lines,
    which say "Running job" at every tick of every job, and psycopg's.  A library's
    warnings always show, but psycopg's (below).
    """
    handler = logging.StreamHandler(sys.stderr)
    tracebacks = verbose >= 2
    handler.setFormatter(JsonFormatter(tracebacks) if fmt == "json"
                         else TextFormatter(tracebacks))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    own = (logging.WARNING, logging.INFO, logging.DEBUG)[min(max(verbose, 0), 2)]
    logging.getLogger("scraper").setLevel(own)
    # psycopg's pool warns of each failed reconnection, over several lines, while a
    # PostgreSQL server is down; storage already says it in one line naming the database.
    logging.getLogger("psycopg").setLevel(logging.NOTSET if verbose >= 3 else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is None and not args.once and args.json:
        parser.error("--json goes with --once (the daemon's log lines: --log-format json)")
    verbose = getattr(args, "verbose", 0) or 0
    setup_logging(verbose, getattr(args, "log_format", "text"))
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, not at exit: a reader gone is then seen below
        return code
    except ConfigError as exc:
        print(f"scrape: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone():
            return _reader_gone()
        return _bug(exc, verbose)  # another pipe (a worker's, a socket's): not the reader
    except Exception as exc:
        return _bug(exc, verbose)


def _dispatch(args: argparse.Namespace) -> int:
    if args.func is not None:
        return int(args.func(args) or 0)
    if args.once:
        from scraper.cli.once import run_once_command

        return run_once_command(args)
    return run_daemon_command(args)


def _bug(exc: Exception, verbose: int) -> int:
    """A bug: one line, the traceback only when asked for."""
    if verbose >= 2:
        traceback.print_exc(file=sys.stderr)
        print(f"scrape: unexpected error: {brief(exc)}", file=sys.stderr)
    else:
        print(f"scrape: unexpected error: {brief(exc)}; {TRACEBACK_HINT}", file=sys.stderr)
    return EXIT_BUG


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has left (``scrape list | head``).

    Asked rather than assumed: a BrokenPipeError from a worker's pipe or a connection is a
    real error and must still be reported.  poll reports POLLERR/POLLHUP without asking.
    """
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(fd, 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _reader_gone() -> int:
    """Leave quietly, as Unix tools do when their reader goes (the recipe in the signal
    module's "Note on SIGPIPE").  Not ``SIG_DFL`` for SIGPIPE: it would kill the daemon at
    the first write to a closed socket.  stdout goes to /dev/null so that the interpreter's
    final flush of what is still buffered does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_READER_GONE


def run_daemon_command(args: argparse.Namespace) -> int:
    """``scrape`` without a command or ``--once``: the daemon, until SIGTERM."""
    config = load_from_args(args)
    select_feeds(config, args.feed)  # a wrong --feed is a usage error before the database
    with open_from_args(args, config) as app:
        return app.run_daemon(only=args.feed, workers=args.workers,
                              db_fixed=bool(getattr(args, "db", None)))
