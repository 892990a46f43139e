"""Shared fixtures: a loopback HTTP server per test, and the corpus on sys.path for bench/.

Also what lets the suite run from a bare clone: tests that need ../shared (the corpus and
seeds, present in CI) skip with corpus.SHARED_REASON where it is absent.  Mark a test
``@pytest.mark.requires_shared`` when it reads shared data only indirectly; the loaders in
corpus.py skip by themselves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import pgserver  # noqa: E402
from server import FeedServer  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_shared: needs ../shared (the corpus and seeds); skipped without it"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without ../shared: skip the marked tests, and name the cause of empty parametrizations.

    A parametrize over an :class:`corpus.Absent` has no cases, which pytest reports as "got
    empty parameter set"; in a module that met the absent corpus that means ../shared.
    """
    if corpus.shared_present():
        return
    skip = pytest.mark.skip(reason=corpus.SHARED_REASON)
    for item in items:
        if item.get_closest_marker("requires_shared") is not None:
            item.add_marker(skip)
            continue
        marker = item.get_closest_marker("skip")
        reason = str(marker.kwargs.get("reason", "")) if marker is not None else ""
        if reason.startswith("got empty parameter set") and str(item.path) in corpus.ABSENT_IN:
            item.add_marker(skip, append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Tell corpus.py a test is running: its absent data then skips instead of reading empty."""
    corpus.IN_TEST = True
    try:
        return (yield)
    finally:
        corpus.IN_TEST = False


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()


# -- PostgreSQL (issue 21): the storage and pipeline tests run on both backends ------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """A PostgreSQL server for the session: ``SCRAPE_TEST_PG``'s, else one started here.
    Without PostgreSQL installed the tests that need it skip, saying so; where
    ``SCRAPE_REQUIRE_PG`` is set (CI) they fail instead: nothing is skipped silently."""
    if url := os.environ.get(pgserver.EXTERNAL_ENV, "").strip():
        external = pgserver.PgServer.external(url)
        try:
            yield external
        finally:
            from scraper.storage import pg

            pg.close_pools()
            external.drop_all()  # (that server stays: leave it as it was)
        return
    server = pgserver.PgServer.start()
    if server is None:
        reason = ("PostgreSQL is not installed (apt-get install postgresql, or set "
                  f"{pgserver.EXTERNAL_ENV} to a server's URL)")
        if os.environ.get(pgserver.REQUIRE_ENV):
            pytest.fail(f"{pgserver.REQUIRE_ENV} is set but {reason}")
        pytest.skip(reason)
    try:
        yield server
    finally:
        from scraper.storage import pg

        pg.close_pools()
        server.stop()


@pytest.fixture
def pg_url(pg_server: pgserver.PgServer) -> Iterator[str]:
    """A new PostgreSQL database holding this release's schema, for one test; dropped
    after it (a session's thousand databases would fill the disk of a long-lived server)."""
    from scraper.storage import pg

    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg.close_pools()  # (each test's database would keep a connection open)
        pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database a storage or pipeline test runs on, once per backend: an SQLite file
    path (not created yet) or a migrated PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "scrape.db")
    return str(request.getfixturevalue("pg_url"))
