"""RSS feed scraper and deduplicator."""

from scraper.version import USER_AGENT, __version__

__all__ = ["USER_AGENT", "__version__"]
