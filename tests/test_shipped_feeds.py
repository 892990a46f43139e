"""The shipped feeds.yaml works in the real world: every feed validates, a site's own feed
is used wherever one exists, and every feed's comment says where its URL comes from.

RSSHub is the fallback for sites without a feed: its public instance restricts feed readers,
and a route depends on an instance the user must run.  A site that publishes its own feed
may still go through RSSHub, but only with a comment saying why (one that names RSSHub).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scraper.config import RSSHUB_ENV, Config, load_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "feeds.yaml"

#: Sites that publish their own feed: RSSHub namespace -> the host of the site's feed.
NATIVE = {"mydrivers": "rss.mydrivers.com", "ithome": "www.ithome.com", "36kr": "36kr.com"}

_ITEM = re.compile(r"^(\s*)-\s+name:\s*(?P<name>[^#\s]+)")


def feed_comments(text: str) -> dict[str, str]:
    """Each feed's comments: the comment lines right above its ``- name:`` line, and every
    comment inside its block (block-style YAML, as the shipped file is written)."""
    lines = text.splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _ITEM.match(line)
        if not m:
            continue
        above = []
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#"):
            above.append(lines[j])
            j -= 1
        indent = len(m.group(1)) + 2
        inside = [line]
        k = i + 1
        while k < len(lines) and (not lines[k].strip() or
                                  len(lines[k]) - len(lines[k].lstrip()) >= indent):
            if lines[k].strip():
                inside.append(lines[k])
            k += 1
        comments = [part.partition("#")[2].strip() for part in above + inside if "#" in part]
        out[m.group("name").strip("'\"")] = " ".join(c for c in comments if c)
    return out


def rsshub_namespace(url: str, config: Config) -> str | None:
    """``mydrivers`` for an RSSHub route of that site (on rsshub_base or on rsshub.app)."""
    base = config.rsshub_base + "/"
    if url.startswith(base):
        path = url[len(base):]
    elif urlsplit(url).hostname in ("rsshub.app", "www.rsshub.app"):
        path = urlsplit(url).path.lstrip("/")
    else:
        return None
    return path.split("/", 1)[0]


def problems(path: Path) -> list[str]:
    """What the rules above find wrong in the config at ``path`` (empty: nothing)."""
    config = load_config(path)
    comments = feed_comments(path.read_text("utf-8"))
    found = []
    for feed in config.feeds:
        said = comments.get(feed.name)
        if said is None:
            found.append(f"{feed.name}: no '- name: {feed.name}' line found to read comments")
            continue
        if not said:
            found.append(f"{feed.name}: no comment saying where its URL comes from")
        site = rsshub_namespace(feed.url, config)
        if site in NATIVE and "rsshub" not in said.lower():
            found.append(f"{feed.name}: {site} has its own feed ({NATIVE[site]}) but this goes "
                         f"through RSSHub without a comment saying why")
    hosts = {feed.host for feed in config.feeds if feed.enabled}
    for site, host in NATIVE.items():
        if host not in hosts:
            found.append(f"{site}: no enabled feed uses its own feed at {host}")
    return found


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RSSHUB_ENV, raising=False)


def test_every_shipped_feed_validates() -> None:
    config = load_config(SHIPPED)  # raises ConfigError, naming the feed and field, if not
    assert config.feeds
    for feed in config.feeds:
        assert urlsplit(feed.url).scheme in ("http", "https") and feed.host, feed


def test_shipped_feeds_use_native_feeds_and_say_where_each_url_comes_from() -> None:
    assert problems(SHIPPED) == []


def test_zaker_which_has_no_feed_keeps_its_rsshub_routes() -> None:
    config = load_config(SHIPPED)
    zaker = [f for f in config.feeds if rsshub_namespace(f.url, config) == "zaker"]
    assert zaker and all(f.url.startswith(config.rsshub_base + "/zaker/") for f in zaker)


def _write(tmp_path: Path, feeds: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text("rsshub_base: https://rsshub.app\nfeeds:\n" + feeds, "utf-8")
    return path


NATIVE_FEEDS = """
  # 快科技's own feed.
  - name: kkj
    url: https://rss.mydrivers.com/rss.aspx?Tid=1
  # IT之家's own feed.
  - name: ithome
    url: https://www.ithome.com/rss/
  # 36氪's own feed.
  - name: 36kr
    url: https://36kr.com/feed-newsflash
"""


def test_the_check_catches_a_native_site_through_rsshub_without_a_reason(
        tmp_path: Path) -> None:
    path = _write(tmp_path, NATIVE_FEEDS + """
  # 快科技's latest news.
  - name: kkj-hub
    url: rsshub:/mydrivers/zhibo
""")
    assert problems(path) == [
        "kkj-hub: mydrivers has its own feed (rss.mydrivers.com) but this goes through RSSHub "
        "without a comment saying why"]


def test_the_check_accepts_a_native_site_through_rsshub_with_a_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, NATIVE_FEEDS + """
  - name: kkj-hub
    url: https://rsshub.app/mydrivers/zhibo
    # RSSHub: the site's live feed has no feed of its own.
""")
    assert problems(path) == []


def test_the_check_catches_a_feed_without_a_comment_and_a_missing_native_feed(
        tmp_path: Path) -> None:
    path = _write(tmp_path, """
  - name: ithome
    url: https://www.ithome.com/rss/
""")
    assert problems(path) == [
        "ithome: no comment saying where its URL comes from",
        "mydrivers: no enabled feed uses its own feed at rss.mydrivers.com",
        "36kr: no enabled feed uses its own feed at 36kr.com"]


def test_the_readme_names_the_shipped_feeds_that_need_rsshub() -> None:
    config = load_config(SHIPPED)
    need = {f.name for f in config.feeds if rsshub_namespace(f.url, config)}
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.split("\n## RSSHub\n", 1)[1].split("\n## ", 1)[0]
    named = {n for n in re.findall(r"`([^`\s]+)`", section) if n in {f.name for f in config.feeds}}
    assert named == need, "the README's RSSHub section must name exactly the shipped feeds " \
                          "that go through RSSHub"
