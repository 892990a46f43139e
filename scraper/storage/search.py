"""What ``scrape search``, ``list`` and ``show`` read: full-text matches, the newest entries,
and one entry with its cluster.

SQLite: the index is ``entries_fts`` (schema migration 9: FTS5, trigram tokenizer, over the
title and the cleaned text).  A trigram index finds substrings of three characters or more; a
query term shorter than that (two Chinese characters make a word) cannot be looked up in it,
so such a query reads the entries with LIKE instead: slower, but the same answers.

PostgreSQL: pg_trgm's GIN indexes ``entries_title_trgm`` and ``entries_text_trgm`` (schema
step 1) answer ``title ILIKE '%word%' OR content_text ILIKE '%word%'``, one such condition a
word, ANDed: the same entries as SQLite's MATCH (each word a substring of the title or the
text, case ignored), with the same filters, order and limit, and the snippet made in Python
as SQLite's LIKE path makes it.  A word of one or two characters has no trigram, so no index
can narrow it: PostgreSQL reads the entries too, newest first, as SQLite does (see ``_scan``).

Measured with ``bench/search_pg.py --in-order`` (50,000 entries of 824 characters, published
in the order stored; PostgreSQL 15 on this 2-core machine; after VACUUM ANALYZE): a word of
4 characters in 1 entry of 1,000 is a Bitmap Index Scan on both trigram indexes under a
BitmapOr, 0.2-0.7 ms.  Its first 2 characters are read newest first from entries_newest up
to the limit: 0.1 ms for a word most entries hold, 0.8-1.0 s for this rare one, which reads
every entry (SQLite's scan: 1.2 s at 100,000).  Right after a bulk insert (no statistics yet,
the rows in the indexes' pending lists) the plans are worse: at 5,000 entries the 4-character
word took a Seq Scan, 97 ms against 0.1 ms after VACUUM ANALYZE, and at 50,000 a common short
word read every entry (0.9 s).  ``scrape db copy`` ends with VACUUM ANALYZE; after ordinary
inserts autovacuum runs it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from scraper.storage.db import Connection, in_lists, is_pg, transaction

#: Characters a term needs to be looked up in the trigram index (SQLite's fts5 trigram).
TRIGRAM = 3
#: Characters of text around the first match in a snippet (the index's snippet() counts
#: tokens, which for trigrams are characters; FTS5 allows at most 64).
SNIPPET_CHARS = 48
#: Markers around a match in a snippet, unless the caller gives others (a terminal: bold).
MARKS = ("[", "]")

_COLUMNS = ("e.id, e.feed, e.title, e.url, e.published, e.fetched_at, e.duplicate_of, "
            "e.dup_method, e.dup_score, e.story")
#: The order entries are shown in; the expression of the index entries_newest (schema 9).
_WHEN = "COALESCE(e.published, e.fetched_at)"


def terms(query: str) -> list[str]:
    """The query's words: every one must be found (as Datasette's search box does)."""
    return query.split()


def entry_filters(feeds: Sequence[str], since: str | None, duplicates: bool | None
             ) -> tuple[list[str], list[Any]]:
    """Conditions on ``entries e``; ``duplicates``: None all, True only, False none."""
    parts: list[str] = []
    params: list[Any] = []
    if duplicates is False:
        # The unary + keeps SQLite from the duplicate_of index, which it takes for selective
        # (without ANALYZE), when most entries are originals: a scan with it then sorts every
        # row; without it the newest are read in order from entries_newest.
        parts.append("+e.duplicate_of IS NULL")
    elif duplicates is True:
        parts.append("e.duplicate_of IS NOT NULL")
    if since:
        parts.append(f"{_WHEN} >= ?")
        params.append(since)
    if feeds:
        parts.append(f"e.feed IN ({', '.join('?' * len(feeds))})")
        params.extend(feeds)
    return parts, params


def _limit(limit: int | None) -> str:
    return f" LIMIT {int(limit)}" if limit else ""


def search_entries(conn: Connection, query: str, *, feeds: Sequence[str] = (),
                   since: str | None = None, limit: int | None = 20,
                   include_duplicates: bool = False,
                   marks: tuple[str, str] = MARKS) -> list[dict[str, Any]]:
    """Entries whose title or text holds every word of ``query``, newest first, each with a
    ``snippet`` whose matches are wrapped in ``marks``.

    Each word is quoted for FTS5 (a phrase), so what the user typed is searched for as text:
    ``-``, quotes, ``AND`` or ``NEAR`` are never query syntax, and never an error.
    """
    words = terms(query)
    if not words:
        return []
    parts, params = entry_filters(feeds, since, None if include_duplicates else False)
    if is_pg(conn):
        return _scan(conn, words, parts, params, limit, marks, pg=True)
    if all(len(w) >= TRIGRAM for w in words):
        match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        where = " AND ".join(["entries_fts MATCH ?", *parts])
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid "
            f"WHERE {where} ORDER BY {_WHEN} DESC, e.id DESC{_limit(limit)}",
            [match, *params]).fetchall()
        found = [dict(r) for r in rows]
        # snippet() only for the rows shown: in the query above it would be computed for
        # every match before the sort.
        snippets: dict[int, str] = {}
        ids = [f["id"] for f in found]
        for marks_in, chunk in in_lists(ids):
            snippets.update(conn.execute(
                "SELECT rowid, snippet(entries_fts, -1, ?, ?, '…', ?) FROM entries_fts "
                f"WHERE entries_fts MATCH ? AND rowid IN ({marks_in})",
                [*marks, SNIPPET_CHARS, match, *chunk]).fetchall())
        for f in found:
            f["snippet"] = snippets.get(f["id"], "")
        return found
    # A word shorter than a trigram: read every entry the filters leave.
    return _scan(conn, words, parts, params, limit, marks, pg=False)


def _scan(conn: Connection, words: Sequence[str], parts: list[str], params: list[Any],
          limit: int | None, marks: tuple[str, str], *, pg: bool) -> list[dict[str, Any]]:
    """The entries whose title or text has every word as a substring, newest first, with a
    snippet made here (``snippet``).

    SQLite's LIKE ignores the case of ASCII letters, as its trigram index does.
    PostgreSQL's LIKE does not, so a word with letters is matched with ILIKE; a word
    without (Chinese, digits) with LIKE: the same rows, but ILIKE lowercases every text it
    reads first: a scan took 2.0-3.1 s with ILIKE, 0.36-0.51 s with LIKE (50,000 entries,
    bench/search_pg.py).  ESCAPE: a ``%`` or ``_`` the user typed is a character, not a
    wildcard.
    """
    parts = list(parts)
    params = list(params)
    for w in words:
        like = "ILIKE" if pg and w.lower() != w.upper() else "LIKE"
        parts.append(f"(e.title {like} ? ESCAPE '\\' OR e.content_text {like} ? ESCAPE '\\')")
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", w) + "%"
        params += [pattern, pattern]
    sql = (f"SELECT {_COLUMNS}, e.content_text AS text FROM entries e "
           f"WHERE {' AND '.join(parts)} ORDER BY {_WHEN} DESC, e.id DESC{_limit(limit)}")
    if pg and any(len(w) < TRIGRAM for w in words):
        # PostgreSQL keeps no statistics of values over 1 KB (a news text), so it guesses
        # that a short word is rare and sorts a full scan's matches, where reading newest
        # first from entries_newest stops at the limit: 0.1 ms instead of 0.31-0.48 s for
        # a word most of 50,000 entries hold.  A word found in few reads every entry either
        # way (0.8-1.0 s this way, 0.36-0.51 s by a seq scan): SQLite's trade (README).
        with transaction(conn):
            conn.execute("SET LOCAL enable_seqscan = off")
            rows = conn.execute(sql, params).fetchall()
    else:
        rows = conn.execute(sql, params).fetchall()
    found = []
    for r in rows:
        entry = dict(r)
        text = entry.pop("text") or ""
        entry["snippet"] = snippet(text if _finds(text, words) else entry["title"] or "",
                                   words, marks)
        found.append(entry)
    return found


def _finds(text: str, words: Sequence[str]) -> bool:
    folded = text.casefold()
    return any(w.casefold() in folded for w in words)


def snippet(text: str, words: Sequence[str], marks: tuple[str, str] = MARKS,
            chars: int = SNIPPET_CHARS) -> str:
    """About ``chars`` characters of ``text`` around the first of ``words`` found, each
    occurrence of a word wrapped in ``marks``; ``…`` where the text was cut."""
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - chars // 3)
    end = min(len(text), start + chars)
    window = pattern.sub(lambda m: f"{marks[0]}{m.group(0)}{marks[1]}", text[start:end])
    return ("…" if start else "") + window + ("…" if end < len(text) else "")


def list_entries(conn: Connection, *, feeds: Sequence[str] = (), since: str | None = None,
                 limit: int | None = 50, duplicates: bool | None = None
                 ) -> list[dict[str, Any]]:
    """The newest entries (published, else first seen); ``duplicates``: None all, True only
    those linked to another entry, False only the cluster roots and loners."""
    parts, params = entry_filters(feeds, since, duplicates)
    where = f"WHERE {' AND '.join(parts)} " if parts else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM entries e {where}"
        f"ORDER BY {_WHEN} DESC, e.id DESC{_limit(limit)}", params).fetchall()
    return [dict(r) for r in rows]


def entry_detail(conn: Connection, entry_id: int) -> dict[str, Any] | None:
    """One entry with its text and cluster: ``root`` (the entry it duplicates, or None) and
    ``duplicates`` (the entries linked to it, or to its root); None if there is none."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, e.author, e.updated_at, e.content_text FROM entries e "
        "WHERE e.id = ?",
        (entry_id,)).fetchone()
    if row is None:
        return None
    entry = dict(row)
    root_id = entry["duplicate_of"] or entry["id"]
    brief = "SELECT id, feed, title, url, dup_method, dup_score FROM entries "
    root = conn.execute(brief + "WHERE id = ?", (entry["duplicate_of"],)).fetchone()
    entry["root"] = dict(root) if root is not None else None
    entry["duplicates"] = [dict(r) for r in conn.execute(
        brief + "WHERE duplicate_of = ? AND id != ? ORDER BY id", (root_id, entry["id"]))]
    return entry
