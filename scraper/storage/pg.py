"""PostgreSQL under the storage functions: a psycopg 3 connection that answers like sqlite3's.

The storage modules write their SQL once, with ``?`` placeholders, and call ``execute``,
``executemany`` and ``cursor`` as on an ``sqlite3.Connection``; ``PgConnection`` gives them
the same calls over a pooled psycopg connection, rows that are read by index or by column
name, and ``?`` turned into psycopg's ``%s``.  Where the two dialects differ, the storage
function asks ``db.is_pg`` and writes each (few places: search, claims, a string
aggregate).

The connection runs in autocommit and ``transaction`` issues BEGIN/COMMIT itself, as ``db``
does for SQLite, so a statement outside a transaction commits on its own in both backends.
psycopg is imported only here, and only when a ``postgresql://`` database is opened: a user
of SQLite does not need it installed (it is the ``postgresql`` extra).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from scraper.storage.errors import DatabaseError, busy_timeout_ms, locked

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

#: A session that sits inside a transaction this long without a statement is ended by the
#: server, its locks released: a worker frozen mid-refresh (a paused VM, a host cut off)
#: would otherwise hold the claim lock, its rows and its dedup locks until its TCP connection
#: dies, and every other worker's claims would wait (tests/test_pg_daemons.py freezes one).
#: Ours never idle in a transaction for more than the computing between two statements
#: (milliseconds; a dedup rebuild's batch, seconds), so a minute is far from their way.
IDLE_IN_TRANSACTION_MS = 60_000

#: What selects this backend in ``--db`` and feeds.yaml's ``database:``.
URL_SCHEMES = ("postgresql://", "postgres://")

#: Seconds to wait for the server when connecting: a wrong host fails in seconds, not at the
#: operating system's TCP timeout (minutes).
CONNECT_TIMEOUT = 10

#: Said after "permission denied": PostgreSQL 15 lets only a database's owner create tables
#: in its schema public, and scrape's tables belong to the user who created them.
PRIVILEGE_HINT = ("scrape needs a user that owns the database (createdb -O USER), or one "
                  "granted its tables by their owner")

#: At most this many connections per process and database: a process holds one (a test or
#: a library user may open a few); the pool keeps them open between uses.
POOL_SIZE = 4


def is_url(target: object) -> bool:
    """Does ``target`` (a ``--db`` or ``database:`` value) name a PostgreSQL database?"""
    return isinstance(target, str) and target.lower().startswith(URL_SCHEMES)


#: The user part as libpq reads it: everything between the scheme and the last ``@`` before
#: the path, ``?`` and ``#`` included (Python's urlsplit would end it at those, and a
#: password holding one was printed whole).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)@")
#: libpq's secrets among the parameters: the password, and the client key's passphrase.
_QUERY_SECRET = re.compile(r"(?<![^?&])((?:ssl)?password)=([^&#]*)")


def redact(url: str) -> str:
    """The URL for messages and logs: its secrets replaced by ``***``, whether in the user
    part or as libpq's ``?password=`` (or ``sslpassword=``) parameter."""
    found = _USERINFO.match(url)
    if found and ":" in found.group(2):
        user = found.group(2).partition(":")[0]
        url = f"{found.group(1)}{user}:***@{url[found.end():]}"
    return _QUERY_SECRET.sub(r"\1=***", url)


def _secrets(url: str) -> list[str]:
    """The URL's secrets as the server may echo them (``redact``'s places), decoded."""
    found = _USERINFO.match(url)
    out = [unquote(found.group(2).partition(":")[2])] if found else []
    out += [unquote(value) for _, value in _QUERY_SECRET.findall(url)]
    return [secret for secret in out if secret]


# -- SQL and rows ------------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """``?`` placeholders to ``%s``, and a literal ``%`` (in LIKE patterns, say) to ``%%``,
    which psycopg reads as one ``%`` when it is given parameters."""
    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        return "%s" if text == "?" else text.replace("%", "%%")
    return _TOKENS.sub(token, sql)


class Row(tuple):
    """A result row read by index, or by column name as ``sqlite3.Row`` is (``dict(row)``
    works too)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in
                                                             enumerate(names)}})


def _rows(cursor: psycopg.Cursor[Any]) -> Any:
    """psycopg's row factory: ``Row`` for the statement's columns."""
    names = tuple(column.name for column in cursor.description or ())
    cls = _row_class(names)
    return lambda values: cls(values)


