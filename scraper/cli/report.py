"""What a run tells its user: progress on a terminal, then one line per feed and the totals,
or the same as one JSON object for scripts (``--json``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from scraper.cli.common import pad, width

if TYPE_CHECKING:
    from tqdm import tqdm

    from scraper.refresh import FeedResult


#: The size assumed of a terminal that reports none: a pty nobody sized (``script``, some CI
#: runners) says 0 x 0, and tqdm then draws nothing at all (tqdm 4.70, checked here: a 0-row
#: terminal hides every bar).  80 x 24 is the VT100's, the usual default.
FALLBACK_SIZE = (80, 24)


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and rows, each replaced by the fallback when it reports 0."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return FALLBACK_SIZE
    return size.columns or FALLBACK_SIZE[0], size.lines or FALLBACK_SIZE[1]


class Progress:
    """Live progress on stderr while feeds finish: feeds done of the total, new entries,
    errors so far.  Only on a terminal, where someone watches; a pipe, a log file or a test
    gets nothing from it.  While it shows, log lines are printed above the bar (tqdm's
    logging redirect), not through it.
    """

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.stream = sys.stderr if stream is None else stream  # at run time, not import
        self.done = self.failed = self.new = 0
        self._bar: tqdm | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Progress:
        if self.enabled:
            # Imported here: only a terminal run needs it.
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # miniters=1, mininterval=0: every finished feed redraws (a few hundred short
            # writes in a run), so the last counts shown are the run's own.
            columns, rows = _terminal_size(self.stream)
            self._bar = tqdm(total=self.total, desc="refreshing", unit="feed",
                             file=self.stream, leave=False, miniters=1, mininterval=0,
                             ncols=columns, nrows=rows, postfix=self._counts())
            self._stack.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _counts(self) -> str:
        return f"{self.new} new, {self.failed} errors"

    def update(self, result: FeedResult) -> None:
        self.done += 1
        self.failed += result.failed
        self.new += result.new
        if self._bar is not None:
            self._bar.set_postfix_str(self._counts(), refresh=False)
            self._bar.update()


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


def summary_json(results: Sequence[FeedResult]) -> dict[str, Any]:
    """The run as plain data: each feed (in the config's order), then the totals."""
    feeds = [{"feed": r.feed, "status": r.status, "new": r.new, "updated": r.updated,
              "unchanged": r.unchanged, "duplicates": r.duplicates, "error": r.error,
              "warning": r.warning, "http_status": r.http_status,
              "seconds": round(r.seconds, 3),
              "next_due_at": r.next_due_at.isoformat() if r.next_due_at else None}
             for r in results]
    failed = sum(r.failed for r in results)
    totals = {"feeds": len(results), "ok": len(results) - failed, "failed": failed,
              "new": sum(r.new for r in results), "updated": sum(r.updated for r in results),
              "unchanged": sum(r.unchanged for r in results),
              "duplicates": sum(r.duplicates for r in results)}
    return {"feeds": feeds, "totals": totals}
