"""The application: what the command line and a Python user call.

``Scraper`` is a config and an open database; every command is one method call on it.
Heavy modules (the pipeline, dedup with numpy, the exporters) are imported inside the
methods that use them, so ``scrape status --check`` (the health check) loads none of them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from scraper import status as status_mod
from scraper import storage
from scraper.config import (
    Config,
    ConfigError,
    DedupSettings,
    FeedConfig,
    config_from_data,
    load_config,
    select_feeds,
)
from scraper.storage import Connection, DatabaseError, NoDatabase
from scraper.storage.exports import Selection

if TYPE_CHECKING:
    from scraper.core.feedsfile import NewFeed
    from scraper.core.opml import Skipped
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

    def check_feeds(self, names: Sequence[str]) -> None:
        """A ConfigError naming each of ``names`` that is neither configured nor stored,
        and the known ones.  Unchecked, a mistyped ``--feed`` selects nothing: a listing
        says "no entries" and an export replaces its file with an empty one.  Stored names
        count: a feed removed from the config keeps its entries, and ``--db`` alone has
        no config."""
        configured = {f.name for f in self.config.feeds} if self.config else set()
        if all(n in configured for n in names):  # the usual case needs no query
            return
        from scraper.storage import feeds as stored

        known = configured | set(stored.stored_feeds(self.conn))
        if missing := [n for n in dict.fromkeys(names) if n not in known]:
            raise ConfigError(f"--feed: no feed named {', '.join(repr(m) for m in missing)} "
                              f"(known: {', '.join(sorted(known)) or 'none'})")

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
        from scraper.workers import own_package_path

        config = self._require_config("refresh_once")
        chosen = [f for f in feeds or () if isinstance(f, FeedConfig)]
        if not feeds or len(chosen) < len(feeds):
            names = [f.name if isinstance(f, FeedConfig) else f for f in feeds or ()]
            chosen = select_feeds(config, names or None)
        with own_package_path():
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

    # -- feed management (issue 20): scrape feeds, rename, prune ---------------------------

    def feed_list(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Each configured feed (name, resolved URL, interval, state, entries), then the
        stored feeds the config no longer names, in state ``removed``."""
        intervals = {f.name: f.interval for f in self.config.feeds} if self.config else {}
        return [{"name": f["name"], "url": f["url"], "interval": intervals.get(f["name"]),
                 "state": f["state"], "entries": f["entry_count"]}
                for f in self.status(now)["feeds"]]

    def move_feed_rows(self, old: str, new: str) -> int:
        """Move the stored rows of feed ``old`` to ``new`` (``storage.feeds.rename_feed``):
        how many entries moved.  A ConfigError says why it cannot, with nothing changed."""
        from scraper.storage import feeds as stored

        try:
            return stored.rename_feed(self.conn, old, new, storage.utcnow())
        except ValueError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None

    def unconfigured_feeds(self) -> dict[str, int]:
        """The feeds the database holds rows of that the config does not name, with their
        entry counts: what ``prune_feeds`` would delete."""
        from scraper.storage import feeds as stored

        known = {f.name for f in self._require_config("unconfigured_feeds").feeds}
        return {name: n for name, n in sorted(stored.stored_feeds(self.conn).items())
                if name not in known}

    def prune_feeds(self, names: Sequence[str]) -> dict[str, int]:
        """Delete the stored rows of ``names``, which must be among ``unconfigured_feeds``
        (a configured feed is never pruned); what was deleted, and how many clusters got
        a new root because theirs went."""
        from scraper import dedup
        from scraper.storage import feeds as stored

        config = self._require_config("prune_feeds")
        if configured := sorted(set(names) & {f.name for f in config.feeds}):
            raise ConfigError(f"{config.path.name}: still configured, not pruned: "
                              f"{', '.join(configured)}")
        try:
            done = stored.prune_feeds(  # a cluster's new root is its best member (issue 19)
                self.conn, names, lambda ids: dedup.best_member(self.conn, ids, config.dedup),
                storage.utcnow())
        except ValueError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        return {"feeds": done.feeds, "entries": done.entries, "exports": done.exports,
                "promoted": done.promoted}

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

        self.check_feeds(selection.feeds if selection else ())
        with _cannot_write(directory):
            return hexo.export_hexo(self.conn, self.config, directory, flat=flat,
                                    rewrite_all=rewrite_all, selection=selection,
                                    record=self.writable)

    def export_jsonl(self, file: str | Path, *, selection: Selection | None = None,
                     incremental: bool = False, raw: bool = True) -> int:
        """Write one JSON object per entry to ``file`` (``-``: stdout); how many.  What the
        file holds is recorded (for ``incremental``) only if ``writable``."""
        from scraper.export import jsonl

        self.check_feeds(selection.feeds if selection else ())
        with _cannot_write(file):
            return jsonl.export_jsonl(self.conn, file, selection=selection,
                                      incremental=incremental, raw=raw, record=self.writable)

    def export_feed(self, file: str | Path, *, fmt: str = "atom", limit: int = 50,
                    title: str = "scrape: merged feed", link: str | None = None,
                    selection: Selection | None = None) -> int:
        """Write the latest ``limit`` stories as one Atom or RSS feed; how many entries."""
        from scraper.export import feed

        self.check_feeds(selection.feeds if selection else ())
        with _cannot_write(file):
            return feed.export_feed(self.conn, self.config, file, fmt=fmt, limit=limit,
                                    title=title, link=link, selection=selection)

    # Reading entries back (issue 20): search, list, show.  Read-only; ``since`` is the
    # store's ISO text (``scraper.export.parse_since``), ``feeds`` feed names (empty: all).

    def search(self, query: str, *, feeds: Sequence[str] = (), since: str | None = None,
               limit: int | None = 20, include_duplicates: bool = False,
               marks: tuple[str, str] = storage.search.MARKS) -> list[dict[str, Any]]:
        """Entries whose title or text holds every word of ``query``, newest first, each
        with a ``snippet`` whose matches are wrapped in ``marks``; duplicates left out
        unless ``include_duplicates``.  Words shorter than three characters are found
        too, by a slower scan (the index holds trigrams)."""
        self.check_feeds(feeds)
        return storage.search_entries(self.conn, query, feeds=feeds, since=since,
                                      limit=limit or None,
                                      include_duplicates=include_duplicates, marks=marks)

    def entries(self, *, feeds: Sequence[str] = (), since: str | None = None,
                limit: int | None = 50, duplicates: bool | None = None
                ) -> list[dict[str, Any]]:
        """The newest entries; ``duplicates``: None all, True only the duplicates, False
        none of them."""
        self.check_feeds(feeds)
        return storage.list_entries(self.conn, feeds=feeds, since=since, limit=limit or None,
                                    duplicates=duplicates)

    def entry(self, entry_id: int) -> dict[str, Any]:
        """One entry with its text and cluster (``root``, ``duplicates``); KeyError for an
        id that is not stored."""
        found = storage.entry_detail(self.conn, entry_id)
        if found is None:
            raise KeyError(entry_id)
        return found


