"""``scrape --once``: refresh the selected feeds one time, print a summary, exit."""

from __future__ import annotations

import argparse
import json
import sys

from scraper.app import select_feeds
from scraper.cli import report
from scraper.cli.common import load_from_args, open_from_args

EXIT_OK, EXIT_FAILED = 0, 1


def run_once_command(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    feeds = select_feeds(config, args.feed)
    with (open_from_args(args, config) as app,
          report.Progress(len(feeds), enabled=sys.stderr.isatty()) as progress):
        results = app.refresh_once(feeds, workers=args.workers, on_done=progress.update)
    if getattr(args, "json", False):
        json.dump(report.summary_json(results), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        report.print_summary(results, sys.stdout)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
