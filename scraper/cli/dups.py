"""``scrape dups`` (clusters, ``--explain ID``) and ``scrape dedup --rebuild``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scraper.cli.common import MAX_INT, open_from_args, ref, whole


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    dups = subparsers.add_parser(
        "dups", parents=[common], help="list duplicate clusters, or explain one entry",
        description="List clusters of duplicate entries (the most complete entry, then the "
                    "entries linked to it with method and score), then stories (entries that "
                    "report one event in different words). Reads the database only "
                    "(read-only); --db alone works without a feeds.yaml.")
    dups.add_argument("--explain", type=whole(-MAX_INT), metavar="ID",
                      help="say why entry ID is or is not linked, with its nearest "
                           "candidates, and why it is in its story")
    dups.add_argument("--limit", type=whole(0), default=50, metavar="N",
                      help="newest N clusters (default 50; 0 for all)")
    dups.add_argument("--json", action="store_true", help="machine-readable output")
    dups.set_defaults(func=_cmd_dups)
    dd = subparsers.add_parser(
        "dedup", parents=[common], help="maintain the duplicate index",
        description="Recompute fingerprints and links for the whole database (after a change "
                    "of the dedup: settings). Needs the config: its dedup: settings decide "
                    "the links.")
    dd.add_argument("--rebuild", action="store_true", required=True,
                    help="recompute every fingerprint and link, in id order")
    dd.set_defaults(func=_cmd_dedup)


def _cmd_dups(args: argparse.Namespace) -> int:
    with open_from_args(args, access="read") as app:
        if args.explain is not None:
            if app.config is None:
                print("scrape dups: no config: judged with the default dedup settings",
                      file=sys.stderr)
            try:
                report = app.explain(args.explain)
            except KeyError:
                print(f"scrape dups: no entry with id {args.explain}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps(report, ensure_ascii=False, indent=2))
            else:
                print_explain(report)
            return 0
        found = app.dups(args.limit or None)
        stories = app.stories(args.limit or None)
        if args.json:
            print(json.dumps({"clusters": found, "stories": stories}, ensure_ascii=False,
                             indent=2))
            return 0
        if not found:
            print("no duplicates")
        for cluster in found:
            print(ref(cluster))
            for dup in cluster["duplicates"]:
                print(f"    {ref(dup)}  "
                      f"({dup['method']} {dup['score']:.2f})")
        if stories:
            print("\nstories (one event, different words):")
        for story in stories:
            print(f"story {story['id']}: {_count(len(story['entries']), 'entry', 'entries')}")
            for e in story["entries"]:
                reprint = f"  (reprint of #{e['duplicate_of']})" if e["duplicate_of"] else ""
                print(f"    {ref(e)}{reprint}")
        return 0


def _count(n: int, one: str, many: str) -> str:
    """``1 entry``, ``2 entries``: the count and the noun agree."""
    return f"{n} {one if n == 1 else many}"


def print_explain(report: dict[str, Any]) -> None:
    e = report["entry"]
    print(ref(e))
    print(f"  {e['folded_length']} folded characters"
          f"{' (short: judged by title)' if e['short'] else ''}")
    print(f"  {report['summary']}")
    n = report["duplicates"]
    if n:
        print(f"  {_count(n, 'entry is', 'entries are')} linked to it")
    for c in report["candidates"]:
        scores = ", ".join(f"{name} {c[key]:.2f}" for name, key in
                           (("containment", "containment"), ("jaccard", "jaccard"),
                            ("title", "title_similarity")) if c[key] is not None)
        print(f"  - {ref(c)}")
        facts = [f"found by {', '.join(c['found_by'])}", f"{c['hours_apart']} h apart"]
        if scores:
            facts.append(scores)
        print(f"      {'; '.join(facts)} -> {c['decision']}: {c['reason']}")
    story = report.get("story")
    if story:
        others = story["members"]
        print(f"  story {story['id']}: reported with "
              f"{_count(len(others), 'other entry', 'other entries')}")
        for m in others:
            print(f"  - {ref(m)}: {m['reason']}")


def _cmd_dedup(args: argparse.Namespace) -> int:
    # A write command: it needs the config (its dedup: settings decide the links) and may
    # upgrade the schema; it does not create a database.
    with open_from_args(args, create=False) as app:
        tty = sys.stderr.isatty()

        def progress(done: int, total: int) -> None:
            if tty:
                print(f"\rrebuilding: {done}/{total}", end="", file=sys.stderr, flush=True)

        result = app.rebuild(progress)
        if tty:
            print(file=sys.stderr)
        methods = ", ".join(f"{k} {v}" for k, v in sorted(result["by_method"].items()))
        print(f"rebuilt {result['entries']} entries in {result['seconds']} s: "
              f"{result['duplicates']} duplicates ({methods or 'none'})")
        return 0