@contextlib.contextmanager
def _cannot_write(target: str | Path) -> Iterator[None]:
    """An export's file or folder that cannot be written (a folder given as a file, a file
    as the Hexo folder, no permission) is the user's input: one line naming it, a
    ConfigError (exit 2), not an unexpected error."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None


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
    # A postgresql:// URL stays text; anything else is a file path.
    path = (db if storage.is_url(db) else Path(db)) if db else config.database  # type: ignore[union-attr]
    if access == "write":
        return Scraper(config=config, conn=storage.connect(path, create=create))
    conn = storage.open_existing(path, write=access == "export")
    try:
        writable = access == "export" and storage.writable(conn)
    except BaseException:
        conn.close()
        raise
    return Scraper(config=config, conn=conn, writable=writable)


# -- feeds.yaml and OPML (issue 20): what works from the config, with or without a database --

#: The OPML export's <title>.
OPML_TITLE = "scrape: subscriptions"


def list_feeds(config: Config, db: str | Path | None = None) -> list[dict[str, Any]]:
    """``Scraper.feed_list`` of the database, read-only; without a database every feed is
    ``never`` fetched (or ``disabled``) with 0 entries, and nothing is created."""
    try:
        scraper = open_scraper(config, db, access="read")
    except NoDatabase:
        return [{"name": f.name, "url": f.url, "interval": f.interval,
                 "state": "never" if f.enabled else "disabled", "entries": 0}
                for f in config.feeds]
    with scraper:
        return scraper.feed_list()


def export_opml(config: Config, file: str | Path) -> int:
    """Write every configured feed to ``file`` (``-``: stdout) as OPML, in nested category
    outlines; how many feeds.  The xmlUrl is the URL fetched: ``rsshub:`` routes resolved
    against this config's ``rsshub_base``, so another reader can subscribe to it."""
    from scraper.core import opml

    data = opml.write_opml([opml.Outline(f.name, f.url, f.categories) for f in config.feeds],
                           OPML_TITLE, storage.utcnow())
    if str(file) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with _cannot_write(file):
            _write_atomically(Path(file), data)
    return len(config.feeds)


