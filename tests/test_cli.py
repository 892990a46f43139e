"""Every command answers --help, and the common options are accepted everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.cli import build_parser, main

COMMANDS = [[], ["status"], ["dups"], ["dedup"], ["export"], ["export", "hexo"],
            ["export", "jsonl"], ["export", "feed"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "scrape")
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scrape")
    assert "--db" in out and "--config" in out


@pytest.mark.parametrize("command", [["status"], ["dups"], ["export", "hexo", "out"]])
def test_common_options_after_the_command(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--db", "x.db", "--config", "c.yaml"])
    assert (args.db, args.config) == ("x.db", "c.yaml")


def test_common_options_before_the_command() -> None:
    args = build_parser().parse_args(["--db", "x.db", "status"])
    assert args.db == "x.db"


@pytest.mark.parametrize("command", [["dups"], ["dedup", "--rebuild"],
                                     ["export", "jsonl", "-"], ["export", "feed", "-"]])
def test_a_read_command_on_a_missing_database_creates_nothing(
        tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    missing = tmp_path / "typo.db"
    assert main([*command, "--config", str(config), "--db", str(missing)]) == 2
    assert f"no database at {missing}" in capsys.readouterr().err
    assert not missing.exists()
