"""``scrape list`` and ``scrape show ID``, through the command line, against a database
``scrape --once`` filled from feeds served on 127.0.0.1 (tests/stored.py), on both backends."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import stored
from server import FeedServer

from scraper import storage
from scraper.cli import main

NEWEST_FIRST = sorted(stored.ARTICLES, key=lambda a: a.published, reverse=True)
REPRINT = next(a for a in stored.ARTICLES if a.key == "fold-reprint")
ORIGINAL = next(a for a in stored.ARTICLES if a.key == "fold")


@pytest.fixture
def db(tmp_path: Path, feed_server: FeedServer, database: str) -> str:
    """The articles stored on each backend in turn (a file path or a URL)."""
    return stored.fill(tmp_path, feed_server, database=database)[1]


def listed(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> list[dict]:
    assert main(["list", *args, "--json", "--db", str(db)]) == 0
    return json.loads(capsys.readouterr().out)


def by_key(entries: list[dict]) -> dict[str, dict]:
    """Each listed entry under its article's key (the link ends with it)."""
    return {e["url"].rsplit("/", 1)[1]: e for e in entries}


def test_list_shows_every_entry_newest_first_with_its_duplicate_marked(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    entries = listed(capsys, db)
    assert [(e["feed"], e["title"]) for e in entries] == [(a.feed, a.title) for a in NEWEST_FIRST]
    keyed = by_key(entries)
    assert keyed[REPRINT.key]["duplicate_of"] == keyed[ORIGINAL.key]["id"]
    assert [k for k, e in keyed.items() if e["duplicate_of"]] == [REPRINT.key]
    # the text lines: one per entry, the duplicate marked with its original's id
    assert main(["list", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(stored.ARTICLES)
    marked = [line for line in lines if "duplicate of" in line]
    assert marked == [line for line in lines if "[beta]" in line and ORIGINAL.title in line]
    assert marked[0].endswith(f"(duplicate of #{keyed[ORIGINAL.key]['id']})")


def test_list_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert [e["title"] for e in listed(capsys, db, "--duplicates")] == [REPRINT.title]
    assert [e["feed"] for e in listed(capsys, db, "--duplicates")] == [REPRINT.feed]
    assert [e["title"] for e in listed(capsys, db, "--feed", "alpha")] == [
        a.title for a in NEWEST_FIRST if a.feed == "alpha"]
    assert [e["title"] for e in listed(capsys, db, "--since", "2026-11-04")] == [
        a.title for a in NEWEST_FIRST if a.published.day >= 4]
    assert [e["title"] for e in listed(capsys, db, "--limit", "2")] == [
        a.title for a in NEWEST_FIRST[:2]]
    with pytest.raises(SystemExit) as usage:  # (argparse: exit 2 with one line)
        main(["list", "--since", "yesterday", "--db", str(db)])
    assert usage.value.code == 2
    assert "expected a date" in capsys.readouterr().err


def test_show_prints_the_entry_its_cluster_and_text(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    keyed = by_key(listed(capsys, db))
    original, reprint = keyed[ORIGINAL.key]["id"], keyed[REPRINT.key]["id"]
    assert main(["show", str(original), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"#{original} {ORIGINAL.title}"
    assert "alpha" in out and f"https://alpha.example/{ORIGINAL.key}" in out
    assert "2026-11-03T08:00:00Z" in out
    assert f"duplicated by:  #{reprint} [beta]" in out
    assert ORIGINAL.text in out
    assert main(["show", str(reprint), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"duplicate of:   #{original} [alpha] {ORIGINAL.title} (exact" in out
    weather = keyed["weather"]["id"]
    assert main(["show", str(weather), "--db", str(db)]) == 0
    assert "cluster:        none" in capsys.readouterr().out


def test_show_json_is_the_entry_as_data(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    keyed = by_key(listed(capsys, db))
    assert main(["show", str(keyed[REPRINT.key]["id"]), "--json", "--db", str(db)]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["content_text"] == REPRINT.text and entry["feed"] == REPRINT.feed
    assert entry["root"]["id"] == keyed[ORIGINAL.key]["id"] == entry["duplicate_of"]
    assert entry["duplicates"] == []


def test_an_unknown_id_is_one_line_and_exit_2(db: str) -> None:
    done = subprocess.run([sys.executable, "-m", "scraper", "show", "999999", "--db", str(db)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "scrape show: no entry with id 999999"
    assert done.stdout == ""


def test_list_and_show_mark_an_entrys_story(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    keyed = by_key(listed(capsys, db))
    assert all(e["story"] is None for e in keyed.values())  # no two write-ups of one event
    conn = storage.connect(db)
    with storage.transaction(conn):
        conn.execute("UPDATE entries SET story = ? WHERE id IN (?, ?)",
                     (keyed[ORIGINAL.key]["id"], keyed[ORIGINAL.key]["id"],
                      keyed[REPRINT.key]["id"]))
    conn.close()
    assert main(["list", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(f"story #{keyed[ORIGINAL.key]['id']}" in line for line in lines) == 2
    assert main(["show", str(keyed["weather"]["id"]), "--db", str(db)]) == 0
    assert "story:          none" in capsys.readouterr().out


def test_the_newest_entries_are_read_from_an_index_not_by_sorting_every_row(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """SQLite's plan (PostgreSQL's planner picks by its statistics; see storage.search)."""
    conn = sqlite3.connect(stored.fill(tmp_path, feed_server)[1])
    plan = " ".join(row[-1] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM entries "
        "ORDER BY COALESCE(published, fetched_at) DESC LIMIT 50"))
    conn.close()
    assert "entries_newest" in plan and "TEMP B-TREE" not in plan, plan
