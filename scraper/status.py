"""``scrape status``: what every feed is doing, whether the daemon is alive, and the workers.

It reads only the database, so it is cheap enough for a container health check every 30 s
and works beside a running daemon.  ``--check`` must not depend on the config being valid:
a typo in feeds.yaml is refused by the running daemon, which keeps working, and the
container must not be restarted for it; so with ``--db`` the config is optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scraper import storage as store
from scraper.claimant import claim_is_dead, same_machine
from scraper.config import Config
from scraper.storage import reads
from scraper.storage.meta import (
    HEARTBEAT,
    HEARTBEAT_INTERVAL,
    HOST,
    PID,
    STARTED,
    STATE,
    read_heartbeat,
)
from scraper.storage.reads import Connection

#: A heartbeat is stale after this many missed beats.  Three tolerates one beat delayed by
#: a long write transaction (the busy timeout is 30 s) without flapping the health check.
MISSED_BEATS = 3
#: ...and never sooner than this, whatever the interval.
MIN_STALE_AFTER = 60.0

EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1

#: The table names a worker's feeds when it holds this many or fewer (else the first ones).
NAMES_SHOWN = 5


def stale_after(interval: float) -> float:
    """Seconds after its last heartbeat when a process beating every ``interval`` seconds
    counts as gone (the daemon's health, and each worker's row)."""
    return max(MIN_STALE_AFTER, MISSED_BEATS * interval)


@dataclass
class Health:
    healthy: bool
    reason: str
    state: str | None
    heartbeat_at: datetime | None
    age: float | None
    stale_after: float
    pid: str | None
    host: str | None
    started_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reason": self.reason, "state": self.state,
                "heartbeat_at": store.iso(self.heartbeat_at),
                "heartbeat_age": None if self.age is None else round(self.age, 1),
                "stale_after": self.stale_after, "pid": self.pid, "host": self.host,
                "started_at": self.started_at}


def daemon_health(conn: Connection, now: datetime,
                  max_age: float | None = None) -> Health:
    """Is a daemon alive here?  This machine's daemon when one has a ``workers`` row
    written from it (the freshest), else the last heartbeat any daemon wrote on this
    database (``meta``).  Several daemons share a PostgreSQL database (``--scale
    scraper=3``): each container's health check must follow its own daemon, not whichever
    beat last (one replica's clean stop made every replica "stopped")."""
    here = [held.worker for held in store.list_workers(conn, now)
            if held.worker.kind == "daemon" and same_machine(held.worker.name)]
    gone = False
    if here:
        mine = max(here, key=lambda worker: worker.heartbeat_at)
        gone = mine.state != "stopped" and claim_is_dead(mine.name)
        meta = {HEARTBEAT: mine.heartbeat_at, STATE: mine.state, PID: str(mine.pid),
                HOST: mine.host, STARTED: mine.started_at,
                HEARTBEAT_INTERVAL: f"{mine.heartbeat_interval:g}"}.get
    else:
        meta = read_heartbeat(conn).get

    beat = store.parse_iso(meta(HEARTBEAT))
    state = meta(STATE)
    if max_age is None:
        try:
            interval = float(meta(HEARTBEAT_INTERVAL) or 0)
        except ValueError:
            interval = 0.0
        max_age = stale_after(interval)
    age = None if beat is None else (now - beat).total_seconds()
    if beat is None:
        healthy, reason = False, "no heartbeat: the daemon has never run on this database"
    elif state == "stopped":
        healthy, reason = False, f"the daemon stopped {ago(age)}"
    elif gone:
        # Its process is gone from this machine (kill -9, OOM) though its heartbeat is
        # fresh: dead now, not after the heartbeat goes stale (found in review).
        healthy, reason = False, f"the daemon (pid {meta(PID)}) is gone: killed, not stopped"
    elif age is not None and age > max_age:
        healthy, reason = False, (f"heartbeat is stale: last {ago(age)}, "
                                  f"limit {max_age:g} s")
    else:
        healthy, reason = True, f"heartbeat {ago(age)}"
    return Health(healthy, reason, state, beat, age, max_age, meta(PID), meta(HOST),
                  meta(STARTED))


def build_report(conn: Connection, config: Config | None, now: datetime,
                 health: Health) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (the ``--json`` output)."""
    configured = {f.name: f for f in config.feeds} if config else {}
    rows = {r["name"]: r for r in reads.feed_rows(conn)}
    names = list(configured) + sorted(n for n in rows if n not in configured)
    feeds = []
    for name in names:
        row = rows.get(name, {})
        feed = configured.get(name)
        claimed_until = store.parse_iso(row.get("claimed_until"))
        due = store.parse_iso(row.get("next_due_at"))
        enabled = feed.enabled if feed else None
        errors = int(row.get("error_count") or 0)
        if config is not None and feed is None:
            state = "removed"  # its rows stay: nothing is lost when a feed leaves the config
        elif feed is not None and not feed.enabled:
            state = "disabled"
        elif claimed_until is not None and claimed_until > now:
            state = "refreshing"
        elif not row.get("last_fetch_at"):
            state = "never"
        elif errors:
            state = "failing"
        else:
            state = "ok"
        feeds.append({
            # the configured URL (rsshub: routes resolved) is the one fetched next
            "name": name, "url": feed.url if feed else row.get("url"),
            "state": state, "enabled": enabled, "last_success_at": row.get("last_success_at"),
            "last_error_at": row.get("last_error_at"), "last_error": row.get("last_error"),
            "error_count": errors, "last_status": row.get("last_status"),
            "next_due_at": row.get("next_due_at"),
            "overdue_seconds": (max(0, int((now - due).total_seconds()))
                                if due is not None and due <= now else 0),
            "entry_count": int(row.get("entry_count") or 0),
            "claimed_by": row.get("claimed_by") if state == "refreshing" else None,
        })
    entries, duplicates = reads.entry_totals(conn)
    counted = [f for f in feeds if f["state"] not in ("removed", "disabled")]
    totals = {
        "feeds": len(counted),
        "ok": sum(f["state"] == "ok" for f in counted),
        "failing": sum(f["error_count"] > 0 for f in counted),
        "never_fetched": sum(f["state"] == "never" for f in counted),
        "refreshing": sum(f["state"] == "refreshing" for f in counted),
        "disabled": sum(f["state"] == "disabled" for f in feeds),
        "removed": sum(f["state"] == "removed" for f in feeds),
        "entries": entries, "duplicates": duplicates, "originals": entries - duplicates,
    }
    return {"generated_at": store.iso(now), "daemon": health.as_dict(), "feeds": feeds,
            "totals": totals, "workers": worker_report(conn, now)}


def worker_report(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Every process with a row in ``workers`` (the silent ones are forgotten after a day):
    alive when not stopped and its heartbeat is fresh (``stale_after`` its own interval),
    and the feeds it holds a live claim on now (``holds``, ``feeds``).  A worker that is
    not alive yet holds claims was killed: its feeds wait for the claims to expire."""
    out = []
    for held in store.list_workers(conn, now):
        w = held.worker
        beat = store.parse_iso(w.heartbeat_at)
        age = None if beat is None else (now - beat).total_seconds()
        limit = stale_after(float(w.heartbeat_interval or 0))
        alive = (w.state != "stopped" and age is not None and age <= limit
                 and not claim_is_dead(w.name))  # a process of this machine gone: killed
        out.append({"name": w.name, "host": w.host, "pid": w.pid, "kind": w.kind,
                    "state": w.state, "alive": alive, "started_at": w.started_at,
                    "heartbeat_at": w.heartbeat_at,
                    "heartbeat_age": None if age is None else round(age, 1),
                    "stale_after": limit, "version": w.version, "holds": len(held.feeds),
                    "feeds": held.feeds})
    return out


def since(text: str | None, now: datetime) -> str:
    """A stored time as the table says it: ``5m ago``, or ``-`` for none."""
    when = store.parse_iso(text)
    return "-" if when is None else ago((now - when).total_seconds())


def due_in(text: str | None, now: datetime) -> str:
    """A stored due time as the table says it: ``in 5m``, ``now`` or ``overdue 2h``."""
    when = store.parse_iso(text)
    if when is None:
        return "now"
    delta = (when - now).total_seconds()
    if delta > 0:
        return f"in {span(delta)}"
    return "now" if delta > -60 else f"overdue {span(-delta)}"


def ago(seconds: float | None) -> str:
    """``5m ago`` / ``in 2h``: how the health reason and the table say a time."""
    if seconds is None:
        return "never"
    return f"{span(seconds)} ago" if seconds >= 0 else f"in {span(-seconds)}"


def span(seconds: float) -> str:
    """A duration in its two largest units (``1h59m``), short enough for a table cell."""
    seconds = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            part = rest // smaller[1]
            return f"{whole}{unit}{part}{smaller[0]}" if part else f"{whole}{unit}"
    return f"{seconds}s"