@dataclass
class ImportReport:
    """What ``import_opml`` added to feeds.yaml (or would, on a dry run), and what it left
    out with each reason."""

    added: list[NewFeed]
    skipped: list[Skipped]
    written: bool


def import_opml(config: Config, file: str | Path, *, dry_run: bool = False) -> ImportReport:
    """Append the feeds of the OPML ``file`` (``-``: stdin) to the config's file.

    Names are slugs of the outline titles made unique; categories are the outline nesting;
    a feed whose URL the config already has, an outline without xmlUrl and a URL that is not
    http(s) are skipped.  The file's text, comments included, stays as it was above the
    appended lines; the result is loaded and checked before it replaces the file (at once:
    a daemon watching it never reads half of it).  ``dry_run`` writes nothing.
    """
    from scraper.core import feedsfile, opml

    source = str(file)
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(file).read_bytes()
        found, skipped = opml.read_opml(data)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    known_urls = {f.url: f.name for f in config.feeds}
    taken = {f.name for f in config.feeds}
    added: list[feedsfile.NewFeed] = []
    for item in found:
        if item.url in known_urls:
            skipped.append(opml.Skipped(item.title or item.url,
                                        f"already in the config as '{known_urls[item.url]}'"))
            continue
        name = feedsfile.unique_name(item.title, item.url, taken)
        known_urls[item.url] = name
        added.append(feedsfile.NewFeed(name, item.url, item.categories))
    if added:
        text = _config_text(config)
        comment = f"imported from {Path(source).name} on {storage.utcnow():%Y-%m-%d}"
        try:
            new_text = feedsfile.append_feeds(text, added, comment)
        except ValueError as exc:
            raise ConfigError(f"{config.path.name}: cannot append feeds to it: {exc}") from None
        new = _reload(config, new_text)
        got = [(f.name, f.url) + ((f.categories,) if a.categories else ())
               for f, a in zip(new.feeds[len(config.feeds):], added, strict=False)]
        meant = [(a.name, a.url) + ((a.categories,) if a.categories else ()) for a in added]
        if new.feeds[:len(config.feeds)] != config.feeds or got != meant:
            raise ConfigError(f"{config.path.name}: its layout defeats appending (the result "
                              "does not read back as meant); nothing written")
        if not dry_run:
            _write_config(config, new_text)
    return ImportReport(added, skipped, written=bool(added) and not dry_run)


