"""Feed bytes -> entries, through feedparser, with the traps of feedparser 6 closed.

- feedparser is given bytes plus the response headers, never a URL (given a URL it would
  fetch with urllib itself, past every limit of our fetcher).
- The charset is decided here and the document handed over as UTF-8: with no charset in the
  headers feedparser 6.0.14 reads GBK as windows-1252, and GB2312 labels are decoded as
  GB18030 (its superset), because real "gb2312" feeds contain characters outside GB2312.
- A DOCTYPE internal subset is removed before parsing, and the internal entities it declares
  are expanded here, as text, within :data:`_MAX_EXPANSION`: left to them, feedparser and
  lxml expand an entity declared once and referenced thousands of times to gigabytes (expat
  blocks only the nested billion laughs).  External entities are never resolved.
- fastfeedparser is the fast path; feedparser reads what it cannot (malformed documents, and
  well-formed ones where it finds no entries, such as RSS 0.90).
- An HTML page given as a feed is named as one, with the feeds its <link rel="alternate">
  point to, so the user can paste the right URL.
- ``sanitize_html=False, resolve_relative_uris=False``: normalize sanitizes with nh3 and
  resolves URLs anyway; feedparser's versions cost 3x the parse time (about 720 vs 2,550
  items/s measured here) and its sanitizer misses ``<svg onload>``.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

import fastfeedparser
import feedparser
from selectolax.lexbor import LexborHTMLParser

_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", re.DOTALL | re.IGNORECASE)
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?\?>", re.IGNORECASE)
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""", re.IGNORECASE)
_TTL = re.compile(rb"<ttl>\s*(\d+)\s*</ttl>", re.IGNORECASE)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._\-]+)", re.IGNORECASE)
#: Labels that mean "some GB encoding": all decoded as GB18030, which contains them all.
_GB_LABELS = {"gb2312", "gbk", "gb18030", "x-gbk", "cp936", "ms936", "euc-cn", "csgb2312",
              "gb_2312-80", "chinese", "windows-936"}

#: Characters that expanding a document's internal entities may produce in all: "a small
#: limit such as 64 KiB" (issue 16).  Feeds declare entities for single characters (&nbsp;,
#: &eacute;), so thousands of references fit; the bombs (billion laughs; one 50 KB entity
#: referenced 100,000 times) overshoot it within a few references and are refused before
#: anything big is built.
_MAX_EXPANSION = 64 * 1024
#: Entities inside entities: a DTD written for a feed nests one or two levels; the cap keeps
#: a long chain (a -> b -> c ...) far below Python's recursion limit of 1,000.
_MAX_NESTING = 16
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
#: In the document: a reference, or a section whose references are plain text (CDATA,
#: comments, processing instructions), matched so that it is skipped whole.
_DOCUMENT_REF = re.compile(r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<\?.*?\?>|&([^\s&;#<>\"']+);",
                           re.DOTALL)
#: In an entity's replacement text: character references count too (``&#38;#38;`` declares
#: a text that is itself a reference).
_VALUE_REF = re.compile(r"&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[^\s&;#<>\"']+);")
#: Where feedparser's replace_doctype ends the head it takes ENTITY declarations from.
_FIRST_ELEMENT = re.compile(rb"<\w")
#: A document whose first tag (after an XML declaration and comments) is <html> or an HTML
#: doctype: a web page, not a feed.
_HTML_PAGE = re.compile(rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])",
                        re.IGNORECASE | re.DOTALL)
#: The <link rel="alternate" type=...> of feed autodiscovery that name feeds we can read.
_FEED_TYPES = {"application/rss+xml", "application/atom+xml"}
#: Feeds named in the error line for an HTML page: a portal can link dozens, and the line
#: stays one line.
_MAX_LINKED_FEEDS = 5


log = logging.getLogger(__name__)


class ParseError(Exception):
    """The body is not a feed we can read; the message is the summary line."""


@dataclass(frozen=True)
class ParsedEntry:
    guid: str | None
    url: str | None
    title: str
    author: str | None
    published: str | None  # ISO 8601 UTC, "...Z"
    content_html: str

    @property
    def key(self) -> str:
        """Identity within its feed: the GUID, else the link, else a hash of title + content."""
        if self.guid:
            return self.guid
        if self.url:
            return self.url
        digest = hashlib.sha256(f"{self.title}\n{self.content_html}".encode()).hexdigest()
        return "sha256:" + digest[:32]

    @property
    def raw_hash(self) -> str:
        """What the feed sent for this entry; a change means the entry was updated."""
        text = "\x1f".join((self.title, self.url or "", self.author or "", self.content_html))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ParsedFeed:
    entries: list[ParsedEntry]
    title: str | None = None
    #: Why feedparser found the document malformed, when it still yielded entries.
    problem: str | None = None
    ttl: int | None = None  # minutes, from RSS <ttl>


