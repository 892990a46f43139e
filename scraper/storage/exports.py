"""What the exports read and remember: selected entries, their duplicates, and the ``exports``
table (which entry each target already has, where, and with which content), shaped around
what an export does so that a second backend leaves the exporters unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from scraper.storage.db import in_lists, is_pg, iso, transaction, utcnow
from scraper.storage.reads import Connection
from scraper.storage.search import entry_filters

#: Rows fetched per query when walking many entries: bounded memory, few round trips.
CHUNK = 200


@dataclass(frozen=True)
class Selection:
    """Which entries an export covers; one meaning for every export.

    Originals only unless ``include_duplicates``; ``since`` is stored-time text (ISO UTC,
    see ``storage.iso``) compared with the entry's published time, else the time we first
    saw it; ``feeds`` limits to those feeds (empty: all).
    """

    since: str | None = None
    include_duplicates: bool = False
    feeds: tuple[str, ...] = ()


class Recorded(NamedTuple):
    """What a target was given for one entry: the file (None for a stream) and its hash."""

    path: str | None
    content_hash: str | None


class Record(Protocol):
    """Record that ``target`` holds an entry: its path (None for a stream) and content hash.

    ``taken_from``: the entry whose file this entry took over (the root of a duplicate
    cluster inheriting a member's post, issue 19).  That entry's record for the target goes
    in the same write, so one path has one owner: otherwise an export with the duplicates
    would write both entries into the one file, the last one winning.
    """

    def __call__(self, entry_id: int, path: str | None, content_hash: str,
                 taken_from: int | None = None) -> None: ...


_UPSERT = (
    "INSERT INTO exports (target, entry_id, path, content_hash, exported_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(target, entry_id) DO UPDATE SET "
    "path = excluded.path, content_hash = excluded.content_hash, "
    "exported_at = excluded.exported_at")


def _where(selection: Selection) -> tuple[str, list[Any]]:
    """Conditions on ``entries e`` (joined with AND, never empty) and their parameters: the
    ones search and list use, so the newest originals are read in order from an index."""
    parts, params = entry_filters(selection.feeds, selection.since,
                                  None if selection.include_duplicates else False)
    return " AND ".join(parts or ["1 = 1"]), params


def selected_ids(conn: Connection, selection: Selection, *,
                 pending_for: str | None = None) -> list[int]:
    """Ids of the selected entries, oldest first (id order: the order they were first seen).

    With ``pending_for``: only those that target has not had since their last update.
    """
    where, params = _where(selection)
    query = f"SELECT e.id FROM entries e WHERE {where}"
    if pending_for is not None:
        query += (" AND NOT EXISTS (SELECT 1 FROM exports x WHERE x.target = ? "
                  "AND x.entry_id = e.id AND x.exported_at > e.updated_at)")
        params.append(pending_for)
    return [row[0] for row in conn.execute(query + " ORDER BY e.id", params)]


def entries(conn: Connection, ids: Sequence[int]) -> Iterator[dict[str, Any]]:
    """Every stored field of the entries ``ids``, in that order, read a chunk at a time.

    Exporters collect ids first (``selected_ids``) and read rows after, because they record
    what they wrote while they walk, and a read open across those writes may see rows twice.
    """
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start:start + CHUNK])
        marks = ", ".join("?" * len(chunk))
        found = {row["id"]: dict(row) for row in
                 conn.execute(f"SELECT * FROM entries WHERE id IN ({marks})", chunk)}
        for entry_id in chunk:
            if entry_id in found:
                yield found[entry_id]


def selected_chunks(conn: Connection, selection: Selection, *,
                    pending_for: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """The selected entries (see ``selected_ids``), oldest first, ``CHUNK`` at a time."""
    ids = selected_ids(conn, selection, pending_for=pending_for)
    for start in range(0, len(ids), CHUNK):
        yield list(entries(conn, ids[start:start + CHUNK]))


def newest_entries(conn: Connection, selection: Selection,
                   page: int = 50) -> Iterator[dict[str, Any]]:
    """The selected entries newest first (published, else first seen), read ``page`` at a
    time, for as long as the caller keeps taking them."""
    where, params = _where(selection)
    order = "COALESCE(e.published, e.fetched_at) DESC, e.id DESC"
    offset = 0
    while True:
        ids = [row[0] for row in conn.execute(
            f"SELECT e.id FROM entries e WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, page, offset])]
        if not ids:
            return
        offset += len(ids)
        yield from entries(conn, ids)


def duplicates_of(conn: Connection,
                  ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """For each original in ``ids``: the entries linked to it (id, feed, url, title,
    published, method, score), in id order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for marks, chunk in in_lists(list(ids), CHUNK):
        for row in conn.execute(
                "SELECT id, feed, url, title, published, dup_method, dup_score, duplicate_of "
                f"FROM entries WHERE duplicate_of IN ({marks}) ORDER BY id", chunk):
            out.setdefault(row["duplicate_of"], []).append({
                "id": row["id"], "feed": row["feed"], "url": row["url"], "title": row["title"],
                "published": row["published"], "method": row["dup_method"],
                "score": row["dup_score"],
            })
    return out


def story_mates(conn: Connection, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """For each entry of ``ids`` that is in a story (issue 19): the story's other originals
    (id, feed, url, title, published), in id order; the partial index on ``story`` finds
    them."""
    out: dict[int, list[dict[str, Any]]] = {}
    for marks, chunk in in_lists(list(ids), CHUNK):
        for row in conn.execute(
                "SELECT e.id AS me, o.id, o.feed, o.url, o.title, o.published FROM entries e "
                "JOIN entries o ON o.story = e.story AND o.id != e.id "
                f"AND o.duplicate_of IS NULL WHERE e.id IN ({marks}) AND e.story IS NOT NULL "
                "ORDER BY o.id", chunk):
            out.setdefault(row["me"], []).append({
                "id": row["id"], "feed": row["feed"], "url": row["url"],
                "title": row["title"], "published": row["published"]})
    return out


def also_reported_by(feed: str, *groups: Iterable[dict[str, Any]]) -> list[str]:
    """The other feeds that carry a reprint or a write-up of an entry's story, each once, in
    the order given: what the exports say as "also reported by"."""
    out: list[str] = []
    for group in groups:
        for item in group:
            if item["feed"] != feed and item["feed"] not in out:
                out.append(item["feed"])
    return out


def links_of(conn: Connection, ids: Iterable[int]) -> dict[int, str | None]:
    """entry id -> its link, for ``ids`` (the originals a chunk of duplicates points to)."""
    out: dict[int, str | None] = {}
    for marks, chunk in in_lists(list(ids), CHUNK):
        out.update(conn.execute(f"SELECT id, url FROM entries WHERE id IN ({marks})",
                                chunk).fetchall())
    return out


def duplicates_with_files(conn: Connection, target: str) -> list[tuple[int, int, str]]:
    """(entry id, its original, path) for each entry ``target`` wrote a file for that is a
    duplicate now: linked after its post was written (a rebuild, an entry updated)."""
    return [(int(r[0]), int(r[1]), str(r[2])) for r in conn.execute(
        "SELECT e.id, e.duplicate_of, x.path FROM exports x JOIN entries e "
        "ON e.id = x.entry_id WHERE x.target = ? AND x.path IS NOT NULL "
        "AND e.duplicate_of IS NOT NULL ORDER BY e.id", (target,))]


def recorded(conn: Connection, target: str) -> dict[int, Recorded]:
    """entry id -> what ``target`` was given for it."""
    return {row[0]: Recorded(row[1], row[2]) for row in conn.execute(
        "SELECT entry_id, path, content_hash FROM exports WHERE target = ?", (target,))}


@contextmanager
def recording(conn: Connection, target: str) -> Iterator[Record]:
    """One transaction of records for ``target``: they count only if the block completes.

    The block writes its files inside it, so a crash leaves no record of a file that was
    not written (a file written without its record is the exporter's to adopt).
    """
    stamp = iso(utcnow())

    def record(entry_id: int, path: str | None, content_hash: str,
               taken_from: int | None = None) -> None:
        conn.execute(_UPSERT, (target, entry_id, path, content_hash, stamp))
        if taken_from is not None:
            conn.execute("DELETE FROM exports WHERE target = ? AND entry_id = ?",
                         (target, taken_from))

    with transaction(conn):
        yield record


# -- staged records: a file replaced whole is recorded once it is in place -------------------

def start_staging(conn: Connection) -> None:
    """Begin staging on this connection, dropping whatever an export that failed left.

    A temporary table lives as long as the session: on PostgreSQL the pooled connection's,
    which outlives one ``PgConnection`` and goes to the next user of the pool with the table
    in it; the DELETE clears it there too.  (BIGINT: PostgreSQL's ids; SQLite's INTEGER
    PRIMARY KEY is its rowid.)"""
    entry_id = "BIGINT" if is_pg(conn) else "INTEGER"
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS export_staged "
                 f"(entry_id {entry_id} PRIMARY KEY, content_hash TEXT)")
    conn.execute("DELETE FROM export_staged")


def stage(conn: Connection, items: Iterable[tuple[int, str]]) -> None:
    """Remember (entry id, content hash) pairs on this connection only (after
    ``start_staging``): no lock is held on the database while the file is written, and
    memory stays flat however many entries the file gets."""
    conn.executemany("INSERT INTO export_staged VALUES (?, ?) ON CONFLICT (entry_id) DO UPDATE "
                     "SET content_hash = excluded.content_hash", list(items))


def commit_staged(conn: Connection, target: str) -> None:
    """Record everything staged as what ``target`` now has, in one transaction."""
    stamp = iso(utcnow())
    with transaction(conn):
        conn.execute(
            "INSERT INTO exports (target, entry_id, path, content_hash, exported_at) "
            "SELECT ?, entry_id, NULL, content_hash, ? FROM export_staged WHERE true "
            "ON CONFLICT(target, entry_id) DO UPDATE SET "
            "content_hash = excluded.content_hash, exported_at = excluded.exported_at",
            (target, stamp))
    conn.execute("DELETE FROM export_staged")
