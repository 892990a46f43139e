"""The ``feeds`` table: one row per configured feed, its fetch state, its due time and its claim.

The due time in the row is the schedule; a claim (``claimed_by``/``claimed_until``), taken in
one write transaction, makes one due time refreshed once however many processes share the
database, and expires on its own.  SQLite's BEGIN IMMEDIATE serves one writer at a time; on
PostgreSQL writers run side by side, so the claims lock what they read (``claim_due``,
``claim_feeds``); the functions' shapes do not change.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from scraper.config import host_of
from scraper.core import schedule
from scraper.core.decide import FeedWrite
from scraper.storage.db import Connection, in_lists, is_pg, iso, parse_iso, transaction
from scraper.storage.dedup import blob_keys, lock_index

#: Asked about another claimant of this host: True when that process is gone.
IsDead = Callable[[str], bool]


def sync_feeds(conn: Connection, feeds: list[tuple[str, str]]) -> None:
    """Make sure every configured feed (name, url) has a row; a changed URL is updated.

    Rows of feeds removed from the config stay, with their entries: nothing is lost.
    """
    with transaction(conn):
        conn.executemany(
            "INSERT INTO feeds (name, url) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET url = excluded.url WHERE feeds.url != excluded.url",
            feeds,
        )


def feed_state(conn: Connection, name: str) -> dict:
    row = conn.execute("SELECT * FROM feeds WHERE name = ?", (name,)).fetchone()
    return dict(row) if row else {}


def _free(row: Any, claimant: str, now: str, is_dead: IsDead) -> bool:
    holder, until = row["claimed_by"], row["claimed_until"]
    return (holder is None or until is None or until < now or holder == claimant
            or is_dead(holder))


def claim_feeds(conn: Connection, feeds: Sequence[tuple[str, str, datetime]], *,
                claimant: str, now: datetime, is_dead: IsDead) -> dict[str, dict]:
    """Take each of ``feeds`` (name, url, claim until) whatever its due time (``scrape
    --once``), unless another process holds an unexpired claim on it: the rows taken, by
    name, as :func:`feed_state` reads them.  One transaction for many feeds (``refresh``
    gathers the claims asked for while the previous batch ran), not one each."""
    if not feeds:
        return {}
    stamp, until = str(iso(now)), {name: iso(end) for name, _, end in feeds}
    taken: dict[str, dict] = {}
    with transaction(conn):
        conn.executemany("INSERT INTO feeds (name, url) VALUES (?, ?) "
                         "ON CONFLICT (name) DO NOTHING", sorted((n, u) for n, u, _ in feeds))
        # PostgreSQL: the row locks (in name order, as every many-row writer takes them:
        # code points, as Python sorts, not the database's collation, where 'a' < 'B')
        # make a second claimant (another --once, a daemon's claim_due) wait for this
        # transaction and then read the claims it wrote.
        lock = ' ORDER BY name COLLATE "C" FOR UPDATE' if is_pg(conn) else ""
        for marks, names in in_lists(sorted(until)):
            for row in conn.execute(f"SELECT * FROM feeds WHERE name IN ({marks}){lock}",
                                    names).fetchall():
                if _free(row, claimant, stamp, is_dead):  # (a row renamed or pruned while
                    taken[row["name"]] = dict(row)        # this waited for it is not read)
        conn.executemany("UPDATE feeds SET claimed_by = ?, claimed_until = ? WHERE name = ?",
                         [(claimant, until[name], name) for name in sorted(taken)])
    for name, row in taken.items():
        row.update(claimed_by=claimant, claimed_until=until[name])
    return taken


@dataclass(frozen=True)
class Claimed:
    """What :func:`claim_due` took, and why due feeds were left for later: ``more`` when
    ``limit`` was reached (any free slot can take one), ``full_hosts`` the hosts whose
    ``per_host`` limit was reached (only a slot freed on that host can take one)."""

    names: list[str]
    more: bool = False
    full_hosts: frozenset[str] = frozenset()

    @property
    def held_back(self) -> bool:
        return self.more or bool(self.full_hosts)


# The due rows in claim order: never fetched (NULL) first (PostgreSQL sorts NULL last
# unless told), then the oldest due time, then the
# name.  Two halves merged, so that each is a range of the ``feeds_due`` index (one ``OR``
# makes SQLite scan the whole index) and the rows come lazily: the caller stops reading once
# it has what it can take.
_DUE = ("SELECT name, url, next_due_at, claimed_by, claimed_until FROM feeds "
        "WHERE next_due_at IS NULL UNION ALL "
        "SELECT name, url, next_due_at, claimed_by, claimed_until FROM feeds "
        "WHERE next_due_at <= ? ORDER BY next_due_at NULLS FIRST, name")

# PostgreSQL's: FOR UPDATE is not allowed beside UNION, so each half is read on its own, in
# pages (keyset: after the last row read) that lock only the rows read.  SKIP LOCKED passes
# over rows another transaction holds: a refresh's outcome being written, a ``--once``
# claiming it, which would not be free to take anyway.  Both halves read ``feeds_due`` in
# its order (EXPLAIN on 50,000 feeds: an index scan under LockRows and Limit, no sort; the
# first half's ``next_due_at`` in ORDER BY is what spares the sort of every NULL row).
_DUE_PG = (
    "SELECT name, url, next_due_at, claimed_by, claimed_until FROM feeds "
    "WHERE next_due_at IS NULL AND name > ? ORDER BY next_due_at, name "
    "LIMIT ? FOR UPDATE SKIP LOCKED",
    "SELECT name, url, next_due_at, claimed_by, claimed_until FROM feeds "
    "WHERE next_due_at <= ? AND (next_due_at, name) > (?, ?) ORDER BY next_due_at, name "
    "LIMIT ? FOR UPDATE SKIP LOCKED")

#: The transaction-level advisory lock ``claim_due`` holds on PostgreSQL (a number of our
#: choosing, beside ``db._MIGRATION_LOCK``).
_CLAIM_LOCK = 0x5C4A_0002


def _due_pg(conn: Connection, stamp: str, page: int) -> Iterator[Any]:
    """The due rows in ``_DUE``'s order, ``page`` at a time, each page locked as read."""
    after = ""
    while True:
        rows = conn.execute(_DUE_PG[0], (after, page)).fetchall()
        yield from rows
        if len(rows) < page:
            break
        after = rows[-1]["name"]
    at = after = ""
    while True:
        rows = conn.execute(_DUE_PG[1], (stamp, at, after, page)).fetchall()
        yield from rows
        if len(rows) < page:
            break
        at, after = rows[-1]["next_due_at"], rows[-1]["name"]


