"""JSON Lines: every stored field of every entry, one object per line, for other tools.

Each object is the ``entries`` row as stored (``raw_html`` too, unless asked not to) plus
the links the deduplicator made, in both directions: ``duplicates`` on an original (the
entries linked to it: id, feed, url, title, published, method, score) and
``duplicate_of_url`` on a duplicate.  Lines are in id order, which is the order the
entries were first seen, so a consumer can resume from the last id it read.

``--incremental`` appends only what this file has not had yet (tracked per output in the
``exports`` table), and an entry again when its stored content changed: consumers that
upsert by ``id`` stay current without re-reading the whole database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from scraper import storage as store
from scraper.export import CHUNK, Selection, duplicates_of, rows_by_id, where_clause


def target_name(file: str | Path) -> str:
    return "jsonl:-" if str(file) == "-" else f"jsonl:{Path(file).resolve()}"


def records(conn: sqlite3.Connection, ids: list[int], raw: bool = True
            ) -> Iterator[dict[str, Any]]:
    """The JSON objects for ``ids``, in that order, with duplicate links in both directions."""
    for start in range(0, len(ids), CHUNK):
        rows = list(rows_by_id(conn, ids[start:start + CHUNK]))
        dups = duplicates_of(conn, [r["id"] for r in rows])
        parents = {r["duplicate_of"] for r in rows if r["duplicate_of"] is not None}
        parent_urls: dict[int, str | None] = {}
        if parents:
            marks = ", ".join("?" * len(parents))
            parent_urls = dict(conn.execute(
                f"SELECT id, url FROM entries WHERE id IN ({marks})", list(parents)).fetchall())
        for row in rows:
            record = dict(row)
            if not raw:
                record.pop("raw_html", None)
            record["duplicates"] = dups.get(row["id"], [])
            record["duplicate_of_url"] = (parent_urls.get(row["duplicate_of"])
                                          if row["duplicate_of"] is not None else None)
            yield record


def export_jsonl(conn: sqlite3.Connection, file: str | Path, *,
                 selection: Selection | None = None, incremental: bool = False,
                 raw: bool = True) -> int:
    """Write the selected entries to ``file`` (``-``: stdout); returns how many lines."""
    selection = selection or Selection()
    target = target_name(file)
    where, params = where_clause(selection)
    recorded: dict[int, str | None] = {}
    query = f"SELECT e.id FROM entries e WHERE {where}"
    if incremental:
        recorded = dict(conn.execute(
            "SELECT entry_id, content_hash FROM exports WHERE target = ?", (target,)).fetchall())
        query += (" AND NOT EXISTS (SELECT 1 FROM exports x WHERE x.target = ? "
                  "AND x.entry_id = e.id AND x.exported_at > e.updated_at)")
        params.append(target)
    ids = [row[0] for row in conn.execute(query + " ORDER BY e.id", params)]

    def lines() -> Iterator[tuple[int, str, str]]:
        for record in records(conn, ids, raw=raw):
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            digest = hashlib.sha256(line.encode("utf-8")).hexdigest()
            if incremental and recorded.get(record["id"]) == digest:
                continue
            yield record["id"], line, digest

    if str(file) == "-":
        return _write(conn, target, lines(), sys.stdout)
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    if incremental:
        with path.open("a", encoding="utf-8", newline="\n") as out:
            return _write(conn, target, lines(), out)
    # A full export replaces the file at once: a reader never sees half of it.  What it
    # holds is recorded only once it is in place, from a connection-local TEMP table (no
    # lock on the database while the file is written).
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS jsonl_written "
                 "(entry_id INTEGER PRIMARY KEY, content_hash TEXT)")
    conn.execute("DELETE FROM temp.jsonl_written")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            count = _write(conn, None, lines(), out)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    stamp = store.iso(store.utcnow())
    with store.transaction(conn):
        conn.execute(
            "INSERT INTO exports (target, entry_id, path, content_hash, exported_at) "
            "SELECT ?, entry_id, NULL, content_hash, ? FROM temp.jsonl_written WHERE true "
            "ON CONFLICT(target, entry_id) DO UPDATE SET "
            "content_hash = excluded.content_hash, exported_at = excluded.exported_at",
            (target, stamp))
    conn.execute("DELETE FROM temp.jsonl_written")
    return count


def _write(conn: sqlite3.Connection, target: str | None,
           lines: Iterator[tuple[int, str, str]], out: IO[str]) -> int:
    """Write the lines; record each batch for ``target`` once flushed (None: in TEMP only)."""
    count = 0
    batch: list[tuple[int, str]] = []
    for entry_id, line, digest in lines:
        out.write(line + "\n")
        count += 1
        batch.append((entry_id, digest))
        if len(batch) >= CHUNK:
            out.flush()
            _record(conn, target, batch)
    out.flush()
    _record(conn, target, batch)
    return count


def _record(conn: sqlite3.Connection, target: str | None, batch: list[tuple[int, str]]) -> None:
    """Remember what ``target`` has, after it was written (a crash re-sends, never loses)."""
    if not batch:
        return
    if target is None:
        conn.executemany("INSERT OR REPLACE INTO temp.jsonl_written VALUES (?, ?)", batch)
        batch.clear()
        return
    stamp = store.iso(store.utcnow())
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO exports (target, entry_id, path, content_hash, exported_at) "
            "VALUES (?, ?, NULL, ?, ?) ON CONFLICT(target, entry_id) DO UPDATE SET "
            "content_hash = excluded.content_hash, exported_at = excluded.exported_at",
            [(target, entry_id, digest, stamp) for entry_id, digest in batch])
    batch.clear()
