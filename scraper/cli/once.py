"""``scrape --once``: refresh the selected feeds one time, print a summary, exit."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from scraper.app import select_feeds
from scraper.cli import report
from scraper.cli.common import load_from_args, open_from_args

EXIT_OK, EXIT_FAILED = 0, 1
#: A run ended by SIGTERM, as shells report a process it killed (128 + 15).
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(Exception):
    """SIGTERM arrived during the run (raised in place of its KeyboardInterrupt)."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``docker stop``, systemd, ``kill``) ends the run as Ctrl-C does: the
    refreshes in flight are cancelled and their claims released, and this run's ``workers``
    row is marked stopped.  Killed outright, the run left that row "running", and ``scrape
    status`` counted a live process holding its feeds until the heartbeat went stale (found
    in review).  asyncio.run turns SIGINT into the cancellation; SIGTERM is sent on to it."""
    terminated = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True
        signal.raise_signal(signal.SIGINT)

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        # Signals reach the main thread only (``main`` called from a thread); and with
        # SIGINT ignored (``scrape --once &`` from a script) asyncio.run takes no SIGINT,
        # so sent on, SIGTERM would do nothing at all: it keeps its default.
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_once_command(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    feeds = select_feeds(config, args.feed)
    try:
        with (_terminate_as_interrupt(), open_from_args(args, config) as app,
              report.Progress(len(feeds), enabled=sys.stderr.isatty()) as progress):
            results = app.refresh_once(feeds, workers=args.workers, on_done=progress.update)
    except _Terminated:
        print("scrape: stopped by SIGTERM; the feeds not refreshed are refreshed by the next "
              "run", file=sys.stderr)
        return EXIT_TERMINATED
    if getattr(args, "json", False):
        json.dump(report.summary_json(results), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        report.print_summary(results, sys.stdout)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
