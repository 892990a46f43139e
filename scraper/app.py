"""The application: what the command line and a Python user call.

``Scraper`` is a validated config and an open database; the commands are thin calls into it
(or into the modules it names), so that nothing above this layer touches storage, the network
or the pipeline directly.  Heavy modules (the pipeline, dedup, exports) are imported where
they are used, so that ``scrape status --check``, the container health check, loads none of
them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from scraper import storage
from scraper.config import Config, load_config, select_feeds

__all__ = ["Scraper", "load", "open_scraper", "select_feeds"]

#: The config file read when none is named.
DEFAULT_CONFIG = "feeds.yaml"


@dataclass
class Scraper:
    """A validated config and an open, migrated database."""

    config: Config
    conn: sqlite3.Connection

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(config_path: str | Path | None = None) -> Config:
    return load_config(config_path or DEFAULT_CONFIG)


def open_scraper(config: Config, db: str | Path | None = None) -> Scraper:
    """Open ``db`` (default: the config's database) for ``config``."""
    return Scraper(config=config, conn=storage.connect(Path(db) if db else config.database))
