"""The errors of the storage layer, and the busy timeout both backends wait by.

Apart from ``db`` so that each backend's module (``db`` for SQLite, ``pg`` for PostgreSQL)
words its driver's errors the same way without importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from scraper.config import ConfigError

#: Milliseconds a writer waits for another writer's transaction before giving up.  A feed
#: refresh transaction takes milliseconds; 30 s covers a dedup rebuild beside the daemon.
BUSY_TIMEOUT_MS = 30_000
#: Overrides it, in seconds: a slow disk may want longer, and the tests of a locked database
#: do not wait 30 s (docs/configuration.md).
BUSY_TIMEOUT_ENV = "SCRAPE_BUSY_TIMEOUT"

class DatabaseError(ConfigError):
    """The database file cannot be used as it is; the message names the file.

    A ConfigError because, like a bad config, the user's input (``--db``, ``database:``) is
    what is wrong: the command line answers both with one line and exit 2, writing nothing.
    """


class NoDatabase(DatabaseError):
    """A command that only reads was given a file that does not exist (it is not created)."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(f"no database at {path}")
        self.path = path


class DatabaseLocked(DatabaseError):
    """Another process held the write lock past the busy timeout."""


def busy_timeout_ms() -> int:
    """The busy timeout: ``SCRAPE_BUSY_TIMEOUT`` seconds, else ``BUSY_TIMEOUT_MS``."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return BUSY_TIMEOUT_MS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:  # (also refuses nan)
        raise ConfigError(f"{BUSY_TIMEOUT_ENV}: expected seconds from 0 to 86400, got {raw!r}")
    return int(seconds * 1000)


def locked(path: str | Path) -> DatabaseLocked:
    return DatabaseLocked(f"{path}: locked by another process for over "
                          f"{busy_timeout_ms() / 1000:g} s (the busy timeout, "
                          f"{BUSY_TIMEOUT_ENV})")
