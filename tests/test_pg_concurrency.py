"""Three `scrape --once` processes at once on one PostgreSQL database (issue 21).

Each process has its own feeds.yaml: different feeds that carry reprints of the same
stories, so the three store copies of one story at the same moment (``--once`` claims a feed
for one process: three processes over the same feeds would mostly skip one another's).  The
server holds every feed's response until all the feeds have been asked for, so the three
parse and write together.  Afterwards every entry is stored once, the reprint groups (and
the stories) are those of one process storing the same feeds into SQLite, and no process
failed.  The database is new and empty: the three open it at once, so the first migrates
it while the others wait for it (the schema is made once, and no process fails on it).

The stories are the repository's fixtures (tests/fixtures: the library-robot reprints, the
issue 19 article and its mirror, the two newsflash feeds) and stories made up here from a
seeded generator, each reprinted by some of the feeds (a credit line added; some copies
trimmed by a paragraph, so the more complete copy takes its cluster over when it comes
later).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

import pgserver
import pytest
import yaml
from server import FeedServer, Request, Response

from scraper import storage as store
from scraper.storage import schema

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

PROCESSES = 3
#: Made-up feeds per process, and made-up stories: enough that the three processes' feed
#: transactions overlap on shared stories many times per run.
OWN_FEEDS = 2
STORIES = 36
PARAGRAPHS = 10

#: The fixture feeds: (feed name, file, rules), each with a process; the reprint pairs are
#: in different processes.
FIXTURE_FEEDS = [
    (0, "zaker", "zaker.xml", {"profile": "zaker"}),
    (1, "mydrivers", "mydrivers_gbk.xml", {"profile": "mydrivers"}),
    (0, "cars", "issue19/article.xml", None),
    (2, "mirror", "issue19/article_mirror.xml", None),
    (1, "kr", "issue19/newsflash_36kr.xml", None),
    (2, "pingwest", "issue19/newsflash_pingwest.xml", None),
]

#: Generous: three processes start, import and parse on two cores.
RUN_SECONDS = 300


def sentence(rng: random.Random, length: int) -> str:
    """Common CJK characters drawn at random: two stories share next to no shingle."""
    return "".join(chr(rng.randint(0x4E00, 0x62FF)) for _ in range(length)) + "。"


def made_up_feeds() -> tuple[dict[str, bytes], dict[int, set[str]]]:
    """The made-up feeds' documents by feed name, and which feeds carry each story."""
    rng = random.Random(21)
    names = [f"p{p}f{i}" for p in range(PROCESSES) for i in range(OWN_FEEDS)]
    items: dict[str, list[str]] = {name: [] for name in names}
    carried: dict[int, set[str]] = {}
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    for story in range(STORIES):
        title = sentence(rng, 14)[:-1]
        paragraphs = [sentence(rng, 40) for _ in range(PARAGRAPHS)]
        copies = rng.sample(names, rng.choice([1, 2, 3, 3, 4, 5, 6]))
        carried[story] = set(copies)
        for n, name in enumerate(copies):
            text = paragraphs[:-1] if n % 3 == 1 else paragraphs  # a trimmed reprint
            body = "".join(f"<p>{p}</p>" for p in [*text, f"（来源：{name}）"])
            published = base + timedelta(minutes=10 * story + 7 * n)
            items[name].append(
                f"<item><title>{escape(title)}</title>"
                f"<link>https://{name}.example/{story}.html</link>"
                f"<guid>{name}-{story}</guid><pubDate>{format_datetime(published)}</pubDate>"
                f"<description>{escape(body)}</description></item>")
    docs = {name: ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                   f"<title>{name}</title><link>https://{name}.example/</link>"
                   + "".join(found) + "</channel></rss>").encode()
            for name, found in items.items()}
    return docs, carried


def feeds_of(server: FeedServer, process: int | None) -> list[dict[str, object]]:
    """A feeds.yaml's feeds: one process's, or (None) all of them."""
    feeds: list[dict[str, object]] = []
    for p in range(PROCESSES):
        if process in (None, p):
            feeds += [{"name": f"p{p}f{i}", "url": server.url(f"/p{p}f{i}.xml")}
                      for i in range(OWN_FEEDS)]
    for p, name, _, rules in FIXTURE_FEEDS:
        if process in (None, p):
            feeds.append({"name": name, "url": server.url(f"/{name}.xml"),
                          **({"rules": rules} if rules else {})})
    return feeds


def serve(server: FeedServer, docs: dict[str, bytes], barrier: threading.Barrier | None
          ) -> None:
    """Every feed; with ``barrier``, each response waits until every feed was asked for."""
    bodies = dict(docs)
    for _, name, file, _ in FIXTURE_FEEDS:
        bodies[name] = (FIXTURES / file).read_bytes()
    for name, body in bodies.items():
        response = Response(body=body, headers={"Content-Type": "application/rss+xml"})

        def handler(_request: Request, response: Response = response) -> Response:
            if barrier is not None:
                # (broken: a process is missing, and the counts below say so)
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            return response

        server.route(f"/{name}.xml", handler)


