"""``scrape feeds [--json]``, ``scrape feeds rename OLD NEW``, ``scrape feeds prune [--yes]``."""

from __future__ import annotations

import argparse
import json
import sys

from scraper import app, status
from scraper.cli.common import load_from_args, open_from_args, pad, width


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    feeds = subparsers.add_parser(
        "feeds", parents=[common], help="list, rename and prune feeds",
        description="Without an action: every configured feed with its resolved URL, "
                    "interval, state and stored entries (read-only; without a database, "
                    "every feed is 'never fetched'), then the stored feeds feeds.yaml no "
                    "longer names ('removed').")
    feeds.add_argument("--json", action="store_true", help="print JSON instead of a table")
    feeds.set_defaults(func=_list)
    actions = feeds.add_subparsers(dest="action", metavar="[ACTION]")
    rename = actions.add_parser(
        "rename", parents=[common], help="rename a feed, keeping its entries and exports",
        description="Rename feed OLD to NEW: its name: line in feeds.yaml is edited (the "
                    "rest of the file, comments included, stays) and its stored rows move "
                    "to the new name: entries (same ids, so dedup links and export records "
                    "stay), ETag and schedule, so the next refresh fetches nothing twice. "
                    "Also works after you renamed it in feeds.yaml yourself: then only the "
                    "rows move.")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    rename.set_defaults(func=_rename)
    prune = actions.add_parser(
        "prune", parents=[common], help="delete the stored rows of feeds removed from "
                                        "feeds.yaml",
        description="Show the stored feeds feeds.yaml no longer names, with their entry "
                    "counts, then delete their rows: asked on a terminal, done with --yes, "
                    "and only shown otherwise. A cluster whose root entry goes gets its most "
                    "complete remaining member as its root: other feeds' entries stay. "
                    "Files already "
                    "exported stay on disk.")
    prune.add_argument("--yes", action="store_true", help="delete without asking")
    prune.set_defaults(func=_prune)


def _list(args: argparse.Namespace) -> int:
    rows = app.list_feeds(load_from_args(args), getattr(args, "db", None))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    name_w = max([4, *(width(r["name"]) for r in rows)])
    print(f"{pad('feed', name_w)}  {'state':<13} {'interval':>8} {'entries':>7}  url")
    for r in rows:
        state = "never fetched" if r["state"] == "never" else r["state"]
        interval = status.span(r["interval"]) if r["interval"] is not None else "-"
        print(f"{pad(r['name'], name_w)}  {state:<13} {interval:>8} {r['entries']:>7}  "
              f"{r['url'] or '-'}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    moved, edited = app.rename_feed(config, args.old, args.new, getattr(args, "db", None))
    if edited:
        print(f"{config.path.name}: '{args.old}' renamed to '{args.new.strip()}'")
    if moved:
        print(f"database: {moved} entries, the ETag and the schedule moved to "
              f"'{args.new.strip()}'")
    else:
        print(f"database: nothing stored under '{args.old}'")
    return 0


def _prune(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    try:
        scraper = open_from_args(args, config, create=False)
    except app.NoDatabase as exc:
        print(f"nothing to prune: {exc}")
        return 0
    with scraper:
        stale = scraper.unconfigured_feeds()
        if not stale:
            print(f"nothing to prune: every stored feed is in {config.path.name}")
            return 0
        print(f"not in {config.path.name}; their stored rows go:")
        for name, count in stale.items():
            print(f"  {name}: {count} entries")
        if not args.yes:
            if not sys.stdin.isatty():
                print("nothing deleted: not a terminal, so not asked; run again with --yes",
                      file=sys.stderr)
                return 0
            if input(f"delete {len(stale)} feeds? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 0
        done = scraper.prune_feeds(list(stale))
    print(f"pruned {done['feeds']} feeds: {done['entries']} entries, {done['exports']} export "
          f"records; {done['promoted']} clusters of other feeds got a new root")
    return 0
