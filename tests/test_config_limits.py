"""feeds.yaml mistakes that used to pass silently or crash: a key given twice, and numbers
too large (or infinite) for the code that uses them.  Each is a config error, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from configfiles import error_of, write

from scraper.cli import main
from scraper.config import ConfigError, daemon_settings, load_config

# -- a key given twice ------------------------------------------------------------------------

TWO_FEEDS_BLOCKS = """\
feeds:
  - {name: a, url: 'http://x/a'}
fetch: {retries: 0}
feeds:
  - {name: b, url: 'http://x/b'}
"""


@pytest.mark.parametrize(("text", "expected"), [
    (TWO_FEEDS_BLOCKS, "feeds.yaml: line 4: duplicate key 'feeds' (first on line 1)"),
    ("feeds:\n  - name: a\n    url: 'http://x/a'\n  - name: b\n    url: 'http://x/b'\n"
     "    url: 'http://x/c'\n",
     "feeds.yaml: line 6: feeds[1] 'b': duplicate key 'url' (first on line 5)"),
    ("feeds:\n  - {name: a, url: 'http://x/a', \"url\": 'http://x/c'}\n",
     "feeds.yaml: line 2: feeds[0] 'a': duplicate key 'url' (first on line 2)"),
    ("fetch:\n  retries: 1\n  timeout: 5\n  retries: 2\nfeeds: []\n",
     "feeds.yaml: line 4: fetch: duplicate key 'retries' (first on line 2)"),
    ("feeds:\n  - name: a\n    url: 'http://x/a'\n    rules:\n      remove: [p]\n"
     "      remove: [q]\n",
     "feeds.yaml: line 6: feeds[0] 'a': rules: duplicate key 'remove' (first on line 5)"),
    ("defaults: {interval: 1h, interval: 2h}\nfeeds: []\n",
     "feeds.yaml: line 1: defaults: duplicate key 'interval' (first on line 1)"),
])
def test_a_repeated_key_is_an_error_naming_line_and_key(tmp_path: Path, text: str,
                                                        expected: str) -> None:
    assert error_of(tmp_path, text) == expected


def test_a_repeated_feeds_block_exits_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, TWO_FEEDS_BLOCKS)
    db = tmp_path / "out.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 2
    assert "feeds.yaml: line 4: duplicate key 'feeds'" in capsys.readouterr().err
    assert not db.exists()


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    """``<<`` is not a repetition: a key beside it wins over the merged one, as YAML says,
    also when the merged mapping has merged another itself."""
    config = load_config(write(tmp_path, """\
feeds:
  - &base {name: a, url: 'http://x/a', interval: 1h, categories: [x]}
  - &second {<<: *base, name: b, interval: 2h}
  - {<<: [*second, *base], name: c, url: 'http://x/c'}
"""))
    a, b, c = config.feeds
    assert (a.interval, b.interval, c.interval) == (3600, 7200, 7200)
    assert b.url == "http://x/a" and c.url == "http://x/c" and c.categories == ("x",)


def test_a_repeated_key_inside_a_merged_mapping_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, "feeds:\n  - {<<: {url: 'http://x/a', url: 'http://x/b'}, "
                                 "name: a}\n")
    assert message == "feeds.yaml: line 2: feeds[0] 'a': duplicate key 'url' (first on line 2)"


def test_the_first_repetition_in_the_file_is_reported(tmp_path: Path) -> None:
    message = error_of(tmp_path, "feeds:\n  - {name: a, url: 'http://x/a', url: 'http://x/b'}\n"
                                 "  - {name: b, url: 'http://x/a', url: 'http://x/b'}\n")
    assert message.startswith("feeds.yaml: line 2: feeds[0] 'a': duplicate key 'url'")


def test_deep_nesting_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    """libyaml nests 1,000 levels deep, more than Python's recursion limit allows."""
    message = error_of(tmp_path, "feeds: " + "[" * 999 + "]" * 999 + "\n")
    assert message == "feeds.yaml: feeds[0]: expected a mapping with name and url"


# -- numbers out of range ---------------------------------------------------------------------

def feed_with(line: str) -> str:
    return f"feeds:\n  - name: a\n    url: 'http://x/a'\n    {line}\n"