def served_items() -> int:
    docs, _ = made_up_feeds()
    fixtures = sum((FIXTURES / file).read_bytes().count(b"<item>")
                   for _, _, file, _ in FIXTURE_FEEDS)
    return sum(doc.count(b"<item>") for doc in docs.values()) + fixtures


def write_config(path: Path, feeds: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), "utf-8")
    return path


def run_all(configs: list[Path], db: str) -> list[tuple[int, str, str]]:
    """``scrape --once`` for each config, all started before any is waited for: the exit
    code, the summary and the log of each."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "scraper", "--once", "--config",
                               str(cfg), "--db", db], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=cfg.parent)
             for cfg in configs]
    out = []
    for proc in procs:
        try:
            printed, err = proc.communicate(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            printed, err = proc.communicate()
        out.append((proc.returncode, printed, err))
    return out


class Stored(NamedTuple):
    counts: Counter[tuple[str, str]]  # rows per (feed, entry_key)
    clusters: set[frozenset[tuple[str, str]]]  # each as its members' (feed, entry_key)
    stories: set[frozenset[tuple[str, str]]]
    chained: list[tuple[int, int]]  # links that name an entry that is not a root


def stored(db: str) -> Stored:
    conn = store.open_existing(db)
    try:
        rows = conn.execute("SELECT id, feed, entry_key, duplicate_of, story FROM entries"
                            ).fetchall()
    finally:
        conn.close()
    linked = {r[0]: r[3] for r in rows}
    clusters: dict[int, set[tuple[str, str]]] = {}
    stories: dict[int, set[tuple[str, str]]] = {}
    for entry_id, feed, key, duplicate_of, story in rows:
        clusters.setdefault(duplicate_of or entry_id, set()).add((feed, key))
        if story is not None:
            stories.setdefault(story, set()).add((feed, key))
    return Stored(Counter((r[1], r[2]) for r in rows),
                  {frozenset(c) for c in clusters.values()},
                  {frozenset(c) for c in stories.values()},
                  [(i, d) for i, d in linked.items() if d is not None and linked.get(d)])


@pytest.fixture
def fresh_url(pg_server: pgserver.PgServer) -> Iterator[str]:
    """A new database without the schema: the three processes make it themselves."""
    from scraper.storage import pg

    url = pg_server.create_database(migrated=False)
    try:
        yield url
    finally:
        pg.close_pools()
        pg_server.drop_database(url)


def test_three_processes_at_once_store_each_entry_once_and_link_as_sqlite(
        tmp_path: Path, fresh_url: str, feed_server: FeedServer) -> None:
    pg_url = fresh_url
    docs, carried = made_up_feeds()
    served = served_items()

    # The reference: one process stores every feed into SQLite.
    serve(feed_server, docs, None)
    sqlite_db = str(tmp_path / "one.db")
    one = tmp_path / "one"
    one.mkdir()
    [(code, _, err)] = run_all([write_config(one / "feeds.yaml", feeds_of(feed_server, None))],
                            sqlite_db)
    assert code == 0, err
    want = stored(sqlite_db)
    assert sum(want.counts.values()) == served and set(want.counts.values()) == {1}
    assert not want.chained
    # the made-up stories are grouped as they were made (the fixtures' groups are their
    # own tests' business): a reference that links nothing would prove nothing
    made_up = {frozenset((feed, f"{feed}-{story}") for feed in feeds)
               for story, feeds in carried.items()}
    assert made_up <= want.clusters
    assert sum(len(c) > 1 for c in want.clusters) >= STORIES // 2
    assert want.stories  # (the newsflash fixtures: two write-ups of one event)

    # Three processes, each with its own feeds, released together by the server.
    barrier = threading.Barrier(len(feeds_of(feed_server, None)), timeout=RUN_SECONDS / 2)
    serve(feed_server, docs, barrier)
    configs = []
    for p in range(PROCESSES):
        folder = tmp_path / f"p{p}"
        folder.mkdir()
        configs.append(write_config(folder / "feeds.yaml", feeds_of(feed_server, p)))
    results = run_all(configs, pg_url)
    for code, summary, log in results:
        assert code == 0, summary + log
        assert ", 0 failed;" in summary and "deadlock" not in summary.lower(), summary
        assert "deadlock" not in log.lower() and "error" not in log.lower(), log
    assert not barrier.broken  # all the feeds were asked for: the three ran at once

    # the schema was made once, by one of them (the others waited for its migration)
    conn = store.open_existing(pg_url)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(schema.MIGRATIONS),)]
    finally:
        conn.close()
    got = stored(pg_url)
    assert sum(got.counts.values()) == served and set(got.counts.values()) == {1}
    assert not got.chained  # duplicate_of names a root, whatever order the roots moved in
    assert got.clusters == want.clusters
    assert got.stories == want.stories