def detect_charset(body: bytes, headers: Mapping[str, str]) -> str:
    """The charset to decode with: header, then BOM, then XML declaration, then a guess."""
    content_type = header(headers, "content-type")
    label = None
    if m := _CHARSET.search(content_type):
        label = m.group(1)
    elif body.startswith(codecs.BOM_UTF8):
        label = "utf-8-sig"
    elif body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        label = "utf-16"
    elif (decl := _XML_DECL.match(body)) and (m2 := _DECL_ENCODING.search(decl.group(0))):
        label = m2.group(1).decode("ascii")
    if label:
        if label.lower() in _GB_LABELS:
            return "gb18030"
        try:
            return codecs.lookup(label).name
        except LookupError:
            pass
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        # Undeclared and not UTF-8: our sources are Chinese sites, where that means GBK.
        return "gb18030"


def to_utf8(body: bytes, headers: Mapping[str, str]) -> bytes:
    """Re-encode the document as UTF-8 with a declaration that says so."""
    charset = detect_charset(body, headers)
    if charset in ("utf-8", "utf-8-sig"):
        text_bytes = body[3:] if body.startswith(codecs.BOM_UTF8) else body
    else:
        text_bytes = body.decode(charset, errors="replace").encode("utf-8")
    decl = _XML_DECL.match(text_bytes)
    if decl:
        fixed = _DECL_ENCODING.sub(b'encoding="utf-8"', decl.group(0))
        text_bytes = fixed + text_bytes[decl.end():]
    return text_bytes


class _RootReached(Exception):
    """Raised from expat's handler at the root element: the prolog has been read."""


@dataclass(frozen=True)
class _Doctype:
    start: int  # byte offsets of the whole declaration in the document
    end: int
    #: Every general entity declared: its replacement text, or None when it is external
    #: (SYSTEM/PUBLIC, or unparsed) and so is never read.
    entities: dict[str, str | None]


def expand_doctype(body: bytes) -> bytes:
    """The document without its DOCTYPE internal subset, and its internal entities expanded.

    expat reads the declarations (it never fetches or opens anything, not being given an
    external-entity handler); each reference in the document is then replaced by its
    replacement text, expanded and escaped as text, so a replacement containing markup reads
    as characters and cannot change the document's structure.  External entities expand to
    nothing; an undeclared name is left as it was.  Expansion past :data:`_MAX_EXPANSION`,
    nesting past :data:`_MAX_NESTING` or a loop is refused with a ParseError.
    """
    if b"<!DOCTYPE" not in body:  # XML spells it in capitals; so does feedparser's pattern
        return body
    doctype = _read_doctype(body)
    if doctype is not None:
        rest = body[doctype.end:]
        if doctype.entities:
            rest = _expand_references(rest.decode("utf-8", "replace"),
                                      doctype.entities).encode("utf-8")
        body = body[:doctype.start] + rest
    # Whatever expat could not read: feedparser collects ENTITY declarations from the head by
    # regular expression and expands them in its loose parser, unbounded.
    first = _FIRST_ELEMENT.search(body)
    if b"<!ENTITY" in body[: first.start() if first else len(body)].upper():
        raise ParseError("refused: entity declarations outside a readable DOCTYPE "
                         "(entity-expansion guard)")
    return body