@pytest.mark.parametrize(("text", "expected"), [
    (feed_with("interval: .inf"), "feeds.yaml: feeds[0] 'a': interval: must be at most 365d, "
                                  "got inf"),
    (feed_with("interval: 99999999999999d"), "feeds.yaml: feeds[0] 'a': interval: must be at "
                                             "most 365d, got '99999999999999d'"),
    (feed_with("interval: 99999999999999999999"), "feeds.yaml: feeds[0] 'a': interval: must be "
                                                  "at most 365d, got 99999999999999999999"),
    (feed_with("interval: 1.0e+300"), "feeds.yaml: feeds[0] 'a': interval: must be at most "
                                      "365d"),
    (feed_with("interval: 366d"), "feeds.yaml: feeds[0] 'a': interval: must be at most 365d"),
    (feed_with("interval: '" + "9" * 400 + "s'"),  # float() of it is inf
     "feeds.yaml: feeds[0] 'a': interval: must be at most 365d"),
    ("defaults: {interval: .inf}\n" + feed_with("enabled: true"),
     "feeds.yaml: feeds[0] 'a': interval: must be at most 365d, got inf"),
    (feed_with("timeout: .inf"), "feeds.yaml: feeds[0] 'a': timeout: must be at most 1h, "
                                 "got inf"),
    (feed_with("timeout: 3601"), "feeds.yaml: feeds[0] 'a': timeout: must be at most 1h"),
    (feed_with("timeout: 2h"), "feeds.yaml: feeds[0] 'a': timeout: must be at most 1h"),
    (feed_with("timeout: .nan"), "feeds.yaml: feeds[0] 'a': timeout: expected seconds"),
    ("fetch: {timeout: .inf}\nfeeds: []\n", "feeds.yaml: fetch: timeout: must be at most 1h, "
                                            "got inf"),
    ("fetch: {max_bytes: 99999999999999999999999}\nfeeds: []\n",
     "feeds.yaml: fetch: max_bytes: expected a whole number from 1 to 1073741824, "
     "got 99999999999999999999999"),
    ("fetch: {retries: 99999999999999999999}\nfeeds: []\n",
     "feeds.yaml: fetch: retries: expected a whole number from 0 to 10"),
    ("fetch: {max_redirects: 21}\nfeeds: []\n",
     "feeds.yaml: fetch: max_redirects: expected a whole number from 0 to 20"),
    ("fetch: {concurrency: 10001}\nfeeds: []\n",
     "feeds.yaml: fetch: concurrency: expected a whole number from 1 to 10000"),
    ("fetch: {per_host: 10001}\nfeeds: []\n",
     "feeds.yaml: fetch: per_host: expected a whole number from 1 to 10000"),
    ("daemon: {tick: .inf}\nfeeds: []\n", "feeds.yaml: daemon: tick: must be at most 1d, "
                                          "got inf"),
    ("daemon: {heartbeat: 2d}\nfeeds: []\n", "feeds.yaml: daemon: heartbeat: must be at most "
                                             "1d"),
    ("daemon: {config_poll: 86401}\nfeeds: []\n", "feeds.yaml: daemon: config_poll: must be "
                                                  "at most 1d"),
    ("daemon: {shutdown_grace: .inf}\nfeeds: []\n", "feeds.yaml: daemon: shutdown_grace: must "
                                                    "be at most 1d"),
])
def test_numbers_out_of_range_name_file_feed_and_field(tmp_path: Path, text: str,
                                                       expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_the_bounds_themselves_are_allowed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
fetch: {timeout: 1h, max_bytes: 1073741824, retries: 10, max_redirects: 20,
        concurrency: 10000, per_host: 10000}
daemon: {tick: 1d, heartbeat: 86400, config_poll: 24h, shutdown_grace: 1440m}
feeds:
  - {name: a, url: 'http://x/a', interval: 365d, timeout: 3600}
  - {name: b, url: 'http://x/b', interval: 31536000, timeout: 0.5}
"""))
    a, b = config.feeds
    assert (a.interval, a.timeout, b.interval, b.timeout) == (31_536_000, 3600.0,
                                                              31_536_000, 0.5)
    assert config.fetch.timeout == 3600.0 and config.fetch.max_bytes == 1 << 30
    assert config.daemon.tick == config.daemon.shutdown_grace == 86400.0


@pytest.mark.parametrize("line", ["interval: .inf", "interval: 99999999999999d",
                                  "timeout: .inf"])
def test_an_out_of_range_feed_value_exits_2(tmp_path: Path, line: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 70 (OverflowError), or every feed failed with an internal error."""
    cfg = write(tmp_path, f"feeds:\n  - name: a\n    url: a.xml\n    {line}\n")
    db = tmp_path / "out.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 2
    field = line.split(":")[0]
    assert f"feeds.yaml: feeds[0] 'a': {field}: must be at most" in capsys.readouterr().err
    assert not db.exists()


def test_an_absurd_max_bytes_exits_2(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, "fetch: {max_bytes: 99999999999999999999999}\n"
                          "feeds:\n  - {name: a, url: a.xml}\n")
    assert main(["--once", "--config", str(cfg), "--db", str(tmp_path / "out.db")]) == 2
    assert "feeds.yaml: fetch: max_bytes: expected a whole number" in capsys.readouterr().err


def test_an_out_of_range_daemon_variable_names_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "feeds: []\n"))
    with pytest.raises(ConfigError) as info:
        daemon_settings(config, {"SCRAPE_TICK": "2d"})
    assert str(info.value) == "SCRAPE_TICK: must be at most 1d, got '2d'"


def test_negative_workers_is_a_usage_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``--workers -1`` was taken (and worked inline, as 0 does)."""
    cfg = write(tmp_path, "feeds: []\n")
    with pytest.raises(SystemExit) as usage:
        main(["--once", "--config", str(cfg), "--db", str(tmp_path / "out.db"),
              "--workers", "-1"])
    assert usage.value.code == 2
    assert "argument --workers: expected 0 or more, got -1" in capsys.readouterr().err
