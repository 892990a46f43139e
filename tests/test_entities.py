"""DOCTYPE entities: internal ones expanded within a bound, external ones never read, bombs
refused without building them (issue 16, point 8)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dbread
import pytest
import yaml
from server import FeedServer

from scraper.cli import main
from scraper.core.parse import ParseError, parse_feed

ENTITIES = '<!ENTITY eacute "&#233;"><!ENTITY nbsp "&#160;">'


def rss(doctype: str, title: str, description: str = "body", extra: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE rss [{doctype}]>\n'
            f'<rss version="2.0"><channel><title>t</title>{extra}<item><title>{title}</title>'
            f"<link>http://example.com/1</link><description>{description}</description>"
            "</item></channel></rss>").encode()


def only_entry(body: bytes) -> tuple[str, str, str | None]:
    feed = parse_feed(body, {})
    assert len(feed.entries) == 1
    entry = feed.entries[0]
    return entry.title, entry.content_html, feed.problem


def test_declared_entities_expand_in_titles_and_content() -> None:
    title, content, problem = only_entry(rss(ENTITIES, "caf&eacute;&nbsp;1", "d&eacute;j&#224;"))
    assert (title, content, problem) == ("caf\u00e9\u00a01", "d\u00e9j\u00e0", None)


def test_entities_expand_on_the_feedparser_path_too() -> None:
    broken = rss(ENTITIES, "caf&eacute;", extra="<generator>a & b</generator>")
    title, _, problem = only_entry(broken)
    assert problem  # malformed: feedparser read it
    assert title == "caf\u00e9"


def test_whitespace_before_the_xml_declaration_does_not_hide_the_doctype() -> None:
    title, _, _ = only_entry(b"\n  \n" + rss(ENTITIES, "caf&eacute;"))
    assert title == "caf\u00e9"


def test_nested_entities_and_character_references_in_values() -> None:
    decls = (ENTITIES + '<!ENTITY word "&eacute;t&eacute;">'
             '<!ENTITY phrase "&word;&nbsp;&amp;&#38;#38;">')
    title, _, _ = only_entry(rss(decls, "[&phrase;]"))
    assert title == "[\u00e9t\u00e9\u00a0&&]"  # &#38;#38; declares the text "&#38;"


def test_replacement_text_with_markup_reads_as_text() -> None:
    decls = '<!ENTITY b "<b>bold</b>"><!ENTITY q "say &quot;hi&quot; \'x\'">'
    feed = parse_feed(rss(decls, "&b;", "x", extra='<link>http://e/?&q;</link>'), {})
    assert feed.problem is None
    assert feed.entries[0].title == "<b>bold</b>"


def test_references_inside_cdata_are_left_as_written() -> None:
    _, content, _ = only_entry(rss(ENTITIES, "t", "<![CDATA[<p>a&nbsp;b</p>]]>&eacute;"))
    assert content == "<p>a&nbsp;b</p>\u00e9"


def test_undeclared_and_predefined_references_are_untouched() -> None:
    title, _, _ = only_entry(rss(ENTITIES, "a &lt;b&gt; &amp; &eacute;"))
    assert title == "a <b> & \u00e9"


def test_a_doctype_larger_than_a_read_chunk_is_expanded() -> None:
    padding = "".join(f'<!ENTITY pad{i} "{"p" * 100}">' for i in range(1500))  # ~170 KB
    title, _, _ = only_entry(rss(padding + ENTITIES, "caf&eacute;"))
    assert title == "caf\u00e9"


@pytest.mark.parametrize("declaration", [
    '<!ENTITY xxe SYSTEM "file:///etc/passwd">',
    '<!ENTITY xxe PUBLIC "-//x//y//EN" "file:///etc/passwd">',
    '<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe; <!ENTITY xxe "later">',
])
@pytest.mark.parametrize("malformed", [False, True])
def test_external_entities_are_never_read(declaration: str, malformed: bool) -> None:
    secret = Path("/etc/passwd").read_text("utf-8", "replace").splitlines()[0]
    extra = "<generator>a & b</generator>" if malformed else ""
    try:
        feed = parse_feed(rss(declaration, "x&xxe;y", "[&xxe;]", extra=extra), {})
    except ParseError:
        return  # refusing is fine too; reading the file is not
    for entry in feed.entries:
        assert secret not in entry.title + entry.content_html
        assert "root:" not in entry.title + entry.content_html


def test_an_entity_that_refers_to_itself_is_refused() -> None:
    decls = '<!ENTITY a "x&b;"><!ENTITY b "y&a;">'
    with pytest.raises(ParseError, match="refers to itself"):
        parse_feed(rss(decls, "&a;"), {})


def test_a_long_chain_of_entities_is_refused_not_a_recursion_error() -> None:
    chain = "".join(f'<!ENTITY e{i} "&e{i + 1};">' for i in range(2000)) + '<!ENTITY e2000 "z">'
    with pytest.raises(ParseError, match="nested more than"):
        parse_feed(rss(chain, "&e0;"), {})


def test_a_short_chain_expands() -> None:
    chain = "".join(f'<!ENTITY e{i} "&e{i + 1};">' for i in range(5)) + '<!ENTITY e5 "z">'
    assert only_entry(rss(chain, "&e0;"))[0] == "z"


def test_entity_declarations_in_an_unreadable_prolog_are_refused() -> None:
    # Junk before the DOCTYPE: expat cannot read it, feedparser would expand it unbounded.
    body = b"junk " + rss('<!ENTITY x "' + "A" * 50_000 + '">', "&x;" * 1000)
    with pytest.raises(ParseError, match="entity-expansion guard"):
        parse_feed(body, {})


def test_many_small_references_fit_the_budget() -> None:
    # Thousands of one-character entities are the normal use; the budget is for bombs.
    title, _, _ = only_entry(rss(ENTITIES, "&nbsp;" * 5000))
    assert title == ""  # a title of spaces only strips to nothing
    _, content, _ = only_entry(rss(ENTITIES, "t", "x&eacute;" * 5000))
    assert content == "x\u00e9" * 5000


BILLION_LAUGHS = ('<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">' for i in range(1, 10)))
QUADRATIC = '<!ENTITY x "' + "A" * 50_000 + '">'


@pytest.mark.parametrize("doctype, references", [
    (BILLION_LAUGHS, "&lol9;"),  # 10^9 "lol"s: 3 GB
    (QUADRATIC, "&x;" * 100_000),  # 50 KB x 100,000: 5 GB
])
def test_bombs_are_refused_without_building_them(doctype: str, references: str,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_bytes(rss(doctype, "t", references))
    probe = (
        "import json, resource, sys\n"
        "from scraper.core.parse import ParseError, parse_feed\n"
        "body = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    parse_feed(body, {})\n"
        "    error = None\n"
        "except ParseError as exc:\n"
        "    error = str(exc)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'error': error, 'grew_kib': after - before}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout)
    assert result["error"] and "entity-expansion guard" in result["error"]
    assert "\n" not in result["error"]
    assert result["grew_kib"] < 200 * 1024  # ru_maxrss is in KiB on Linux


# SQLite only: entities expand before storage, which the pipeline tests cover on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_entities_reach_the_database_through_scrape_once(tmp_path: Path, database: str,
                                                         feed_server: FeedServer) -> None:
    feed_server.serve("/entities.xml", rss(ENTITIES, "caf&eacute;&nbsp;noir",
                                           "cr&eacute;me&nbsp;br&#251;l&eacute;e"))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "ent", "url": feed_server.url("/entities.xml")}]}), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database]) == 0
    (title, html, text), = dbread.rows(database,
                                       "SELECT title, content_html, content_text FROM entries")
    assert title == "caf\u00e9\u00a0noir"
    assert text == "cr\u00e9me\u00a0br\u00fbl\u00e9e"
    assert "cr\u00e9me&nbsp;br\u00fbl\u00e9e" in html  # the HTML serializer names NBSP


# SQLite only: about the parser's guard; the error row is stored as any feed error is.
def test_a_refused_bomb_is_one_line_in_once_and_status(tmp_path: Path, feed_server: FeedServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve("/bomb.xml", rss(QUADRATIC, "t", "&x;" * 100_000))
    feed_server.serve("/fine.xml", rss(ENTITIES, "fine&nbsp;"))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "bomb", "url": feed_server.url("/bomb.xml")},
        {"name": "fine", "url": feed_server.url("/fine.xml")}]}), "utf-8")
    db = tmp_path / "x.db"
    assert main(["--once", "--config", str(cfg), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    line = next(x for x in out.splitlines() if x.startswith("bomb "))
    assert line.endswith("characters (entity-expansion guard)")
    assert main(["status", "--json", "--config", str(cfg), "--db", str(db)]) == 0
    report = json.loads(capsys.readouterr().out)
    errors = {f["name"]: f["last_error"] for f in report["feeds"]}
    assert errors["fine"] is None
    assert line.endswith(errors["bomb"]) and "\n" not in errors["bomb"]
