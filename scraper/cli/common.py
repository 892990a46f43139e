"""What every command's handler needs from its arguments: the config and the open scraper."""

from __future__ import annotations

import argparse

from scraper import app
from scraper.config import Config


def load_from_args(args: argparse.Namespace) -> Config:
    return app.load(getattr(args, "config", None))


def open_from_args(args: argparse.Namespace, config: Config | None = None) -> app.Scraper:
    return app.open_scraper(config or load_from_args(args), getattr(args, "db", None))
