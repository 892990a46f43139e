"""Datasette, the SQLite browser of this ecosystem, finds the search index by itself: its
search box (``?_search=``) on the ``entries`` table returns the matching entries only.

Datasette is a test-only dependency (the ``test`` extra), so this runs wherever the suite
does, CI included; it is started as a command, as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import stored
from server import FeedServer


@pytest.fixture
def db(tmp_path: Path, feed_server: FeedServer) -> Path:
    return Path(stored.fill(tmp_path, feed_server)[1])


def datasette_search(db: Path, query: str) -> list[dict]:
    path = (f"/{db.stem}/entries.json?_search={quote(query)}&_shape=array&_size=max"
            "&_col=title&_col=feed&_col=url")
    done = subprocess.run([sys.executable, "-m", "datasette", str(db), "--get", path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def found(rows: list[dict]) -> list[str]:
    return sorted(row["url"].rsplit("/", 1)[1] for row in rows)


@pytest.mark.parametrize("query", ["折叠屏", "铰链设计", "二手房成交", "free-threading"])
def test_datasettes_search_box_finds_the_matching_entries_only(db: Path, query: str) -> None:
    expected = sorted(a.key for a in stored.holding(query))
    assert expected and len(expected) < len(stored.ARTICLES)  # (the test's own premise)
    assert found(datasette_search(db, query)) == expected


def test_without_a_match_datasette_returns_no_row(db: Path) -> None:
    assert datasette_search(db, "没有这个词") == []
