"""The application: what the command line and a Python user call.

``Scraper`` is a config and an open database; every command is one method call on it.
Heavy modules (the pipeline, dedup with numpy, the exporters) are imported inside the
methods that use them, so ``scrape status --check`` (the health check) loads none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from scraper import status as status_mod
from scraper import storage
from scraper.config import (
    Config,
    ConfigError,
    DedupSettings,
    FeedConfig,
    load_config,
    select_feeds,
)
from scraper.storage import Connection, DatabaseError, NoDatabase
from scraper.storage.exports import Selection

if TYPE_CHECKING:
    from scraper.export.hexo import HexoReport
    from scraper.refresh import FeedResult

__all__ = ["DEFAULT_CONFIG", "Access", "DatabaseError", "NoDatabase", "Scraper", "Selection",
           "load", "open_scraper", "select_feeds"]

#: The config file read when none is named.
DEFAULT_CONFIG = "feeds.yaml"

#: How a command uses the database (``open_scraper``).
Access = Literal["write", "read", "export"]


@dataclass
class Scraper:
    """A config and an open database.

    ``config`` is None only for a database opened without one (``open_scraper(db=...)``):
    status, dups and exports work from the database alone; refreshing and rebuilding the
    dedup links need the config.  ``writable`` is False when the database was opened
    read-only: exports then write their files but not their bookkeeping.
    """

    config: Config | None
    conn: Connection
    writable: bool = True

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The database file, for messages."""
        return storage.database_path(self.conn)

    def _require_config(self, what: str) -> Config:
        if self.config is None:
            raise ConfigError(f"{what} needs a config: this scraper was opened without one")
        return self.config

    def refresh_once(self, feeds: Sequence[str | FeedConfig] | None = None, *,
                     workers: int | None = None,
                     on_done: Callable[[FeedResult], None] | None = None) -> list[FeedResult]:
        """Refresh the enabled feeds (or those given, by name or config) once.

        ``workers``: processes for parsing and normalizing (None: one per core, 0: inline).
        ``on_done`` is called with each feed's result as it finishes.  An unknown name is a
        ConfigError.
        """
        import asyncio

        from scraper import refresh

        config = self._require_config("refresh_once")
        chosen = [f for f in feeds or () if isinstance(f, FeedConfig)]
        if not feeds or len(chosen) < len(feeds):
            names = [f.name if isinstance(f, FeedConfig) else f for f in feeds or ()]
            chosen = select_feeds(config, names or None)
        return asyncio.run(refresh.run_once(config, self.conn, chosen, workers=workers,
                                            on_done=on_done))

    def run_daemon(self, *, only: Sequence[str] | None = None, workers: int | None = None,
                   db_fixed: bool = False) -> int:
        """Refresh every feed when it is due, until SIGTERM/SIGINT; the exit code.

        ``only``: these feeds' names (checked first: an unknown name is a ConfigError).
        ``db_fixed``: the database was named by the caller, so a config reload keeps it.
        """
        from scraper import daemon

        return daemon.run_daemon(self._require_config("run_daemon"), self.conn,
                                 workers=workers, only=list(only) if only else None,
                                 db_fixed=db_fixed)

    def health(self, now: datetime | None = None,
               max_age: float | None = None) -> status_mod.Health:
        """Is a daemon alive on this database (its heartbeat no older than ``max_age`` s,
        default a few of its heartbeat intervals)?"""
        return status_mod.daemon_health(self.conn, now or storage.utcnow(), max_age)

    def status(self, now: datetime | None = None,
               max_age: float | None = None) -> dict[str, Any]:
        """Every feed's state, the totals and the daemon's health, as plain data."""
        now = now or storage.utcnow()
        return status_mod.build_report(self.conn, self.config, now, self.health(now, max_age))

    def dups(self, limit: int | None = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` clusters of duplicates (None or 0: all)."""
        from scraper import dedup

        return dedup.clusters(self.conn, limit or None)

    def stories(self, limit: int | None = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` stories: entries reporting one event (None or 0: all)."""
        from scraper import dedup

        return dedup.stories(self.conn, limit or None)

    def explain(self, entry_id: int) -> dict[str, Any]:
        """Why ``entry_id`` is or is not linked, with its nearest candidates; KeyError for
        an id that is not stored.  Without a config, judged with the default settings."""
        from scraper import dedup

        settings = self.config.dedup if self.config else DedupSettings()
        return dedup.explain(self.conn, entry_id, settings)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Recompute every fingerprint and link (after the dedup settings changed)."""
        from scraper import dedup

        return dedup.rebuild(self.conn, self._require_config("rebuild").dedup, progress)

    def export_hexo(self, directory: str | Path, *, flat: bool = False,
                    rewrite_all: bool = False,
                    selection: Selection | None = None) -> HexoReport:
        """Write Hexo posts for what is new or changed since the last export to
        ``directory`` (see ``scraper.export.hexo``); recorded only if ``writable``."""
        from scraper.export import hexo

        return hexo.export_hexo(self.conn, self.config, directory, flat=flat,
                                rewrite_all=rewrite_all, selection=selection,
                                record=self.writable)

    def export_jsonl(self, file: str | Path, *, selection: Selection | None = None,
                     incremental: bool = False, raw: bool = True) -> int:
        """Write one JSON object per entry to ``file`` (``-``: stdout); how many.  What the
        file holds is recorded (for ``incremental``) only if ``writable``."""
        from scraper.export import jsonl

        return jsonl.export_jsonl(self.conn, file, selection=selection,
                                  incremental=incremental, raw=raw, record=self.writable)

    def export_feed(self, file: str | Path, *, fmt: str = "atom", limit: int = 50,
                    title: str = "scrape: merged feed", link: str | None = None,
                    selection: Selection | None = None) -> int:
        """Write the latest ``limit`` stories as one Atom or RSS feed; how many entries."""
        from scraper.export import feed

        return feed.export_feed(self.conn, self.config, file, fmt=fmt, limit=limit,
                                title=title, link=link, selection=selection)


def load(config_path: str | Path | None = None) -> Config:
    """Read and validate a feeds file (default ``./feeds.yaml``); ConfigError says where."""
    return load_config(config_path or DEFAULT_CONFIG)


def open_scraper(config: Config | None = None, db: str | Path | None = None, *,
                 create: bool = True, access: Access = "write") -> Scraper:
    """Open ``db`` (default: the config's database) for ``config``.

    ``access``: ``"write"`` creates a missing database (unless ``create=False``) and brings
    its schema up to date (refreshing, the daemon, ``rebuild``); ``"read"`` opens it
    read-only and never changes it (status, dups, explain); ``"export"`` also never
    migrates, and writes the export's bookkeeping only where the file may be written.
    A missing database raises NoDatabase unless it is created; any other problem with the
    file is a DatabaseError naming it (both are ConfigErrors: the user's input is wrong).
    """
    if db is None and config is None:
        raise TypeError("open_scraper: give a config or a database path")
    path = Path(db) if db else config.database  # type: ignore[union-attr]
    if access == "write":
        return Scraper(config=config, conn=storage.connect(path, create=create))
    conn = storage.open_existing(path, write=access == "export")
    try:
        writable = access == "export" and storage.writable(conn)
    except BaseException:
        conn.close()
        raise
    return Scraper(config=config, conn=conn, writable=writable)