def rename_feed(config: Config, old: str, new: str,
                db: str | Path | None = None) -> tuple[int, bool]:
    """Rename feed ``old`` to ``new`` in feeds.yaml (its ``name:`` alone edited, comments
    kept) and move its stored rows (row, ETag, schedule, entries with their ids, so dedup
    links and export records) to the new name: the next refresh is a conditional GET and
    stores nothing twice.  Works too when the user renamed it in feeds.yaml already.
    Returns (entries moved, feeds.yaml edited).  Nothing is created without a database.
    """
    from scraper.core import feedsfile

    names = {f.name for f in config.feeds}
    new = new.strip()
    if not new:
        raise ConfigError("feeds rename: the new name is empty")
    if old == new:
        raise ConfigError(f"feeds rename: '{old}' is already its name")
    if old in names and new in names:
        raise ConfigError(f"{config.path.name}: both '{old}' and '{new}' are configured; "
                          f"remove one first")
    if old not in names and new not in names:
        raise ConfigError(f"{config.path.name}: no feed named '{old}' or '{new}' "
                          f"(known: {', '.join(sorted(names)) or 'none'})")
    new_text = None
    if old in names:  # edit the text now, write it after the rows moved
        try:
            new_text = feedsfile.rename_feed(_config_text(config), old, new)
        except ValueError as exc:
            raise ConfigError(f"{config.path.name}: cannot rename '{old}' in it: {exc}"
                              ) from None
        meant = tuple(replace(f, name=new) if f.name == old else f for f in config.feeds)
        if _reload(config, new_text).feeds != meant:
            raise ConfigError(f"{config.path.name}: its layout defeats the edit (the result "
                              "does not read back as meant); nothing changed")
    moved = 0
    try:
        scraper = open_scraper(config, db, create=False)
    except NoDatabase:
        pass
    else:
        with scraper:
            moved = scraper.move_feed_rows(old, new)
    if new_text is not None:
        _write_config(config, new_text)
    return moved, new_text is not None


def _config_text(config: Config) -> str:
    """The config file's text as it is on disk, line endings included."""
    try:
        return config.path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config.path}: cannot read: {exc}") from None


def _reload(config: Config, text: str) -> Config:
    """``text`` as the config loader reads it; a ConfigError when it does not validate."""
    from scraper.core.feedsfile import load_yaml  # as load_config reads it: strict keys

    try:
        return config_from_data(load_yaml(text), config.path)
    except (ConfigError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config.path.name}: the edited file would not load ({exc}); "
                          "nothing written") from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` at once, in a folder that must exist (see ``export.replacing``)."""
    from scraper.export import replacing

    with replacing(path, "wb", parents=False) as out:
        out.write(data)


def _write_config(config: Config, text: str) -> None:
    with _cannot_write(config.path):
        _write_atomically(config.path, text.encode("utf-8"))


# -- moving up (issue 21): an SQLite database into PostgreSQL ------------------------------

def copy_database(source: str | Path, target: str,
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Copy the SQLite database ``source`` into the empty PostgreSQL database ``target``
    (a ``postgresql://`` URL; created with ``createdb``, migrated here), ids kept; the rows
    copied per table.  ``progress(table, done, total)`` after each batch.  The source is
    only read, and must have this release's schema; a failed copy leaves ``target`` as it
    was.  A ConfigError (exit 2) when either is the wrong kind or cannot be used."""
    from scraper.storage.copy import copy_database as copy_rows

    if storage.is_url(source):
        raise ConfigError("db copy: the source must be an SQLite database file, not a URL")
    if not storage.is_url(target):
        raise ConfigError(f"db copy: the destination must be a postgresql:// URL, got "
                          f"{target!r}")
    src = storage.open_existing(Path(source))
    try:
        with contextlib.closing(storage.connect(target)) as dst:
            return copy_rows(src, dst, progress)
    finally:
        src.close()