def claim_due(conn: Connection, names: Container[str], *, claimant: str,
              now: datetime, until: datetime, limit: int, per_host: int,
              is_dead: IsDead, running: Container[str] = ()) -> Claimed:
    """Claim up to ``limit`` of ``names`` that are due at ``now`` and free, oldest due first,
    never more than ``per_host`` claimed at once on one host (counting every process's live
    claims).  The daemon's loop asks this at each tick.  ``running``: the feeds the caller
    refreshes now (its claims count against their hosts; they are not taken again).

    One write transaction (BEGIN IMMEDIATE): two processes asking at once are served one
    after the other, and the second no longer sees the first one's feeds as free.  On
    PostgreSQL the transaction first takes an advisory lock (``_CLAIM_LOCK``) for the same
    effect: under READ COMMITTED two workers would each count the hosts' live claims
    without the other's uncommitted ones, and both fill a host up to ``per_host``; the row
    locks alone (FOR UPDATE SKIP LOCKED) keep two workers off one feed but not off one
    host.  Held for milliseconds, and every statement after it sees every claim committed
    before.  It reads
    the claimed rows (``feeds_claimed``: the refreshes in flight, and claims left by
    processes that died) and the due rows in order until ``limit`` are taken, never every
    feed: a tick costs what is due, not how many feeds there are.  ``names`` and
    ``running`` are only asked ``in``: pass sets or dicts.
    """
    if limit <= 0:
        return Claimed([])
    stamp = str(iso(now))
    pg = is_pg(conn)
    with transaction(conn):
        if pg:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))
        busy: Counter[str] = Counter()
        for row in conn.execute("SELECT name, url, claimed_by, claimed_until FROM feeds "
                                "WHERE claimed_by IS NOT NULL"):
            if row["claimed_by"] != claimant:
                if not _free(row, claimant, stamp, is_dead):
                    busy[host_of(row["url"])] += 1  # another process's live claim
            elif ((row["name"] in running or row["name"] not in names)
                  and (row["claimed_until"] or "") >= stamp):
                busy[host_of(row["url"])] += 1  # our own refreshes in flight
        taken: list[str] = []
        full: set[str] = set()
        more = False
        due = _due_pg(conn, stamp, min(max(2 * limit, 32), 1000)) if pg else conn.execute(
            _DUE, (stamp,))
        for row in due:
            # Ours although we are not refreshing it is free (``_free``): a release that
            # failed (a full disk, a lock) must not keep the feed from us for good.
            if (row["name"] not in names or row["name"] in running
                    or not _free(row, claimant, stamp, is_dead)):
                continue
            host = host_of(row["url"])
            if busy[host] >= per_host:
                full.add(host)
            elif len(taken) >= limit:
                more = True
                break
            else:
                busy[host] += 1
                taken.append(row["name"])
        due.close()
        conn.executemany("UPDATE feeds SET claimed_by = ?, claimed_until = ? WHERE name = ?",
                         [(claimant, iso(until), name) for name in taken])
    return Claimed(taken, more, frozenset(full))


