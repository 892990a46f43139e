"""What a run tells its user: progress on a terminal, then one line per feed and the totals."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from scraper.cli.common import pad, width

if TYPE_CHECKING:
    from scraper.refresh import FeedResult


class Progress:
    """A single status line on stderr, rewritten as feeds finish (only on a terminal)."""

    def __init__(self, total: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.done = self.failed = self.new = 0

    def update(self, result: FeedResult) -> None:
        self.done += 1
        self.failed += result.failed
        self.new += result.new
        if self.enabled:
            self.stream.write(f"\r\x1b[Krefreshing feeds: {self.done}/{self.total} done, "
                              f"{self.new} new entries, {self.failed} failed")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def print_summary(results: Sequence[FeedResult], out: TextIO) -> None:
    if not results:
        out.write("no feeds to refresh (all disabled, or none configured)\n")
        return
    name_w = max(4, *(width(r.feed) for r in results))
    head = f"{pad('feed', name_w)}  {'status':<12} {'new':>5} {'upd':>5} {'same':>5} " \
           f"{'dup':>4} {'time':>6}  error"
    out.write(head + "\n")
    for r in sorted(results, key=lambda r: (not r.failed, r.feed)):
        note = r.error or r.warning or ""
        out.write(f"{pad(r.feed, name_w)}  {r.status:<12} {r.new:>5} {r.updated:>5} "
                  f"{r.unchanged:>5} {r.duplicates:>4} {r.seconds:>5.1f}s  {note}\n")
    failed = sum(r.failed for r in results)
    out.write(f"total: {len(results)} feeds, {len(results) - failed} ok, {failed} failed; "
              f"{sum(r.new for r in results)} new, {sum(r.updated for r in results)} updated, "
              f"{sum(r.unchanged for r in results)} unchanged, "
              f"{sum(r.duplicates for r in results)} duplicates\n")
