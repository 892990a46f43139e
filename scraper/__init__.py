"""RSS feed scraper and deduplicator: the public Python API.

    import scraper

    config = scraper.load("feeds.yaml")
    with scraper.open_scraper(config) as app:
        app.refresh_once()
        app.export_jsonl("entries.jsonl", selection=scraper.Selection(since="2024-05-01"))

The names are resolved on first use (``__getattr__``): every module of the package imports
this one first, so it imports nothing itself but the version, and ``scrape status --check``
stays as light as its own imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from scraper.version import USER_AGENT, __version__

if TYPE_CHECKING:
    from scraper.app import Scraper, Selection, load, open_scraper
    from scraper.config import Config, ConfigError, FeedConfig

__all__ = ["USER_AGENT", "Config", "ConfigError", "FeedConfig", "Scraper", "Selection",
           "__version__", "load", "open_scraper"]

#: Public name -> the module that defines it.
_LAZY = {**dict.fromkeys(("Scraper", "Selection", "load", "open_scraper"), "scraper.app"),
         **dict.fromkeys(("Config", "ConfigError", "FeedConfig"), "scraper.config")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scraper' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
