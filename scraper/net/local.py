"""Local feed files (``url: file:///path`` or a plain path in feeds.yaml), read from disk.

They answer in the fetcher's shape (``FetchResult``), so the rest of a refresh cannot tell
them from HTTP: the file's mtime and size stand in for a validator and are stored in the
feed row's ``etag`` and ``last_modified`` columns; an unchanged file is answered like a
``304 Not Modified``: neither read nor parsed.

Only the refresher's feed fetch comes here, for URLs from the user's own config.  URLs taken
from feed content (full-text pages) go to ``Fetcher.fetch`` with its guard, which refuses
every scheme but http(s): a feed can never make this process read a file.
"""

from __future__ import annotations

import asyncio
import os
import stat
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from scraper.net.fetch import FetchResult

#: The validator's prefix: a stored ETag that is ours, not a server's (a feed that moves
#: from HTTP to a file, or back, never matches the other's validator).
ETAG_PREFIX = "file:"


def is_local(url: str) -> bool:
    """True for the ``file:`` URLs config.py makes of local feeds."""
    return url[:5].lower() == "file:"


def file_path(url: str) -> Path:
    """The path a ``file:///`` URL names."""
    return Path(unquote(urlsplit(url).path))


def validator(info: os.stat_result) -> str:
    """What changes when the file does: its mtime (in ns) and size, as an ETag value."""
    return f'"{ETAG_PREFIX}{info.st_mtime_ns}-{info.st_size}"'


def read_local(url: str, *, etag: str | None = None, max_bytes: int) -> FetchResult:
    """Read a local feed; never raises for a missing or unreadable file (a feed error).

    ``etag``: the validator stored at the last read; the same file answers 304 without
    being read.  ``max_bytes``: the fetcher's body cap applies to files too.
    """
    path = file_path(url)
    result = FetchResult(url=url, attempts=1)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a folder, or a FIFO that would block
            result.error = f"cannot read {path}: not a regular file"
            return result
        with path.open("rb") as handle:
            # The validator of the bytes read: a file rewritten since the check above is
            # read again at the next refresh, never skipped.
            info = os.fstat(handle.fileno())
            tag = validator(info)
            result.headers = {"etag": tag, "last-modified": formatdate(info.st_mtime,
                                                                       usegmt=True)}
            if etag == tag:
                result.status = 304
                return result
            body = handle.read(max_bytes + 1)
    except FileNotFoundError:
        result.error = f"cannot read {path}: no such file"
        return result
    except OSError as exc:
        result.error = f"cannot read {path}: {exc.strerror or exc}"
        return result
    if len(body) > max_bytes:
        result.error = (f"{path}: larger than {max_bytes / 1048576:g} MiB; raise "
                        f"fetch.max_bytes to allow")
        return result
    result.status, result.body = 200, body
    return result


async def fetch_local(url: str, *, etag: str | None = None, max_bytes: int) -> FetchResult:
    """:func:`read_local` on a thread, so a slow disk never stalls the event loop."""
    return await asyncio.to_thread(read_local, url, etag=etag, max_bytes=max_bytes)