def release_claim(conn: Connection, name: str, claimant: str) -> None:
    """Give the feed back (a no-op once the outcome was recorded, which releases it too)."""
    with transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = NULL, claimed_until = NULL "
                     "WHERE name = ? AND claimed_by = ?", (name, claimant))


def release_claims(conn: Connection, claimant: str) -> None:
    """Drop every claim of ``claimant``: at a daemon's start they can only be an earlier
    process's with the same name (a container's pid 1 on the same host name)."""
    with transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = NULL, claimed_until = NULL "
                     "WHERE claimed_by = ?", (claimant,))


# What an outcome writes into the feed's row (``record_outcome``, ``record_outcomes``): after
# a success (the validators and hints kept when the answer had none), or after a failure.
_SUCCESS = ("url = ?, etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified), "
            "last_fetch_at = ?, last_success_at = ?, last_status = ?, error_count = 0, "
            "next_due_at = ?, retry_after_at = NULL, cache_max_age = ?, ttl = ?, "
            "body_hash = COALESCE(?, body_hash)")
_FAILURE = ("last_fetch_at = ?, last_status = ?, last_error = ?, last_error_at = ?, "
            "error_count = ?, next_due_at = ?, retry_after_at = ?")
_RELEASED = "claimed_by = NULL, claimed_until = NULL"


def _values(write: FeedWrite) -> tuple[Any, ...]:
    """``_SUCCESS``'s or ``_FAILURE``'s parameters, as ``write.ok`` says."""
    now = iso(write.fetched_at)
    if write.ok:
        return (write.url, write.etag, write.last_modified, now, now, write.status,
                iso(write.next_due_at), write.cache_max_age, write.ttl, write.body_hash)
    return (now, write.status, write.error, now, write.error_count, iso(write.next_due_at),
            iso(write.retry_after_at))


def record_outcome(conn: Connection, name: str, write: FeedWrite,
                   claimant: str) -> None:
    """Write a refresh's outcome into the feed's row and release the claim (inside the
    caller's transaction: ``entries.apply_plan``)."""
    if write.ok:
        conn.execute(f"UPDATE feeds SET {_SUCCESS}, "
                     "entry_count = (SELECT COUNT(*) FROM entries WHERE feed = ?) WHERE name = ?",
                     (*_values(write), name, name))
    else:
        conn.execute(f"UPDATE feeds SET {_FAILURE} WHERE name = ?", (*_values(write), name))
    conn.execute(f"UPDATE feeds SET {_RELEASED} WHERE name = ? AND claimed_by = ?",
                 (name, claimant))


def record_outcomes(conn: Connection, writes: Sequence[tuple[str, FeedWrite]],
                    claimant: str) -> None:
    """Write many refreshes' outcomes that stored no entries (a 304, a 200 of the stored
    entries, a failure) and release their claims, in one transaction: what
    :func:`record_outcome` writes, less the entry count, which such a refresh cannot change.
    One commit for many polls instead of one each (``refresh.Refresher`` hands them over).

    Only rows ``claimant`` still holds are written: an outcome that waited past its claim's
    expiry, while another process took the feed and recorded a newer one, is dropped rather
    than put the older ETag and due time back.  A feed's last outcome only (the first write
    releases the claim, which a second would no longer find).  In name order across both
    kinds, as the other many-row writers lock rows (``claim_feeds``), against deadlocks on
    PostgreSQL: successes then failures, each in name order, deadlocked against a
    concurrent ``claim_feeds`` (seen in review)."""
    if not writes:
        return
    with transaction(conn):
        for ok, run in groupby(sorted(dict(writes).items()), key=lambda item: item[1].ok):
            conn.executemany(f"UPDATE feeds SET {_SUCCESS if ok else _FAILURE}, {_RELEASED} "
                             "WHERE name = ? AND claimed_by = ?",
                             [(*_values(write), name, claimant) for name, write in run])


