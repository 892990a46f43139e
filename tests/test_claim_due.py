"""``storage.claim_due`` over many feeds (issue 18): what the daemon's tick reads and takes.

The tick must cost what is due, not how many feeds there are: every statement it runs is
answered through an index (the query plans say so; no timing here).  And reading less must
not change what is taken: oldest due first, the per-host limit counted over every process's
live claims, expired claims and a dead process's claims taken again, checked against a plain
reading of every row on a few thousand feeds in varied states.  The behaviour runs on both
backends (the ``database`` fixture); the query plans are SQLite's.  On PostgreSQL several
workers claim at the same moment: each feed goes to one of them, and the per-host limit
holds over all of them together.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pgserver
import pytest

from scraper import storage as store
from scraper.core import decide

ME = "me:1"
HOSTS = [f"h{i}.example" for i in range(12)]


def never_dead(_holder: str) -> bool:
    return False


def populate(conn: store.Connection, now: datetime, n: int, seed: int) -> None:
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


def reference(conn: store.Connection, names: set[str], running: set[str], now: datetime,
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


def test_claim_due_takes_what_a_reading_of_every_row_takes(database: str) -> None:
    now = store.utcnow()
    conn = store.connect(database)
    for seed, (limit, per_host) in enumerate([(32, 4), (5, 100), (1000, 3), (50, 50)]):
        with store.transaction(conn):
            conn.execute("DELETE FROM feeds")
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


def test_a_dead_process_and_an_expired_claim_free_their_feeds(database: str) -> None:
    conn = store.connect(database)
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


# -- several workers at once (issue 21) ------------------------------------------------------

WORKERS = 4


def due_feeds(conn: store.Connection, hosts: int, per: int) -> dict[str, str]:
    """``hosts`` hosts with ``per`` feeds each, all due now; name -> host."""
    feeds = {f"h{h}-{i:02d}": f"h{h}.example" for h in range(hosts) for i in range(per)}
    store.sync_feeds(conn, [(n, f"http://{host}/{n}") for n, host in feeds.items()])
    return feeds


def worker_db(database: str, i: int) -> str:
    """The database as worker ``i`` opens it: on PostgreSQL through a pool of its own, as a
    process of its own would (one process's pool holds a few connections only)."""
    return f"{database}?application_name=w{i}" if store.is_url(database) else database


def live_claims(conn: store.Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(
        "SELECT name, claimed_by FROM feeds WHERE claimed_until > ?",
        (store.iso(store.utcnow()),))}


def test_workers_claiming_at_once_never_share_a_feed_or_overfill_a_host(database: str
                                                                        ) -> None:
    """Four connections ask at the same moment, again and again: what each is given is
    its own, and the hosts' claims together never pass ``per_host`` (each host has more due
    feeds than that, so every slot is filled)."""
    setup = store.connect(database)
    feeds = due_feeds(setup, hosts=3, per=12)
    conns = [store.connect(worker_db(database, i)) for i in range(WORKERS)]
    start = threading.Barrier(WORKERS)

    def ask(i: int) -> list[str]:
        start.wait()
        now = store.utcnow()
        return store.claim_due(conns[i], feeds, claimant=f"w{i}:1", now=now,
                               until=now + timedelta(seconds=60), limit=8, per_host=3,
                               is_dead=never_dead).names

    try:
        with ThreadPoolExecutor(WORKERS) as threads:
            for _ in range(10):
                given = list(threads.map(ask, range(WORKERS)))
                taken = [name for names in given for name in names]
                assert len(taken) == len(set(taken)), given  # no feed given twice
                held = live_claims(setup)
                assert held == {n: f"w{i}:1" for i, names in enumerate(given) for n in names}
                assert Counter(feeds[n] for n in held) == dict.fromkeys(
                    ["h0.example", "h1.example", "h2.example"], 3)
                for i, names in enumerate(given):
                    for name in names:
                        store.release_claim(setup, name, f"w{i}:1")
    finally:
        for conn in [setup, *conns]:
            conn.close()


def test_workers_refreshing_side_by_side_take_each_due_time_once(database: str) -> None:
    """Four workers claim and record outcomes as fast as they can until nothing is due:
    every feed is refreshed exactly once (the outcome moves its due time and releases the
    claim in one transaction), whoever got it."""
    setup = store.connect(database)
    feeds = due_feeds(setup, hosts=4, per=15)
    setup.close()
    conns = [store.connect(worker_db(database, i)) for i in range(WORKERS)]
    start = threading.Barrier(WORKERS)

    def work(i: int) -> list[str]:
        done: list[str] = []
        start.wait()
        for _ in range(10_000):  # (a bound, should the claims never run out)
            now = store.utcnow()
            names = store.claim_due(conns[i], feeds, claimant=f"w{i}:1", now=now,
                                    until=now + timedelta(seconds=60), limit=3,
                                    per_host=2, is_dead=never_dead).names
            if not names and not live_claims(conns[i]):
                return done
            for name in names:
                plan = decide.decide(store.utcnow(), decide.FeedFacts(
                    url=f"http://x/{name}", interval=3600), decide.Attempt(status=200),
                    random.Random(i))
                store.apply_plan(conns[i], name, plan, claimant=f"w{i}:1")
                done.append(name)
        raise AssertionError(f"w{i} still finds feeds to claim")

    try:
        with ThreadPoolExecutor(WORKERS) as threads:
            done = list(threads.map(work, range(WORKERS)))
    finally:
        for conn in conns:
            conn.close()
    refreshed = Counter(name for names in done for name in names)
    assert refreshed == dict.fromkeys(feeds, 1)


def test_once_runs_claiming_one_feed_at_once_get_it_once(database: str) -> None:
    """``scrape --once`` takes a feed whatever its due time: of several runs asking for the
    same feeds at the same moment, one gets each."""
    conns = [store.connect(worker_db(database, i)) for i in range(WORKERS)]
    names = [f"f{i:02d}" for i in range(20)]
    # (rows that exist: a new row's INSERT would make the others wait for its commit)
    store.sync_feeds(conns[0], [(n, f"http://one.example/{n}") for n in names])
    start = threading.Barrier(WORKERS)

    def take(i: int) -> list[str]:
        start.wait()
        now = store.utcnow()
        got = []
        for first in range(0, len(names), 4):  # batches of 4, as a run's claims gather
            got += store.claim_feeds(
                conns[i], [(n, f"http://one.example/{n}", now + timedelta(seconds=60))
                           for n in names[first:first + 4]],
                claimant=f"w{i}:1", now=now, is_dead=never_dead)
        return got

    try:
        with ThreadPoolExecutor(WORKERS) as threads:
            got = list(threads.map(take, range(WORKERS)))
        held = live_claims(conns[0])
    finally:
        for conn in conns:
            conn.close()
    assert sorted(n for names in got for n in names) == names
    assert held == {n: f"w{i}:1" for i, names in enumerate(got) for n in names}


def claim_and_record_side_by_side(database: str, names: tuple[str, str]) -> list[str]:
    """Two runs claim the same two feeds (``claim_feeds``, row locks in name order) and write
    what they got as one batch of outcomes, a failure at the first name and a success at
    the last, 300 times each: the errors they met."""
    setup = store.connect(database)
    store.sync_feeds(setup, [(n, f"http://{n}.example/") for n in names])
    setup.close()
    first, last = sorted(names)
    errors: list[str] = []

    def run(i: int) -> None:
        conn = store.connect(worker_db(database, i))
        me = f"w{i}:1"
        try:
            for _ in range(300):
                now = store.utcnow()
                try:
                    taken = store.claim_feeds(
                        conn, [(n, f"http://{n}.example/", now + timedelta(seconds=60))
                               for n in names], claimant=me, now=now, is_dead=never_dead)
                    writes = [(name, decide.FeedWrite(
                        ok=name == last, url=f"http://{name}.example/", fetched_at=now,
                        status=200 if name == last else 503, next_due_at=now,
                        error_count=0 if name == last else 1,
                        error=None if name == last else "HTTP 503")) for name in taken]
                    store.record_outcomes(conn, writes, me)
                except store.DatabaseError as exc:
                    errors.append(str(exc))
                    store.release_claims(conn, me)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_claims_and_batched_outcomes_side_by_side_never_deadlock(database: str) -> None:
    """``record_outcomes`` must lock in name order across successes and failures, as
    ``claim_feeds`` does.  Written successes first (the last name, then the first),
    PostgreSQL detected 85 deadlocks in 3,000 such rounds (review of the batched failures)."""
    assert claim_and_record_side_by_side(database, ("a", "z")) == []


def test_the_lock_order_is_the_code_points_whatever_the_database_collation(
        pg_server: pgserver.PgServer) -> None:
    """Python sorts 'B' before 'a'; an ``en`` collation sorts 'a' first.  ``claim_feeds``
    locks in code-point order (``COLLATE "C"``) as ``record_outcomes`` does: in the
    database's order, 12 deadlocks in 600 rounds (review)."""
    try:
        url = pg_server.create_database(icu_locale="en")
    except Exception as exc:  # noqa: BLE001  (a server built without ICU)
        pytest.skip(f"no ICU collation on this server: {exc}")
    try:
        assert claim_and_record_side_by_side(url, ("a", "B")) == []
    finally:
        pg_server.drop_database(url)
