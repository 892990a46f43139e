"""``scrape feeds``, ``scrape feeds rename`` and ``scrape feeds prune``, through the command
line, against a database filled by ``scrape --once`` from a loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dbread
import pytest
from server import FeedServer

from scraper import app, cli

#: One article's text, long enough to be judged by its text rather than its title.
STORY = ("龙芯中科今天发布了新一代处理器，性能较上一代提升百分之三十，功耗下降两成。"
         "公司表示新产品将在明年第一季度量产，首批客户包括多家服务器厂商和政府机构。") * 3


def rss(items: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
                   f"<description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
                   for t, link, text in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>t</title><link>https://example.org/</link>{body}</channel></rss>").encode()


ALPHA = [("龙芯发布新处理器", "https://alpha.example/1", STORY),
         ("另一条新闻", "https://alpha.example/2", "完全不同的内容，讲的是天气预报和交通。" * 8)]
#: beta and gamma reprint alpha's first story: duplicates of it.
BETA = [("龙芯发布新处理器", "https://beta.example/9", STORY)]
GAMMA = [("龙芯发布新处理器", "https://gamma.example/5", STORY)]


def config_text(server: FeedServer, names: dict[str, str], database: str) -> str:
    """feeds.yaml for ``names`` (feed name -> its path on the server), with comments."""
    lines = ["# my feeds (this comment stays)", f"database: {database}", "feeds:"]
    for name, path in names.items():
        lines += [f"  - name: {name}   # {path}", f"    url: {server.url(path)}",
                  "    author: Same Site"]
    return "\n".join(lines) + "\n"


def fill(tmp_path: Path, server: FeedServer, db: str) -> tuple[Path, str, FeedServer]:
    """alpha, beta, gamma stored in ``db`` (feeds.yaml's ``database:``); alpha first, so
    its entry is the cluster's root."""
    for path, items in (("/alpha.xml", ALPHA), ("/beta.xml", BETA), ("/gamma.xml", GAMMA)):
        server.serve(path, rss(items))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(config_text(server, {"alpha": "/alpha.xml", "beta": "/beta.xml",
                                        "gamma": "/gamma.xml"}, db), encoding="utf-8")
    assert scrape("--once", "--feed", "alpha", "--workers", "0", "--config", cfg) == 0
    assert scrape("--once", "--workers", "0", "--config", cfg) == 0
    return cfg, db, server


@pytest.fixture
def filled(tmp_path: Path, database: str, feed_server: FeedServer
           ) -> tuple[Path, str, FeedServer]:
    return fill(tmp_path, feed_server, database)


@pytest.fixture
def filled_sqlite(tmp_path: Path, feed_server: FeedServer) -> tuple[Path, str, FeedServer]:
    """``filled`` on SQLite alone, for the tests of the command line's own behaviour (its
    questions, its usage errors), which PostgreSQL would only repeat."""
    return fill(tmp_path, feed_server, str(tmp_path / "scrape.db"))


def scrape(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


rows = dbread.rows


def listed(cfg: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    capsys.readouterr()
    assert scrape("feeds", "--json", "--config", cfg) == 0
    return {f["name"]: f for f in json.loads(capsys.readouterr().out)}


def test_feeds_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("rsshub_base: http://127.0.0.1:1200\nfeeds:\n"
                   "  - {name: z, url: 'rsshub:/zaker/channel/13', interval: 2h}\n"
                   "  - {name: paused, url: 'http://127.0.0.1:9/x', enabled: false}\n",
                   encoding="utf-8")
    feeds = listed(cfg, capsys)
    assert feeds["z"] == {"name": "z", "url": "http://127.0.0.1:1200/zaker/channel/13",
                          "interval": 7200, "state": "never", "entries": 0}
    assert feeds["paused"]["state"] == "disabled"
    assert scrape("feeds", "--config", cfg) == 0
    table = capsys.readouterr().out
    assert "never fetched" in table and "2h" in table
    assert not (tmp_path / "scrape.db").exists()


def test_feeds_lists_states_and_entries(filled: tuple[Path, str, FeedServer],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, _ = filled
    feeds = listed(cfg, capsys)
    assert {n: (f["state"], f["entries"]) for n, f in feeds.items()} == {
        "alpha": ("ok", len(ALPHA)), "beta": ("ok", len(BETA)), "gamma": ("ok", len(GAMMA))}


def test_rename_keeps_entries_exports_and_etag(filled: tuple[Path, str, FeedServer],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, server = filled
    posts = tmp_path / "posts"
    assert scrape("export", "hexo", posts, "--config", cfg) == 0
    files = sorted(p.relative_to(posts) for p in posts.rglob("*.md"))
    ids = rows(db, "SELECT id FROM entries WHERE feed = 'alpha' ORDER BY id")
    before = cfg.read_text(encoding="utf-8")

    assert scrape("feeds", "rename", "alpha", "alpha-news", "--config", cfg) == 0
    after = cfg.read_text(encoding="utf-8")
    assert after == before.replace("name: alpha ", 'name: "alpha-news" ')  # only the name
    assert [f.name for f in app.load(cfg).feeds] == ["alpha-news", "beta", "gamma"]
    assert rows(db, "SELECT id FROM entries WHERE feed = 'alpha-news' ORDER BY id") == ids
    assert rows(db, "SELECT count(*) FROM feeds WHERE name = 'alpha'") == [(0,)]

    served = len(server.requests_to("/alpha.xml"))
    total = rows(db, "SELECT count(*), max(id) FROM entries")
    assert scrape("--once", "--workers", "0", "--config", cfg) == 0
    again = server.requests_to("/alpha.xml")[served:]
    assert len(again) == 1 and again[0].headers.get("if-none-match")  # the kept ETag
    assert rows(db, "SELECT count(*), max(id) FROM entries") == total  # nothing twice
    assert "removed" not in {f["state"] for f in listed(cfg, capsys).values()}

    capsys.readouterr()
    assert scrape("export", "hexo", posts, "--config", cfg) == 0
    assert "0 written" in capsys.readouterr().out
    assert sorted(p.relative_to(posts) for p in posts.rglob("*.md")) == files


def test_rename_after_a_hand_edit_moves_the_rows_only(
        filled: tuple[Path, str, FeedServer]) -> None:
    cfg, db, _ = filled
    count = rows(db, "SELECT count(*) FROM entries WHERE feed = 'beta'")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("name: beta ", "name: b2 "),
                   encoding="utf-8")
    edited = cfg.read_bytes()
    assert scrape("feeds", "rename", "beta", "b2", "--config", cfg) == 0
    assert cfg.read_bytes() == edited
    assert rows(db, "SELECT count(*) FROM entries WHERE feed = 'b2'") == count


def test_rename_refuses_a_name_that_has_entries(filled: tuple[Path, str, FeedServer],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, _ = filled
    saved, counts = cfg.read_bytes(), rows(db, "SELECT feed, count(*) FROM entries GROUP BY 1")
    # gamma is configured: both names in feeds.yaml
    assert scrape("feeds", "rename", "beta", "gamma", "--config", cfg) == 2
    assert cfg.read_bytes() == saved
    # renamed by hand, then refreshed under the new name: two histories of one feed
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("name: beta ", "name: b2 "),
                   encoding="utf-8")
    assert scrape("--once", "--feed", "b2", "--workers", "0", "--config", cfg) == 0
    counts = rows(db, "SELECT feed, count(*) FROM entries GROUP BY 1")
    capsys.readouterr()
    assert scrape("feeds", "rename", "beta", "b2", "--config", cfg) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'b2' already has" in err and "Traceback" not in err
    assert rows(db, "SELECT feed, count(*) FROM entries GROUP BY 1") == counts


def test_prune_shows_then_deletes_and_promotes_a_new_root(
        filled: tuple[Path, str, FeedServer]) -> None:
    cfg, db, _ = filled
    root = rows(db, "SELECT id FROM entries WHERE feed = 'alpha' AND url LIKE '%/1'")[0][0]
    followers = rows(db, "SELECT id, feed FROM entries WHERE duplicate_of = ? ORDER BY id",
                     root)
    assert sorted(f for _, f in followers) == ["beta", "gamma"]  # (fetched at once: any order)
    others = rows(db, "SELECT id FROM entries WHERE feed != 'alpha' ORDER BY id")
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text[:text.index("  - name: alpha")] + text[text.index("  - name: beta"):],
                   encoding="utf-8")
    before = rows(db, "SELECT count(*) FROM entries")

    def prune(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scraper", "feeds", "prune", *extra,
                               "--config", str(cfg)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120, check=False)

    shown = prune()  # not a terminal: shown, not deleted
    assert shown.returncode == 0, shown.stderr
    assert f"alpha: {len(ALPHA)} entries" in shown.stdout and "--yes" in shown.stderr
    assert rows(db, "SELECT count(*) FROM entries") == before

    done = prune("--yes")
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT count(*) FROM entries WHERE feed = 'alpha'") == [(0,)]
    assert rows(db, "SELECT id FROM entries ORDER BY id") == others  # the others all stay
    new_root, rest = followers[0][0], [i for i, _ in followers[1:]]
    assert rows(db, "SELECT duplicate_of FROM entries WHERE id = ?", new_root) == [(None,)]
    assert [r[0] for r in rows(db, "SELECT duplicate_of FROM entries WHERE id IN "
                                   f"({','.join('?' * len(rest))})", *rest)] == [new_root]
    if not dbread.is_pg(db):  # (PostgreSQL checks its foreign keys at every write)
        assert rows(db, "PRAGMA foreign_key_check") == []
    assert rows(db, "SELECT count(*) FROM dedup_index WHERE entry_id NOT IN "
                    "(SELECT id FROM entries)") == [(0,)]
    assert rows(db, "SELECT count(*) FROM feeds WHERE name = 'alpha'") == [(0,)]
    assert "nothing to prune" in prune().stdout
    # the dedup commands still read the clusters
    assert subprocess.run([sys.executable, "-m", "scraper", "dups", "--config", str(cfg)],
                          capture_output=True, timeout=120, check=False).returncode == 0


@pytest.mark.parametrize(("answer", "deleted"), [("n", False), ("y", True)])
def test_prune_asks_on_a_terminal(filled_sqlite: tuple[Path, str, FeedServer], answer: str,
                                  deleted: bool) -> None:
    cfg, db, _ = filled_sqlite
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text[:text.index("  - name: gamma")], encoding="utf-8")
    gamma = rows(db, "SELECT count(*) FROM entries WHERE feed = 'gamma'")[0][0]
    main, tty = os.openpty()  # standard input is a terminal: the command asks
    try:
        os.write(main, f"{answer}\n".encode())
        done = subprocess.run([sys.executable, "-m", "scraper", "feeds", "prune",
                               "--config", str(cfg)], stdin=tty, capture_output=True,
                              text=True, timeout=120, check=False)
    finally:
        os.close(main)
        os.close(tty)
    assert done.returncode == 0, done.stderr
    assert "[y/N]" in done.stdout
    left = rows(db, "SELECT count(*) FROM entries WHERE feed = 'gamma'")[0][0]
    assert left == (0 if deleted else gamma) and gamma > 0


@pytest.mark.parametrize(("old", "new", "says"), [
    ("nope", "other", "no feed named 'nope' or 'other'"),
    ("alpha", "alpha", "already its name"),
    ("alpha", " ", "the new name is empty"),
])
def test_rename_usage_errors_are_one_line(filled_sqlite: tuple[Path, str, FeedServer],
                                          old: str, new: str, says: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, _ = filled_sqlite
    saved = cfg.read_bytes()
    capsys.readouterr()
    assert scrape("feeds", "rename", old, new, "--config", cfg) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert cfg.read_bytes() == saved
    assert rows(db, "SELECT count(*) FROM entries WHERE feed = 'alpha'") == [(len(ALPHA),)]
