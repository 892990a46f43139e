"""Exports: publish the deduplicated stream onward (Hexo posts, JSON Lines, one merged feed).

Every export reads the database through ``scraper.storage.exports``, so that "which entries"
means the same thing for all three (a ``Selection``: originals only unless asked, optionally
since a date and from some feeds).  The submodules are imported where they are used, not
here, so that the command line's router stays light and a broken optional piece cannot take
it down.
"""

from __future__ import annotations

from datetime import UTC

from scraper import storage as store
from scraper.config import Config, FeedConfig
from scraper.storage.exports import Selection

__all__ = ["Selection", "feed_config", "parse_since"]


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
