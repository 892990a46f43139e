"""``scrape search QUERY``, ``scrape list`` and ``scrape show ID``: the stored entries, read
back.  All three only read the database (read-only, never upgraded), like ``status``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from scraper.cli.common import MAX_INT, open_from_args, ref, since, whole

#: How a match is marked in a snippet on a terminal (bold); brackets elsewhere, so a pipe or a
#: file gets plain text.
BOLD = ("\x1b[1m", "\x1b[0m")
BRACKETS = ("[", "]")


def _filters(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument("--feed", action="append", metavar="NAME", dest="feeds",
                        help="only entries of this feed (repeatable)")
    parser.add_argument("--since", type=since, metavar="DATE",
                        help="only entries published (else first seen) on or after DATE "
                             "(2022-05-23 or an ISO time; UTC)")
    parser.add_argument("--limit", type=whole(0), default=limit, metavar="N",
                        help=f"newest N (default {limit}; 0 for all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    search = subparsers.add_parser(
        "search", parents=[common], help="full-text search of titles and texts",
        description="Find the entries whose title or text contains every word of QUERY "
                    "(any substring: Chinese needs no spaces), newest first, with the match "
                    "marked. What you type is searched for as text: quotes, -, AND are not "
                    "syntax. Words of one or two characters are found by a slower scan. "
                    "Duplicates are left out unless --include-duplicates.")
    search.add_argument("query", nargs="+", metavar="QUERY", help="the words to find")
    _filters(search, 20)
    search.add_argument("--include-duplicates", action="store_true",
                        help="also entries linked as duplicates of another")
    search.set_defaults(func=_cmd_search)
    listing = subparsers.add_parser(
        "list", parents=[common], help="the newest entries, duplicates marked",
        description="List the stored entries, newest first (published time, else the time "
                    "first seen); a duplicate is marked with the entry it duplicates.")
    _filters(listing, 50)
    listing.add_argument("--duplicates", action="store_true",
                         help="only the entries linked as duplicates of another")
    listing.set_defaults(func=_cmd_list)
    show = subparsers.add_parser(
        "show", parents=[common], help="one entry: its fields, cluster and text",
        description="Print one entry: title, feed, link, dates, its duplicate cluster (the "
                    "entry it duplicates, the entries that duplicate it), story and text.")
    show.add_argument("id", type=whole(-MAX_INT), metavar="ID",
                      help="the entry's id (as search and list print it)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_cmd_show)


def _dump(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _when(entry: dict[str, Any]) -> str:
    """The entry's date for a line: published, else first seen, to the minute."""
    stamp = entry.get("published") or entry.get("fetched_at") or ""
    return stamp[:16].replace("T", " ")


def _markers(entry: dict[str, Any]) -> str:
    parts = []
    if entry.get("duplicate_of"):
        parts.append(f"duplicate of #{entry['duplicate_of']}")
    if entry.get("story"):
        parts.append(f"story #{entry['story']}")
    return f"  ({'; '.join(parts)})" if parts else ""


def _line(entry: dict[str, Any]) -> str:
    return (f"#{entry['id']}  {_when(entry)}  [{entry['feed']}] {entry['title'] or '(untitled)'}"
            f"{_markers(entry)}")


def _cmd_search(args: argparse.Namespace) -> int:
    query = " ".join(args.query)
    if not query.split():
        print("scrape search: the query is empty", file=sys.stderr)
        return 2
    tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and not args.json
    with open_from_args(args, access="read") as app:
        found = app.search(query, feeds=args.feeds or (), since=args.since, limit=args.limit,
                           include_duplicates=args.include_duplicates,
                           marks=BOLD if tty else BRACKETS)
    if args.json:
        _dump(found)
        return 0
    if not found:
        print("no matches")
    for entry in found:
        print(_line(entry))
        print(f"    {' '.join(entry['snippet'].split())}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with open_from_args(args, access="read") as app:
        found = app.entries(feeds=args.feeds or (), since=args.since, limit=args.limit,
                            duplicates=True if args.duplicates else None)
    if args.json:
        _dump(found)
        return 0
    if not found:
        print("no entries")
    for entry in found:
        print(_line(entry))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with open_from_args(args, access="read") as app:
        try:
            entry = app.entry(args.id)
        except KeyError:
            print(f"scrape show: no entry with id {args.id}", file=sys.stderr)
            return 2
    if args.json:
        _dump(entry)
        return 0
    print(f"#{entry['id']} {entry['title'] or '(untitled)'}")
    fields = [("feed", entry["feed"]), ("link", entry["url"]), ("author", entry["author"]),
              ("published", entry["published"]), ("first seen", entry["fetched_at"]),
              ("updated", entry["updated_at"])]
    root = entry["root"]
    if root is not None:
        score = f" {entry['dup_score']:.2f}" if entry["dup_score"] is not None else ""
        fields.append(("duplicate of", f"{ref(root)} "
                                       f"({entry['dup_method']}{score})"))
    for dup in entry["duplicates"]:
        label = "also in cluster" if root is not None else "duplicated by"
        fields.append((label, ref(dup)))
    if root is None and not entry["duplicates"]:
        fields.append(("cluster", "none (no duplicate known)"))
    fields.append(("story", f"#{entry['story']}" if entry["story"] else "none"))
    for label, value in fields:
        if value:
            print(f"{label + ':':<16}{value}")
    print()
    print(entry["content_text"] or "(no text)")
    return 0
