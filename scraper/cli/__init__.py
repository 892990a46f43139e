"""The ``scrape`` command line: the router.

``scrape`` runs the daemon, ``scrape --once`` one refresh of every enabled feed; the other
commands register themselves through each module's ``register(subparsers, common)``.
Exit codes: 0 success, 1 some feed failed (the others are stored), 2 config or usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from scraper.app import select_feeds
from scraper.cli.common import load_from_args, open_from_args
from scraper.config import ConfigError
from scraper.version import __version__

log = logging.getLogger("scraper")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts; a parent parser for the subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand that is not given --db must not reset the top level's value.
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="feeds file (default: ./feeds.yaml)")
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help="SQLite database (default: 'database:' in the config, "
                             "else scrape.db beside it)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv for library debug output)")
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
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes for parsing and normalizing (default: one per core; "
                             "0 works inline)")
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from scraper.cli import dups, export, status

    for module in (status, dups, export):
        module.register(sub, common)
    return parser


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                   "level": record.levelname.lower(), "logger": record.name,
                   "message": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(verbose: int, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("scraper").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", 0) or 0, getattr(args, "log_format", "text"))
    try:
        if args.func is not None:
            return int(args.func(args) or 0)
        if args.once:
            from scraper.cli.once import run_once_command

            return run_once_command(args)
        return run_daemon_command(args)
    except ConfigError as exc:
        print(f"scrape: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def run_daemon_command(args: argparse.Namespace) -> int:
    """``scrape`` without a command or ``--once``: the daemon, until SIGTERM."""
    config = load_from_args(args)
    select_feeds(config, args.feed)  # a wrong --feed is a usage error before the database
    with open_from_args(args, config) as app:
        return app.run_daemon(only=args.feed, workers=args.workers,
                              db_fixed=bool(getattr(args, "db", None)))
