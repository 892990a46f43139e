"""Storage: the only package with SQL.

The rest of the code calls these functions with the connection ``connect`` returned; it never
runs a statement itself.
"""

from scraper.storage.db import (
    BUSY_TIMEOUT_MS,
    CACHE_KIB,
    MIGRATION_WAIT_MS,
    Connection,
    connect,
    database,
    iso,
    migrate,
    parse_iso,
    schema_version,
    transaction,
    utcnow,
)
from scraper.storage.feeds import feed_state, sync_feeds
from scraper.storage.meta import get_meta, set_meta
from scraper.storage.schema import MIGRATIONS

__all__ = ["BUSY_TIMEOUT_MS", "CACHE_KIB", "MIGRATIONS", "MIGRATION_WAIT_MS", "Connection",
           "connect", "database", "feed_state", "get_meta", "iso", "migrate", "parse_iso",
           "schema_version", "set_meta", "sync_feeds", "transaction", "utcnow"]
