"""What every command's handler needs from its arguments: the config and the open scraper."""

from __future__ import annotations

import argparse
import unicodedata

from scraper import app
from scraper.config import Config, ConfigError


def load_from_args(args: argparse.Namespace) -> Config:
    return app.load(getattr(args, "config", None))


def open_from_args(args: argparse.Namespace, config: Config | None = None, *,
                   create: bool = True) -> app.Scraper:
    """``create=False``: a missing database is a usage error, not a new, empty file."""
    try:
        return app.open_scraper(config or load_from_args(args), getattr(args, "db", None),
                                create=create)
    except FileNotFoundError as exc:
        raise ConfigError(f"no database at {exc.filename}") from None


def width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))
