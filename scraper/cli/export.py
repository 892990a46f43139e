"""``scrape export hexo DIR | jsonl FILE | feed FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

from scraper.app import Scraper, Selection
from scraper.cli.common import open_from_args, since, whole


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export", parents=[common], help="publish entries: Hexo posts, JSON Lines, a feed",
        description="Publish the stored, deduplicated entries onward. Duplicates are left "
                    "out unless --include-duplicates (hexo, jsonl).")
    targets = export.add_subparsers(dest="target", metavar="TARGET", required=True)

    def selection_options(parser: argparse.ArgumentParser, duplicates: bool = True) -> None:
        parser.add_argument("--since", type=since, metavar="DATE",
                            help="only entries published on or after DATE "
                                 "(2022-05-23 or an ISO time; UTC)")
        parser.add_argument("--feed", action="append", metavar="NAME", dest="feeds",
                            help="only entries of this feed (repeatable)")
        if duplicates:
            parser.add_argument("--include-duplicates", action="store_true",
                                help="also export entries linked as duplicates of another")

    hexo = targets.add_parser(
        "hexo", parents=[common], help="one Markdown post per story, Hexo layout",
        description="Write one Hexo post per entry into DIR/<categories...>/<title>.md (the "
                    "layout of the seeds' site), or DIR/<title>.md with --flat. Point DIR at "
                    "a Hexo site's source/_posts. What was written is recorded in the "
                    "database: by default only new or changed entries are written.")
    hexo.add_argument("directory", metavar="DIR", type=Path)
    hexo.add_argument("--flat", action="store_true",
                      help="all posts directly in DIR, no category folders")
    mode = hexo.add_mutually_exclusive_group()
    mode.add_argument("--incremental", dest="all", action="store_false",
                      help="write entries not exported before, or changed since (default)")
    mode.add_argument("--all", dest="all", action="store_true",
                      help="consider every entry again; rewrite files missing or different "
                           "on disk (paths stay as recorded)")
    selection_options(hexo)
    hexo.set_defaults(func=_cmd_hexo, all=False)

    jsonl = targets.add_parser(
        "jsonl", parents=[common], help="one JSON object per entry",
        description="Write one JSON object per line and per entry, with every stored field, "
                    "the entries linked to it as duplicates ('duplicates') and, for a "
                    "duplicate, the link of its original ('duplicate_of_url').")
    jsonl.add_argument("file", metavar="FILE", help="output file, or - for stdout")
    jsonl.add_argument("--incremental", action="store_true",
                       help="only entries not written to FILE before (appends to FILE)")
    jsonl.add_argument("--no-raw", action="store_true",
                       help="leave out raw_html (what the feed sent before cleaning)")
    selection_options(jsonl)
    jsonl.set_defaults(func=_cmd_jsonl)

    feed = targets.add_parser(
        "feed", parents=[common], help="one merged, deduplicated Atom or RSS feed",
        description="Write the latest N stories across all feeds as one feed, each story "
                    "once; each entry names its source feed and links its duplicates "
                    "(rel=\"related\").")
    feed.add_argument("file", metavar="FILE", help="output file, or - for stdout")
    feed.add_argument("--format", choices=("atom", "rss"), default="atom",
                      help="Atom 1.0 (default) or RSS 2.0")
    feed.add_argument("--limit", type=whole(1), default=50, metavar="N",
                      help="latest N entries (default 50)")
    feed.add_argument("--title", default="scrape: merged feed", help="the feed's title")
    feed.add_argument("--link", metavar="URL", type=_http_url,
                      help="where the feed will be published (its self link and id; RSS: "
                           "the channel link, default site_url: from the config, else the "
                           "first feed's site)")
    selection_options(feed, duplicates=False)
    feed.set_defaults(func=_cmd_feed)


def _http_url(value: str) -> str:
    """An http(s) URL, as the config's ``site_url`` must be: the feed's id and self link are
    read by every reader of the export (``javascript:`` or a bare word went in as they were)."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
    return value


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(since=args.since, feeds=tuple(args.feeds or ()),
                     include_duplicates=bool(getattr(args, "include_duplicates", False)))


def _cmd_hexo(args: argparse.Namespace) -> int:
    with open_from_args(args, access="export") as app:
        report = app.export_hexo(args.directory, flat=args.flat, rewrite_all=args.all,
                                 selection=_selection(args))
        _unrecorded(app)
    print(f"hexo: {report.written} written ({report.new} new, {report.updated} updated), "
          f"{report.unchanged} unchanged -> {args.directory}")
    for entry, original, path in report.stale:
        # A story is published once; deleting a file in the user's folder is the user's call.
        print(f"hexo: {path}: entry #{entry} is now a duplicate of #{original}, whose post "
              "carries the story; remove this post to publish it once", file=sys.stderr)
    return 0


def _cmd_jsonl(args: argparse.Namespace) -> int:
    with open_from_args(args, access="export") as app:
        count = app.export_jsonl(args.file, selection=_selection(args),
                                 incremental=args.incremental, raw=not args.no_raw)
        _unrecorded(app)
    _done(f"jsonl: {count} entries", args.file)
    return 0


def _cmd_feed(args: argparse.Namespace) -> int:
    with open_from_args(args, access="read") as app:  # no bookkeeping
        count = app.export_feed(args.file, fmt=args.format, limit=args.limit,
                                title=args.title, link=args.link, selection=_selection(args))
    _done(f"feed: {count} entries ({args.format})", args.file)
    return 0


def _unrecorded(app: Scraper) -> None:
    """Say that an export on a read-only database wrote its output but not its record."""
    if not app.writable:
        print(f"scrape export: {app.path} is read-only here: the export was written, but "
              "its --incremental bookkeeping (what this target has) was skipped",
              file=sys.stderr)


def _done(summary: str, file: str) -> None:
    """The summary line: on stderr when the export itself went to stdout."""
    if file == "-":
        print(summary, file=sys.stderr)
    else:
        print(f"{summary} -> {file}")