class PlainCursor:
    """``conn.cursor()``: rows as plain tuples (the callers set ``row_factory = None``,
    which on sqlite3 gives tuples; here they always are)."""

    row_factory: object = None

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(sql, params, plain=True)

    def close(self) -> None:
        """(Each ``execute`` made its own psycopg cursor, closed with its results.)"""


class PgConnection:
    """One pooled psycopg connection, answering the calls storage makes on sqlite3's.

    A connection the server dropped (a restart, a failover, an idle timeout) is replaced
    from the pool at the next statement outside a transaction, so a daemon carries on once
    the server is back; inside a transaction its loss is an error, as the transaction is.
    """

    def __init__(self, pool: ConnectionPool, url: str, *, read_only: bool) -> None:
        self.url = redact(url)
        self.read_only = read_only
        self._pool = pool
        self._full_url = url
        self._raw: psycopg.Connection[Any] | None = None
        self._closed = False
        self._held = False  # (had a connection: a new one is one that replaces it)
        #: Set by ``transaction``: a lost connection cannot be replaced within one.
        self.in_transaction = False
        self._connect()

    def _connect(self) -> None:
        """Take a connection from the pool and set this session up.  After a lost one, the
        server is asked directly first: down, it answers at once with the reason, where the
        pool would wait out its timeout on the database thread before saying it waited."""
        import psycopg

        if self._held:  # (a replacement; the first was probed when the pool was made)
            _probe(self._full_url)
        try:
            raw = self._pool.getconn(timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # psycopg_pool.PoolTimeout: the server is not answering
            if not type(exc).__module__.startswith("psycopg"):
                raise
            _probe(self._full_url)
            raise problem(self._full_url, exc) from None
        try:
            # 0 is "wait for ever" to PostgreSQL, "fail at once" to SQLite: at least 1 ms.
            raw.execute(f"SET lock_timeout = {max(1, busy_timeout_ms())}")
            # Ours unless the server or the database sets its own (an administrator's, or
            # the crash test's few seconds): 0 is PostgreSQL's default, "never".
            raw.execute("SELECT set_config('idle_in_transaction_session_timeout', "
                        f"'{IDLE_IN_TRANSACTION_MS}', false) WHERE current_setting("
                        "'idle_in_transaction_session_timeout') = '0'")
            raw.execute("SET default_transaction_read_only = "
                        f"{'on' if self.read_only else 'off'}")
        except psycopg.Error as exc:
            self._pool.putconn(raw)
            raise problem(self.url, exc) from None
        self._raw = raw
        self._held = True

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The live connection: one the server dropped is replaced (outside a transaction;
        until the server answers again, each use says why it cannot)."""
        raw = self._raw
        if raw is not None and not raw.closed:
            return raw
        if self._closed:
            raise DatabaseError(f"{self.url}: the connection is closed")
        if self.in_transaction:
            raise DatabaseError(f"{self.url}: the connection to the server was lost")
        if raw is not None:
            self._raw = None
            self._pool.putconn(raw)  # (the pool discards a closed connection)
        self._connect()
        assert self._raw is not None
        return self._raw

    def execute(self, sql: str, params: Sequence[Any] = (), *,
                plain: bool = False) -> psycopg.Cursor[Any]:
        """A read outside a transaction that finds its connection dropped (an idle timeout,
        a restart the daemon slept through) is asked again once on a new one: it changed
        nothing, and a daemon's first read after a quiet hour would fail its feed.  (Every
        SELECT with an effect, the advisory locks and ``setval``, runs inside a
        transaction, where nothing is asked again.)"""
        try:
            return self._execute(sql, params, plain)
        except DatabaseError:
            lost = self._raw is not None and self._raw.closed
            if not lost or self.in_transaction or not sql.lstrip()[:6].upper() == "SELECT":
                raise
            return self._execute(sql, params, plain)

    def _execute(self, sql: str, params: Sequence[Any], plain: bool) -> psycopg.Cursor[Any]:
        import psycopg

        try:
            cursor = self.raw.cursor() if plain else self.raw.cursor(row_factory=_rows)
            if params:
                cursor.execute(translate(sql), params)
            else:
                cursor.execute(sql)
        except psycopg.Error as exc:
            raise self._storage_error(exc) from None
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        import psycopg

        rows = list(rows)
        if not rows:
            return
        try:
            self.raw.cursor().executemany(translate(sql), rows)
        except psycopg.Error as exc:
            raise self._storage_error(exc) from None

    def _storage_error(self, exc: psycopg.Error) -> Exception:
        """What a failed statement raises: the storage error for what is the database's or
        the user's to fix (locked, the server gone, no permission), else the driver's own
        error (a bug in the SQL or the data)."""
        import psycopg

        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return locked(self.url)
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            found = problem(self.url, exc)
            return DatabaseError(f"{found}; {PRIVILEGE_HINT}")
        # The server gone or the session ended (25P03: idle in a transaction too long, see
        # IDLE_IN_TRANSACTION_MS; psycopg makes it an InternalError), a lock or deadlock.
        if isinstance(exc, psycopg.OperationalError) or exc.sqlstate == "25P03":
            return problem(self.url, exc)
        return exc

    def begin(self) -> None:
        """BEGIN, once more on a new connection if the server had dropped this one: nothing
        was written yet, so only the transaction's first statement may be retried (a
        server restart costs no refresh)."""
        try:
            self.execute("BEGIN")
        except DatabaseError:
            if self._raw is not None and not self._raw.closed:
                raise
            self.execute("BEGIN")

    def cursor(self) -> PlainCursor:
        return PlainCursor(self)

    def close(self) -> None:
        """Give the connection back to the pool, which resets its session (read-only above
        all) or discards it when the server dropped it."""
        raw, self._raw, self._closed = self._raw, None, True
        if raw is not None:
            self._pool.putconn(raw)

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CONNECT_PREFIX = re.compile(r'^(?:connection failed: )?connection to server at "[^"]*"'
                             r"(?:, port \d+)? failed: (?:FATAL: +)?")


def problem(url: str, exc: Exception) -> DatabaseError:
    """The driver's error as one line naming the database (its password hidden): what the
    server or the network said, without libpq's "connection to server at ... failed"
    (the URL names the server) and with its hint on the same line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    detail = _CONNECT_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
    if len(lines) > 1 and detail.lower() == "connection refused":
        hint = lines[1].rstrip("?")
        detail = f"connection refused ({hint[:1].lower()}{hint[1:]}?)"
    for secret in _secrets(url):
        detail = detail.replace(secret, "***")
    return DatabaseError(f"{redact(url)}: {detail}")


