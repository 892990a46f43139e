"""The ``workers`` table: one row per process working on this database (issue 21).

A daemon writes its row at each heartbeat and marks it stopped when it stops; a ``scrape
--once`` run writes one at its start and marks it stopped at its end.  The row's name is
the process's claimant name (``claimant.CLAIMANT``, "host:pid@machine"), the one
``feeds.claimed_by`` holds, so ``scrape status`` can say which feeds each worker holds now.
A row outlives its process (a ``kill -9`` writes nothing): ``forget_workers`` deletes the
long-silent ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scraper.storage.db import Connection, iso, transaction


@dataclass(frozen=True)
class Worker:
    """A ``workers`` row: ``kind`` "daemon" or "once"; ``state`` running, stopping or
    stopped; times ISO 8601 as the database keeps them; ``heartbeat_interval`` in seconds."""

    name: str
    host: str
    pid: int
    kind: str
    state: str
    started_at: str
    heartbeat_at: str
    heartbeat_interval: float
    version: str


@dataclass(frozen=True)
class Held:
    """A worker's row and the feeds it holds a live claim on (names sorted)."""

    worker: Worker
    feeds: list[str]


_COLUMNS = ("name", "host", "pid", "kind", "state", "started_at", "heartbeat_at",
            "heartbeat_interval", "version")


def put_worker(conn: Connection, worker: Worker) -> None:
    """Write ``worker``'s row (one statement: inside the caller's transaction, as the
    daemon's heartbeat does, or alone)."""
    conn.execute(
        f"INSERT INTO workers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 9)}) "
        "ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
        "kind = excluded.kind, state = excluded.state, started_at = excluded.started_at, "
        "heartbeat_at = excluded.heartbeat_at, "
        "heartbeat_interval = excluded.heartbeat_interval, version = excluded.version",
        (worker.name, worker.host, worker.pid, worker.kind, worker.state, worker.started_at,
         worker.heartbeat_at, worker.heartbeat_interval, worker.version))


def stop_worker(conn: Connection, name: str, now: datetime) -> None:
    """Mark ``name``'s row stopped at ``now`` (a clean end: it holds nothing any more)."""
    conn.execute("UPDATE workers SET state = 'stopped', heartbeat_at = ? WHERE name = ?",
                 (iso(now), name))


def list_workers(conn: Connection, now: datetime) -> list[Held]:
    """Every worker row, by name, with the feeds each holds a live claim on at ``now``.

    The claims are read through ``feeds_claimed`` (the claimed rows only, never every
    feed).  A claim whose process has no row (a release before this table) is left out:
    the feed's own line in ``status`` still names its holder.
    """
    held: dict[str, list[str]] = {}
    for row in conn.execute("SELECT name, claimed_by FROM feeds WHERE claimed_by IS NOT NULL "
                            "AND claimed_until > ?", (iso(now),)):
        held.setdefault(row[1], []).append(row[0])
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM workers").fetchall()
    # Sorted here: PostgreSQL's ORDER BY follows the database's collation, SQLite's the
    # code points; both backends list the workers alike.
    return [Held(Worker(*(row[i] for i in range(len(_COLUMNS)))),
                 sorted(held.get(row[0], []))) for row in sorted(rows, key=lambda r: r[0])]


def forget_workers(conn: Connection, before: datetime) -> int:
    """Delete the rows of workers silent since before ``before`` (stopped, or killed long
    ago: every ``--once`` run leaves a row, and its pid is never seen again); how many."""
    with transaction(conn):
        return conn.execute("DELETE FROM workers WHERE heartbeat_at < ?",
                            (iso(before),)).rowcount
