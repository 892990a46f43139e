"""``storage.claim_due`` over many feeds (issue 18): what the daemon's tick reads and takes.

The tick must cost what is due, not how many feeds there are: every statement it runs is
answered through an index (the query plans say so; no timing here).  And reading less must
not change what is taken: oldest due first, the per-host limit counted over every process's
live claims, expired claims and a dead process's claims taken again, checked against a plain
reading of every row on a few thousand feeds in varied states.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from scraper import storage as store

ME = "me:1"
HOSTS = [f"h{i}.example" for i in range(12)]


def never_dead(_holder: str) -> bool:
    return False


def populate(conn: sqlite3.Connection, now: datetime, n: int, seed: int) -> None:
    """``n`` feeds over a few hosts: never fetched, due, not yet due; free, claimed live by
    others, by us, expired, by a dead process."""
    rng = random.Random(seed)
    feeds = [(f"f{i:05d}", f"http://{rng.choice(HOSTS)}/{i}") for i in range(n)]
    store.sync_feeds(conn, feeds)
    rows = []
    for name, _ in feeds:
        due = rng.choice([None, now - timedelta(minutes=rng.randint(0, 600)),
                          now + timedelta(minutes=rng.randint(1, 600))])
        holder, until = rng.choices([
            (None, None),
            ("other:2", now + timedelta(seconds=30)),   # live
            ("other:2", now - timedelta(seconds=30)),   # expired
            ("dead:3", now + timedelta(seconds=30)),    # its process is gone
            (ME, now + timedelta(seconds=30)),          # ours
        ], weights=[0.978, 0.002, 0.01, 0.005, 0.005])[0]
        rows.append((store.iso(due), holder, store.iso(until), name))
    with store.transaction(conn):
        conn.executemany("UPDATE feeds SET next_due_at = ?, claimed_by = ?, claimed_until = ? "
                         "WHERE name = ?", rows)


def reference(conn: sqlite3.Connection, names: set[str], running: set[str], now: datetime,
              limit: int, per_host: int) -> list[str]:
    """What should be taken, from every row: the rule as the docstring states it."""
    stamp = store.iso(now) or ""
    rows = [dict(r) for r in conn.execute("SELECT * FROM feeds")]

    def live(r: dict) -> bool:
        return (r["claimed_by"] not in (None, "dead:3")
                and (r["claimed_until"] or "") >= stamp)

    busy = Counter(urlsplit(r["url"]).hostname for r in rows if live(r) and (
        r["claimed_by"] != ME or r["name"] in running or r["name"] not in names))
    due = sorted((r for r in rows if r["name"] in names and r["name"] not in running
                  and (r["claimed_by"] == ME or not live(r))
                  and (r["next_due_at"] is None or r["next_due_at"] <= stamp)),
                 key=lambda r: ("" if r["next_due_at"] is None else "1" + r["next_due_at"],
                                r["name"]))
    taken = []
    for r in due:
        host = urlsplit(r["url"]).hostname
        if len(taken) < limit and busy[host] < per_host:
            busy[host] += 1
            taken.append(r["name"])
    return taken


def test_claim_due_takes_what_a_reading_of_every_row_takes(tmp_path: Path) -> None:
    now = store.utcnow()
    for seed, (limit, per_host) in enumerate([(32, 4), (5, 100), (1000, 3), (50, 50)]):
        conn = store.connect(tmp_path / f"{seed}.db")
        populate(conn, now, 3000, seed)
        all_names = [r[0] for r in conn.execute("SELECT name FROM feeds")]
        rng = random.Random(seed)
        names = set(rng.sample(all_names, 2500))  # the rest: another daemon's, or removed
        ours = [r[0] for r in conn.execute("SELECT name FROM feeds WHERE claimed_by = ?",
                                           (ME,))]
        running = {n for n in ours if n in names and rng.random() < 0.5}
        expected = reference(conn, names, running, now, limit, per_host)
        assert expected  # the case takes something
        claimed = store.claim_due(conn, names, running=running, claimant=ME, now=now,
                                  until=now + timedelta(seconds=60), limit=limit,
                                  per_host=per_host,
                                  is_dead=lambda holder: holder == "dead:3")
        assert claimed.names == expected
        for name in claimed.names:
            assert store.feed_state(conn, name)["claimed_by"] == ME
        # Whatever was left says why: a full slot count, or hosts at their limit.
        left = reference(conn, names, running, now, 10_000, 10_000)
        assert claimed.held_back == bool(left)
        conn.close()


def test_a_dead_process_and_an_expired_claim_free_their_feeds(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "x.db")
    now = store.utcnow()
    store.sync_feeds(conn, [("a", "http://one.example/a"), ("b", "http://one.example/b"),
                            ("c", "http://one.example/c")])
    with store.transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = 'dead:3', claimed_until = ? "
                     "WHERE name = 'a'", (store.iso(now + timedelta(seconds=30)),))
        conn.execute("UPDATE feeds SET claimed_by = 'other:2', claimed_until = ? "
                     "WHERE name = 'b'", (store.iso(now - timedelta(seconds=1)),))
        conn.execute("UPDATE feeds SET claimed_by = 'other:2', claimed_until = ? "
                     "WHERE name = 'c'", (store.iso(now + timedelta(seconds=30)),))

    def ask(is_dead: store.feeds.IsDead, running: frozenset[str] = frozenset()
            ) -> store.Claimed:
        return store.claim_due(conn, {"a", "b", "c"}, running=running, claimant=ME, now=now,
                               until=now + timedelta(seconds=60), limit=10, per_host=2,
                               is_dead=is_dead)

    # While dead:3 counts as alive, its claim and other:2's live one fill the host; other:2's
    # expired claim on "b" holds nothing, but there is no slot left for it.
    first = ask(never_dead)
    assert first.names == [] and first.full_hosts == {"one.example"}
    # dead:3 is gone: "a" is free, and its slot too.
    second = ask(lambda holder: holder == "dead:3")
    assert second.names == ["a"] and second.full_hosts == {"one.example"}
    # While we refresh "a", the expired claim on "b" is taken over.
    assert ask(never_dead, running=frozenset({"a"})).names == []
    store.release_claim(conn, "c", "other:2")
    assert ask(never_dead, running=frozenset({"a"})).names == ["b"]
    conn.close()


def test_every_statement_of_a_claim_goes_through_an_index(tmp_path: Path) -> None:
    """The tick reads the due rows and the claimed rows, never every feed: each statement's
    query plan searches an index (a ``SCAN feeds`` would read all 100,000 rows)."""
    conn = store.connect(tmp_path / "x.db")
    now = store.utcnow()
    populate(conn, now, 2000, 7)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    claimed = store.claim_due(conn, {f"f{i:05d}" for i in range(2000)}, claimant=ME,
                              now=now, until=now + timedelta(seconds=60), limit=8,
                              per_host=2, is_dead=never_dead)
    conn.set_trace_callback(None)
    assert claimed.names
    plans = {}
    for sql in statements:
        if sql.split()[0].upper() in ("SELECT", "UPDATE"):
            plans[sql] = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    details = [d for plan in plans.values() for d in plan]
    assert any("feeds_due" in d for d in details), plans
    assert any("feeds_claimed" in d for d in details), plans
    for sql, plan in plans.items():
        for detail in plan:
            assert not detail.startswith("SCAN"), (sql, plan)
            assert "TEMP B-TREE" not in detail, (sql, plan)  # no sort of every due row
    conn.close()