def forget_validators(conn: Connection, names: Iterable[str]) -> None:
    """A feed moved to another URL: the old URL's ETag and Last-Modified do not apply, and
    it is due at once."""
    with transaction(conn):
        conn.executemany("UPDATE feeds SET etag = NULL, last_modified = NULL, "
                         "next_due_at = NULL WHERE name = ?", [(n,) for n in names])


def bring_forward(conn: Connection, feeds: Mapping[str, tuple[int, bool]],
                  rng: random.Random) -> int:
    """A shortened interval takes effect now: each of ``feeds`` (name -> (interval, adaptive))
    whose stored due time lies beyond what the interval allows since its last fetch gets a
    new one (``schedule.clamp_due``: hints and backoff kept).  Returns how many moved.

    One read of the feeds' schedule columns and one write of the rows that move, in one
    transaction: no refresh's outcome lands between the read and the write.
    """
    with transaction(conn):
        rows = conn.execute("SELECT name, last_fetch_at, next_due_at, error_count, "
                            "cache_max_age, ttl, retry_after_at FROM feeds "
                            "WHERE next_due_at IS NOT NULL AND last_fetch_at IS NOT NULL"
                            ).fetchall()
        moves = []
        for row in rows:
            if row["name"] not in feeds:
                continue
            interval, adaptive = feeds[row["name"]]
            state = schedule.Scheduled(
                last_fetch=parse_iso(row["last_fetch_at"]), next_due=parse_iso(row["next_due_at"]),
                error_count=row["error_count"], max_age=row["cache_max_age"],
                ttl_minutes=row["ttl"], retry_after_at=parse_iso(row["retry_after_at"]))
            due = schedule.clamp_due(state, interval, rng, adaptive=adaptive)
            if due != state.next_due:
                moves.append((iso(due), row["name"]))
        conn.executemany("UPDATE feeds SET next_due_at = ? WHERE name = ?", moves)
    return len(moves)


# -- feed management: the rows of a renamed or removed feed (scrape feeds rename/prune) ------

def stored_feeds(conn: Connection) -> dict[str, int]:
    """Every feed name the database holds rows of (a ``feeds`` row or entries), with how
    many entries it has."""
    counts = {row[0]: int(row[1]) for row in
              conn.execute("SELECT feed, count(*) FROM entries GROUP BY feed")}
    for row in conn.execute("SELECT name FROM feeds"):
        counts.setdefault(row[0], 0)
    return counts


def _hold_claims(conn: Connection) -> str:
    """Keep claims off the feeds a rename or prune checks, to the end of its transaction;
    the clause its SELECTs take for that.  SQLite's BEGIN IMMEDIATE already does.  On
    PostgreSQL a claim could land between the check ("not being refreshed") and the move,
    and its refresh would store entries under the old name: the claim lock holds off
    ``claim_due``, and the row locks (``FOR UPDATE``) ``claim_feeds``."""
    if not is_pg(conn):
        return ""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))
    return " FOR UPDATE"


