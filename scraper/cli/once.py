"""``scrape --once``: refresh the selected feeds one time, print a summary, exit."""

from __future__ import annotations

import argparse
import sys

from scraper.app import select_feeds
from scraper.cli import report
from scraper.cli.common import load_from_args, open_from_args

EXIT_OK, EXIT_FAILED = 0, 1


def run_once_command(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    feeds = select_feeds(config, args.feed)
    progress = report.Progress(len(feeds), enabled=sys.stderr.isatty())
    try:
        with open_from_args(args, config) as app:
            results = app.refresh_once(feeds, workers=args.workers, on_done=progress.update)
    finally:
        progress.close()
    report.print_summary(results, sys.stdout)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
