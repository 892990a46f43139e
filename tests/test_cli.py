"""Every command answers --help, and the common options are accepted everywhere."""

from __future__ import annotations

from pathlib import Path

import dbread
import pytest

from scraper import storage as store
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


# SQLite only: a file that is not there.  PostgreSQL's missing database is in
# test_pg_errors.py (a server never creates one for a URL).
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


def _bare(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = store.connect(db)
    with store.transaction(conn):
        conn.execute("INSERT INTO feeds (name, url) VALUES ('a', 'https://a.example/rss')")
        for key, dup in (("1", None), ("2", 1)):
            conn.execute("INSERT INTO entries (feed, entry_key, url, title, content_html, "
                         "fetched_at, updated_at, duplicate_of, dup_method, dup_score) "
                         "VALUES ('a', ?, ?, '同一个故事', '<p>正文</p>', "
                         "'2024-05-01T00:00:00Z', '2024-05-01T00:00:00Z', ?, ?, ?)",
                         (key, f"https://a.example/{key}", dup, dup and "exact",
                          dup and 1.0))
    conn.close()
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not (work / "feeds.yaml").exists()
    return db


@pytest.fixture
def bare_db(database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with an original and its duplicate, on each backend, and the current
    folder one with no feeds.yaml."""
    return _bare(database, tmp_path, monkeypatch)


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``bare_db`` on SQLite alone, for the tests that never reach the database (argparse
    and the export's target refuse first): PostgreSQL would add nothing to them."""
    return _bare(str(tmp_path / "scrape.db"), tmp_path, monkeypatch)


@pytest.mark.parametrize("command", [["status"], ["dups"], ["dups", "--explain", "2"],
                                     ["export", "jsonl", "out.jsonl"],
                                     ["export", "feed", "out.xml"],
                                     ["export", "hexo", "posts"]])
def test_read_commands_need_only_the_database(
        bare_db: str, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--db", bare_db]) == 0
    captured = capsys.readouterr()
    assert "feeds.yaml" not in captured.out + captured.err  # no complaint about a config
    if command[0] == "dups":
        assert "#2 [a]" in captured.out  # the duplicate, found from the database alone
    if "--explain" in command:
        assert "default dedup settings" in captured.err  # what it judged with, said


def test_dedup_rebuild_needs_the_config(bare_db: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """It writes links with the config's dedup: settings; guessing them would undo the
    user's thresholds."""
    def stored() -> list[tuple]:
        return dbread.rows(bare_db, "SELECT id, duplicate_of, dup_method, updated_at "
                                    "FROM entries ORDER BY id") + dbread.rows(
            bare_db, "SELECT COUNT(*) FROM dedup_fingerprints")

    before = stored()
    assert main(["dedup", "--rebuild", "--db", bare_db]) == 2
    assert "feeds.yaml: not found" in capsys.readouterr().err
    assert stored() == before


def test_a_broken_feeds_yaml_is_still_an_error_for_an_export(
        sqlite_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Only an absent config is optional: a broken one would silently drop the categories
    and authors the export takes from it."""
    Path("feeds.yaml").write_text("feeds: [\n", encoding="utf-8")
    assert main(["export", "jsonl", "out.jsonl", "--db", sqlite_db]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert not Path("out.jsonl").exists()


@pytest.mark.parametrize("command", [["export", "jsonl", "DIR"], ["export", "feed", "DIR"],
                                     ["export", "hexo", "FILE"]])
def test_an_export_target_that_cannot_be_written_is_one_line_and_exit_2(
        sqlite_db: str, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A folder given as the output file, or a file as the Hexo folder, is the user's input:
    one line naming it and exit 2, not 70 ("unexpected error", which means a bug)."""
    Path("DIR").mkdir()
    Path("FILE").write_text("x")
    target = str(Path.cwd() / command[-1])
    assert main([*command[:-1], target, "--db", sqlite_db]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scrape: {target}: cannot write: ") and err.count("\n") == 1
    assert "unexpected" not in err


@pytest.mark.parametrize("command", [["list", "--limit", "BIG"],
                                     ["search", "故事", "--limit", "BIG"], ["show", "BIG"],
                                     ["dups", "--explain", "BIG"],
                                     ["dups", "--limit", "BIG"],
                                     ["export", "feed", "out.xml", "--limit", "BIG"]])
def test_a_number_too_large_for_sqlite_is_a_usage_error(
        sqlite_db: str, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """An id or limit past SQLite's 64-bit integers: argparse's one line and exit 2, never
    the driver's OverflowError or "datatype mismatch" as an unexpected error (exit 70)."""
    args = [str(2**64) if a == "BIG" else a for a in command]
    with pytest.raises(SystemExit) as done:
        main([*args, "--db", sqlite_db])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "expected at most" in err and "unexpected" not in err


@pytest.mark.parametrize("extra", [["--db", "other.db"], ["--config", "feeds.yaml"]])
def test_db_copy_refuses_the_options_it_would_ignore(tmp_path: Path, extra: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--db`` would seem to choose a database ``db copy`` does not use: refused, one line,
    nothing opened or created."""
    source = tmp_path / "scrape.db"
    args = ["db", "copy", str(source), "postgresql://nobody@127.0.0.1:9/none"]
    extra = [extra[0], str(tmp_path / extra[1])]
    assert main([*args, *extra]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"scrape: db copy: {extra[0]} not used here: SRC and DST name the two "
                    "databases")
    assert sorted(tmp_path.iterdir()) == []
