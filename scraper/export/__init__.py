"""Exports: publish the deduplicated stream onward (Hexo posts, JSON Lines, one merged feed).

Every export reads the database through ``scraper.storage.exports``, so that "which entries"
means the same thing for all three (a ``Selection``: originals only unless asked, optionally
since a date and from some feeds).  The submodules are imported where they are used, not
here, so that the command line's router stays light and a broken optional piece cannot take
it down.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

from scraper import storage as store
from scraper.config import Config, FeedConfig
from scraper.storage.exports import Selection

__all__ = ["Selection", "entry_time", "feed_config", "parse_since", "replacing", "rfc822"]


def parse_since(text: str) -> str:
    """``2022-05-23`` or an ISO 8601 time (naive = UTC) -> the store's ISO text.

    The store keeps ISO UTC text precisely so that a date filter is a text comparison.
    """
    try:
        when = store.parse_iso(text.strip())
        if when is None:
            raise ValueError(text)
    except ValueError:
        raise ValueError(
            f"expected a date (2022-05-23) or an ISO time (2022-05-23T08:00:00Z), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return str(store.iso(when))


def feed_config(config: Config | None, name: str) -> FeedConfig | None:
    """The feed's config, or None for entries of a feed since removed from feeds.yaml."""
    if config is None:
        return None
    try:
        return config.feed(name)
    except KeyError:
        return None


@contextlib.contextmanager
def replacing(path: Path, mode: str = "w", *, parents: bool = True) -> Iterator[IO[Any]]:
    """Write ``path`` through a hidden temporary file renamed over it: a reader (Hexo, a web
    server serving the feed, the daemon watching feeds.yaml) never sees half a file.  An
    existing file keeps its permissions; a new one is 0644 (mkstemp makes 0600, and the web
    server must read it).  ``parents=False``: a missing folder is an error, not created."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    keep = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text) as out:
            yield out
        os.chmod(tmp, keep)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def entry_time(entry: Mapping[str, Any]) -> datetime:
    """When an entry was published, else first seen (now for neither)."""
    return store.parse_iso(entry.get("published") or entry.get("fetched_at")) or store.utcnow()


def rfc822(when: datetime) -> str:
    """RSS's and the Hexo front matter's date form."""
    return format_datetime(when.astimezone(UTC), usegmt=True)
