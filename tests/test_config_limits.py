"""feeds.yaml mistakes that used to pass silently or crash: a key given twice, and numbers
too large (or infinite) for the code that uses them.  Each is a config error, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.cli import main
from scraper.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


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
