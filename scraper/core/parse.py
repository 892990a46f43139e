"""Feed bytes -> entries, through feedparser, with the traps of feedparser 6 closed.

- feedparser is given bytes plus the response headers, never a URL (given a URL it would
  fetch with urllib itself, past every limit of our fetcher).
- The charset is decided here and the document handed over as UTF-8: with no charset in the
  headers feedparser 6.0.14 reads GBK as windows-1252, and GB2312 labels are decoded as
  GB18030 (its superset), because real "gb2312" feeds contain characters outside GB2312.
- A DOCTYPE internal subset is removed before parsing, and the internal entities it declares
  are expanded within a bound (``core.doctype``); external entities are never resolved.
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
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

import fastfeedparser
import feedparser
from selectolax.lexbor import LexborHTMLParser

from scraper.core.doctype import DoctypeRefused, expand_doctype

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?\?>", re.IGNORECASE)
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""", re.IGNORECASE)
_TTL = re.compile(rb"<ttl>\s*(\d+)\s*</ttl>", re.IGNORECASE)
#: Any element fastfeedparser takes an entry's date from (prefixed or not: dc:date).
_DATE_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?(?:pubDate|published|issued|date|updated|modified"
                           rb"|lastBuildDate)[\s>]", re.IGNORECASE)
_ITEM_START = re.compile(rb"<(?:[\w.-]+:)?(?:item|entry)[\s>]", re.IGNORECASE)
#: fastfeedparser dates an undated item by its GUID only when the GUID does not start so.
_URL_PREFIXES = ("http://", "https://")
_OPAQUE = re.compile(rb"<!\[CDATA\[.*?\]\]>|<!--.*?-->", re.DOTALL)
#: An item or entry, whole (none nests another).
_ITEM = re.compile(rb"<((?:[\w.-]+:)?(?:item|entry))[\s>].*?</\1\s*>",
                   re.IGNORECASE | re.DOTALL)
#: Dates before this are placeholders for none (``_stamp``).
_FIRST_DATE = datetime(1970, 1, 2, tzinfo=UTC)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._\-]+)", re.IGNORECASE)
#: Labels that mean "some GB encoding": all decoded as GB18030, which contains them all.
_GB_LABELS = {"gb2312", "gbk", "gb18030", "x-gbk", "cp936", "ms936", "euc-cn", "csgb2312",
              "gb_2312-80", "chinese", "windows-936"}

#: A document whose first tag (after an XML declaration and comments) is <html> or an HTML
#: doctype: a web page, not a feed.
_HTML_PAGE = re.compile(rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])",
                        re.IGNORECASE | re.DOTALL)
#: The <link rel="alternate" type=...> of feed autodiscovery that name feeds we can read.
#: C0 and C1 control characters but tab, newline and carriage return: a feed that sends
#: ``&#27;]2;...&#7;`` would otherwise have `scrape list`, `show` and `search` write terminal
#: escape sequences (found in review); no text or title needs them.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
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


def to_utf8(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, str | None]:
    """Re-encode the document as UTF-8 with a declaration that says so; and what was wrong
    with its charset, if anything (shown as a malformed feed's problem).

    A document its declared charset cannot decode but UTF-8 can is UTF-8 mislabelled (a
    server's default charset header over a UTF-8 file, the usual case): read as labelled,
    its Chinese came out as mojibake, stored without a word (found in review).  Any other
    undecodable byte is replaced, and said."""
    charset = detect_charset(body, headers)
    problem = None
    if charset in ("utf-8", "utf-8-sig"):
        text_bytes = body[3:] if body.startswith(codecs.BOM_UTF8) else body
    else:
        try:
            text_bytes = body.decode(charset).encode("utf-8")
        except UnicodeDecodeError as exc:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                text_bytes = body.decode(charset, errors="replace").encode("utf-8")
                problem = f"not valid {charset} at byte {exc.start}: such bytes replaced"
            else:
                text_bytes = body
                problem = f"declared {charset} but written in UTF-8: read as UTF-8"
    decl = _XML_DECL.match(text_bytes)
    if decl:
        fixed = _DECL_ENCODING.sub(b'encoding="utf-8"', decl.group(0))
        text_bytes = fixed + text_bytes[decl.end():]
    return text_bytes, problem


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
    body, charset_problem = to_utf8(body, headers)
    try:
        body = expand_doctype(body)
    except DoctypeRefused as exc:
        raise ParseError(str(exc)) from None
    parsed = _parse(body, headers, url)
    entries, shared = _unshare_guids(parsed.entries)
    problem = parsed.problem or charset_problem or shared
    if entries is not parsed.entries or problem != parsed.problem:
        return replace(parsed, entries=entries, problem=problem)
    return parsed


