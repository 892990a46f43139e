"""Reading a test's database back, whichever backend it is on (issue 21).

The pipeline tests check what a command stored with a few SQL queries; ``rows`` runs them
on the ``database`` fixture's value: an SQLite file path (sqlite3) or a PostgreSQL URL
(psycopg, ``?`` placeholders turned into ``%s``).  A fresh connection per call, closed at
once, so nothing here holds a lock or a transaction beside the process under test.  It
answers plain tuples, the same from both drivers, and is independent of the code under test
(it does not go through ``scraper.storage``).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

_URL = ("postgresql://", "postgres://")
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")


def is_pg(database: str | Path) -> bool:
    return str(database).startswith(_URL)


def _pg_sql(sql: str) -> str:
    """``?`` outside string literals to ``%s``, and a literal ``%`` to ``%%``."""
    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        return "%s" if text == "?" else text.replace("%", "%%")
    return _PLACEHOLDER.sub(token, sql)


def rows(database: str | Path, sql: str, *params: Any) -> list[tuple]:
    """The statement's rows as tuples (an UPDATE or DELETE: [] once committed)."""
    if is_pg(database):
        import psycopg

        with psycopg.connect(str(database), autocommit=True) as conn:
            cur = conn.execute(_pg_sql(sql), params)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    conn = sqlite3.connect(database, timeout=10)
    try:
        with conn:  # (commits a write)
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def value(database: str | Path, sql: str, *params: Any) -> Any:
    """The first column of the first row (a count, say)."""
    return rows(database, sql, *params)[0][0]


def exists(database: str | Path) -> bool:
    """Has the database been created?  A PostgreSQL one always has (the fixture's)."""
    return is_pg(database) or Path(database).exists()
