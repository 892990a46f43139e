"""Exports: publish the deduplicated stream onward (Hexo posts, JSON Lines, one merged feed).

Every export reads the database only through the helpers here, so that "which entries" means
the same thing for all three: originals only (``duplicate_of IS NULL``) unless asked,
optionally since a date and from some feeds, oldest first.  The submodules are imported by
the command handlers, not at import time, so ``scrape --help`` stays fast and a broken
optional piece cannot take the router down.

``register(subparsers, common)`` adds ``scrape export hexo|jsonl|feed``.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scraper import storage as store
from scraper.config import Config, FeedConfig

#: Rows fetched per query when walking many entries: bounded memory, few round trips.
CHUNK = 200

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Selection:
    """Which entries an export covers; shared so the three exports agree on the meaning."""

    since: str | None = None  # ISO UTC text (store.iso), compared with published/fetched_at
    include_duplicates: bool = False
    feeds: tuple[str, ...] = ()


def parse_since(text: str) -> str:
    """``2022-05-23`` or an ISO 8601 time (naive = UTC) -> the store's ISO text.

    The store keeps ISO UTC text precisely so that a date filter is a text comparison.
    """
    value = text.strip()
    try:
        if _DATE_ONLY.match(value):
            when = datetime.fromisoformat(value).replace(tzinfo=UTC)
        else:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date (2022-05-23) or an ISO time (2022-05-23T08:00:00Z), got {text!r}"
        ) from None
    return str(store.iso(when))


def where_clause(selection: Selection, alias: str = "e") -> tuple[str, list[Any]]:
    """SQL conditions (joined with AND, never empty) and their parameters."""
    parts = ["1 = 1"]
    params: list[Any] = []
    if not selection.include_duplicates:
        parts.append(f"{alias}.duplicate_of IS NULL")
    if selection.since:
        # An entry without a date still has the time we first saw it.
        parts.append(f"COALESCE({alias}.published, {alias}.fetched_at) >= ?")
        params.append(selection.since)
    if selection.feeds:
        parts.append(f"{alias}.feed IN ({', '.join('?' * len(selection.feeds))})")
        params.extend(selection.feeds)
    return " AND ".join(parts), params


def rows_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> Iterator[dict[str, Any]]:
    """Full entry rows for ``ids``, in that order, a chunk at a time.

    Callers collect ids first and then read rows, because they write (the ``exports``
    table) while they walk, and a cursor open over a table being written may see rows twice.
    """
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start:start + CHUNK])
        marks = ", ".join("?" * len(chunk))
        found = {row["id"]: dict(row) for row in
                 conn.execute(f"SELECT * FROM entries WHERE id IN ({marks})", chunk)}
        for entry_id in chunk:
            if entry_id in found:
                yield found[entry_id]


def duplicates_of(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """For each original in ``ids``: the entries linked to it (id, feed, url, title, why)."""
    out: dict[int, list[dict[str, Any]]] = {}
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(
                "SELECT id, feed, url, title, published, dup_method, dup_score, duplicate_of "
                f"FROM entries WHERE duplicate_of IN ({marks}) ORDER BY id", chunk):
            out.setdefault(row["duplicate_of"], []).append({
                "id": row["id"], "feed": row["feed"], "url": row["url"], "title": row["title"],
                "published": row["published"], "method": row["dup_method"],
                "score": row["dup_score"],
            })
    return out


def feed_config(config: Config | None, name: str) -> FeedConfig | None:
    """The feed's config, or None for entries of a feed since removed from feeds.yaml."""
    if config is None:
        return None
    try:
        return config.feed(name)
    except KeyError:
        return None


# -- CLI -------------------------------------------------------------------------------------

def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export", parents=[common], help="publish entries: Hexo posts, JSON Lines, a feed",
        description="Publish the stored, deduplicated entries onward. Duplicates are left "
                    "out unless --include-duplicates (hexo, jsonl).")
    targets = export.add_subparsers(dest="target", metavar="TARGET", required=True)

    def selection_options(parser: argparse.ArgumentParser, duplicates: bool = True) -> None:
        parser.add_argument("--since", type=parse_since, metavar="DATE",
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
    feed.add_argument("--limit", type=_positive, default=50, metavar="N",
                      help="latest N entries (default 50)")
    feed.add_argument("--title", default="scrape: merged feed", help="the feed's title")
    feed.add_argument("--link", metavar="URL",
                      help="where the feed will be published (its self link and id)")
    selection_options(feed, duplicates=False)
    feed.set_defaults(func=_cmd_feed)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(since=args.since, feeds=tuple(args.feeds or ()),
                     include_duplicates=bool(getattr(args, "include_duplicates", False)))


def _cmd_hexo(args: argparse.Namespace) -> int:
    from scraper.cli import open_app
    from scraper.export import hexo

    app = open_app(args)
    try:
        report = hexo.export_hexo(app.conn, app.config, args.directory, flat=args.flat,
                                  rewrite_all=args.all, selection=_selection(args))
    finally:
        app.close()
    print(f"hexo: {report.written} written ({report.new} new, {report.updated} updated), "
          f"{report.unchanged} unchanged -> {args.directory}")
    return 0


def _cmd_jsonl(args: argparse.Namespace) -> int:
    from scraper.cli import open_app
    from scraper.export import jsonl

    app = open_app(args)
    try:
        count = jsonl.export_jsonl(app.conn, args.file, selection=_selection(args),
                                   incremental=args.incremental, raw=not args.no_raw)
    finally:
        app.close()
    if args.file != "-":
        print(f"jsonl: {count} entries -> {args.file}")
    else:
        print(f"jsonl: {count} entries", file=sys.stderr)
    return 0


def _cmd_feed(args: argparse.Namespace) -> int:
    from scraper.cli import open_app
    from scraper.export import feed

    app = open_app(args)
    try:
        count = feed.export_feed(app.conn, app.config, args.file, fmt=args.format,
                                 limit=args.limit, title=args.title, link=args.link,
                                 selection=_selection(args))
    finally:
        app.close()
    print(f"feed: {count} entries ({args.format})"
          + (f" -> {args.file}" if args.file != "-" else ""),
          file=sys.stderr if args.file == "-" else sys.stdout)
    return 0