def rename_feed(conn: Connection, old: str, new: str, now: datetime) -> int:
    """Move ``old``'s row (its ETag, Last-Modified and schedule) and entries to ``new``; the
    entries keep their ids, so their dedup links, fingerprints and export records stay
    theirs.  Returns how many entries moved (0: nothing was stored under ``old``).

    ValueError, with nothing changed, when ``old`` is being refreshed now (its entries would
    land under the old name), or ``new`` already has entries (two histories of one feed:
    ``(feed, entry_key)`` is unique).  An empty row of ``new`` (a refresh or daemon start
    since the config named it) is replaced.
    """
    with transaction(conn):
        lock = _hold_claims(conn)
        row = conn.execute(f"SELECT claimed_until FROM feeds WHERE name = ?{lock}",
                           (old,)).fetchone()
        count = "SELECT count(*) FROM entries WHERE feed = ?"
        old_entries = int(conn.execute(count, (old,)).fetchone()[0])
        if row is None and not old_entries:
            return 0
        if row is not None and (row["claimed_until"] or "") > str(iso(now)):
            raise ValueError(f"'{old}' is being refreshed right now; try again in a minute")
        # The new name's row may be claimed too (a daemon already read the edited config):
        # deleting it under that refresh would let it store the feed again beside the move.
        target = conn.execute(f"SELECT claimed_until FROM feeds WHERE name = ?{lock}",
                              (new,)).fetchone()
        if target is not None and (target["claimed_until"] or "") > str(iso(now)):
            raise ValueError(f"'{new}' is being refreshed right now; try again in a minute")
        new_entries = int(conn.execute(count, (new,)).fetchone()[0])
        if new_entries:
            raise ValueError(f"'{new}' already has {new_entries} stored entries (fetched "
                             f"under the new name already?); nothing moved: prune one of "
                             f"the two ('scrape feeds prune') or rename to another name")
        conn.execute("DELETE FROM feeds WHERE name = ?", (new,))
        conn.execute("UPDATE feeds SET name = ? WHERE name = ?", (new, old))
        return conn.execute("UPDATE entries SET feed = ? WHERE feed = ?", (new, old)).rowcount


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune_feeds` deleted, and the clusters whose root it had to replace."""

    feeds: int
    entries: int
    exports: int
    promoted: int


def prune_feeds(conn: Connection, names: Iterable[str],
                choose: Callable[[list[int]], int] | None = None,
                now: datetime | None = None) -> Pruned:
    """Delete every row of the feeds ``names``: their entries with their fingerprints, keys
    and export records, and their ``feeds`` rows; one transaction.

    An entry of theirs may be the root of a cluster whose other members belong to feeds
    that stay: ``choose`` picks the new root among those (ids ascending; the caller knows
    the dedup rule, its best member; default the oldest) and the others point to it, so no
    one else's entry is lost or left linked to nothing.  Their scores stay those of their
    first link (``scrape dedup --rebuild`` recomputes them).

    ValueError, with nothing deleted, when one of them is being refreshed at ``now`` (a
    daemon that has not read the edited config yet): its entries would come back.
    """
    names = sorted(set(names))
    if not names:
        return Pruned(0, 0, 0, 0)
    marks = ",".join("?" * len(names))
    gone = f"SELECT id FROM entries WHERE feed IN ({marks})"
    with transaction(conn):
        # It rewrites clusters' rows (new roots, fingerprints, keys) as a rebuild does: on
        # PostgreSQL it waits for the linkers in flight instead of meeting them row by row
        # in another order (a deadlock).
        lock_index(conn)
        lock = _hold_claims(conn)
        if now is not None:
            busy = [r[0] for r in conn.execute(
                f"SELECT name FROM feeds WHERE name IN ({marks}) AND claimed_until > ?{lock}",
                [*names, iso(now)])]
            if busy:
                raise ValueError(f"being refreshed right now: {', '.join(busy)}; nothing "
                                 "deleted; try again in a minute")
        clusters: dict[int, list[int]] = {}
        for row in conn.execute(f"SELECT id, duplicate_of FROM entries WHERE duplicate_of IN "
                                f"({gone}) AND feed NOT IN ({marks}) ORDER BY id",
                                names + names):
            clusters.setdefault(row[1], []).append(row[0])
        for members in clusters.values():
            head = choose(members) if choose is not None else members[0]
            conn.execute("UPDATE entries SET duplicate_of = NULL, dup_method = NULL, "
                         "dup_score = NULL WHERE id = ?", (head,))
            conn.executemany("UPDATE entries SET duplicate_of = ? WHERE id = ?",
                             [(head, m) for m in members if m != head])
            conn.executemany("UPDATE dedup_fingerprints SET root = ? WHERE entry_id = ?",
                             [(head, m) for m in members])
        stories = [r[0] for r in conn.execute(
            f"SELECT DISTINCT story FROM entries WHERE feed IN ({marks}) "
            f"AND story IS NOT NULL", names)]
        keyed = conn.execute(f"SELECT entry_id, keys FROM dedup_fingerprints "
                             f"WHERE entry_id IN ({gone})", names).fetchall()
        # by primary key: dedup_index has no index on entry_id alone
        conn.executemany("DELETE FROM dedup_index WHERE key = ? AND entry_id = ?",
                         [(k, row[0]) for row in keyed for k in blob_keys(row[1])])
        exports = conn.execute(f"DELETE FROM exports WHERE entry_id IN ({gone})", names).rowcount
        conn.execute(f"DELETE FROM dedup_fingerprints WHERE entry_id IN ({gone})", names)
        entries = conn.execute(f"DELETE FROM entries WHERE feed IN ({marks})", names).rowcount
        feeds = conn.execute(f"DELETE FROM feeds WHERE name IN ({marks})", names).rowcount
        # A story is write-ups in two clusters or more: one left alone is no story.
        for marks_in, chunk in in_lists(stories):
            conn.execute(f"UPDATE entries SET story = NULL WHERE story IN (SELECT story FROM "
                         f"entries WHERE story IN ({marks_in}) GROUP BY story "
                         f"HAVING count(DISTINCT COALESCE(duplicate_of, id)) < 2)", chunk)
    return Pruned(feeds, entries, exports, len(clusters))