def _read_doctype(body: bytes) -> _Doctype | None:
    """The DOCTYPE before the root element, when it has an internal subset; else None."""
    # expat refuses whitespace before an XML declaration, which some feeds send.
    lead = len(body) - len(body.lstrip())
    parser = expat.ParserCreate()
    spans: dict[str, int] = {}
    entities: dict[str, str | None] = {}

    def start(_name: str, _sysid: str | None, _pubid: str | None, subset: int) -> None:
        if subset:  # expat is at the "[": the declaration starts at the last <!DOCTYPE
            found = body.rfind(b"<!DOCTYPE", 0, lead + parser.CurrentByteIndex + 1)
            if found >= 0:
                spans["start"] = found

    def end() -> None:
        if "start" in spans:
            spans["end"] = lead + parser.CurrentByteIndex + 1  # expat is at the closing ">"

    def entity(name: str, is_parameter: int, value: str | None, *_rest: object) -> None:
        if not is_parameter:  # parameter entities only serve the DTD, which is dropped
            entities.setdefault(name, value)  # the first declaration binds (XML 1.0, 4.2)

    def root(*_args: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = start
    parser.EndDoctypeDeclHandler = end
    parser.EntityDeclHandler = entity
    parser.StartElementHandler = root
    try:
        for offset in range(lead, len(body), 65536):
            parser.Parse(body[offset:offset + 65536], False)
        parser.Parse(b"", True)
    except _RootReached:
        pass
    except expat.ExpatError:
        if "end" not in spans:
            # A prolog expat cannot read: remove a subset that declares no entities, as
            # before; one that does stays, and expand_doctype refuses the document.
            first = _FIRST_ELEMENT.search(body)
            m = _DOCTYPE_SUBSET.search(body, 0, first.start() if first else len(body))
            if m and b"<!ENTITY" not in m.group(1).upper():
                return _Doctype(m.start(), m.end(), {})
            return None
    if "end" not in spans:
        return None
    return _Doctype(spans["start"], spans["end"], entities)


def _expand_references(text: str, entities: Mapping[str, str | None]) -> str:
    """``text`` with each reference to a declared entity replaced, within the budget."""
    memo: dict[str, str] = {}
    spent = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal spent
        name = m.group(1)
        if name is None or name not in entities:
            return m.group(0)  # a CDATA section, comment or PI; a predefined or unknown name
        value = _entity_text(name, entities, memo, ())
        spent += len(value)
        if spent > _MAX_EXPANSION:
            raise _too_big()
        return html.escape(value)

    return _DOCUMENT_REF.sub(replace, text)


def _entity_text(name: str, entities: Mapping[str, str | None], memo: dict[str, str],
                 within: tuple[str, ...]) -> str:
    """An entity's replacement text with the references in it expanded, as characters."""
    if name in memo:
        return memo[name]
    if name in within:
        raise ParseError(f"refused: entity '{name[:40]}' refers to itself "
                         "(entity-expansion guard)")
    if len(within) >= _MAX_NESTING:
        raise ParseError(f"refused: entities nested more than {_MAX_NESTING} deep "
                         "(entity-expansion guard)")
    value = entities[name] or ""  # an external entity expands to nothing
    pieces: list[str] = []
    size = pos = 0
    for m in _VALUE_REF.finditer(value):
        ref = m.group(1)
        if ref.startswith("#"):
            code = int(ref[2:], 16) if ref[1] == "x" else int(ref[1:])
            piece = chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else ""
        elif ref in _PREDEFINED:
            piece = _PREDEFINED[ref]
        elif ref in entities:
            piece = _entity_text(ref, entities, memo, (*within, name))
        else:
            piece = m.group(0)
        pieces += [value[pos:m.start()], piece]
        size += m.start() - pos + len(piece)
        if size > _MAX_EXPANSION:
            raise _too_big()
        pos = m.end()
    pieces.append(value[pos:])
    memo[name] = text = "".join(pieces)
    if len(text) > _MAX_EXPANSION:
        raise _too_big()
    return text


def _too_big() -> ParseError:
    return ParseError(f"refused: the DOCTYPE's entities expand to more than {_MAX_EXPANSION:,} "
                      "characters (entity-expansion guard)")


def parse_feed(body: bytes, headers: Mapping[str, str], url: str = "") -> ParsedFeed:
    """Entries of a feed document.

    The common case, a well-formed document, goes to fastfeedparser (lxml): about 85,000
    items/s here against 2,550 for feedparser without its sanitizer (bench/parse.py).  A
    document expat finds malformed goes to feedparser, whose loose parser recovers what it
    can and says what was wrong (the "bozo" reason we log and show).  So does a well-formed
    one where fastfeedparser fails or finds no entries: it does not know RSS 0.90, for one
    (items in the http://my.netscape.com/rdf/simple/0.9/ namespace), and an empty answer
    costs a second parse only for a feed that has no entries at all.

    An entry with neither GUID, link, title nor content is dropped: nothing of it could be
    shown, and all such entries would share one key.  One with a title or content but no
    GUID or link is kept, keyed by their hash (:attr:`ParsedEntry.key`).
    """
    body = expand_doctype(to_utf8(body, headers))
    ttl = None
    if m := _TTL.search(body, 0, 65536):
        ttl = int(m.group(1))
    fast = None
    if _well_formed(body):
        try:
            fast = _parse_fast(body, ttl)
        except Exception as exc:  # noqa: BLE001 - any failure: let feedparser try
            log.debug("fastfeedparser failed on %s, using feedparser: %s", url, exc)
        else:
            if fast.entries:
                return fast
            log.debug("fastfeedparser found no entries in %s, asking feedparser", url)
    try:
        return _parse_loose(body, headers, url, ttl)
    except ParseError:
        if fast is None:
            raise
        return fast  # an empty feed to fastfeedparser, unknown to feedparser: still empty


def _well_formed(body: bytes) -> bool:
    parser = expat.ParserCreate()
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        return False
    return True


def _parse_fast(body: bytes, ttl: int | None) -> ParsedFeed:
    parsed = fastfeedparser.parse(body, include_tags=False, include_media=False,
                                  include_enclosures=False)
    entries = []
    for e in parsed.get("entries") or []:
        content = _longest([c.get("value") or "" for c in e.get("content") or []]
                           + [e.get("description") or "", e.get("summary") or ""])
        when = e.get("published") or e.get("updated")
        entries.append(ParsedEntry(
            guid=_clean(e.get("id")), url=_clean(e.get("link")),
            title=(e.get("title") or "").strip(), author=_clean(e.get("author")),
            published=_iso(when), content_html=content))
    return ParsedFeed(entries=[e for e in entries if _has_substance(e)],
                      title=(parsed.get("feed") or {}).get("title"), ttl=ttl)


def _parse_loose(body: bytes, headers: Mapping[str, str], url: str,
                 ttl: int | None) -> ParsedFeed:
    response_headers = {k.lower(): v for k, v in headers.items()}
    content_type = response_headers.get("content-type", "application/xml").split(";")[0]
    response_headers["content-type"] = f"{content_type or 'application/xml'}; charset=utf-8"
    response_headers.pop("content-encoding", None)  # the fetcher already inflated it
    if url:
        response_headers.setdefault("content-location", url)
    parsed = feedparser.parse(body, response_headers=response_headers,
                              sanitize_html=False, resolve_relative_uris=False)
    problem = None
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if exc else "malformed"
    if not parsed.entries and (problem or not parsed.get("version")):
        if _HTML_PAGE.match(body):
            raise ParseError(f"not a feed: an HTML page; {_linked_feeds(body, url)}")
        raise ParseError(f"not a feed: {problem or 'no RSS or Atom document found'}")
    entries = []
    for e in parsed.entries:
        content = _longest([c.get("value") or "" for c in e.get("content") or []]
                           + [e.get("summary") or ""])
        when = e.get("published_parsed") or e.get("updated_parsed")
        published = None
        if when:
            stamp = datetime.fromtimestamp(calendar.timegm(when), UTC)
            published = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        link = _clean(e.get("link"))
        entries.append(ParsedEntry(
            # fastfeedparser reports the link as the id when there is no GUID; do the same
            # here, so an entry keeps its key whichever parser read the document.
            guid=_clean(e.get("id")) or link, url=link, title=(e.get("title") or "").strip(),
            author=_clean(e.get("author")), published=published, content_html=content))
    return ParsedFeed(entries=[e for e in entries if _has_substance(e)],
                      title=parsed.feed.get("title"), problem=problem, ttl=ttl)


def _linked_feeds(page: bytes, url: str) -> str:
    """What a page says about its feeds, so the user can paste the right URL instead."""
    tree = LexborHTMLParser(page.decode("utf-8", "replace"))
    base_node = tree.css_first("base[href]")
    base = (_absolute(url, base_node.attributes.get("href")) if base_node else None) or url
    feeds: list[str] = []
    for link in tree.css("link[href]"):
        rel = (link.attributes.get("rel") or "").lower().split()
        kind = (link.attributes.get("type") or "").split(";")[0].strip().lower()
        if "alternate" in rel and kind in _FEED_TYPES:
            absolute = _absolute(base, link.attributes.get("href"))
            if absolute and absolute not in feeds:
                feeds.append(absolute)
    if not feeds:
        return "it links no feeds"
    more = len(feeds) - _MAX_LINKED_FEEDS
    listed = ", ".join(feeds[:_MAX_LINKED_FEEDS]) + (f" and {more} more" if more > 0 else "")
    return f"it links these feeds: {listed}"


def _absolute(base: str, href: str | None) -> str | None:
    """``href`` resolved against ``base`` when that makes an http(s) URL with no control
    characters (the line is printed to a terminal and stored); else None."""
    href = re.sub(r"[\t\n\r]", "", (href or "").strip()).replace(" ", "%20")
    try:
        absolute = urljoin(base, href)
        scheme = urlsplit(absolute).scheme
    except ValueError:  # "http://[::1": not a URL at all
        return None
    if scheme not in ("http", "https") or any(ord(c) < 0x20 or ord(c) == 0x7F
                                               for c in absolute):
        return None
    return absolute


def _has_substance(entry: ParsedEntry) -> bool:
    return bool(entry.guid or entry.url or entry.title or entry.content_html.strip())


def _longest(values: list[str]) -> str:
    return max(values, key=len) if values else ""


def _clean(value: object) -> str | None:
    text = str(value).strip() if value else ""
    return text or None


def _iso(value: object) -> str | None:
    """fastfeedparser's ISO 8601 date -> our UTC form; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value ("" if absent) whatever the case of the mapping's keys."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
