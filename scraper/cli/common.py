"""What every command's handler needs from its arguments: the config and the open scraper."""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scraper import app
from scraper.config import Config


def load_from_args(args: argparse.Namespace) -> Config:
    return app.load(getattr(args, "config", None))


def optional_config(args: argparse.Namespace) -> Config | None:
    """The config, or None when the user named a database (``--db``) and no config, and
    there is no ./feeds.yaml: the commands that read the database work from it alone.

    A config that exists but is wrong is still an error: an export would silently lose the
    categories and authors it takes from it.
    """
    if (getattr(args, "config", None) is None and getattr(args, "db", None)
            and not Path(app.DEFAULT_CONFIG).exists()):
        return None
    return load_from_args(args)


def open_from_args(args: argparse.Namespace, config: Config | None = None, *,
                   create: bool = True, access: app.Access = "write") -> app.Scraper:
    """Open the database the arguments name.

    ``access="write"`` (refreshing, rebuilding) needs the config, loaded when not given;
    ``"read"`` and ``"export"`` take it when there is one (``optional_config``), open the
    database read-only or for bookkeeping only, and never create it.  Database problems
    are ``app.DatabaseError``, a ConfigError: ``cli.main`` prints them as one line, exit 2.
    """
    if config is None:
        config = load_from_args(args) if access == "write" else optional_config(args)
    return app.open_scraper(config, getattr(args, "db", None), create=create, access=access)


#: The largest integer SQLite stores: a larger id or limit is refused by argparse, rather than
#: reaching the driver (OverflowError, "datatype mismatch": exit 70, a bug).
MAX_INT = 2**63 - 1


def since(text: str) -> str:
    """An argparse type: ``--since DATE`` as the store's ISO text (search, list, export)."""
    from scraper.export import parse_since

    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to :data:`MAX_INT`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {low} or more, got {value}")
        if value > MAX_INT:
            raise argparse.ArgumentTypeError(f"expected at most {MAX_INT}, got {value}")
        return value
    return parse


def width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def ref(entry: Mapping[str, Any]) -> str:
    """``#id [feed] title``: how every command names an entry."""
    return f"#{entry['id']} [{entry['feed']}] {entry['title'] or '(untitled)'}"
