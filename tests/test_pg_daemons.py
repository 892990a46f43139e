"""Two daemons on one PostgreSQL database, one of them lost mid-refresh (issue 21).

What must hold: the other daemon takes the lost one's feeds over once their claims expire,
and nothing is lost or doubled (every entry the feeds served is stored exactly once).

The lost daemon is first frozen (SIGSTOP, its whole process group), then killed with
SIGKILL.  Frozen, it is a machine that hangs or drops off the network: its process still
exists, so only the claims' expiry frees its feeds (a killed process of this machine would be
seen gone at once, ``refresh.claim_is_dead``, which other machines cannot see); killed, its
refresh in flight never ends.  ``SCRAPE_CLAIM_LEASE`` shortens the claims to seconds, and the
database ends a transaction left idle by the frozen process after a few seconds
(``idle_in_transaction_session_timeout``), as a production server should, so its locks
(claim_due's advisory lock among them) do not stall the survivor.

No step waits on a clock but the lease: the server holds every feed's first request until
the test has seen both daemons hold claims and frozen one of them, then releases them all.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

from corpus import post_link, rss_feed, rss_item, seed_posts
from daemonrun import EXIT_DEADLINE, running_daemon, scrape, wait_for
from server import FeedServer, Request, Response

from scraper import storage as store

#: The claims' lease (SCRAPE_CLAIM_LEASE): the one timed part of the test.  Everything
#: between the daemons' first claims and the release of their requests (finding both
#: holders, freezing one, ``scrape status``, the survivor storing its feeds) must fit in it,
#: with room for a loaded two-core machine; the takeover waits for it once.
LEASE = 30
#: The longest a held request waits for the test to release it (a failed test must not
#: leave the server's threads waiting for ever).
HOLD_LIMIT = 300.0
FEEDS = [f"f{i}" for i in range(8)]


class Held:
    """A static feed whose first request waits for ``release`` (the test's, not a clock's),
    noting when each request came; later requests (the takeover) are answered at once."""

    def __init__(self, name: str, release: threading.Event) -> None:
        self.links = [post_link(p, f"https://{name}.example") for p in seed_posts()[:4]]
        self.body = rss_feed(name, [rss_item(p, link) for p, link in
                                    zip(seed_posts()[:4], self.links, strict=True)])
        self.release = release
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, _req: Request) -> Response:
        with self.lock:
            self.times.append(time.time())
            first = len(self.times) == 1
        if first:
            self.release.wait(HOLD_LIMIT)
        return Response(body=self.body, headers={"Content-Type": "application/rss+xml"})


def claims(url: str) -> dict[str, tuple[str, str]]:
    """Feed -> (holder, claimed_until) of every claim in the database."""
    conn = store.open_existing(url)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT name, claimed_by, claimed_until FROM feeds WHERE claimed_by IS NOT NULL")}
    finally:
        conn.close()


def test_a_daemon_lost_mid_refresh_hands_its_feeds_over_when_the_claims_expire(
        feed_server: FeedServer, tmp_path: Path, pg_url: str) -> None:
    conn = store.connect(pg_url)
    conn.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} "
                 "SET idle_in_transaction_session_timeout = '3s'")
    conn.close()
    release = threading.Event()
    feeds = {name: Held(name, release) for name in FEEDS}
    for name, handler in feeds.items():
        feed_server.route(f"/{name}.xml", handler)
    # Four at a time each, and every first request held: the first daemon to ask takes four
    # and can take no more, so the other takes the rest.  Every feed is due once (an hour's
    # interval): a second refresh is a takeover, or a bug.
    lines = ["fetch:", "  concurrency: 4", "  per_host: 16", "  retries: 0", "feeds:"]
    for name in FEEDS:
        lines += [f"  - name: {name}", f"    url: {feed_server.url(f'/{name}.xml')}",
                  "    interval: 1h"]
    (tmp_path / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    timings = {"SCRAPE_CLAIM_LEASE": str(LEASE), "SCRAPE_CONFIG_POLL": "0"}
    with running_daemon(tmp_path, None, log_name="one.log", db=pg_url, **timings) as one, \
            running_daemon(tmp_path, None, log_name="two.log", db=pg_url, **timings) as two:
        daemons = {one.proc.pid: one, two.proc.pid: two}
        held: dict[str, tuple[str, str]] = {}

        def all_in_flight() -> bool:
            nonlocal held
            held = claims(pg_url)
            return len(held) == len(FEEDS) and all(h.times for h in feeds.values())

        wait_for(all_in_flight, 120, "every feed claimed and requested", one.proc,
                 one.log_path)
        holders = {holder for holder, _ in held.values()}
        assert len(holders) == 2, held  # the work was shared
        lost_name = sorted(holders)[0]
        lost = daemons[int(lost_name.partition("@")[0].rpartition(":")[2])]  # host:pid@machine
        survivor = two if lost is one else one
        taken = {name for name, (holder, _) in held.items() if holder == lost_name}
        expiry = {name: store.parse_iso(held[name][1]) for name in taken}
        os.killpg(lost.proc.pid, signal.SIGSTOP)  # its refreshes are in flight (held)
        release.set()  # the survivor's refreshes end; the frozen one's never read theirs

        # While frozen, status lists both workers, and the feeds the frozen one holds.
        status = scrape("status", "--json", "--db", pg_url, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        workers = {w["name"]: w for w in json.loads(status.stdout)["workers"]}
        assert set(workers) == holders
        assert workers[lost_name]["alive"] and workers[lost_name]["kind"] == "daemon"
        assert set(workers[lost_name]["feeds"]) == taken

        wait_for(lambda: all(len(feeds[n].times) >= 2 for n in taken), LEASE + 120,
                 "the survivor refreshing the frozen daemon's feeds", survivor.proc,
                 survivor.log_path)
        # Not before their claims expired: the frozen process still exists.
        for name in taken:
            assert datetime.fromtimestamp(feeds[name].times[1], expiry[name].tzinfo) >= expiry[
                name], name
        os.killpg(lost.proc.pid, signal.SIGKILL)  # its refreshes never end
        lost.proc.wait(timeout=10)
        wait_for(lambda: not claims(pg_url), 120, "the survivor's refreshes done",
                 survivor.proc, survivor.log_path)
        survivor.proc.send_signal(signal.SIGTERM)
        assert survivor.proc.wait(timeout=EXIT_DEADLINE) == 0, survivor.log_text()[-3000:]

    refreshed = [e["feed"] for e in survivor.events() if e.get("event") == "refresh"]
    assert all(e["status"] == "ok" for e in survivor.events() if e.get("event") == "refresh")
    assert sorted(refreshed) == FEEDS  # its own feeds and the lost one's, once each
    for name, handler in feeds.items():
        assert len(handler.times) == (2 if name in taken else 1), name
    conn = store.open_existing(pg_url)
    try:
        stored = [(r[0], r[1]) for r in conn.execute("SELECT feed, url FROM entries")]
        rows = {r[0]: r for r in conn.execute(
            "SELECT name, state, kind FROM workers")}
        entry_counts = dict(conn.execute("SELECT name, entry_count FROM feeds").fetchall())
    finally:
        conn.close()
    served = [(name, link) for name, handler in feeds.items() for link in handler.links]
    assert sorted(stored) == sorted(served)  # each served entry once: none lost, none twice
    assert entry_counts == dict.fromkeys(FEEDS, 4)
    survivor_name = next(iter(holders - {lost_name}))
    assert tuple(rows[survivor_name]) == (survivor_name, "stopped", "daemon")
    assert rows[lost_name][1] == "running"  # killed: it never said otherwise