def _probe(url: str) -> None:
    """Connect once, directly: the server's own answer (refused, no such database, a wrong
    password) as a DatabaseError, where the pool would only say that it timed out."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
    except psycopg.Error as exc:
        raise problem(url, exc) from None


# -- opening -----------------------------------------------------------------------------

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def open_connection(url: str, *, read_only: bool = False) -> PgConnection:
    """A connection to ``url`` from this process's pool for it (made at the first use, after
    one direct connection that turns "connection refused", "database does not exist" or a
    wrong password into one line: the pool would only say that it timed out)."""
    try:
        import psycopg  # noqa: F401  (is it installed: the message below says how)
        from psycopg_pool import ConnectionPool
    except ImportError:
        raise DatabaseError(f"{redact(url)}: PostgreSQL needs psycopg and psycopg-pool: "
                            "pip install -e '.[postgresql]' in scrape's folder") from None
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            _probe(url)
            pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=True,
                                  kwargs={"autocommit": True,
                                          "connect_timeout": CONNECT_TIMEOUT},
                                  # A connection the server dropped while it sat in the
                                  # pool is found at getconn (one round trip), not used.
                                  check=ConnectionPool.check_connection,
                                  reset=_reset, name="scrape")
            _pools[url] = pool
    return PgConnection(pool, url, read_only=read_only)


def _reset(raw: psycopg.Connection[Any]) -> None:
    """A session's settings (read-only above all) end when it goes back to the pool."""
    raw.execute("RESET ALL")


def close_pools() -> None:
    """Close every pool (the tests' servers stop between sessions)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


@contextmanager
def transaction(conn: PgConnection) -> Iterator[PgConnection]:
    """BEGIN ... COMMIT, rolled back on any error; READ COMMITTED, as PostgreSQL's default:
    the functions that must see one another's writes in order (claims, dedup links) take
    the row or advisory locks they need themselves."""
    conn.begin()
    conn.in_transaction = True
    try:
        yield conn
    except BaseException:
        with suppress(DatabaseError):  # (a lost connection: the server rolled it back)
            if conn.raw.info.transaction_status != 0:  # (0: idle, nothing to roll back)
                conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
    finally:
        conn.in_transaction = False

