"""``scrape opml export FILE|-`` and ``scrape opml import FILE [--dry-run]``."""

from __future__ import annotations

import argparse

from scraper import app
from scraper.cli.common import load_from_args


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    opml = subparsers.add_parser(
        "opml", parents=[common], help="subscriptions in and out as OPML",
        description="OPML is the file every feed reader exports and imports subscriptions "
                    "with.")
    actions = opml.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", parents=[common], help="write every configured feed as OPML",
        description="Write every configured feed to FILE as OPML 2.0, in nested outlines by "
                    "its categories (the first category outermost). Each xmlUrl is the URL "
                    "scrape fetches: rsshub: routes are resolved against rsshub_base.")
    export.add_argument("file", metavar="FILE", help="the OPML file to write ('-': stdout)")
    export.set_defaults(func=_export)
    imp = actions.add_parser(
        "import", parents=[common], help="append an OPML file's feeds to feeds.yaml",
        description="Append the feeds of an OPML file to feeds.yaml, below its existing text "
                    "and comments. Names are made from the titles (unique: -2, -3...), "
                    "categories from the outline nesting. Skipped, each with a line: feeds "
                    "whose URL is configured already, outlines without xmlUrl, URLs that "
                    "are not http(s).")
    imp.add_argument("file", metavar="FILE", help="the OPML file to read ('-': stdin)")
    imp.add_argument("--dry-run", action="store_true",
                     help="print what would be added; change nothing")
    imp.set_defaults(func=_import)


def shown(text: str, most: int = 80) -> str:
    """A title from someone else's file, safe on a terminal: no control characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= most else text[:most - 1] + "…"


def _export(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    count = app.export_opml(config, args.file)
    if args.file != "-":
        print(f"wrote {count} feeds to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    report = app.import_opml(config, args.file, dry_run=args.dry_run)
    verb = "would add" if args.dry_run else "added"
    for feed in report.added:
        where = f" [{' / '.join(shown(c, 40) for c in feed.categories)}]" if feed.categories else ""
        print(f"{verb} {shown(feed.name)}: {shown(feed.url, 200)}{where}")
    for item in report.skipped:
        print(f"skipped {shown(item.title)!r}: {shown(item.reason, 120)}")
    added, skipped = len(report.added), len(report.skipped)
    if args.dry_run:
        print(f"dry run: {added} feeds would be added to {config.path.name}, {skipped} "
              f"skipped; nothing written")
    elif report.written:
        print(f"{config.path.name}: {added} feeds added, {skipped} skipped")
    else:
        print(f"{config.path.name} unchanged: no new feed, {skipped} skipped")
    return 0
