"""Issue 18, batched writes: the outcome of a poll that stores nothing (a 304, a 200 of the
stored entries, a failure) is written behind, many per transaction.  What must hold: every such
outcome is in the feed's row once ``--once`` has returned or the daemon has stopped (status,
next due time, claim released), on both backends."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dbread
from daemonrun import EXIT_DEADLINE, feeds_yaml, running_daemon, wait_for
from server import FeedServer, Request, Response

from scraper.cli import main

#: More than one batch (``refresh.FLUSH_AT`` is 64): a full batch, and the rest at the end.
FEEDS = 100


def rss(n: int) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>feed {n}</title><item><title>entry of feed {n}</title>"
            f"<link>https://example.org/{n}/1</link><guid>{n}-1</guid>"
            f"<description>the one entry of feed number {n}</description></item>"
            f"</channel></rss>").encode()


def serve(server: FeedServer, count: int) -> dict[str, str]:
    feeds = {}
    for n in range(count):
        server.serve(f"/f{n}.xml", rss(n))
        feeds[f"f{n}"] = server.url(f"/f{n}.xml")
    return feeds


def stored_second(text: str | None) -> str | None:
    """A time as the feeds table holds it (ISO 8601, whole seconds, UTC, ``Z``)."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_once_records_every_304_outcome(tmp_path: Path, database: str,
                                        feed_server: FeedServer, capsys) -> None:
    feeds = serve(feed_server, FEEDS)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(feeds_yaml(feeds, interval="10m"), encoding="utf-8")
    args = ["--once", "--json", "--config", str(cfg), "--db", database]
    assert main(args) == 0
    capsys.readouterr()
    first = dict(dbread.rows(database, "SELECT name, last_fetch_at FROM feeds"))

    assert main(args) == 0  # every answer a 304 now
    summary = json.loads(capsys.readouterr().out)
    assert {f["status"] for f in summary["feeds"]} == {"not-modified"}
    assert summary["totals"]["unchanged"] == FEEDS  # one stored entry each
    said = {f["feed"]: stored_second(f["next_due_at"]) for f in summary["feeds"]}
    rows = {r[0]: r[1:] for r in dbread.rows(
        database, "SELECT name, last_status, next_due_at, claimed_by, claimed_until, "
                  "last_fetch_at, error_count, entry_count FROM feeds")}
    assert sorted(rows) == sorted(feeds)
    for name, (status, due, by, until, fetched, errors, entries) in rows.items():
        assert (status, by, until, errors, entries) == (304, None, None, 0, 1), name
        assert due == said[name] and due > fetched, name
        assert fetched >= first[name], name
    assert len(feed_server.requests_to("/f0.xml")) == 2


def test_a_200_of_the_stored_document_is_recorded_too(tmp_path: Path, database: str,
                                                      feed_server: FeedServer, capsys) -> None:
    feed_server.route("/same.xml", Response(body=rss(7), etag=False))  # always a 200
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(feeds_yaml({"same": feed_server.url("/same.xml")}, interval="10m"),
                   encoding="utf-8")
    args = ["--once", "--json", "--config", str(cfg), "--db", database]
    assert main(args) == 0
    capsys.readouterr()
    dbread.rows(database, "UPDATE feeds SET last_status = 0, next_due_at = NULL")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["feeds"][0]["status"] == "not-modified"
    row = dbread.rows(database, "SELECT last_status, next_due_at, claimed_by FROM feeds "
                                "WHERE name = 'same'")[0]
    assert row == (200, stored_second(summary["feeds"][0]["next_due_at"]), None)


def test_failed_polls_are_recorded_behind_too(tmp_path: Path, database: str,
                                              feed_server: FeedServer, capsys) -> None:
    feeds = {}
    for n in range(FEEDS):  # a 503 or a document that is no feed, in turn
        bad = Response(status=503) if n % 2 else Response(body=b"<html>no feed</html>")
        feed_server.route(f"/bad{n}.xml", bad)
        feeds[f"bad{n}"] = feed_server.url(f"/bad{n}.xml")
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(feeds_yaml(feeds, interval="10m"), encoding="utf-8")
    assert main(["--once", "--json", "--config", str(cfg), "--db", database]) == 1
    summary = json.loads(capsys.readouterr().out)
    said = {f["feed"]: f for f in summary["feeds"]}
    assert {f["status"] for f in said.values()} == {"error"}
    rows = {r[0]: r[1:] for r in dbread.rows(
        database, "SELECT name, last_status, last_error, error_count, next_due_at, "
                  "claimed_by, claimed_until, last_success_at FROM feeds")}
    assert sorted(rows) == sorted(feeds)
    for name, (status, error, errors, due, by, until, success) in rows.items():
        assert status == (503 if int(name[3:]) % 2 else 200), name
        assert error == said[name]["error"] and error, name
        assert (errors, by, until, success) == (1, None, None, None), name
        assert due == stored_second(said[name]["next_due_at"]), name


class Slow:
    """A feed that answers (a 304 once its ETag is known) after ``seconds``; ``busy`` counts
    the requests being answered now, across all of them."""

    busy = 0
    lock = threading.Lock()

    def __init__(self, body: bytes, seconds: float) -> None:
        self.body, self.seconds = body, seconds

    def __call__(self, _req: Request) -> Response:
        with Slow.lock:
            Slow.busy += 1
        try:
            time.sleep(self.seconds)
        finally:
            with Slow.lock:
                Slow.busy -= 1
        return Response(body=self.body)


