"""``scrape status``: the per-feed table, the totals, ``--json``, the ``--check`` exit code,
and the workers (issue 21); on both backends (the ``database`` fixture) where the database
matters."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from server import FeedServer

import scraper
from scraper import app, cli, status
from scraper import storage as store
from scraper.claimant import CLAIMANT

CONFIG = """\
feeds:
  - name: alpha
    url: http://127.0.0.1:9/alpha.xml
  - name: beta
    url: http://127.0.0.1:9/beta.xml
  - name: 快科技
    url: http://127.0.0.1:9/mydrivers.xml
  - name: delta
    url: http://127.0.0.1:9/delta.xml
    enabled: false
"""


ONE_ITEM_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>one</title><link>https://example.org/</link>
<item><title>唯一的一条</title><link>https://example.org/1</link><guid>one-1</guid>
<description>&lt;p&gt;正文只有一段，足够长的一段话。&lt;/p&gt;</description></item>
</channel></rss>
""".encode()


def ago(seconds: float) -> str:
    return store.iso(store.utcnow() - timedelta(seconds=seconds)) or ""


@pytest.fixture
def setup(tmp_path: Path, database: str) -> tuple[Path, str]:
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    db = database
    conn = store.connect(db)
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO feeds (name, url, last_fetch_at, last_success_at, last_error, "
            "last_error_at, error_count, next_due_at, entry_count) VALUES (?,?,?,?,?,?,?,?,?)",
            [("alpha", "http://127.0.0.1:9/alpha.xml", ago(60), ago(60), None, None, 0,
              store.iso(store.utcnow() + timedelta(minutes=29)), 2),
             ("beta", "http://127.0.0.1:9/beta.xml", ago(30), ago(7200), "HTTP 503 Service "
              "Unavailable (after 3 attempts)", ago(30), 3,
              store.iso(store.utcnow() + timedelta(hours=2)), 1),
             ("快科技", "http://127.0.0.1:9/mydrivers.xml", None, None, None, None, 0, None, 0),
             ("gone", "http://127.0.0.1:9/gone.xml", ago(86400), ago(86400), None, None, 0,
              ago(80000), 1)])
        stamp = ago(60)
        rows = [("alpha", "a1", None), ("alpha", "a2", None), ("beta", "b1", 1),
                ("gone", "g1", 2)]
        for feed, key, dup in rows:
            conn.execute("INSERT INTO entries (feed, entry_key, title, fetched_at, updated_at, "
                         "duplicate_of) VALUES (?, ?, ?, ?, ?, ?)",
                         (feed, key, key, stamp, stamp, dup))
    conn.close()
    return config, db


def beat(db: str, age: float, state: str = "running", interval: str = "30") -> None:
    conn = store.connect(db)
    with store.transaction(conn):
        store.set_meta(conn, status.HEARTBEAT, ago(age))
        store.set_meta(conn, status.STATE, state)
        store.set_meta(conn, status.HEARTBEAT_INTERVAL, interval)
        store.set_meta(conn, status.PID, "4242")
        store.set_meta(conn, status.HOST, "box")
    conn.close()


def run(*args: str) -> int:
    return cli.main(list(args))