def _unshare_guids(entries: list[ParsedEntry]) -> tuple[list[ParsedEntry], str | None]:
    """Entries whose GUID other items of the document carry too, each with a link of its
    own, keyed by their link instead (:attr:`ParsedEntry.key`); and a line saying so.

    Some generators give every item one GUID ("0", the feed's URL): keyed by it, all but the
    first item were dropped as repeats of it, without a word (found in review).  Only items
    that all have different links are told apart so: an item repeated (a pinned copy, the
    same link) keeps its GUID, and its key does not change from one poll to the next."""
    groups: dict[str, list[ParsedEntry]] = {}
    for e in entries:
        if e.guid:
            groups.setdefault(e.guid, []).append(e)
    shared = {guid for guid, group in groups.items() if len(group) > 1
              and all(e.url for e in group) and len({e.url for e in group}) == len(group)}
    if not shared:
        return entries, None
    out = [replace(e, guid=None) if e.guid in shared else e for e in entries]
    count = sum(len(groups[guid]) for guid in shared)
    return out, f"{count} items with links of their own share {len(shared)} GUID(s): keyed " \
                "by their links"


def _parse(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """``parse_feed`` of a document made UTF-8."""
    ttl = None
    if m := _TTL.search(body, 0, 65536):
        ttl = int(m.group(1))
    fast = None
    if _well_formed(body):
        try:
            fast = _parse_fast(body, url, ttl)
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


def _parse_fast(body: bytes, url: str, ttl: int | None) -> ParsedFeed:
    parsed = fastfeedparser.parse(body, include_tags=False, include_media=False,
                                  include_enclosures=False)
    feed = parsed.get("feed") or {}
    base = _site(url, feed.get("link"))
    raw = parsed.get("entries") or []
    # Only a dated entry whose id is not a URL can owe its date to its GUID (the common
    # feed, GUIDs that are links, is not scanned again).
    guessed = any(e.get("published") and not str(e.get("id") or "").startswith(_URL_PREFIXES)
                  for e in raw)
    dated = _dated_items(body, len(raw)) if guessed else [True] * len(raw)
    entries = []
    for e, has_date in zip(raw, dated, strict=True):
        content = _longest([c.get("value") or "" for c in e.get("content") or []]
                           + [e.get("description") or "", e.get("summary") or ""])
        when = (e.get("published") or e.get("updated")) if has_date else None
        entries.append(ParsedEntry(
            guid=_clean(e.get("id")), url=_link(base, _clean(e.get("link"))),
            title=_clean(e.get("title")) or "", author=_clean(e.get("author")),
            published=_iso(when), content_html=content))
    return ParsedFeed(entries=[e for e in entries if _has_substance(e)],
                      title=feed.get("title"), ttl=ttl)


def _dated_items(body: bytes, count: int) -> list[bool]:
    """Whether each of the document's ``count`` entries has a date element of its own.

    fastfeedparser 0.6 reads an undated item's GUID as a date when it is not a URL: GUIDs
    "42" and "7" became 2042-12-07 and the 7th of this month (found in review), pinned above
    every other entry.  feedparser, the other path, never guesses one.  The items are found
    in the text, in document order as fastfeedparser lists them; if they are not as many
    as its entries, a document with no date element from its first item on stands for all.
    """
    # Markup inside CDATA or a comment (an HTML description quoting "<item>") is no item.
    bare = _OPAQUE.sub(b"", body)
    items = [bool(_DATE_ELEMENT.search(m.group(0))) for m in _ITEM.finditer(bare)]
    if len(items) == count:
        return items
    first = _ITEM_START.search(bare)
    dated = first is not None and _DATE_ELEMENT.search(bare, first.start()) is not None
    return [dated] * count


def _parse_loose(body: bytes, headers: Mapping[str, str], url: str,
                 ttl: int | None) -> ParsedFeed:
    response_headers = {k.lower(): v for k, v in headers.items()}
    content_type = response_headers.get("content-type", "application/xml").split(";")[0]
    response_headers["content-type"] = f"{content_type or 'application/xml'}; charset=utf-8"
    response_headers.pop("content-encoding", None)  # the fetcher already inflated it
    # No content-location: feedparser would resolve relative links against the document,
    # where ``_link`` resolves them against the site, as on the other path.
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
    base = _site(url, parsed.feed.get("link"))
    entries = []
    for e in parsed.entries:
        content = _longest([c.get("value") or "" for c in e.get("content") or []]
                           + [e.get("summary") or ""])
        when = e.get("published_parsed") or e.get("updated_parsed")
        published = None
        if when:
            try:
                published = _stamp(datetime.fromtimestamp(calendar.timegm(when), UTC))
            except (OverflowError, OSError, ValueError):  # a year feedparser read, we cannot
                published = None
        link = _clean(e.get("link"))
        entries.append(ParsedEntry(
            # fastfeedparser reports the link as the id when there is no GUID; do the same
            # here, so an entry keeps its key whichever parser read the document.
            guid=_clean(e.get("id")) or link, url=_link(base, link),
            title=_clean(e.get("title")) or "", author=_clean(e.get("author")),
            published=published, content_html=content))
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
    return _CONTROLS.sub("", max(values, key=len)) if values else ""


def _clean(value: object) -> str | None:
    text = _CONTROLS.sub("", str(value)).strip() if value else ""
    return text or None


def _iso(value: object) -> str | None:
    """fastfeedparser's ISO 8601 date -> our UTC form; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return _stamp(when.astimezone(UTC))
    except (ValueError, OverflowError):  # OverflowError: year 1 east of UTC is year 0
        return None


def _stamp(when: datetime) -> str | None:
    """A UTC date as stored ("...Z"), or None for a date before ``_FIRST_DATE``: Go's zero
    time (0001-01-01, which Hugo writes for an undated page) and the Unix epoch are what
    generators write for "no date".  Stored, year 1 came out as "1-01-01..." (strftime pads
    no year before 1000), which no ISO reader takes: every export failed on it."""
    if when < _FIRST_DATE:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _site(url: str, channel_link: object) -> str:
    """What an item's relative link is relative to: the channel's <link> (the site, made
    absolute against the document's URL), as Miniflux reads it, else the document's URL;
    a feed served through a proxy (RSSHub, FeedBurner) links into the site, not the proxy."""
    site = _absolute(url, _clean(channel_link)) if channel_link else None
    return site or url


def _link(base: str, link: str | None) -> str | None:
    """An item's relative link made absolute against ``base``; any other kept as sent (its
    hash is the entry's: rewritten, every stored entry would count as updated once).
    Relative, it was stored so, and left normalize no base: every image and link of the
    content was dropped (found in review)."""
    if not link or not base:
        return link
    try:
        relative = not urlsplit(link).scheme
    except ValueError:  # "http://[::1": kept as sent, as before
        return link
    return (_absolute(base, link) or link) if relative else link


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value ("" if absent) whatever the case of the mapping's keys."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
