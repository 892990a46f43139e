"""The ``scrape`` command line.

``scrape`` runs the daemon, ``scrape --once`` one refresh of every enabled feed; the other
commands (status, dups, dedup, export) are registered by the modules that implement them,
each through a ``register(subparsers, common)`` function, so this file stays the router.

Exit codes: 0 success, 1 some feed failed (the others are stored), 2 config or usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

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
                        help="only this feed (repeatable); with --once")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes for parsing and normalizing (default: one per core; "
                             "0 works inline)")
    parser.set_defaults(func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(sub, common)
    return parser


def _registrars() -> list:
    """Each feature module adds its commands; a module not yet present is skipped."""
    found = []
    for module_name in ("scraper.cli.status", "scraper.cli.dups", "scraper.cli.export"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if hasattr(module, "register"):
            found.append(module.register)
    return found


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


def libc_function(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """The C library's function ``name`` returning an int, or None where it has none (the
    glibc extensions on musl or macOS)."""
    try:
        func = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    func.argtypes = argtypes
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS): the
    daemon's heartbeat calls it, and its absence means there is no glibc to switch to."""
    return libc_function("malloc_trim", [ctypes.c_size_t])


#: Set in the environment of the daemon's re-executed process, which removes it again.
REEXEC_MARK = "SCRAPE_DAEMON_MALLOC"
#: glibc's default (and starting) mmap threshold: blocks this large or larger get their own
#: mapping.  The daemon fixes it here (see :data:`REEXEC_ENV`).
MMAP_THRESHOLD = 128 * 1024
#: The environment the daemon re-executes itself with (see :func:`use_malloc_for_the_daemon`).
#: The threshold is glibc's default, 128 KiB, read once at start; setting it turns off glibc's
#: raising of it (``daemon.fix_mmap_threshold`` says why that matters, with the figures).
REEXEC_ENV = {"PYTHONMALLOC": "malloc", "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
_REEXECUTED = False


def allocator() -> str:
    """The Python allocator this process runs on, for the daemon's start line."""
    return "malloc" if _REEXECUTED else os.environ.get("PYTHONMALLOC") or "pymalloc"


def use_malloc_for_the_daemon() -> None:
    """Re-run this command line with ``PYTHONMALLOC=malloc``, once, where glibc is the C
    library and the user has not chosen an allocator.

    Why: Python's own allocator (pymalloc) keeps every 1 MiB arena it has touched until the
    last object in it dies, and a daemon that interleaves long-lived objects (dedup's memory
    level, caches, timers) with each refresh's garbage keeps pages of them resident.  In
    12-minute bench/soak.py runs with the heartbeat's trim (``daemon.release_memory``), the
    pymalloc daemon went from 95.7 to 100.7 MiB while its malloc heap, SQLite's memory and
    its live Python blocks stayed flat; on malloc it stayed within 93.4-95.2 MiB, since the
    trim returns any free page.  Over an hour: 10-minute medians 94.5 -> 103.0 MiB (+2.4 an
    hour in the second half) against 101.1 -> 109.6 (+4.0) on pymalloc without the trim, with
    articles whose candidates kept growing.  The allocator is chosen at interpreter start,
    hence the exec.  The variables are taken out of the environment again after it, so the
    worker processes (where the CPU work is, and memory was flat) keep pymalloc.

    The same exec fixes glibc's mmap threshold from the first allocation on
    (``MALLOC_MMAP_THRESHOLD_``, see :data:`REEXEC_ENV`): ``daemon.fix_mmap_threshold`` runs
    after the imports, by when the heap already holds their blocks.
    """
    global _REEXECUTED
    added = os.environ.pop(REEXEC_MARK, None)
    if added is not None:
        # Only what the exec added: a threshold the user set stays theirs, workers included.
        for name in filter(None, added.split(",")):
            os.environ.pop(name, None)
        _REEXECUTED = True
        return
    if os.environ.get("PYTHONMALLOC") or sys.platform != "linux" or find_malloc_trim() is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    adding = {k: v for k, v in REEXEC_ENV.items() if k not in os.environ}
    env = dict(os.environ, **adding, **{REEXEC_MARK: ",".join(adding)})
    os.execve(sys.executable, sys.orig_argv, env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and args.func is None and not args.once:
        use_malloc_for_the_daemon()
    setup_logging(getattr(args, "verbose", 0) or 0, getattr(args, "log_format", "text"))
    try:
        if args.func is not None:
            return int(args.func(args) or 0)
        if args.once:
            return run_once_command(args)
        from scraper import daemon

        return daemon.run(args)
    except ConfigError as exc:
        print(f"scrape: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def run_once_command(args: argparse.Namespace) -> int:
    from scraper import refresh as pipeline
    from scraper.cli import report

    config = load_from_args(args)
    feeds = select_feeds(config, args.feed)
    app = open_from_args(args, config)
    progress = report.Progress(len(feeds), enabled=sys.stderr.isatty())
    try:
        results = asyncio.run(pipeline.run_once(config, app.conn, feeds, workers=args.workers,
                                                on_done=progress.update))
    finally:
        progress.close()
        app.close()
    report.print_summary(results, sys.stdout)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
