"""A throwaway PostgreSQL server for the tests, started from Debian's binaries.

``.ci/run`` installs the ``postgresql`` package; the tests start their own server on a free
port of 127.0.0.1 with its data in a temporary folder (fsync off: it is thrown away), so no
system service is needed.  Each test gets its own database, copied from a template that
holds the migrated schema (a copy takes milliseconds, a migration with pg_trgm's indexes
much longer).  ``SCRAPE_TEST_PG`` names an existing server instead (a URL whose user may
create databases); the databases a session makes there, its template too, are named after
its process (two sessions on one server keep theirs) and dropped when they are done.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: A URL of a server to use instead of starting one (its user may CREATE DATABASE).
EXTERNAL_ENV = "SCRAPE_TEST_PG"
#: Set by .ci/run: a missing PostgreSQL fails the run instead of skipping its tests.
REQUIRE_ENV = "SCRAPE_REQUIRE_PG"
#: The migrated template's name, this session's own (another session may drop its own).
TEMPLATE = f"scrape_template_{os.getpid()}"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them per version)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A server this process started (``start``) or was given (``external``)."""

    def __init__(self, base_url: str, folder: Path | None = None,
                 bin_dir: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.folder = folder
        self.bin_dir = bin_dir
        self._names = itertools.count(1)
        self._template_ready = False
        self._created: set[str] = set()  # (what drop_all drops on SCRAPE_TEST_PG's server)

    @classmethod
    def external(cls, url: str) -> PgServer:
        return cls(url.rsplit("/", 1)[0] if url.count("/") > 2 else url)

    @classmethod
    def start(cls) -> PgServer | None:
        """Start a server, or None when PostgreSQL is not installed."""
        bin_dir = binaries()
        if bin_dir is None:
            return None
        # /tmp, not $TMPDIR: the postgres user must be able to enter it.
        folder = Path(tempfile.mkdtemp(prefix="scrape-pg-", dir="/tmp"))
        data = folder / "data"
        as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's postgres
            as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
            shutil.chown(folder, "postgres", "postgres")
            folder.chmod(0o755)
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        server = cls("postgresql://scrape@127.0.0.1", folder, bin_dir)
        server._as_postgres = as_postgres  # type: ignore[attr-defined]
        # Stopped when the tests end, however they end (a server left running holds its
        # port and folder).
        atexit.register(server.stop)
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=300")
        for command in ([str(bin_dir / "initdb"), "-D", str(data), "-U", "scrape", "-A", "trust",
                         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                        [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                         str(folder / "log"), "-w", "-t", "60", "start"]):
            done = subprocess.run([*as_postgres, *command], capture_output=True, text=True,
                                  env=env)
            if done.returncode:
                log = folder / "log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                server.stop()
                raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): "
                                   f"{done.stderr.strip()}\n{tail}")
        server.base_url = f"postgresql://scrape@127.0.0.1:{port}"
        return server

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, *, migrated: bool = True, icu_locale: str | None = None) -> str:
        """A new database's URL; ``migrated``: with this release's schema already in it;
        ``icu_locale``: an empty one that sorts text by that ICU locale (``en``: 'a' < 'B'),
        where the cluster's own sorts by code point (``C.UTF-8``)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        if icu_locale:
            self._admin(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                        f"ICU_LOCALE '{icu_locale}' LOCALE 'C.UTF-8'")
        elif migrated:
            self._ensure_template()
            self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        else:
            self._admin(f"CREATE DATABASE {name}")
        self._created.add(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._created.discard(name)

    def drop_all(self) -> None:
        """Drop what this session created and has not dropped yet, the template too."""
        for name in sorted(self._created):
            self.drop_database(self.url(name))
        if self._template_ready:
            self._admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            self._template_ready = False

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        from scraper import storage
        from scraper.storage import pg

        self._admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        self._admin(f"CREATE DATABASE {TEMPLATE}")
        storage.connect(self.url(TEMPLATE)).close()
        pg.close_pools()  # (a template may have no connections when it is copied)
        self._template_ready = True

    def stop(self) -> None:
        if self.folder is None or self.bin_dir is None:
            return
        as_postgres = getattr(self, "_as_postgres", [])
        subprocess.run([*as_postgres, str(self.bin_dir / "pg_ctl"), "-D",
                        str(self.folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None  # (stopped once: by the fixture, else at exit)
