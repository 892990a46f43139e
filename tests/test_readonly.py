"""The read commands on a database their user may read but not write.

On PostgreSQL the counterpart is a role that may only SELECT (the test at the end).

As root, file modes stop nothing, so the commands run as user nobody (``setpriv``), on a
database owned by root in a folder owned by root: nobody can write neither the file nor the
folder (no -wal or -shm can be made beside it).  Run as another user, the test takes the
write permissions away instead.  status, dups and the exports all work from ``--db`` alone
(no feeds.yaml where they run), and the file is byte for byte what it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from server import FeedServer

from scraper.cli import main

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534

STORY = "龙芯中科发布新一代处理器，性能提升明显，面向桌面与服务器市场，软件生态同步完善。" * 3


def rss(name: str) -> bytes:
    """Feed ``name``: the shared story (a duplicate across the feeds) and one of its own."""
    link = f"https://{name}.example"
    own = f"只有{name}站报道的一件事情，和别的新闻都不一样，写得足够长，{name}站独家。" * 3
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            f"<link>{link}/</link>"
            f"<item><title>龙芯发布新处理器（{name}）</title><link>{link}/1</link>"
            f"<guid>{link}/1</guid><description>&lt;p&gt;{STORY}&lt;/p&gt;</description></item>"
            f"<item><title>{name}站独家</title><link>{link}/2</link><guid>{link}/2</guid>"
            f"<description>&lt;p&gt;{own}&lt;/p&gt;</description></item>"
            "</channel></rss>").encode()


@dataclass
class Reader:
    """How to run a command as a user who cannot write the database."""

    prefix: list[str]
    env: dict[str, str]
    uid: int

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, sys.executable, *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)


def reader(base: Path) -> Reader:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if os.geteuid() != 0:
        return Reader([], env, os.geteuid())  # the file modes below stop this user
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is absent: cannot run as a user who may not write")
    found = Reader([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"],
                   env, NOBODY)
    probe = found.run("-c", "import scraper.cli", cwd=base)
    if probe.returncode != 0:  # nobody cannot read the repository: a copy it can read
        shutil.copytree(REPO / "scraper", base / "src" / "scraper")
        found.env = {**env, "PYTHONPATH": str(base / "src")}
        probe = found.run("-c", "import scraper.cli", cwd=base)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run {sys.executable}: {probe.stderr.strip()[-300:]}")
    return found


@dataclass
class Setup:
    db: Path
    out: Path
    reader: Reader
    originals: int
    duplicate: int



def store_two_feeds(feed_server: FeedServer, tmp_path: Path, database: str) -> Path:
    """Feeds a and b served and stored into ``database`` by ``scrape --once``; the config."""
    for name in ("a", "b"):
        feed_server.serve(f"/{name}.xml", rss(name))
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n" + "".join(
        f"  - name: {n}\n    url: {feed_server.url(f'/{n}.xml')}\n" for n in ("a", "b")),
        encoding="utf-8")
    assert main(["--once", "--workers", "0", "--config", str(config), "--db", database]) == 0
    return config


def originals_and_duplicate(conn: Any) -> tuple[int, int]:
    """How many entries are originals, and the id of the one reprint (the two stored
    feeds carry one story): over sqlite3 or the storage layer's connection alike."""
    originals = conn.execute(
        "SELECT COUNT(*) FROM entries WHERE duplicate_of IS NULL").fetchone()[0]
    duplicate = conn.execute(
        "SELECT id FROM entries WHERE duplicate_of IS NOT NULL").fetchone()[0]
    return originals, duplicate


@pytest.fixture
def setup(feed_server: FeedServer, tmp_path: Path) -> Iterator[Setup]:
    """A database filled by a real --once (two feeds carrying one story), then made
    unwritable; ``out`` is where the reader may write its exports."""
    base = Path(tempfile.mkdtemp(prefix="scrape-readonly-"))
    try:
        base.chmod(0o755)  # pytest's tmp_path is private to root; nobody must get in
        db = base / "scrape.db"
        store_two_feeds(feed_server, tmp_path, str(db))
        conn = sqlite3.connect(db)
        originals, duplicate = originals_and_duplicate(conn)
        conn.close()
        out = base / "out"
        out.mkdir()
        found = reader(base)
        if found.uid == os.geteuid():  # not root: take the write permissions away
            db.chmod(0o444)
            base.chmod(0o555)
        else:
            os.chown(out, NOBODY, NOBODY)
        yield Setup(db, out, found, originals, duplicate)
    finally:
        base.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_the_reader_really_cannot_write(setup: Setup) -> None:
    """The premise: without it the test below proves nothing."""
    tried = setup.reader.run("-c", f"open({str(setup.db)!r}, 'ab')", cwd=setup.out)
    assert tried.returncode != 0 and "PermissionError" in tried.stderr


