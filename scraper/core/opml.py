"""OPML, the format feed readers move their subscriptions in: written from the configured
feeds, read with listparser (the OPML library of feedparser's author).

Categories are a path: a feed with ``categories: [Tech, AI]`` sits in the outline ``AI``
inside the outline ``Tech``, the way the Hexo export makes them folders; reading gives the
path back from the nesting.

Hostile files: listparser is handed bytes, never a str (a str starting with ``http://`` it
would fetch itself, with requests).  It reads with lxml's HTML parser (html.parser where
lxml is missing): neither expands a DOCTYPE's entities, so a billion-laughs bomb stays a
short literal ``&a;`` and an external entity (``SYSTEM "file:///etc/passwd"``) is never
read (tests/test_opml.py checks both).  Only http(s) feed URLs are imported: a
``javascript:`` or ``file:`` xmlUrl, or one urllib cannot split, is skipped with its reason.
"""

from __future__ import annotations

import codecs
import html.parser
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

import listparser


@dataclass(frozen=True)
class Outline:
    """One feed of an OPML file: its title, feed URL and category path (outermost first)."""

    title: str
    url: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An outline that is not imported, and why (shown to the user as one line)."""

    title: str
    reason: str


def write_opml(feeds: Sequence[Outline], title: str, now: datetime) -> bytes:
    """An OPML 2.0 document: feeds in nested category outlines, in the order given."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now)
    body = ET.SubElement(root, "body")
    groups: dict[tuple[str, ...], ET.Element] = {(): body}
    for feed in feeds:
        path: tuple[str, ...] = ()
        parent = body
        for category in (c for c in feed.categories if c.strip()):
            path = (*path, category)
            if path not in groups:
                groups[path] = ET.SubElement(parent, "outline", text=category, title=category)
            parent = groups[path]
        ET.SubElement(parent, "outline", type="rss", text=feed.title, title=feed.title,
                      xmlUrl=feed.url)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


#: The encoding an XML declaration names (the document's first bytes).
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def as_utf8(data: bytes) -> bytes:
    """The document in UTF-8.  listparser reads through lxml's HTML parser, which ignores
    the XML declaration: a GBK file (``encoding="GBK"``) came out as mojibake.  GB2312 and
    GBK are read as GB18030, their superset, as ``core.parse`` does for feeds."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace").encode("utf-8")
    declared = _DECLARED.match(data)
    if declared is None:
        return data
    name = declared.group(1).decode("ascii").lower()
    try:
        codec = codecs.lookup("gb18030" if name in ("gb2312", "gbk") else name).name
    except LookupError:
        return data
    return data if codec == "utf-8" else data.decode(codec, errors="replace").encode("utf-8")


def read_opml(data: bytes) -> tuple[list[Outline], list[Skipped]]:
    """The feeds of an OPML document, and the outlines left out with their reasons.

    ValueError when the bytes hold no OPML at all.  A feed listed in several groups keeps
    the first group's path (listparser merges it by URL, with every path it was found in).
    """
    data = as_utf8(bytes(data))
    parsed = listparser.parse(data)  # bytes: a str may be fetched as a URL
    if not parsed.get("version") and not parsed.feeds:
        problem = parsed.get("bozo_exception")
        raise ValueError(f"not an OPML subscription list{f' ({problem})' if problem else ''}")
    feeds: list[Outline] = []
    skipped: list[Skipped] = []
    for item in parsed.feeds:
        title = (item.get("title") or "").strip()
        url = (item.get("url") or "").strip()
        try:
            parts = urlsplit(url)
            _ = parts.port  # a port out of range or not a number raises only when read
        except ValueError as exc:
            # One malformed outline (``http://[::1/rss``) is that outline's problem: the
            # rest of the file is still imported, as with a non-http(s) URL.
            skipped.append(Skipped(title or url, f"not a valid URL ({exc}): {url[:80]!r}"))
            continue
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            skipped.append(Skipped(title or url, f"not an http(s) feed URL: {url[:80]!r}"))
            continue
        paths = item.get("categories") or [[]]
        categories = tuple(c.strip() for c in paths[0] if c.strip())
        feeds.append(Outline(title, url, categories))
    skipped += _without_xml_url(data)
    for item in parsed.lists:
        skipped.append(Skipped((item.get("title") or "").strip() or item.get("url", ""),
                               "an included subscription list, not a feed"))
    return feeds, skipped


class _Leaves(html.parser.HTMLParser):
    """The outlines that say they are feeds (a ``type`` of rss or atom, or an ``htmlUrl``)
    with neither an ``xmlUrl`` nor outlines inside.  listparser takes a titled one for an
    empty folder and says nothing; the user is told instead.  html.parser, like listparser's
    own fallback, never expands an entity."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[dict[str, str | None], list[bool]]] = []
        self.found: list[Skipped] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.rpartition(":")[2] != "outline":
            return
        if self.stack:
            self.stack[-1][1][0] = True  # the parent has a child
        self.stack.append((dict(attrs), [False]))

    def handle_endtag(self, tag: str) -> None:
        if tag.rpartition(":")[2] != "outline" or not self.stack:
            return
        attrs, has_child = self.stack.pop()
        kind = (attrs.get("type") or "").strip().lower()
        if (not has_child[0] and not (attrs.get("xmlurl") or "").strip()
                and (kind in ("rss", "atom") or attrs.get("htmlurl"))):
            title = (attrs.get("text") or attrs.get("title") or attrs.get("htmlurl") or "")
            self.found.append(Skipped(title.strip(), "no xmlUrl: not a feed address"))


def _without_xml_url(data: bytes) -> list[Skipped]:
    leaves = _Leaves()
    leaves.feed(data.decode("utf-8", errors="replace"))
    leaves.close()
    return leaves.found
