"""``scrape db copy SRC DST`` (issue 21): a database ``scrape --once`` filled on SQLite,
copied into PostgreSQL, reads back the same through every command, and goes on working
there; a destination that holds anything is refused.

The source is filled the real way (tests/stored.py: feeds served on 127.0.0.1), with a
cluster that a later entry took over, so one link names a later id.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import stored
from server import FeedServer

from scraper import storage as store
from scraper.cli import main
from scraper.storage.copy import DROPPED_COLUMNS, SQLITE_ONLY_PREFIXES, TABLES

#: The source of the reprinted article, published before both copies (day 2, 06:00) but in
#: feed gamma, fetched last: it takes the cluster over, so alpha's and beta's copies link to
#: a later id than their own.
SOURCE = stored.Article("gamma", "fold-source", stored.ARTICLES[0].title, stored.FOLD_TEXT,
                        stored.ARTICLES[0].published.replace(day=2, hour=6))
ARTICLES = [*stored.ARTICLES, SOURCE]


@pytest.fixture
def filled(tmp_path: Path, feed_server: FeedServer) -> tuple[Path, Path]:
    """(feeds.yaml, SQLite database) after ``scrape --once`` stored ``ARTICLES``."""
    return stored.fill(tmp_path, feed_server, ARTICLES)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scraper", *args], capture_output=True,
                          text=True, timeout=300)


def out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def rows(db: str, table: str, order: str) -> list[tuple]:
    """Every row of ``table`` as plain values, the columns both backends have, by name."""
    conn = store.open_existing(db)
    try:
        got = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        dropped = {c for t, c in DROPPED_COLUMNS if t == table}
        return [tuple(sorted((k, bytes(v) if isinstance(v, memoryview) else v)
                             for k, v in dict(row).items() if k not in dropped))
                for row in got]
    finally:
        conn.close()


def test_the_copy_reads_back_the_same_and_goes_on(
        filled: tuple[Path, Path], pg_url: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, db = filled
    links = {e["id"]: e["duplicate_of"]
             for e in json.loads(out(capsys, "list", "--json", "--db", str(db)))}
    assert any(root and root > entry for entry, root in links.items()), \
        "the fixture should hold a link to a later id"
    done = run("db", "copy", str(db), pg_url)
    assert done.returncode == 0, done.stderr
    printed = dict(line.split() for line in done.stdout.splitlines()[:-1])
    assert int(printed["entries"]) == len(ARTICLES)
    assert int(printed["feeds"]) == len({a.feed for a in ARTICLES})
    assert done.stdout.splitlines()[-1] == "copied: every table's count matches the source's"

    # every table, row by row, ids and links included
    for table, order in TABLES:
        assert rows(pg_url, table, order) == rows(str(db), table, order), table
    # and what the commands print
    for command in (["dups"], ["dups", "--json"], ["list"], ["list", "--json"],
                    ["list", "--duplicates"], ["show", str(max(links))],
                    ["dups", "--explain", str(min(links))],
                    # words of one or two characters: both backends scan, snippets alike
                    ["search", "华为", "--include-duplicates"], ["search", "天气"]):
        assert (out(capsys, *command, "--db", pg_url)
                == out(capsys, *command, "--db", str(db))), command
    # Longer words go through each backend's index: the same entries in the same order; the
    # snippet is FTS5's on SQLite (it counts tokens) and made in Python on PostgreSQL.
    for words in (["折叠屏"], ["python", "REPL"], ["折叠屏手机", "--include-duplicates"]):
        found = [[{k: v for k, v in e.items() if k != "snippet"} for e in json.loads(
            out(capsys, "search", *words, "--json", "--db", backend))]
            for backend in (pg_url, str(db))]
        assert found[0] == found[1] != [], words

    # PostgreSQL goes on: a new article gets the next id, not one of the copied ones
    new = replace(stored.ARTICLES[2], key="storm", title="明日天气：南方暴雨",
                  text="明天广州有暴雨，气温下降五度，市民出行请注意安全并携带雨具。")
    stored.serve(feed_server, [*ARTICLES, new])
    out(capsys, "--once", "--config", str(config), "--db", pg_url, "--workers", "0")
    after = json.loads(out(capsys, "list", "--json", "--limit", "0", "--db", pg_url))
    assert len(after) == len(ARTICLES) + 1
    (added,) = [e for e in after if e["title"] == new.title]
    assert added["id"] == max(links) + 1
    assert {e["id"]: e["duplicate_of"] for e in after if e["id"] != added["id"]} == links


def test_a_destination_that_holds_anything_is_refused(
        filled: tuple[Path, Path], pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, db = filled
    assert run("db", "copy", str(db), pg_url).returncode == 0
    before = out(capsys, "list", "--json", "--db", pg_url)
    again = run("db", "copy", str(db), pg_url)
    assert again.returncode == 2
    assert again.stdout == ""
    (line,) = again.stderr.splitlines()
    assert "not empty" in line and f"{len(ARTICLES)} rows in entries" in line, line
    assert out(capsys, "list", "--json", "--db", pg_url) == before


def test_source_and_destination_must_be_sqlite_and_postgresql(
        filled: tuple[Path, Path], pg_url: str, tmp_path: Path) -> None:
    _, db = filled
    for args, says in (([pg_url, pg_url], "the source must be an SQLite database file"),
                       ([str(db), str(tmp_path / "other.db")],
                        "the destination must be a postgresql:// URL"),
                       ([str(tmp_path / "missing.db"), pg_url], "no database at")):
        done = run("db", "copy", *args)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert says in line, line
    assert not (tmp_path / "other.db").exists()


def test_every_sqlite_table_is_copied_or_known_to_stay_behind(tmp_path: Path) -> None:
    """A migration that adds a table must add it to the copy too (or say why not)."""
    conn = store.connect(tmp_path / "schema.db")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}
    finally:
        conn.close()
    left = {t for t in tables if not t.startswith(SQLITE_ONLY_PREFIXES)}
    assert left == {t for t, _ in TABLES}


def test_a_copy_that_fails_leaves_the_destination_empty(
        filled: tuple[Path, Path], pg_url: str) -> None:
    """PostgreSQL's text holds no NUL character, SQLite's may: that row stops the copy
    midway (after the feeds, among the entries), and nothing stays behind."""
    _, db = filled
    conn = sqlite3.connect(db)
    newest = conn.execute("SELECT max(id) FROM entries").fetchone()[0]
    conn.execute("UPDATE entries SET summary = ? WHERE id = ?", ("a\x00b", newest))
    conn.commit()
    done = run("db", "copy", str(db), pg_url)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"scrape: {pg_url}: table entries: "), line
    assert line.endswith("; nothing was copied"), line
    conn.execute("UPDATE entries SET summary = NULL WHERE id = ?", (newest,))
    conn.commit()
    conn.close()
    # the destination is as empty as before: a copy is not refused
    again = run("db", "copy", str(db), pg_url)
    assert again.returncode == 0, again.stderr
