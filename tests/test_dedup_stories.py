"""Issue 19 through `scrape --once`: generic titles kept apart, write-ups of one event grouped
into a story (not linked as duplicates), look-alike template posts kept apart, and what
`scrape dups` and `dups --explain` say about each.

The feeds are the repository's own fixtures (tests/fixtures/issue19, README there), served
from 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from server import FeedServer

from scraper import storage as store
from scraper.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "issue19"


def run_once(db: str, tmp_path: Path, feed_server: FeedServer, *feeds: tuple[str, str]
             ) -> str:
    """Serve the fixture files ``(name, file stem)`` and run `scrape --once` over them into
    ``db`` (a path or a PostgreSQL URL)."""
    config = []
    for name, stem in feeds:
        path = f"/{name}.xml"
        feed_server.serve(path, (FIXTURES / f"{stem}.xml").read_bytes())
        config.append({"name": name, "url": feed_server.url(path)})
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": config}), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", db]) == 0
    return db


def rows(db: str) -> dict[tuple[str, str], tuple[int, int | None, int | None]]:
    """(feed, title) -> (id, duplicate_of, story)."""
    conn = store.open_existing(db)
    try:
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in conn.execute(
            "SELECT feed, title, id, duplicate_of, story FROM entries")}
    finally:
        conn.close()


def cli_out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


NEWSFLASHES = (("kr", "newsflash_36kr"), ("pingwest", "newsflash_pingwest"))
GENERIC = "快讯：今日要闻"
EVENT = "央视新闻：嫦娥六号任务取得圆满成功"


# SQLite only: story decisions do not depend on the backend; the same-event test runs on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_generic_title_items_with_unrelated_texts_are_not_linked(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = run_once(database, tmp_path, feed_server, *NEWSFLASHES)
    found = rows(db)
    first, second = found[("kr", GENERIC)], found[("pingwest", GENERIC)]
    assert first[1:] == (None, None) and second[1:] == (None, None)
    # explain lists the nearest candidate with its scores, and says why it is not linked
    later = max(first[0], second[0])
    out = cli_out(capsys, "dups", "--explain", str(later), "--db", str(db))
    assert "not linked" in out
    line = next(x for x in out.splitlines() if "-> no link" in x)
    assert "title 1.00" in line and "containment 0.00" in line and "texts disagree" in line


def test_same_event_writeups_share_a_story_and_are_not_duplicates(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = run_once(database, tmp_path, feed_server, *NEWSFLASHES)
    found = rows(db)
    a, b = found[("kr", EVENT)], found[("pingwest", EVENT)]
    assert a[1] is None and b[1] is None  # not duplicates: different words
    assert a[2] is not None and a[2] == b[2]
    # nothing else is in a story
    assert sorted(k for k, v in found.items() if v[2] is not None) == sorted(
        [("kr", EVENT), ("pingwest", EVENT)])
    listing = cli_out(capsys, "dups", "--db", str(db))
    assert f"story {a[2]}: 2 entries" in listing
    assert f"#{a[0]} [kr] {EVENT}" in listing and f"#{b[0]} [pingwest] {EVENT}" in listing
    data = json.loads(cli_out(capsys, "dups", "--json", "--db", str(db)))
    assert data["clusters"] == []
    assert [[e["id"] for e in s["entries"]] for s in data["stories"]] == [sorted([a[0], b[0]])]
    why = cli_out(capsys, "dups", "--explain", str(b[0]), "--db", str(db))
    assert f"story {a[2]}: reported with 1 other entry" in why
    assert "same story: title similarity 1.00" in why


@SQLITE_ONLY
def test_look_alike_template_posts_share_nothing(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = run_once(database, tmp_path, feed_server, ("deals", "deals"))
    found = rows(db)
    assert len(found) == 2
    assert all(v[1:] == (None, None) for v in found.values()), found
    assert "no duplicates" in cli_out(capsys, "dups", "--db", str(db))
    later = max(v[0] for v in found.values())
    data = cli_out(capsys, "dups", "--explain", str(later), "--json", "--db", str(db))
    assert '"story": null' in data


@SQLITE_ONLY
def test_an_exact_link_is_explained_in_words(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = run_once(database, tmp_path, feed_server, ("cars", "article"),
                  ("mirror", "article_mirror"))
    found = rows(db)
    (root, dup) = sorted(found.items(), key=lambda kv: kv[1][0])
    out = cli_out(capsys, "dups", "--explain", str(dup[1][0]), "--db", str(db))
    assert f"linked to {root[1][0]} by exact: identical text after folding" in out
    assert "-> exact: identical text after folding" in out
    assert "no score" not in out and "via " not in out
    out = cli_out(capsys, "dups", "--explain", str(root[1][0]), "--db", str(db))
    assert "1 entry is linked to it" in out


@SQLITE_ONLY
def test_exports_say_also_reported_by(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = run_once(database, tmp_path, feed_server, *NEWSFLASHES)
    found = rows(db)
    kr, pingwest = found[("kr", EVENT)][0], found[("pingwest", EVENT)][0]
    lines = [json.loads(x) for x in cli_out(capsys, "export", "jsonl", "-", "--no-raw",
                                              "--db", str(db)).splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert by_id[kr]["also_reported_by"] == ["pingwest"]
    assert [m["id"] for m in by_id[kr]["same_story"]] == [pingwest]
    assert by_id[pingwest]["also_reported_by"] == ["kr"]
    generic = found[("kr", GENERIC)][0]
    assert by_id[generic]["also_reported_by"] == [] and by_id[generic]["same_story"] == []
    merged = tmp_path / "merged.xml"
    cli_out(capsys, "export", "feed", str(merged), "--db", str(db))
    text = merged.read_text("utf-8")
    assert text.count("also reported by pingwest") == 1
    assert text.count("also reported by kr") == 1
    assert "https://pingwest.example/status/flash-8" in text  # a related link to the other


@SQLITE_ONLY
def test_a_pruned_feed_leaves_no_story_of_one(tmp_path: Path, database: str,
                                              feed_server: FeedServer) -> None:
    """`feeds prune` of one of a story's two write-ups: the other is in no story any more
    (`dups` would list "story N: 1 entry")."""
    from scraper.storage import feeds as stored

    db = run_once(database, tmp_path, feed_server, *NEWSFLASHES)
    assert rows(db)[("pingwest", EVENT)][2] is not None
    conn = store.connect(db)
    try:
        stored.prune_feeds(conn, ["kr"])
    finally:
        conn.close()
    assert rows(db)[("pingwest", EVENT)][2] is None


@SQLITE_ONLY
def test_an_article_that_takes_over_its_teaser_still_joins_the_story(
        tmp_path: Path, database: str, feed_server: FeedServer) -> None:
    """Another site's write-up first, then a teaser that shares too little with it to be in
    its story, then the full article behind the teaser, which takes the teaser's cluster
    over.  The teaser's cluster is the article's own, not a second story carrying the title,
    so the title is not generic and the article joins the write-up's story."""
    feeds = [("autos", "writeup"), ("teaser", "teaser"), ("cars", "article")]
    for name, stem in feeds:
        feed_server.serve(f"/{name}.xml", (FIXTURES / f"{stem}.xml").read_bytes())
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": name, "url": feed_server.url(f"/{name}.xml")} for name, _ in feeds]}), "utf-8")
    db = database
    for name, _ in feeds:  # one at a time: the order is the point
        assert main(["--once", "--feed", name, "--config", str(cfg), "--db", str(db)]) == 0
    found = {feed: row for (feed, _), row in rows(db).items()}
    writeup, teaser, article = found["autos"], found["teaser"], found["cars"]
    assert teaser[1] == article[0] and article[1] is None  # the article took the cluster over
    assert writeup[1] is None  # a write-up in other words, not a duplicate
    assert article[2] is not None and article[2] == writeup[2] == teaser[2]
