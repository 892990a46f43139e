"""The shipped offline example (issue 20, point 7): `scrape --once --config
examples/offline.yaml` stores the example's entries from local files and links its reprint,
run through the real command line in a temporary copy of examples/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import dbread
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ATOM = "{http://www.w3.org/2005/Atom}"

#: The example's reprint, by design of its files: the digest's first entry reprints the
#: daily's first (checked against the files below, so an edit of either shows here).
ORIGINAL = ("example-daily", "开源数据库“青松”发布 5.0 版，查询速度提升约三成")
REPRINT = ("example-digest", "“青松”数据库 5.0 版发布：查询速度提升约三成")


def scrape(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scraper", *args], cwd=cwd, text=True,
                          capture_output=True, check=False)


def titles_in(path: Path) -> list[str]:
    """The item or entry titles of a feed file, read with the standard library's parser."""
    root = ET.parse(path).getroot()
    if root.tag == f"{ATOM}feed":
        return [e.findtext(f"{ATOM}title") or "" for e in root.iter(f"{ATOM}entry")]
    return [i.findtext("title") or "" for i in root.iter("item")]


@pytest.fixture
def example(tmp_path: Path, database: str) -> Path:
    """A copy of examples/, so the run writes nothing into the repository; on PostgreSQL
    its ``database:`` line names the test's database instead of offline.db."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    if dbread.is_pg(database):
        config = copy / "offline.yaml"
        text = config.read_text("utf-8")
        line = next(x for x in text.splitlines() if x.startswith("database:"))
        config.write_text(text.replace(line, f"database: {database}"), "utf-8")
    return copy / "offline.yaml"


# SQLite only: tests/test_db_copy.py and tests/test_search.py cover these on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_the_offline_example_stores_its_entries_and_links_the_reprint(example: Path) -> None:
    config = yaml.safe_load(example.read_text("utf-8"))
    expected = {f["name"]: titles_in(example.parent / f["url"]) for f in config["feeds"]}
    assert ORIGINAL[1] in expected[ORIGINAL[0]] and REPRINT[1] in expected[REPRINT[0]]

    # Run from elsewhere: the feeds' paths are relative to the config, not the working dir.
    done = scrape("--once", "--json", "--config", str(example), cwd=example.parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert {f["feed"]: f["new"] for f in summary["feeds"]} == {
        name: len(titles) for name, titles in expected.items()}
    assert summary["totals"]["duplicates"] == 1

    # The database goes where the example says, beside it, and git ignores it there.
    # (SQLite only: on PostgreSQL the copy names the test's database instead.)
    if not dbread.is_pg(config["database"]):
        database = example.parent / config["database"]
        assert database.parent == example.parent and database.is_file()
        if (ROOT / ".git").exists() and shutil.which("git"):
            ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q",
                                      str(EXAMPLES / config["database"])], check=False)
            assert ignored.returncode == 0, f"{config['database']} would be committed"

    dups = scrape("dups", "--json", "--config", str(example), cwd=example.parent)
    assert dups.returncode == 0, dups.stderr
    clusters = json.loads(dups.stdout)["clusters"]
    # One cluster of the two.  The reprint adds only a credit line and an editor's name, so
    # the copies are as complete as each other and the source, published first, is the root
    # whichever feed was stored first (they run at once).
    assert len(clusters) == 1 and len(clusters[0]["duplicates"]) == 1
    assert (clusters[0]["feed"], clusters[0]["title"]) == ORIGINAL
    dup = clusters[0]["duplicates"][0]
    assert (dup["feed"], dup["title"]) == REPRINT
    text = scrape("dups", "--config", str(example), cwd=example.parent).stdout
    assert ORIGINAL[1] in text and REPRINT[1] in text

    # The files have not changed: nothing is read again.
    again = scrape("--once", "--json", "--config", str(example), cwd=example.parent)
    assert again.returncode == 0, again.stderr
    assert {f["status"] for f in json.loads(again.stdout)["feeds"]} == {"not-modified"}


@SQLITE_ONLY
def test_scrape_search_finds_the_example_entries(example: Path) -> None:
    """The README's offline tour ends with a search: a query of three characters (the
    trigram index) and one of two (the plain scan), each in one article."""
    assert scrape("--once", "--config", str(example), cwd=example.parent).returncode == 0
    daily = titles_in(example.parent / "feeds" / "daily.xml")
    digest = titles_in(example.parent / "feeds" / "digest.atom")
    for query, title in (("数据集", daily[2]), ("寒潮", digest[1])):
        found = scrape("search", query, "--config", str(example), cwd=example.parent)
        assert found.returncode == 0, found.stderr
        assert title in found.stdout, (query, found.stdout)
