"""feeds.yaml validation: every error names the file, the feed and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from configfiles import error_of, write

from scraper.cli import main
from scraper.config import load_config, parse_interval

REPO = Path(__file__).resolve().parent.parent


def test_shipped_feeds_yaml_is_valid() -> None:
    config = load_config(REPO / "feeds.yaml")
    names = {f.name for f in config.feeds}
    assert {"zaker-channel-13", "zaker-focusread", "mydrivers-native", "ithome", "36kr"} <= names
    zaker = config.feed("zaker-channel-13")
    assert zaker.url == "https://rsshub.app/zaker/channel/13"
    assert zaker.categories == ("新媒体", "ZAKER", "channel")
    assert config.feed("mydrivers-native").url == "https://rss.mydrivers.com/rss.aspx?Tid=1"
    assert config.database == REPO / "scrape.db"


def test_minimal_feed_and_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
rsshub_base: http://hub.local:1200/
database: data/x.db
defaults: {interval: 2h, categories: [新媒体]}
feeds:
  - {name: a, url: "rsshub:/zaker/channel/13"}
  - {name: b, url: "https://example.org/feed", interval: 90, enabled: false}
"""))
    a, b = config.feeds
    assert a.url == "http://hub.local:1200/zaker/channel/13"
    assert a.interval == 7200 and a.categories == ("新媒体",) and a.enabled
    assert b.interval == 90 and not b.enabled
    assert config.database == tmp_path / "data" / "x.db"


@pytest.mark.parametrize(("text", "expected"), [
    ("feeds:\n  - {name: a, url: 'http://x/'}\n  - {name: b, url: 'http://y/'}\n"
     "  - {name: zaker}\n",
     "feeds.yaml: feeds[2] 'zaker': url: missing"),
    ("feeds:\n  - {url: 'http://x/'}\n", "feeds.yaml: feeds[0]: name: missing"),
    ("feeds:\n  - {name: a, url: 'ftp://x/'}\n", "feeds.yaml: feeds[0] 'a': url: expected"),
    ("feeds:\n  - {name: a, url: 'http://x/', interval: soon}\n",
     "feeds.yaml: feeds[0] 'a': interval: expected seconds or a duration"),
    ("feeds:\n  - {name: a, url: 'http://x/', interval: -5}\n",
     "feeds.yaml: feeds[0] 'a': interval: must be positive"),
    ("feeds:\n  - {name: a, url: 'http://x/', enabled: 'yes please'}\n",
     "feeds.yaml: feeds[0] 'a': enabled: expected true or false"),
    ("feeds:\n  - {name: a, url: 'http://x/', intervall: 5}\n",
     "feeds.yaml: feeds[0] 'a': intervall: unknown key"),
    ("feeds:\n  - {name: a, url: 'http://x/'}\n  - {name: a, url: 'http://y/'}\n",
     "feeds.yaml: feeds[1] 'a': name: duplicate of feeds[0]"),
    ("feeds:\n  - {name: a, url: 'http://x/', categories: {a: 1}}\n",
     "feeds.yaml: feeds[0] 'a': categories: expected a list"),
    ("feeds: {name: a}\n", "feeds.yaml: feeds: expected a list"),
    ("feed:\n  - {name: a, url: 'http://x/'}\n", "feeds.yaml: feed: unknown key"),
    ("feeds: [\n", "feeds.yaml: line"),
    ("fetch: {concurrency: 0}\nfeeds: []\n", "feeds.yaml: fetch: concurrency: expected"),
    ("feeds:\n  - {name: a, url: 'http://x/', image_proxy: 'https://p/'}\n",
     "feeds.yaml: feeds[0] 'a': image_proxy: expected a URL template containing {url}"),
])
def test_errors_name_file_feed_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_config_error_exits_2_and_writes_nothing(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, "feeds:\n  - {name: zaker}\n")
    db = tmp_path / "out.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 2
    assert "feeds.yaml: feeds[0] 'zaker': url: missing" in capsys.readouterr().err
    assert not db.exists()


def test_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--once", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: not found" in capsys.readouterr().err


def test_unknown_feed_name_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, "feeds:\n  - {name: a, url: 'http://127.0.0.1:9/'}\n")
    assert main(["--once", "--config", str(cfg), "--feed", "b"]) == 2
    assert "no feed named 'b'" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800),
                                                ("2h", 7200), ("1.5h", 5400), ("1d", 86400)])
def test_parse_interval(value: object, seconds: int) -> None:
    assert parse_interval(value) == seconds


def test_sites_block_errors_name_the_host(tmp_path: Path) -> None:
    message = error_of(tmp_path, "sites:\n  example.org: {remove: [3]}\nfeeds: []\n")
    assert message.startswith("feeds.yaml: sites")
    assert "example.org" in message and "remove[0]" in message


def test_sites_block_is_keyed_by_lowercase_host(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "sites:\n  News.Example.ORG: {remove: [p.ad]}\n"
                                         "feeds: []\n"))
    assert config.sites["news.example.org"].remove == ("p.ad",)
