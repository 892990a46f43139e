"""Issue 19, point 3: a teaser seen before its full article; the article becomes the story's
canonical entry, and the Hexo export follows: the post that showed the teaser is rewritten
with the article by the next incremental export, and no second post appears.  Exported with
the duplicates, the teaser then gets a post of its own: one file, one owner.

Through `scrape --once` and `scrape export hexo`, with the repository's own fixtures
(tests/fixtures/issue19: teaser.xml, article.xml) served from 127.0.0.1, on both backends
(``database``: an SQLite file or a PostgreSQL URL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from server import FeedServer

from scraper import storage
from scraper.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "issue19"
#: A sentence only the article has (its third paragraph): the teaser is its first one.
ARTICLE_ONLY = "综合功率超过三百千瓦"
TEASER_TAIL = "点击查看全文"


def configure(tmp_path: Path, feed_server: FeedServer, database: str, *stems: str
              ) -> list[str]:
    feeds = []
    for stem in stems:
        feed_server.serve(f"/{stem}.xml", (FIXTURES / f"{stem}.xml").read_bytes())
        feeds.append({"name": stem, "url": feed_server.url(f"/{stem}.xml")})
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": feeds}), "utf-8")
    return ["--config", str(cfg), "--db", database]


def rows(database: str, sql: str) -> list[Any]:
    """The rows of a query, read through a read-only connection to either backend."""
    conn = storage.open_existing(database)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def posts(directory: Path) -> dict[Path, str]:
    return {p: p.read_text("utf-8") for p in directory.rglob("*.md")}


def test_teaser_then_article_exports_the_article_in_the_teasers_post(
        tmp_path: Path, feed_server: FeedServer, database: str) -> None:
    out = tmp_path / "posts"
    args = configure(tmp_path, feed_server, database, "teaser")
    assert main(["--once", *args]) == 0
    assert main(["export", "hexo", str(out), *args]) == 0
    before = posts(out)
    assert len(before) == 1
    (path, text), = before.items()
    assert TEASER_TAIL in text and ARTICLE_ONLY not in text

    # The article arrives from another site an hour later: it is the better member.
    args = configure(tmp_path, feed_server, database, "teaser", "article")
    assert main(["--once", *args]) == 0
    found = dict(rows(database, "SELECT feed, duplicate_of FROM entries"))
    ids = dict(rows(database, "SELECT feed, id FROM entries"))
    assert found == {"teaser": ids["article"], "article": None}

    assert main(["export", "hexo", str(out), *args]) == 0  # incremental
    after = posts(out)
    assert list(after) == [path]  # the same post, rewritten
    assert ARTICLE_ONLY in after[path] and TEASER_TAIL not in after[path]
    # and a further incremental export has nothing to do
    assert main(["export", "hexo", str(out), *args]) == 0
    assert posts(out) == after


def test_the_teasers_post_has_one_owner_when_the_duplicates_are_exported_too(
        tmp_path: Path, feed_server: FeedServer, database: str) -> None:
    """The article takes the teaser's post over; the teaser's record of that post goes with
    it, so an export with --include-duplicates gives the teaser a post of its own instead of
    both writing the one file (the last one winning, and the two swapping on --all)."""
    out = tmp_path / "posts"
    args = configure(tmp_path, feed_server, database, "teaser")
    assert main(["--once", *args]) == 0
    assert main(["export", "hexo", str(out), *args]) == 0
    (path,) = posts(out)
    args = configure(tmp_path, feed_server, database, "teaser", "article")
    assert main(["--once", *args]) == 0
    assert main(["export", "hexo", str(out), *args]) == 0  # the article takes the post over
    assert list(posts(out)) == [path] and ARTICLE_ONLY in posts(out)[path]

    for mode in ([], ["--all"]):
        assert main(["export", "hexo", str(out), "--include-duplicates", *mode, *args]) == 0
        paths = [row[0] for row in rows(database, "SELECT path FROM exports")]
        assert len(paths) == 2 and len(set(paths)) == 2  # one owner per path
        found = posts(out)
        assert ARTICLE_ONLY in found[path] and TEASER_TAIL not in found[path]
        others = [text for p, text in found.items() if p != path]
        assert len(others) == 1  # the teaser's own post
        assert TEASER_TAIL in others[0] and ARTICLE_ONLY not in others[0]
