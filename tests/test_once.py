"""`scrape --once` end to end: real HTTP on loopback, the real command line, on each backend
(the ``database`` fixture: an SQLite file, a PostgreSQL database)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import corpus
import dbread
import pytest
import server as srv
import yaml
from server import FeedServer, Response

from scraper.cli import main

POSTS = corpus.corpus_posts()
ZAKER = [p for p in POSTS if "ZAKER" in p.path.parts]
MYDRIVERS = [p for p in POSTS if "ZAKER" not in p.path.parts]


def write_config(tmp_path: Path, feeds: list[dict], **top: object) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump({"feeds": feeds, **top}, allow_unicode=True), "utf-8")
    return path


def run(cfg: Path, db: str | Path, *extra: str) -> int:
    return main(["--once", "--config", str(cfg), "--db", str(db), *extra])


rows = dbread.rows


@pytest.fixture
def corpus_server(feed_server: FeedServer) -> FeedServer:
    feed_server.serve("/zaker.xml", corpus.posts_feed(ZAKER, "ZAKER"))
    atom = corpus.atom_feed(
        "快科技", [corpus.atom_entry(p, corpus.post_link(p)) for p in MYDRIVERS])
    feed_server.serve("/mydrivers.atom", atom, "application/atom+xml")
    gbk = corpus.rss_feed("gbk", [corpus.rss_item(p, corpus.post_link(p, "https://gbk.example"))
                                  for p in POSTS], encoding="gbk")
    feed_server.serve("/gbk.xml", gbk, "application/rss+xml")  # no charset in the header
    return feed_server


def corpus_feeds(server: FeedServer) -> list[dict]:
    return [
        {"name": "zaker", "url": server.url("/zaker.xml"), "categories": ["新媒体", "ZAKER"]},
        {"name": "mydrivers", "url": server.url("/mydrivers.atom")},
        {"name": "gbk", "url": server.url("/gbk.xml")},
    ]


def test_first_run_stores_every_entry_then_second_run_adds_nothing(
        tmp_path: Path, database: str, corpus_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = write_config(tmp_path, corpus_feeds(corpus_server)), database
    assert run(cfg, db) == 0
    counts = dict(rows(db, "SELECT feed, COUNT(*) FROM entries GROUP BY feed"))
    assert counts == {"zaker": len(ZAKER), "mydrivers": len(MYDRIVERS), "gbk": len(POSTS)}
    titles = {t for (t,) in rows(db, "SELECT title FROM entries WHERE feed = 'gbk'")}
    assert titles == {p.title for p in POSTS}  # GBK without a charset header reads right
    first = capsys.readouterr().out
    assert "total: 3 feeds, 3 ok, 0 failed" in first

    assert run(cfg, db) == 0
    assert rows(db, "SELECT COUNT(*) FROM entries")[0][0] == 2 * len(POSTS)
    second = capsys.readouterr().out
    assert "0 new, 0 updated" in second
    for path in ("/zaker.xml", "/mydrivers.atom", "/gbk.xml"):
        last = corpus_server.requests_to(path)[-1]
        assert last.headers.get("if-none-match"), path  # conditional GET, answered 304
    assert rows(db, "SELECT DISTINCT last_status FROM feeds") == [(304,)]


def test_entry_contract_columns(tmp_path: Path, database: str,
                                corpus_server: FeedServer) -> None:
    cfg, db = write_config(tmp_path, corpus_feeds(corpus_server)[:1]), database
    assert run(cfg, db) == 0
    post = ZAKER[0]
    row = rows(db, "SELECT id, feed, url, guid, title, author, published, content_html, "
                   "content_text, fetched_at, updated_at, duplicate_of FROM entries "
                   "WHERE title = ?", post.title)[0]
    assert isinstance(row[0], int)
    assert row[1:7] == ("zaker", corpus.post_link(post), corpus.post_link(post), post.title,
                        post.author, post.date.strftime("%Y-%m-%dT%H:%M:%SZ"))
    first_paragraph = post.body.split("</p>")[0].split(">")[-1][:20]
    assert first_paragraph in row[8] and "<" not in row[8]
    assert row[9].endswith("Z") and row[10].endswith("Z")
    assert rows(db, "SELECT name FROM feeds") == [("zaker",)]


def test_the_sqlite_file_is_in_wal_mode_and_versioned(tmp_path: Path,
                                                      corpus_server: FeedServer) -> None:
    """(SQLite only: the file's journal mode and user_version.)"""
    cfg, db = write_config(tmp_path, corpus_feeds(corpus_server)[:1]), tmp_path / "x.db"
    assert run(cfg, db) == 0
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    assert rows(db, "PRAGMA user_version")[0][0] >= 1


@pytest.mark.requires_shared
def test_changed_entry_is_updated_not_duplicated(tmp_path: Path, database: str,
                                                 feed_server: FeedServer) -> None:
    post = ZAKER[0]
    link = corpus.post_link(post)
    feed_server.serve("/f.xml", corpus.rss_feed("f", [corpus.rss_item(post, link)]))
    cfg, db = write_config(tmp_path, [{"name": "f", "url": feed_server.url("/f.xml")}]), database
    assert run(cfg, db) == 0
    (before,) = rows(db, "SELECT id, updated_at, content_text FROM entries")
    edited = post.body.replace("</p>", "（更正：补充了一句话。）</p>", 1)
    feed_server.serve("/f.xml", corpus.rss_feed("f", [corpus.rss_item(post, link, body=edited)]))
    rows(db, "UPDATE entries SET updated_at = '2000-01-01T00:00:00Z'")
    assert run(cfg, db) == 0
    (after,) = rows(db, "SELECT id, updated_at, content_text FROM entries")
    assert after[0] == before[0]
    assert after[1] > "2000-01-01T00:00:00Z"
    assert "补充了一句话" in after[2] and "补充了一句话" not in before[2]


def test_entries_without_guid_or_link_are_keyed_by_content(tmp_path: Path, database: str,
                                                           feed_server: FeedServer) -> None:
    items = "".join(f"<item><title>t{i}</title><description>body {i}</description></item>"
                    for i in range(3))
    feed_server.serve("/bare.xml", f'<rss version="2.0"><channel><title>b</title>{items}'
                                   "</channel></rss>".encode())
    cfg, db = write_config(tmp_path, [{"name": "b", "url": feed_server.url("/bare.xml")}]), database
    assert run(cfg, db) == 0
    feed_server.serve("/bare.xml", f'<rss version="2.0"><channel><title>b</title>{items}'
                                   "<!-- changed --></channel></rss>".encode())
    assert run(cfg, db) == 0
    assert rows(db, "SELECT COUNT(*) FROM entries")[0][0] == 3


def test_a_304_keeps_the_feeds_ttl(tmp_path: Path, database: str,
                                   feed_server: FeedServer) -> None:
    """The RSS <ttl> asks for two hours between polls; the unchanged fetch after it (a 304,
    with no document to read a ttl from) must not drop back to the 10-minute interval."""
    feed_server.serve("/ttl.xml", b'<rss version="2.0"><channel><title>t</title><ttl>120</ttl>'
                                  b"<item><title>a</title><guid>a</guid><description>body"
                                  b"</description></item></channel></rss>")
    cfg = write_config(tmp_path, [{"name": "t", "url": feed_server.url("/ttl.xml"),
                                   "interval": "10m"}])
    db = database
    assert run(cfg, db) == 0
    assert run(cfg, db) == 0
    second = feed_server.requests_to("/ttl.xml")[-1]
    assert "if-none-match" in {k.lower() for k in second.headers}  # answered 304
    assert rows(db, "SELECT last_status FROM feeds")[0][0] == 304
    (ttl, due, fetched), = rows(db, "SELECT ttl, next_due_at, last_fetch_at FROM feeds")
    assert ttl == 120
    gap = datetime.fromisoformat(due) - datetime.fromisoformat(fetched)
    assert gap >= timedelta(minutes=100)  # 2 h less the jitter, not the 10-minute interval


@pytest.fixture(scope="module")
def gzip_bomb() -> Response:
    return srv.gzip_bomb(1 << 28)  # 256 MiB of spaces (17x the cap), about 256 KiB on the wire


# SQLite only: about the fetcher's limits (each hostile feed times out twice, 12 s), which
# store one error row each as any failed fetch does on PostgreSQL too.
def test_hostile_feeds_fail_alone(tmp_path: Path, feed_server: FeedServer, gzip_bomb: Response,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    good = corpus.posts_feed(ZAKER, "good")
    feed_server.serve("/good.xml", good)
    feed_server.route("/drip", lambda _r: srv.drip(60))
    feed_server.route("/hang", srv.hang(60))
    srv.redirect_loop(feed_server, "/loop")
    feed_server.route("/500", Response(status=500, body=b"down", etag=False))
    feed_server.route("/random", srv.random_bytes())
    feed_server.route("/gzbomb", gzip_bomb)
    feed_server.route("/huge", lambda _r: srv.huge_body(1 << 30))
    feed_server.serve("/entities", srv.entity_bomb())
    feed_server.serve("/malformed", good.replace(b"</channel>", b"<broken></channel>"))
    hostile = {"drip": "/drip", "hang": "/hang", "loop": "/loop", "e500": "/500",
               "random": "/random", "gzbomb": "/gzbomb", "huge": "/huge",
               "entities": "/entities"}
    feeds = [{"name": "good", "url": feed_server.url("/good.xml")},
             {"name": "malformed", "url": feed_server.url("/malformed")}]
    feeds += [{"name": n, "url": feed_server.url(p)} for n, p in hostile.items()]
    cfg = write_config(tmp_path, feeds, defaults={"timeout": 3},
                       fetch={"retries": 1, "max_bytes": 15 << 20})
    db = tmp_path / "x.db"
    assert run(cfg, db) == 1
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "timed out after 3 s" in lines["drip"]
    assert "timed out after 3 s" in lines["hang"]
    assert "too many redirects" in lines["loop"]
    assert "HTTP 500 Internal Server Error (after 2 attempts)" in lines["e500"]
    assert "not a feed" in lines["random"]
    assert "body larger than 15 MiB" in lines["gzbomb"]
    assert "body larger than 15 MiB" in lines["huge"]
    assert "entity" in lines["entities"]
    assert "malformed feed, entries kept" in lines["malformed"]
    assert "total: 10 feeds, 2 ok, 8 failed" in out
    counts = dict(rows(db, "SELECT feed, COUNT(*) FROM entries GROUP BY feed"))
    assert counts == {"good": len(ZAKER), "malformed": len(ZAKER)}
    errors = dict(rows(db, "SELECT name, error_count FROM feeds"))
    assert errors["drip"] == 1 and errors["good"] == 0


def test_only_named_feeds_are_refreshed(tmp_path: Path, database: str,
                                        corpus_server: FeedServer) -> None:
    cfg, db = write_config(tmp_path, corpus_feeds(corpus_server)), database
    assert run(cfg, db, "--feed", "zaker", "--workers", "0") == 0
    assert rows(db, "SELECT DISTINCT feed FROM entries") == [("zaker",)]
    assert corpus_server.requests_to("/gbk.xml") == []


def test_a_feed_named_twice_is_refreshed_once(tmp_path: Path, database: str,
                                              feed_server: FeedServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve("/one.xml", b'<rss version="2.0"><channel><title>o</title><item>'
                                  b"<title>a</title><guid>a</guid></item></channel></rss>")
    cfg = write_config(tmp_path, [{"name": "one", "url": feed_server.url("/one.xml")}])
    assert run(cfg, database, "--feed", "one", "--feed", "one") == 0
    assert len(feed_server.requests_to("/one.xml")) == 1
    assert "total: 1 feeds" in capsys.readouterr().out


def test_a_bad_claim_lease_is_a_config_error_not_a_hang(tmp_path: Path, feed_server: FeedServer,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """The claims are taken on the database thread, in batches: an error there is every
    claimant's answer.  A bad ``SCRAPE_CLAIM_LEASE`` once left every feed waiting forever."""
    feed_server.route("/f.xml", Response(body=b'<rss version="2.0"><channel><title>t</title>'
                                              b"</channel></rss>"))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": f"f{i}", "url": feed_server.url("/f.xml")}
                                             for i in range(3)]}))
    monkeypatch.setenv("SCRAPE_CLAIM_LEASE", "abc")
    assert main(["--once", "--config", str(cfg), "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert "SCRAPE_CLAIM_LEASE: expected a positive number of seconds, got 'abc'" in err
    assert feed_server.requests_to("/f.xml") == []
