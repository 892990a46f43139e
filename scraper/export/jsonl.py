"""JSON Lines: every stored field of every entry, one object per line, for other tools.

Each object is the ``entries`` row (``raw_html`` too, unless asked not to) plus the dedup
links both ways: ``duplicates`` on an original, ``duplicate_of_url`` on a duplicate; and
(issue 19) ``same_story``, the other originals of its story, and ``also_reported_by``, the
other feeds that carry a reprint or a write-up of it.  Lines
are in id order (first seen), so a consumer can resume from the last id it read.
``--incremental`` appends only what this file has not had, or what changed since.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from scraper.export import Selection, replacing
from scraper.storage import exports as stored
from scraper.storage.reads import Connection


def target_name(file: str | Path) -> str:
    return "jsonl:-" if str(file) == "-" else f"jsonl:{Path(file).resolve()}"


def records(conn: Connection, chunks: Iterator[list[dict[str, Any]]], raw: bool = True
            ) -> Iterator[dict[str, Any]]:
    """The JSON objects of the entries, in order, with duplicate links in both directions."""
    for rows in chunks:
        dups = stored.duplicates_of(conn, [r["id"] for r in rows])
        mates = stored.story_mates(conn, [r["id"] for r in rows])
        parents = {r["duplicate_of"] for r in rows if r["duplicate_of"] is not None}
        parent_urls = stored.links_of(conn, parents) if parents else {}
        for row in rows:
            record = dict(row)
            if not raw:
                record.pop("raw_html", None)
            record["duplicates"] = dups.get(row["id"], [])
            record["duplicate_of_url"] = (parent_urls.get(row["duplicate_of"])
                                          if row["duplicate_of"] is not None else None)
            record["same_story"] = mates.get(row["id"], [])
            record["also_reported_by"] = stored.also_reported_by(
                row["feed"], record["duplicates"], record["same_story"])
            yield record


def export_jsonl(conn: Connection, file: str | Path, *,
                 selection: Selection | None = None, incremental: bool = False,
                 raw: bool = True, record: bool = True) -> int:
    """Write the selected entries to ``file`` (``-``: stdout); returns how many lines.

    ``record=False`` (a read-only database) writes them without recording what ``file``
    holds, so a later ``incremental`` export to it writes them again.
    """
    selection = selection or Selection()
    target = target_name(file)
    recorded: dict[int, str | None] = {}
    if incremental:
        recorded = {i: r.content_hash for i, r in stored.recorded(conn, target).items()}
    chunks = stored.selected_chunks(conn, selection,
                                    pending_for=target if incremental else None)

    def lines() -> Iterator[tuple[int, str, str]]:
        for record in records(conn, chunks, raw=raw):
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            digest = hashlib.sha256(line.encode("utf-8")).hexdigest()
            if incremental and recorded.get(record["id"]) == digest:
                continue
            yield record["id"], line, digest

    # Each batch is remembered once written and flushed (a crash re-sends, never loses).
    def remember(batch: list[tuple[int, str]]) -> None:
        if record:
            with stored.recording(conn, target) as put:
                for entry_id, digest in batch:
                    put(entry_id, None, digest)

    if str(file) == "-":
        return _write(lines(), sys.stdout, remember)
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    if incremental:
        with path.open("a", encoding="utf-8", newline="\n") as out:
            return _write(lines(), out, remember)
    # A full export replaces the file at once.  What it holds is recorded only once it is
    # in place, from what was staged meanwhile (no lock on the database while writing).
    def stage(batch: list[tuple[int, str]]) -> None:
        if record:
            stored.stage(conn, batch)

    if record:
        stored.start_staging(conn)
    with replacing(path) as out:
        count = _write(lines(), out, stage)
    if record:
        stored.commit_staged(conn, target)
    return count


def _write(lines: Iterator[tuple[int, str, str]], out: IO[str],
           keep: Callable[[list[tuple[int, str]]], None]) -> int:
    """Write the lines; hand each batch of (entry id, hash) to ``keep`` once flushed."""
    count = 0
    batch: list[tuple[int, str]] = []
    for entry_id, line, digest in lines:
        out.write(line + "\n")
        count += 1
        batch.append((entry_id, digest))
        if len(batch) >= stored.CHUNK:
            out.flush()
            keep(batch)
            batch = []
    out.flush()
    if batch:
        keep(batch)
    return count
