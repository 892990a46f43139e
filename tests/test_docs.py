"""The documentation keeps up with the code: every option in docs/configuration.md's table,
every command in the README's command table (sqlite-utils' tests/test_docs.py does the same
for its commands)."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

from scraper import config
from scraper.cli import build_parser
from scraper.core import rules

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = Path(__file__).resolve().parent.parent / "README.md"


def documented_options() -> set[str]:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))


def code_options() -> set[str]:
    options = set(config.TOP_KEYS)
    options |= {f"feeds[].{key}" for key in config.FEED_KEYS}
    options |= {f"rules.{key}" for key in rules.RULE_KEYS}
    for block, settings in (("fetch", config.FetchSettings), ("dedup", config.DedupSettings),
                            ("daemon", config.DaemonSettings)):
        options |= {f"{block}.{f.name}" for f in fields(settings)}
    return options


def test_every_option_is_in_the_configuration_table() -> None:
    missing = code_options() - documented_options()
    assert not missing, f"options missing from docs/configuration.md: {sorted(missing)}"


def test_the_configuration_table_names_no_option_the_code_lacks() -> None:
    stale = documented_options() - code_options()
    assert not stale, f"docs/configuration.md names options the code lacks: {sorted(stale)}"


def _commands(parser: argparse.ArgumentParser, prefix: str = "scrape") -> list[str]:
    """Every command ``--help`` lists, walked down the parser's subcommands (``scrape
    export hexo`` as well as ``scrape export``)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += _commands(sub, f"{prefix} {name}")
    return found


def _command_cells() -> list[str]:
    """The first cell of each row of the README's command table."""
    table = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| `")]


def _documented(command: str, cells: list[str]) -> bool:
    """A row starts with the command (``scrape list``, then a space, a backtick or an
    option); a nested one (``scrape export feed``) is named in its parent's row."""
    words = command.split()
    row = re.compile(rf"^`{re.escape(' '.join(words[:2]))}(?=[\s`\[])")
    return any(row.match(cell) and all(re.search(rf"\b{re.escape(w)}\b", cell)
                                       for w in words[2:]) for cell in cells)


def test_every_command_is_in_the_readme() -> None:
    commands = _commands(build_parser())
    assert {"scrape search", "scrape list", "scrape show", "scrape export hexo"} <= set(
        commands)  # (the walk finds the commands, nested ones too)
    cells = _command_cells()
    missing = [c for c in commands if not _documented(c, cells)]
    assert not missing, f"commands missing from the README's command table: {missing}"


def test_the_readme_table_names_no_command_the_parser_lacks() -> None:
    known = {" ".join(c.split()[:2]) for c in _commands(build_parser())}
    rows = {m.group(1) for cell in _command_cells()
            if (m := re.match(r"^`(scrape [a-z][a-z-]*)", cell))}
    assert rows and not rows - known, f"the README documents unknown commands: {rows - known}"


def test_the_readme_names_the_options_every_command_takes_as_the_parser_does() -> None:
    """``--config PATH``, ``--db PATH|URL``: the README's line under the command table
    spells each value as ``--help`` does (it said ``--db PATH`` after URLs were taken)."""
    from scraper.cli import common_options

    text = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    text = text.replace("\\|", "|")
    for action in common_options()._actions:
        if action.metavar and action.option_strings:
            shown = f"`{action.option_strings[-1]} {action.metavar}`"
            assert shown in text, f"the README's Commands section lacks {shown}"


def test_the_database_option_says_it_takes_a_postgresql_url() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith("| `database` |")]
    assert "postgresql://" in row and "--db PATH\\|URL" in row, row
