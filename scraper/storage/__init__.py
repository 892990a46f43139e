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
    iso,
    migrate,
    parse_iso,
    schema_version,
    transaction,
    utcnow,
)
from scraper.storage.entries import apply_plan, known_hashes, recent_dates, write_entries
from scraper.storage.feeds import (
    Claimed,
    bring_forward,
    claim_due,
    claim_feed,
    feed_state,
    forget_validators,
    host_of,
    record_outcome,
    release_claim,
    release_claims,
    sync_feeds,
)
from scraper.storage.meta import (
    database_path,
    get_meta,
    read_heartbeat,
    set_meta,
    write_heartbeat,
)
from scraper.storage.schema import MIGRATIONS

__all__ = ["BUSY_TIMEOUT_MS", "CACHE_KIB", "MIGRATIONS", "MIGRATION_WAIT_MS", "Claimed",
           "Connection", "apply_plan", "bring_forward", "claim_due", "claim_feed", "connect",
           "database_path", "feed_state", "forget_validators", "get_meta",
           "host_of", "iso", "known_hashes", "migrate", "parse_iso", "read_heartbeat",
           "recent_dates", "record_outcome", "release_claim", "release_claims",
           "schema_version", "set_meta", "sync_feeds", "transaction", "utcnow",
           "write_entries", "write_heartbeat"]
