"""``scrape opml export`` and ``scrape opml import``, through the command line: a round trip
checked with listparser, nested categories, a dry run, and hostile OPML files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import listparser
import pytest

from scraper import app, cli

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
# my subscriptions: keep this comment
rsshub_base: http://127.0.0.1:1200
feeds:
  - name: zaker-channel-13    # through RSSHub
    url: rsshub:/zaker/channel/13
    categories: [新媒体, ZAKER, channel]
  - name: 快科技
    url: https://rss.mydrivers.com/rss.aspx?Tid=1
    categories: [新媒体]
  - name: ithome
    url: https://www.ithome.com/rss/
    categories: [新媒体, IT]
  - name: plain
    url: https://example.org/feed.xml
dedup: {}   # defaults
"""


def scrape(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def by_url(feeds: object) -> dict[str, tuple[str, tuple[str, ...]]]:
    """listparser's feeds as url -> (title, first category path)."""
    return {f.url: (f.title, tuple(f.categories[0]) if f.categories else ())
            for f in feeds}  # type: ignore[attr-defined]


def test_export_is_read_by_listparser_with_every_feed_in_its_categories(
        tmp_path: Path) -> None:
    cfg = write(tmp_path / "feeds.yaml", CONFIG)
    out = tmp_path / "subs.opml"
    assert scrape("opml", "export", out, "--config", cfg) == 0
    parsed = listparser.parse(out.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    config = app.load(cfg)
    # the xmlUrl is the URL fetched: the rsshub: route resolved against rsshub_base
    assert by_url(parsed.feeds) == {f.url: (f.name, f.categories) for f in config.feeds}
    assert "http://127.0.0.1:1200/zaker/channel/13" in by_url(parsed.feeds)


def test_export_to_stdout(tmp_path: Path) -> None:
    cfg = write(tmp_path / "feeds.yaml", CONFIG)
    done = subprocess.run([sys.executable, "-m", "scraper", "opml", "export", "-",
                           "--config", str(cfg)], capture_output=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert len(listparser.parse(done.stdout).feeds) == len(app.load(cfg).feeds)


def test_round_trip_into_an_empty_config_keeps_its_text(tmp_path: Path) -> None:
    cfg = write(tmp_path / "feeds.yaml", CONFIG)
    out = tmp_path / "subs.opml"
    assert scrape("opml", "export", out, "--config", cfg) == 0
    head = "# an empty config: this comment stays\nrsshub_base: http://127.0.0.1:1200\n"
    empty = write(tmp_path / "empty.yaml", head + "feeds: []   # none yet\n")
    assert scrape("opml", "import", out, "--config", empty) == 0
    text = empty.read_text(encoding="utf-8")
    assert text.startswith(head) and "# none yet" in text
    before, after = app.load(cfg), app.load(empty)
    assert ([(f.name, f.url, f.categories) for f in after.feeds]
            == [(f.name, f.url, f.categories) for f in before.feeds])
    # a second import finds every URL configured: nothing changes, a line for each
    saved = empty.read_bytes()
    assert scrape("opml", "import", out, "--config", empty) == 0
    assert empty.read_bytes() == saved


NESTED = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0"><head><title>from another reader</title></head><body>
  <outline text="Tech">
    <outline text="Hardware">
      <outline text="Chips">
        <outline type="rss" text="Tech News" xmlUrl="https://a.example/chips.xml"/>
      </outline>
      <outline type="rss" text="Tech News" xmlUrl="https://b.example/hw.xml"/>
    </outline>
    <outline type="rss" title="IT之家 RSS!" xmlUrl="https://www.ithome.com/rss/"/>
  </outline>
  <outline type="rss" text="" xmlUrl="https://c.example/untitled.xml"/>
  <outline type="rss" text="Existing" xmlUrl="https://example.org/feed.xml"/>
</body></opml>
"""

BLOCK_CONFIG = """\
# feeds I follow
feeds:
  - name: plain   # first
    url: https://example.org/feed.xml

# everything below the list stays below it
dedup:
  threshold: 0.8
"""


def test_import_nested_categories_unique_names_and_skips(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", BLOCK_CONFIG)
    opml = write(tmp_path / "other.opml", NESTED)
    assert scrape("opml", "import", opml, "--config", cfg) == 0
    out = capsys.readouterr().out
    text = cfg.read_text(encoding="utf-8")
    head, tail = BLOCK_CONFIG.split("\n\n")
    assert text.startswith(head + "\n") and text.endswith("\n" + tail)
    feeds = {f.url: (f.name, f.categories) for f in app.load(cfg).feeds}
    assert feeds == {
        "https://example.org/feed.xml": ("plain", ()),
        "https://a.example/chips.xml": ("tech-news", ("Tech", "Hardware", "Chips")),
        "https://b.example/hw.xml": ("tech-news-2", ("Tech", "Hardware")),
        "https://www.ithome.com/rss/": ("it之家-rss", ("Tech",)),
        "https://c.example/untitled.xml": ("c-example", ()),
    }
    assert "skipped 'Existing': already in the config as 'plain'" in out


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", BLOCK_CONFIG)
    saved = cfg.read_bytes()
    opml = write(tmp_path / "other.opml", NESTED)
    assert scrape("opml", "import", opml, "--dry-run", "--config", cfg) == 0
    assert cfg.read_bytes() == saved
    assert sorted(os.listdir(tmp_path)) == ["feeds.yaml", "other.opml"]
    out = capsys.readouterr().out
    assert "would add tech-news-2: https://b.example/hw.xml [Tech / Hardware]" in out
    assert "nothing written" in out


def hostile(secret: Path) -> str:
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    return f"""<?xml version="1.0"?>
<!DOCTYPE opml [
<!ENTITY l0 "lol">{laughs}
<!ENTITY xxe SYSTEM "{secret.as_uri()}">
]>
<opml version="2.0"><head><title>&l9;</title></head><body>
  <outline type="rss" text="bomb &l9;" xmlUrl="https://bomb.example/&l9;"/>
  <outline type="rss" text="leak &xxe;" xmlUrl="https://leak.example/feed?x=&xxe;"/>
  <outline type="rss" text="site only" htmlUrl="https://site.example/"/>
  <outline type="rss" text="script" xmlUrl="javascript:alert(1)"/>
  <outline type="rss" text="local" xmlUrl="file:///etc/passwd"/>
  <outline type="rss" text="bell\x07 and &#x1b;[31mred" xmlUrl="https://ok.example/feed"/>
</body></opml>
"""


#: Run the import with listparser's own fallback parser (html.parser), as where lxml is
#: not installed: each of its two parsers must be safe.
NO_LXML = "import sys; sys.modules['lxml'] = None; from scraper.cli import main; " \
          "sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("parser", ["lxml", "html.parser"])
def test_hostile_opml(tmp_path: Path, parser: str) -> None:
    secret = write(tmp_path / "secret.txt", "TOPSECRET")
    cfg = write(tmp_path / "feeds.yaml", "feeds: []\n")
    opml = write(tmp_path / "hostile.opml", hostile(secret))
    command = ([sys.executable, "-m", "scraper"] if parser == "lxml"
               else [sys.executable, "-c", NO_LXML])
    done = subprocess.run([*command, "opml", "import", str(opml), "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, done.stderr
    text = cfg.read_text(encoding="utf-8")
    assert "TOPSECRET" not in text + done.stdout
    assert "lollol" not in text + done.stdout  # no entity expanded
    assert len(text) < 2000
    urls = {f.url for f in app.load(cfg).feeds}
    assert urls == {"https://bomb.example/&l9;", "https://leak.example/feed?x=&xxe;",
                    "https://ok.example/feed"}
    lines = done.stdout.splitlines()
    assert any("'site only'" in line and "no xmlUrl" in line for line in lines)
    assert any("'script'" in line and "not an http(s)" in line for line in lines)
    assert any("'local'" in line and "not an http(s)" in line for line in lines)
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout


@pytest.mark.parametrize("content", [b"", b"not xml at all", b"<html><body>hi</body></html>"])
def test_not_an_opml_file_is_one_line_exit_2(tmp_path: Path, content: bytes,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", BLOCK_CONFIG)
    bad = tmp_path / "bad.opml"
    bad.write_bytes(content)
    assert scrape("opml", "import", bad, "--config", cfg) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.opml" in err and "Traceback" not in err
    assert cfg.read_text(encoding="utf-8") == BLOCK_CONFIG


def test_missing_opml_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", BLOCK_CONFIG)
    assert scrape("opml", "import", tmp_path / "nope.opml", "--config", cfg) == 2
    err = capsys.readouterr().err
    assert "nope.opml" in err and err.count("\n") == 1


def test_a_gbk_opml_is_read_in_its_declared_encoding(tmp_path: Path) -> None:
    cfg = write(tmp_path / "feeds.yaml", "feeds: []\n")
    opml = tmp_path / "gbk.opml"
    opml.write_bytes('<?xml version="1.0" encoding="GBK"?>\n<opml version="1.0"><body>'
                     '<outline text="科技"><outline type="rss" text="快科技" '
                     'xmlUrl="https://rss.mydrivers.com/rss.aspx"/></outline></body></opml>'
                     .encode("gbk"))
    assert scrape("opml", "import", opml, "--config", cfg) == 0
    assert [(f.name, f.categories) for f in app.load(cfg).feeds] == [("快科技", ("科技",))]


LAYOUTS = {
    "flow list": "feeds: [{name: plain, url: 'https://example.org/feed.xml'}]\n",
    "dash at column 0, no final newline":
        "feeds:\n- name: plain\n  url: https://example.org/feed.xml\n  categories:\n  - x",
    "CRLF line endings": "# windows\r\nfeeds:\r\n    -   name: plain\r\n"
                         "        url: https://example.org/feed.xml\r\ndedup: {}\r\n",
    "flow items in a block list": "feeds:\n  - {name: plain, url: 'https://example.org/feed.xml'}"
                                  "\n  # a trailing comment\nfetch: {retries: 1}\n",
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_import_appends_in_any_list_layout(tmp_path: Path, layout: str) -> None:
    text = LAYOUTS[layout]
    cfg = tmp_path / "feeds.yaml"
    cfg.write_bytes(text.encode("utf-8"))
    before = app.load(cfg)
    opml = write(tmp_path / "other.opml", NESTED)
    assert scrape("opml", "import", opml, "--config", cfg) == 0
    after = app.load(cfg)
    assert after.feeds[:len(before.feeds)] == before.feeds
    assert after.fetch == before.fetch and after.dedup == before.dedup
    assert {f.url for f in after.feeds[len(before.feeds):]} == {
        "https://a.example/chips.xml", "https://b.example/hw.xml",
        "https://www.ithome.com/rss/", "https://c.example/untitled.xml"}
    written = cfg.read_bytes().decode("utf-8")
    unix = written.replace("\r\n", "\n")
    assert unix.startswith(text.replace("\r\n", "\n")[:20])
    for line in text.splitlines():
        if line.strip().startswith("#"):
            assert line in unix  # comments stay
    assert ("\r\n" in text) == ("\n" not in written.replace("\r\n", ""))


def test_export_into_a_missing_folder_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", CONFIG)
    assert scrape("opml", "export", tmp_path / "no" / "subs.opml", "--config", cfg) == 2
    err = capsys.readouterr().err
    assert "subs.opml" in err and err.count("\n") == 1 and "Traceback" not in err


MALFORMED = """<?xml version="1.0"?>
<opml version="2.0"><head><title>mixed</title></head><body>
  <outline type="rss" text="Bracket" xmlUrl="http://[::1/rss"/>
  <outline type="rss" text="Big port" xmlUrl="http://a.example:99999/rss"/>
  <outline type="rss" text="Good" xmlUrl="https://ok.example/feed"/>
</body></opml>
"""


def test_a_malformed_url_skips_its_outline_not_the_import(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "feeds.yaml", "feeds: []\n")
    opml = write(tmp_path / "mixed.opml", MALFORMED)
    assert scrape("opml", "import", opml, "--config", cfg) == 0
    assert {f.url for f in app.load(cfg).feeds} == {"https://ok.example/feed"}
    lines = capsys.readouterr().out.splitlines()
    assert any("'Bracket'" in line and "http://[::1/rss" in line and "not a valid URL" in line
               for line in lines)
    assert any("'Big port'" in line and "a.example:99999" in line and "not a valid URL" in line
               for line in lines)
