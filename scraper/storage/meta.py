"""The ``meta`` table: singletons such as the daemon's heartbeat."""

from __future__ import annotations

from collections.abc import Mapping

from scraper.storage.db import Connection, transaction
from scraper.storage.workers import Worker, put_worker

#: The daemon's heartbeat keys (``scraper.status`` reads the same names).
HEARTBEAT = "daemon.heartbeat"
HEARTBEAT_INTERVAL = "daemon.heartbeat_interval"
STATE = "daemon.state"  # running | stopping | stopped
PID = "daemon.pid"
HOST = "daemon.host"
STARTED = "daemon.started_at"
VERSION = "daemon.version"
HEARTBEAT_KEYS = (HEARTBEAT, HEARTBEAT_INTERVAL, STATE, PID, HOST, STARTED, VERSION)


def set_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def write_heartbeat(conn: Connection, values: Mapping[str, str],
                    worker: Worker | None = None) -> None:
    """Record the daemon's beat (``HEARTBEAT_KEYS``) in one transaction, so that a reader
    never sees a new time beside an old state; with ``worker``, its ``workers`` row in the
    same transaction (``meta`` keeps the last beat of any daemon, for ``status --check``;
    the rows tell the workers apart)."""
    with transaction(conn):
        for key, value in values.items():
            set_meta(conn, key, value)
        if worker is not None:
            put_worker(conn, worker)


def read_heartbeat(conn: Connection) -> dict[str, str]:
    """The last heartbeat a daemon wrote on this database (empty if none)."""
    marks = ",".join("?" * len(HEARTBEAT_KEYS))
    return dict(conn.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})",
                             HEARTBEAT_KEYS).fetchall())

