"""A PostgreSQL database that cannot be used is one line naming it, exit 2 (issue 21): the
server down, a database or a user that does not exist, a database never migrated, a user
without the privileges; the password never shown.  And a daemon whose server goes away
mid-run says so once, not at every tick, and carries on when the server is back.  (psycopg
missing cannot be tested here: it is installed.)"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import dbread
import pgserver
import pytest
from server import FeedServer

from scraper.cli import main

REPO = Path(__file__).resolve().parent.parent
#: A password that must never reach the output (no server here checks it: they trust).
SECRET = "Hunter2-not-to-be-shown"


def free_port() -> int:
    """A port nothing listens on (bound and released: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_of(server: pgserver.PgServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def refused(command: list[str], url: str, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``command`` on ``url``: exit 2 and one line on stderr, which is returned."""
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    capsys.readouterr()
    assert main([*command, "--config", str(config), "--db", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("scrape: ") and "Traceback" not in err and "unexpected" not in err
    return err


COMMANDS = [["--once"], ["status"], ["dups"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_server_that_is_down_is_named_with_the_reason(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://scrape@127.0.0.1:{free_port()}/scrape"
    err = refused(command, url, tmp_path, capsys)
    assert f"scrape: {url}: connection refused" in err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_database_that_does_not_exist_is_named(
        command: list[str], pg_server: pgserver.PgServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = pg_server.url("no_such_database")
    err = refused(command, url, tmp_path, capsys)
    assert err == f'scrape: {url}: database "no_such_database" does not exist\n'


@pytest.mark.parametrize("where", ["user", "query", "user, with ? and #", "sslpassword"])
def test_the_password_never_appears(where: str, pg_server: pgserver.PgServer, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A user the server does not know, with a password in either place libpq reads one:
    the message names the URL with the password as ***, even with -vv."""
    host = f"127.0.0.1:{port_of(pg_server)}"
    url, shown = {
        "user": (f"postgresql://nobody:{SECRET}@{host}/postgres",
                 f"postgresql://nobody:***@{host}/postgres"),
        "query": (f"postgresql://nobody@{host}/postgres?password={SECRET}",
                  f"postgresql://nobody@{host}/postgres?password=***"),
        # libpq reads the user part up to the last @ before the path, ? and # included,
        # where Python's urlsplit stops at them.
        "user, with ? and #": (f"postgresql://nobody:{SECRET}?#x@{host}/postgres",
                               f"postgresql://nobody:***@{host}/postgres"),
        "sslpassword": (f"postgresql://nobody@{host}/postgres?sslpassword={SECRET}",
                        f"postgresql://nobody@{host}/postgres?sslpassword=***"),
    }[where]
    for command in (["--once", "-vv"], ["status", "-vv"]):
        err = refused(command, url, tmp_path, capsys)
        assert err == f'scrape: {shown}: role "nobody" does not exist\n'
        assert SECRET not in err


def test_a_read_command_on_a_database_never_migrated_says_to_run_once(
        pg_server: pgserver.PgServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """As on SQLite: the read commands never create the schema, and say what will."""
    url = pg_server.create_database(migrated=False)
    for command in (["status"], ["dups"], ["list"]):
        err = refused(command, url, tmp_path, capsys)
        assert err.startswith(f"scrape: {url}: holds no scrape tables yet: run `scrape --once`")
    assert dbread.rows(url, "SELECT to_regclass('feeds'), to_regclass('schema_version')") == [
        (None, None)]


def test_a_user_without_the_privileges_is_told_what_it_needs(
        pg_server: pgserver.PgServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL 15 lets only a database's owner create tables in schema public; the
    tables scrape made belong to their creator.  Another user is told so, not a traceback."""
    user = f"stranger{os.getpid()}"
    dbread.rows(pg_server.url("postgres"), f"CREATE ROLE {user} LOGIN")
    as_user = pg_server.url("").replace("//scrape@", f"//{user}@").rstrip("/")
    empty = pg_server.create_database(migrated=False).rsplit("/", 1)[1]
    made = pg_server.create_database().rsplit("/", 1)[1]
    try:
        for name, command, what in ((empty, ["--once"], "schema public"),
                                    (made, ["--once"], "table schema_version"),
                                    (made, ["status"], "table schema_version")):
            url = f"{as_user}/{name}"
            err = refused(command, url, tmp_path, capsys)
            assert err.startswith(f"scrape: {url}: permission denied for {what}; scrape "
                                  "needs a user that owns the database (createdb -O USER)"), err
    finally:
        from scraper.storage import pg

        pg.close_pools()  # (its sessions end, so the role can go: SCRAPE_TEST_PG's server stays)
        dbread.rows(pg_server.url("postgres"), f"DROP ROLE {user}")


def test_a_connection_lost_in_a_transaction_fails_it_and_the_next_one_reconnects(
        pg_url: str) -> None:
    """The server ends the session mid-transaction (a restart, an administrator): the rest
    of that transaction fails, naming the database, even past a caller that caught the
    first error, and never runs on a new session (outside the transaction, and its COMMIT
    would commit half of it); the next statement after it reconnects."""
    from scraper import storage as store

    conn = store.connect(pg_url)
    try:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with (pytest.raises(store.DatabaseError, match=f"^{re.escape(pg_url)}: ") as lost,
              store.transaction(conn)):
            conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
            dbread.rows(pg_url, "SELECT pg_terminate_backend(?)", pid)
            with pytest.raises(store.DatabaseError):
                conn.execute("SELECT 1")  # the loss, met and caught
            conn.execute("INSERT INTO meta (key, value) VALUES ('other', 'half')")
        assert "\n" not in str(lost.value)
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid  # a new session
        assert conn.execute("SELECT count(*) FROM meta WHERE key IN ('half', 'other')"
                            ).fetchone()[0] == 0
    finally:
        conn.close()


def test_a_read_outside_a_transaction_survives_a_dropped_connection(pg_url: str) -> None:
    """The server ended the idle session (an idle timeout, a restart): a read, which changed
    nothing, is asked again on a new session instead of failing its feed.  A write is not:
    whether it reached the server is unknown."""
    from scraper import storage as store

    conn = store.connect(pg_url)
    try:
        store.sync_feeds(conn, [("f", "http://f.example/")])
        for _ in range(2):
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            dbread.rows(pg_url, "SELECT pg_terminate_backend(?)", pid)
            assert store.feed_state(conn, "f")["url"] == "http://f.example/"
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        dbread.rows(pg_url, "SELECT pg_terminate_backend(?)", pid)
        with pytest.raises(store.DatabaseError, match=f"^{re.escape(pg_url)}: "):
            conn.execute("UPDATE feeds SET url = 'http://g.example/' WHERE name = 'f'")
        assert store.feed_state(conn, "f")["url"] == "http://f.example/"
    finally:
        conn.close()


# -- the server goes away under a running daemon ------------------------------------------

def pg_ctl(server: pgserver.PgServer, *args: str) -> None:
    assert server.bin_dir is not None and server.folder is not None
    subprocess.run([*getattr(server, "_as_postgres", []), str(server.bin_dir / "pg_ctl"),
                    "-D", str(server.folder / "data"), *args],
                   check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})


def restart(server: pgserver.PgServer) -> None:
    """Start a stopped server again as ``PgServer.start`` did (its port and options)."""
    assert server.folder is not None
    options = (f"-c listen_addresses=127.0.0.1 -p {port_of(server)} "
               f"-c unix_socket_directories={server.folder} -c fsync=off")
    pg_ctl(server, "-o", options, "-l", str(server.folder / "log"), "-w", "-t", "60", "start")


@pytest.fixture
def private_server(pg_server: pgserver.PgServer) -> Iterator[pgserver.PgServer]:
    """A server of this test's own, to stop under the daemon (``pg_server`` first: it skips,
    or fails under SCRAPE_REQUIRE_PG, when PostgreSQL is not installed)."""
    server = pgserver.PgServer.start()
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    environ = dict(os.environ, SCRAPE_TICK="0.2", SCRAPE_HEARTBEAT="0.5")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scraper", "--config", str(config),
                                 "--workers", "0", "-v"], cwd=REPO, env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(what: str, done: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``done()`` is true (a safety deadline, not a measure)."""
    deadline = time.monotonic() + 60
    while not done():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}; the daemon's log:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def rss(*titles: str) -> bytes:
    items = "".join(f"<item><title>{t}</title><guid>{t}</guid><description>{t} body"
                    "</description></item>" for t in titles)
    return f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


def stored(url: str) -> set[str]:
    try:
        return {t for (t,) in dbread.rows(url, "SELECT title FROM entries")}
    except Exception:  # noqa: BLE001  (the server is down, or the schema not made yet)
        return set()


def test_a_daemon_whose_server_goes_away_says_so_and_carries_on_when_it_is_back(
        private_server: pgserver.PgServer, feed_server: FeedServer, tmp_path: Path) -> None:
    url = private_server.create_database(migrated=False)  # (the daemon migrates it)
    feed_server.serve("/f.xml", rss("first"))
    config = tmp_path / "feeds.yaml"
    config.write_text(f"database: '{url}'\nfetch: {{retries: 0}}\nfeeds:\n"
                      f"  - {{name: f, url: '{feed_server.url('/f.xml')}', interval: 2s}}\n",
                      encoding="utf-8")
    log = tmp_path / "daemon.log"
    with daemon(config, log) as proc:
        wait_for("the first entry was never stored", lambda: stored(url) == {"first"}, proc,
                 log)
        pg_ctl(private_server, "-m", "fast", "stop")
        asked = len(feed_server.requests_to("/f.xml"))
        wait_for("the daemon never said that the database went away",
                 lambda: "connection refused" in log.read_text(errors="replace"), proc, log)
        feed_server.serve("/f.xml", rss("first", "second"))
        restart(private_server)
        wait_for("the daemon did not store again once the server was back",
                 lambda: stored(url) == {"first", "second"}, proc, log)
        assert len(feed_server.requests_to("/f.xml")) > asked
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "unexpected" not in text and "internal error" not in text
    # What went wrong, naming the database, once for each reason however many ticks and
    # heartbeats met it (the server refused, then was starting up); then that it is over.
    said = [line.split(" ", 2)[2] for line in text.splitlines()
            if url in line and "daemon started" not in line]
    assert any("connection refused" in line for line in said), text
    assert len(said) == len(set(said)), text
    assert text.count("the database answers again") == 1, text