def scrape(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    done = setup.reader.run("-m", "scraper", *args, "--db", str(setup.db), cwd=setup.out)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def read_everything(setup: Setup) -> None:
    out = setup.out
    done = scrape(setup, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert [f["name"] for f in json.loads(done.stdout)["feeds"]] == ["a", "b"]
    done = scrape(setup, "dups")
    assert done.returncode == 0, done.stderr
    assert f"#{setup.duplicate} [" in done.stdout
    done = scrape(setup, "dups", "--explain", str(setup.duplicate))
    assert done.returncode == 0, done.stderr
    assert "default dedup settings" in done.stderr  # no config: said, not failed

    skipped = "--incremental bookkeeping (what this target has) was skipped"
    done = scrape(setup, "export", "jsonl", str(out / "e.jsonl"))
    assert done.returncode == 0 and skipped in done.stderr, done.stderr
    assert str(setup.db) in done.stderr
    assert len((out / "e.jsonl").read_text("utf-8").splitlines()) == setup.originals
    done = scrape(setup, "export", "jsonl", "--incremental", str(out / "i.jsonl"))
    assert done.returncode == 0 and skipped in done.stderr, done.stderr
    assert len((out / "i.jsonl").read_text("utf-8").splitlines()) == setup.originals
    done = scrape(setup, "export", "hexo", str(out / "posts"))
    assert done.returncode == 0 and skipped in done.stderr, done.stderr
    assert len(list((out / "posts").rglob("*.md"))) == setup.originals
    done = scrape(setup, "export", "feed", "--format", "rss", str(out / "f.xml"))
    assert done.returncode == 0 and "skipped" not in done.stderr, done.stderr  # no records
    assert len(ET.parse(out / "f.xml").getroot().findall("channel/item")) == setup.originals


def test_read_commands_work_and_change_nothing(setup: Setup) -> None:
    before = setup.db.read_bytes()
    read_everything(setup)
    assert setup.db.read_bytes() == before
    assert sorted(p.name for p in setup.db.parent.iterdir()) == ["out", "scrape.db"]


def test_read_commands_work_beside_an_open_writer(setup: Setup) -> None:
    """A daemon (root) has the database open: its -wal and -shm exist, and the reader
    cannot write them either."""
    writer = sqlite3.connect(setup.db)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("SELECT COUNT(*) FROM entries").fetchone()
        before = setup.db.read_bytes()
        read_everything(setup)
        assert setup.db.read_bytes() == before
    finally:
        writer.close()


def test_a_write_command_says_it_cannot_write(setup: Setup) -> None:
    before = setup.db.read_bytes()
    config = setup.out / "feeds.yaml"
    config.write_text("feeds:\n  - name: a\n    url: http://127.0.0.1:9/a.xml\n", "utf-8")
    for command in (["--once"], ["dedup", "--rebuild"]):
        done = scrape(setup, *command)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and str(setup.db) in done.stderr
        assert "be written" in done.stderr  # the file, or its folder
    assert setup.db.read_bytes() == before


# -- PostgreSQL: a role that may only read ------------------------------------------------

@pytest.fixture
def reader_role(pg_url: str) -> Iterator[str]:
    """A role name for pg_url's reader, dropped after the test (roles are the server's, not
    a database's: SCRAPE_TEST_PG's server would keep one per run)."""
    import psycopg

    from scraper.storage import pg

    role = f"reader_{pg_url.rsplit('/', 1)[1]}"
    yield role
    pg.close_pools()  # (its sessions end first)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(f"DROP OWNED BY {role}")  # (its grants in this database)
            admin.execute(f"DROP ROLE {role}")


def test_postgresql_read_commands_work_for_a_role_that_may_only_select(
        tmp_path: Path, feed_server: FeedServer, pg_url: str, reader_role: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL's counterpart of the read-only file: a role granted SELECT and nothing
    else (a reporting user).  status, dups and the exports work from its URL alone, the
    exports skip their bookkeeping as on a read-only file, the database is as it was, and
    a write command says in one line that it cannot write."""
    import psycopg

    from scraper import storage

    config = store_two_feeds(feed_server, tmp_path, pg_url)
    role = reader_role
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reads'")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    parts = urlsplit(pg_url)
    reader_url = urlunsplit(parts._replace(
        netloc=f"{role}:reads@{parts.netloc.rpartition('@')[2]}"))

    def snapshot() -> list[list[tuple]]:
        conn = storage.open_existing(pg_url)
        try:
            return [[tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
                    for table in ("entries", "feeds", "exports", "meta")]
        finally:
            conn.close()

    before = snapshot()
    conn = storage.open_existing(pg_url)
    originals, duplicate = originals_and_duplicate(conn)
    conn.close()
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)  # no feeds.yaml here: the commands work from --db alone
    args = ["--db", reader_url]
    assert main(["status", "--json", *args]) == 0
    assert [f["name"] for f in json.loads(capsys.readouterr().out)["feeds"]] == ["a", "b"]
    assert main(["dups", *args]) == 0
    assert f"#{duplicate} [" in capsys.readouterr().out
    skipped = "--incremental bookkeeping (what this target has) was skipped"
    assert main(["export", "jsonl", str(out / "e.jsonl"), *args]) == 0
    err = capsys.readouterr().err
    assert skipped in err, err
    assert len((out / "e.jsonl").read_text("utf-8").splitlines()) == originals
    assert main(["export", "hexo", str(out / "posts"), *args]) == 0
    assert skipped in capsys.readouterr().err
    assert len(list((out / "posts").rglob("*.md"))) == originals
    assert main(["export", "feed", "--format", "rss", str(out / "f.xml"), *args]) == 0
    assert len(ET.parse(out / "f.xml").getroot().findall("channel/item")) == originals
    assert snapshot() == before
    assert main(["--once", "--workers", "0", "--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and role in err and "cannot be written" in err, err
    assert "reads" not in err  # (the password)
    assert snapshot() == before
