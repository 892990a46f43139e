"""Exports: publish the deduplicated stream onward (Hexo posts, JSON Lines, one merged feed).

Every export reads the database only through the helpers here, so that "which entries" means
the same thing for all three: originals only (``duplicate_of IS NULL``) unless asked,
optionally since a date and from some feeds, oldest first.  The submodules are imported by
the command handlers, not at import time, so ``scrape --help`` stays fast and a broken
optional piece cannot take the router down.

"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
        raise ValueError(
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
