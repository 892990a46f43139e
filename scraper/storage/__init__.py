"""Storage: the only package with SQL.

The rest of the code calls these functions with the connection ``connect`` returned; it never
runs a statement itself.
"""

from scraper.storage.db import (
    CACHE_KIB,
    Connection,
    DatabaseError,
    DatabaseLocked,
    NoDatabase,
    connect,
    database_path,
    file_identity,
    is_pg,
    iso,
    open_existing,
    parse_iso,
    same_file,
    schema_version,
    transaction,
    utcnow,
    writable,
)
from scraper.storage.entries import apply_plan, known_hashes, recent_dates
from scraper.storage.feeds import (
    Claimed,
    bring_forward,
    claim_due,
    claim_feeds,
    feed_state,
    forget_validators,
    record_outcomes,
    release_claim,
    release_claims,
    sync_feeds,
)
from scraper.storage.meta import read_heartbeat, set_meta, write_heartbeat
from scraper.storage.pg import is_url
from scraper.storage.schema import MIGRATIONS
from scraper.storage.search import entry_detail, list_entries, search_entries
from scraper.storage.workers import (
    Held,
    Worker,
    forget_workers,
    list_workers,
    put_worker,
    stop_worker,
)

__all__ = ["CACHE_KIB", "MIGRATIONS", "Claimed", "Connection", "DatabaseError", "DatabaseLocked",
           "NoDatabase", "apply_plan", "bring_forward", "claim_due", "claim_feeds", "connect",
           "database_path", "feed_state", "file_identity", "forget_validators", "iso",
           "known_hashes", "same_file",
           "open_existing", "parse_iso", "read_heartbeat", "recent_dates", "release_claim",
           "release_claims", "record_outcomes", "schema_version", "set_meta", "sync_feeds",
           "transaction", "utcnow", "writable", "write_heartbeat"]
__all__ += ["is_pg", "is_url"]
__all__ += ["entry_detail", "list_entries", "search_entries"]
__all__ += ["Held", "Worker", "forget_workers", "list_workers", "put_worker", "stop_worker"]