def test_the_daemon_writes_the_waiting_outcomes_when_stopped(
        tmp_path: Path, database: str, feed_server: FeedServer) -> None:
    feeds = {}
    for n in range(30):
        feed_server.route(f"/s{n}.xml", Slow(rss(n), 0.3))
        feeds[f"s{n}"] = feed_server.url(f"/s{n}.xml")
    text = feeds_yaml(feeds, interval="1s")
    with running_daemon(tmp_path, text, db=database) as d:
        def polled_304() -> int:
            return sum(1 for e in d.events()
                       if e.get("event") == "refresh" and e.get("http_status") == 304)

        wait_for(lambda: polled_304() >= 2 * len(feeds), 60, "two rounds of 304s", d.proc,
                 d.log_path)
        # Stopped while polls are in flight: they end during the stop, their outcomes
        # handed over just before the database thread closes.
        wait_for(lambda: Slow.busy > 0, 30, "a poll in flight", d.proc, d.log_path)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=EXIT_DEADLINE) == 0
        last: dict[str, dict] = {}
        for event in d.events():
            if event.get("event") == "refresh":
                last[event["feed"]] = event
    rows = {r[0]: r[1:] for r in dbread.rows(
        database, "SELECT name, next_due_at, claimed_by, last_status FROM feeds")}
    assert sorted(last) == sorted(feeds)
    for name, event in last.items():
        assert rows[name] == (event["next_due_at"], None, event["http_status"]), name


def test_an_outcome_that_outlived_its_claim_does_not_overwrite_a_newer_one(
        database: str) -> None:
    """A's claim expired while its outcome waited; B took the feed and recorded its own.
    A's late batch must not put its older ETag and due time back (it writes only rows it
    still holds); B's own batch does write."""
    from datetime import timedelta

    from scraper import storage as store
    from scraper.core.decide import FeedWrite

    conn = store.connect(database)
    store.sync_feeds(conn, [("f", "http://127.0.0.1:9/f.xml")])
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def write(etag: str, minutes: int) -> FeedWrite:
        return FeedWrite(ok=True, url="http://127.0.0.1:9/f.xml", fetched_at=now,
                         status=304, next_due_at=now + timedelta(minutes=minutes),
                         error_count=0, etag=etag)

    with store.transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = 'b:2', claimed_until = ? WHERE name = 'f'",
                     (store.iso(now + timedelta(minutes=5)),))
    store.record_outcomes(conn, [("f", write("old-from-a", 1))], "a:1")
    assert store.feed_state(conn, "f")["etag"] is None  # A holds it no more: not written
    assert store.feed_state(conn, "f")["claimed_by"] == "b:2"
    store.record_outcomes(conn, [("f", write("new-from-b", 30))], "b:2")
    row = store.feed_state(conn, "f")
    assert row["etag"] == "new-from-b" and row["claimed_by"] is None
    assert row["next_due_at"] == store.iso(now + timedelta(minutes=30))

    # A failure's late outcome is dropped the same way, and written while the claim holds.
    failed = FeedWrite(ok=False, url="http://127.0.0.1:9/f.xml", fetched_at=now, status=503,
                       next_due_at=now + timedelta(minutes=2), error_count=1, error="HTTP 503")
    store.record_outcomes(conn, [("f", failed)], "a:1")
    assert store.feed_state(conn, "f")["error_count"] == 0
    with store.transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = 'a:1' WHERE name = 'f'")
    store.record_outcomes(conn, [("f", failed)], "a:1")
    row = store.feed_state(conn, "f")
    conn.close()
    assert (row["error_count"], row["last_error"], row["claimed_by"]) == (1, "HTTP 503", None)
    assert row["next_due_at"] == store.iso(now + timedelta(minutes=2))
    assert row["etag"] == "new-from-b"  # a failure keeps the validators


def test_a_feeds_last_outcome_in_a_batch_is_the_one_written(database: str) -> None:
    """A failed flush puts its outcomes back, and the feed may be polled again before the
    next: two outcomes of one feed in one batch.  The first write releases the claim, so
    only the last is written."""
    from datetime import timedelta

    from scraper import storage as store
    from scraper.core.decide import FeedWrite

    conn = store.connect(database)
    store.sync_feeds(conn, [("f", "http://127.0.0.1:9/f.xml")])
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with store.transaction(conn):
        conn.execute("UPDATE feeds SET claimed_by = 'a:1', claimed_until = ? WHERE name = 'f'",
                     (store.iso(now + timedelta(minutes=5)),))
    failed = FeedWrite(ok=False, url="http://127.0.0.1:9/f.xml", fetched_at=now, status=503,
                       next_due_at=now + timedelta(minutes=2), error_count=1, error="HTTP 503")
    later = FeedWrite(ok=True, url="http://127.0.0.1:9/f.xml", fetched_at=now + timedelta(1),
                      status=304, next_due_at=now + timedelta(days=1, minutes=30),
                      error_count=0, etag="e2")
    store.record_outcomes(conn, [("f", failed), ("f", later)], "a:1")
    row = store.feed_state(conn, "f")
    conn.close()
    assert (row["etag"], row["error_count"], row["last_status"], row["claimed_by"]) == (
        "e2", 0, 304, None)
    assert row["next_due_at"] == store.iso(now + timedelta(days=1, minutes=30))
