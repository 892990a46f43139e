"""Parse benchmark: items/s of our parse_feed against feedparser, in the same run.

    .venv/bin/python bench/parse.py [--feeds 20] [--entries 30]

The baseline is feedparser with its defaults (what lemon24/reader runs); the ratio column
says how many times faster each path is.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import feedparser  # noqa: E402
from ingest import build_feeds  # noqa: E402

from scraper.core import parse  # noqa: E402

HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}


def rate(fn: Callable[[bytes], object], feeds: list[bytes], items: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for body in feeds:
            fn(body)
        best = min(best, time.perf_counter() - start)
    return items / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=30)
    args = parser.parse_args()
    feeds = build_feeds(args.feeds, args.entries)
    items = args.feeds * args.entries
    broken = [b.replace(b"</channel>", b"<x></channel>") for b in feeds]
    runs = {
        "feedparser defaults (baseline)": lambda b: feedparser.parse(b),
        "feedparser, no sanitize/resolve": lambda b: feedparser.parse(
            b, sanitize_html=False, resolve_relative_uris=False),
        "parse_feed, well-formed (fast path)": lambda b: parse.parse_feed(b, HEADERS),
    }
    base = rate(runs["feedparser defaults (baseline)"], feeds, items)
    print(f"{items} items in {args.feeds} feeds")
    for label, fn in runs.items():
        r = rate(fn, feeds, items)
        print(f"{label:<40} {r:>9.0f} items/s  {r / base:>6.1f}x")
    r = rate(lambda b: parse.parse_feed(b, HEADERS), broken, items)
    print(f"{'parse_feed, malformed (feedparser path)':<40} {r:>9.0f} items/s  {r / base:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