def test_table_shows_each_feed_and_the_totals(setup: tuple[Path, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config, db = setup
    beat(db, 5)
    assert run("status", "--config", str(config), "--db", str(db)) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "ok" in lines["alpha"].split() and lines["alpha"].split()[-1] == "2"
    beta = lines["beta"]
    assert "failing" in beta and " 3 " in beta and "HTTP 503" in beta
    assert re.search(r"\bin (1h59m|2h)\b", beta)  # next due
    assert "never" in lines["快科技"] and "now" in lines["快科技"]
    assert "disabled" in lines["delta"]
    assert "removed" in lines["gone"]  # its rows stay; status says it left the config
    total = lines["total:"]
    assert "3 feeds, 1 ok, 1 failing, 1 never fetched, 1 disabled, 1 removed" in total
    assert "4 entries (2 originals, 2 duplicates)" in total
    assert "daemon: running (pid 4242 on box)" in out


def test_json_has_every_field_per_feed(setup: tuple[Path, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config, db = setup
    beat(db, 5)
    assert run("status", "--json", "--config", str(config), "--db", str(db)) == 0
    report = json.loads(capsys.readouterr().out)
    feeds = {f["name"]: f for f in report["feeds"]}
    assert list(feeds) == ["alpha", "beta", "快科技", "delta", "gone"]
    beta = feeds["beta"]
    for key in ("last_success_at", "last_error", "last_error_at", "error_count",
                "next_due_at", "entry_count"):
        assert key in beta
    assert beta["error_count"] == 3 and beta["state"] == "failing"
    assert beta["last_error"].startswith("HTTP 503")
    assert feeds["alpha"]["entry_count"] == 2 and feeds["alpha"]["last_error"] is None
    assert feeds["快科技"]["next_due_at"] is None and feeds["快科技"]["state"] == "never"
    assert feeds["gone"]["overdue_seconds"] > 0
    assert report["totals"] == {"feeds": 3, "ok": 1, "failing": 1, "never_fetched": 1,
                                "refreshing": 0, "disabled": 1, "removed": 1, "entries": 4,
                                "duplicates": 2, "originals": 2}
    assert report["daemon"]["healthy"] is True and report["daemon"]["pid"] == "4242"


def test_a_claimed_feed_shows_as_refreshing(setup: tuple[Path, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config, db = setup
    conn = store.connect(db)
    conn.execute("UPDATE feeds SET claimed_by = 'box:1', claimed_until = ? WHERE name = 'alpha'",
                 (store.iso(store.utcnow() + timedelta(minutes=5)),))
    conn.close()
    assert run("status", "--json", "--config", str(config), "--db", str(db)) == 0
    feeds = {f["name"]: f for f in json.loads(capsys.readouterr().out)["feeds"]}
    assert feeds["alpha"]["state"] == "refreshing" and feeds["alpha"]["claimed_by"] == "box:1"


@pytest.mark.parametrize(("age", "state", "expected"), [
    (5, "running", 0),
    (85, "running", 0),     # within 3 beats of 30 s (beats are stored to the second: 89 flaked)
    (200, "running", 1),    # stale: the loop is stuck or the process is gone
    (5, "stopped", 1),      # a clean stop is not a healthy daemon either
    (5, "stopping", 0),     # still finishing its refreshes
])
def test_check_exit_code_follows_the_heartbeat(setup: tuple[Path, str], age: float, state: str,
                                               expected: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, db = setup
    beat(db, age, state)
    assert run("status", "--check", "--config", str(config), "--db", str(db)) == expected
    line = capsys.readouterr().out.strip()
    assert line.startswith("daemon healthy" if expected == 0 else "daemon UNHEALTHY")


def test_check_without_any_heartbeat_fails(setup: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config, db = setup
    assert run("status", "--check", "--config", str(config), "--db", str(db)) == 1
    assert "never run" in capsys.readouterr().out


def test_check_max_age_overrides_the_interval(setup: tuple[Path, str]) -> None:
    config, db = setup
    beat(db, 20)
    assert run("status", "--check", "--max-age", "10", "--db", str(db)) == 1
    assert run("status", "--check", "--max-age", "60", "--db", str(db)) == 0


def test_stale_limit_follows_the_daemons_heartbeat_interval(setup: tuple[Path, str]) -> None:
    _, db = setup
    beat(db, 70, interval="1")  # the test daemon beats every second: 60 s floor applies
    assert run("status", "--check", "--db", str(db)) == 1
    beat(db, 250, interval="100")  # 3 x 100 s
    assert run("status", "--check", "--db", str(db)) == 0


def test_check_does_not_need_a_valid_config(setup: tuple[Path, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # A typo in feeds.yaml is refused by the running daemon; the container must stay healthy.
    config, db = setup
    config.write_text("feeds: [unclosed\n", encoding="utf-8")
    beat(db, 5)
    assert run("status", "--check", "--config", str(config), "--db", str(db)) == 0
    assert run("status", "--config", str(config), "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "config not loaded" in out and "alpha" in out


def test_missing_database_is_unhealthy_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nothing.db"
    assert run("status", "--check", "--db", str(db)) == 1
    assert run("status", "--db", str(db)) == 1
    assert not db.exists()


def test_bad_config_without_db_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - name: x\n", encoding="utf-8")
    assert run("status", "--config", str(config)) == cli.EXIT_CONFIG


def test_daemon_health_reads_meta_only(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "x.db")
    store.set_meta(conn, status.HEARTBEAT, "2024-05-01T11:59:00Z")
    store.set_meta(conn, status.STATE, "running")
    conn.close()
    now = datetime.fromisoformat("2024-05-01T12:00:00+00:00")
    with scraper.open_scraper(db=tmp_path / "x.db") as app:  # no config needed
        health = app.health(now)
        assert health.healthy and health.age == 60
        assert health.stale_after == status.MIN_STALE_AFTER
        assert not app.health(now + timedelta(seconds=1)).healthy
        assert app.health(now, max_age=59).reason.startswith("heartbeat is stale")


def test_status_through_the_python_api(setup: tuple[Path, str]) -> None:
    config, db = setup
    beat(db, 5)
    with scraper.open_scraper(scraper.load(config), db) as app:
        report = app.status()
    assert [f["name"] for f in report["feeds"]] == ["alpha", "beta", "快科技", "delta", "gone"]
    assert report["totals"]["entries"] == 4 and report["totals"]["failing"] == 1
    assert report["daemon"]["healthy"] is True


@pytest.mark.parametrize("options", [{"create": False}, {"access": "read"},
                                     {"access": "export"}])
def test_status_never_creates_a_database(tmp_path: Path, options: dict) -> None:
    with pytest.raises(app.NoDatabase, match="no database at"):
        scraper.open_scraper(db=tmp_path / "none.db", **options)
    assert not (tmp_path / "none.db").exists()


def test_memory_figures_an_older_daemon_left_are_not_shown(
        setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Releases before 0.2 wrote their memory figures into meta; status no longer shows them.
    config, db = setup
    beat(db, 5)
    conn = store.connect(db)
    store.set_meta(conn, "daemon.memory", json.dumps({"rss_bytes": 96 * 1048576}))
    conn.close()
    assert run("status", "--config", str(config), "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "daemon: running" in out and "memory" not in out
    assert run("status", "--json", "--config", str(config), "--db", str(db)) == 0
    assert "memory" not in json.loads(capsys.readouterr().out)["daemon"]


def test_a_refresh_through_the_python_api_shows_in_status(
        tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.serve("/one.xml", ONE_ITEM_FEED)
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - name: one\n    url: {feed_server.url('/one.xml')}\n"
                      f"  - name: paused\n    url: {feed_server.url('/off.xml')}\n"
                      "    enabled: false\n", encoding="utf-8")
    done: list[str] = []
    with scraper.open_scraper(scraper.load(config), tmp_path / "scrape.db") as app:
        results = app.refresh_once(workers=0, on_done=lambda r: done.append(r.feed))
        assert [(r.feed, r.new, r.failed) for r in results] == [("one", 1, False)]
        assert done == ["one"]
        with pytest.raises(scraper.ConfigError, match="no feed named 'nope'"):
            app.refresh_once(["nope"], workers=0)
        report = app.status()
    feeds = {f["name"]: f for f in report["feeds"]}
    assert feeds["one"]["state"] == "ok" and feeds["one"]["entry_count"] == 1
    assert feeds["paused"]["state"] == "disabled"
    assert not feed_server.requests_to("/off.xml")


def test_status_reads_beside_a_writer(setup: tuple[Path, str]) -> None:
    # A reader is not blocked by a writer's open transaction (SQLite: WAL; PostgreSQL: MVCC).
    config, db = setup
    beat(db, 5)
    writer = store.connect(db)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), store.transaction(writer):
        writer.execute("UPDATE feeds SET error_count = 9 WHERE name = 'alpha'")
        assert run("status", "--check", "--db", str(db)) == 0
        assert run("status", "--json", "--config", str(config), "--db", str(db)) == 0
        raise Undo  # (rolled back)
    writer.close()


def test_urls_show_each_feed_with_rsshub_routes_resolved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--urls`` adds the URL each feed is fetched from; ``--json`` always has it.  With a
    config, its URL (the next fetch's); with ``--db`` alone, the one stored at the last run."""
    route = "/zaker/channel/13"
    old_base, new_base = "https://rsshub.app", "http://rsshub.internal:1200"
    config = tmp_path / "feeds.yaml"
    db = tmp_path / "scrape.db"
    plain = "https://www.ithome.com/rss/"
    conn = store.connect(db)  # as the last run left it, under the old rsshub_base
    store.sync_feeds(conn, [("zaker", old_base + route), ("ithome", plain)])
    conn.close()
    config.write_text(f"rsshub_base: {new_base}\nfeeds:\n"
                      f"  - name: zaker\n    url: 'rsshub:{route}'\n"
                      f"  - name: ithome\n    url: {plain}\n", encoding="utf-8")

    def urls(*args: str) -> dict[str, str]:
        assert run("status", "--urls", *args, "--db", str(db)) == 0
        lines = capsys.readouterr().out.splitlines()
        column = lines[0].index(" url ") + 1
        assert lines[0][column:].split()[0] == "url"
        return {line.split()[0]: line[column:].split()[0] for line in lines[1:3]}

    assert urls("--config", str(config)) == {"zaker": new_base + route, "ithome": plain}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no feeds.yaml: the stored URLs
    assert urls() == {"zaker": old_base + route, "ithome": plain}
    assert run("status", "--json", "--config", str(config), "--db", str(db)) == 0
    feeds = json.loads(capsys.readouterr().out)["feeds"]
    assert {f["name"]: f["url"] for f in feeds} == {"zaker": new_base + route, "ithome": plain}
    assert run("status", "--config", str(config), "--db", str(db)) == 0
    assert "rsshub" not in capsys.readouterr().out  # the plain table stays as it was


# -- the workers (issue 21) ----------------------------------------------------------------

def worker(name: str, kind: str, state: str, beat_age: float,
           interval: float = 30) -> store.Worker:
    host, _, pid = name.partition(":")
    return store.Worker(name=name, host=host, pid=int(pid), kind=kind, state=state,
                        started_at=ago(3600), heartbeat_at=ago(beat_age),
                        heartbeat_interval=interval, version="0.1.0")


def claim(conn: store.Connection, holder: str, names: list[str], seconds: float) -> None:
    until = store.iso(store.utcnow() + timedelta(seconds=seconds))
    conn.executemany("UPDATE feeds SET claimed_by = ?, claimed_until = ? WHERE name = ?",
                     [(holder, until, n) for n in names])


def test_status_lists_the_workers_alive_and_what_each_holds(
        database: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = store.connect(database)
    store.sync_feeds(conn, [(f"f{i}", f"http://127.0.0.1:9/{i}") for i in range(12)])
    for row in (worker("a:1", "daemon", "running", 5),
                worker("b:2", "once", "running", 50, interval=20),  # 3 beats of 20 s: alive
                worker("c:3", "daemon", "stopped", 5),       # stopped cleanly
                worker("d:4", "daemon", "running", 500),     # killed: its beats stopped
                worker("e:5", "daemon", "running", 70, interval=1)):  # 60 s floor: gone
        store.put_worker(conn, row)
    claim(conn, "a:1", ["f0", "f1"], 60)
    claim(conn, "a:1", ["f2"], -1)  # expired: held no more
    claim(conn, "b:2", [f"f{i}" for i in range(3, 10)], 60)
    claim(conn, "d:4", ["f10"], 60)  # the dead one's claim, until it expires
    conn.close()

    assert run("status", "--json", "--db", database) == 0
    workers = {w["name"]: w for w in json.loads(capsys.readouterr().out)["workers"]}
    assert {n: (w["alive"], w["holds"]) for n, w in workers.items()} == {
        "a:1": (True, 2), "b:2": (True, 7), "c:3": (False, 0), "d:4": (False, 1),
        "e:5": (False, 0)}
    assert workers["a:1"]["feeds"] == ["f0", "f1"]
    assert workers["b:2"]["kind"] == "once" and workers["b:2"]["pid"] == 2
    assert workers["d:4"]["feeds"] == ["f10"] and workers["d:4"]["state"] == "running"

    assert run("status", "--db", database) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "workers: 2 alive" in out
    assert set(lines) == {"a:1", "b:2", "d:4"}  # alive, or still holding claims
    assert "holds 2: f0, f1" in lines["a:1"] and "daemon" in lines["a:1"]
    assert "holds 7: f3, f4, f5, f6, f7, +2 more" in lines["b:2"]
    assert "silent since" in lines["d:4"] and "holds 1: f10" in lines["d:4"]


def test_a_once_run_leaves_a_stopped_worker_row(
        tmp_path: Path, database: str, feed_server: FeedServer) -> None:
    feed_server.serve("/one.xml", ONE_ITEM_FEED)
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - name: one\n    url: {feed_server.url('/one.xml')}\n",
                      encoding="utf-8")
    conn = store.connect(database)
    store.put_worker(conn, worker("old:7", "once", "stopped", 2 * 86400))  # long forgotten
    conn.close()
    with scraper.open_scraper(scraper.load(config), database) as app:
        app.refresh_once(workers=0)
        workers = app.status()["workers"]
    assert [(w["name"], w["kind"], w["state"], w["alive"], w["holds"]) for w in workers] == [
        (CLAIMANT, "once", "stopped", False, 0)]


@pytest.mark.parametrize(("mine", "other", "expected"), [
    ("running", "stopped", 0),  # another replica's clean stop: this one is still healthy
    ("stopped", "running", 1),  # this machine's daemon stopped: another beating is not it
])
def test_check_follows_this_machines_daemon_where_it_has_one(
        database: str, mine: str, other: str, expected: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Several daemons on one PostgreSQL database (``--scale scraper=3``): each container's
    ``status --check`` answers for the daemon of its own host, whatever the others do."""
    import socket

    conn = store.connect(database)
    # This process's pid: a daemon row of this machine whose pid is gone is a killed one.
    store.put_worker(conn, worker(f"{socket.gethostname()}:{os.getpid()}", "daemon", mine, 5))
    store.put_worker(conn, worker("elsewhere:8", "daemon", other, 2))
    conn.close()
    beat(database, 2, other)  # the other daemon beat last: the database-wide heartbeat is its
    assert run("status", "--check", "--db", database) == expected
    line = capsys.readouterr().out
    assert ("daemon healthy" if expected == 0 else "daemon UNHEALTHY") in line
    assert "the daemon stopped" in line if expected else "heartbeat" in line


def test_a_daemon_of_this_machine_killed_is_neither_alive_nor_healthy(
        database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``kill -9`` leaves a fresh heartbeat behind: status showed the daemon running and
    healthy, and its worker alive, until the heartbeat went stale.  Its pid, gone from this
    machine, says at once that it is dead."""
    import subprocess
    import sys

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host, machine = CLAIMANT.partition(":")[0], CLAIMANT.partition("@")[2]
    conn = store.connect(database)
    store.put_worker(conn, store.Worker(
        name=f"{host}:{ended.pid}@{machine}", host=host, pid=ended.pid, kind="daemon",
        state="running", started_at=ago(60), heartbeat_at=ago(1), heartbeat_interval=30,
        version="0.1.0"))
    conn.close()
    assert run("status", "--check", "--db", database) == 1
    assert f"pid {ended.pid}) is gone" in capsys.readouterr().out
    assert run("status", "--json", "--db", database) == 0
    [row] = json.loads(capsys.readouterr().out)["workers"]
    assert row["alive"] is False
