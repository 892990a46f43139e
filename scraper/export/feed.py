"""One merged feed of the deduplicated stream: Atom 1.0 (default) or RSS 2.0.

The latest N originals, newest first, each story once: duplicates are listed on their
original as ``<link rel="related">`` (``<atom:link>`` in RSS), so a reader sees every site
that carried the story without reading it twice.  Each entry names its source feed.

Entry ids are URNs of the entry's own identity (feed + GUID/link), not of the database row,
so a rebuilt database keeps them.  No two entries share a link.  Characters XML 1.0 forbids
are removed first: one of them makes the whole document unreadable.
"""

from __future__ import annotations

import re
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scraper import storage as store
from scraper.config import Config, ConfigError, FeedConfig
from scraper.export import Selection, entry_time, feed_config, replacing, rfc822
from scraper.storage import exports as stored
from scraper.storage import reads
from scraper.storage.reads import Connection
from scraper.version import __version__

ATOM = "http://www.w3.org/2005/Atom"
DC = "http://purl.org/dc/elements/1.1/"
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def clean(text: str | None) -> str:
    return _XML_ILLEGAL.sub("", text or "")


def entry_urn(entry: Mapping[str, Any]) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL,
                                        f"scrape:{entry['feed']}\0{entry['entry_key']}"))


def _rfc3339(when: datetime) -> str:
    return str(store.iso(when))


def latest_entries(conn: Connection, limit: int, selection: Selection | None = None
                   ) -> list[dict[str, Any]]:
    """The newest ``limit`` originals with distinct links, newest first, with their dups."""
    selection = Selection(since=(selection or Selection()).since,
                          feeds=(selection or Selection()).feeds)  # originals only, always
    out: list[dict[str, Any]] = []
    links: set[str] = set()
    if limit > 0:
        for entry in stored.newest_entries(conn, selection, page=max(limit, 50)):
            link = entry.get("url")
            if link:
                if link in links:
                    continue
                links.add(link)
            out.append(entry)
            if len(out) == limit:
                break
    dups = stored.duplicates_of(conn, [e["id"] for e in out])
    mates = stored.story_mates(conn, [e["id"] for e in out])
    for entry in out:
        # a related link equal to the entry's own link would say nothing
        seen = {entry.get("url")}
        entry["duplicates"] = []
        for dup in (*dups.get(entry["id"], []), *mates.get(entry["id"], [])):
            if dup["url"] and dup["url"] not in seen:
                seen.add(dup["url"])
                entry["duplicates"].append(dup)
        entry["also_reported_by"] = stored.also_reported_by(
            entry["feed"], dups.get(entry["id"], []), mates.get(entry["id"], []))
    return out


def _content(entry: Mapping[str, Any], config: Config | None) -> str:
    """The entry's HTML, and a last paragraph naming the other sites (a feed's ``author``,
    else its name) that carry a reprint or a write-up of its story (issue 19), if any."""
    html = entry.get("content_html") or ""
    others = entry.get("also_reported_by") or []
    if not others:
        return html
    names = []
    for name in others:
        site = _author({"feed": name}, feed_config(config, name))
        if site not in names:
            names.append(site)
    return f'{html}<p class="also-reported">also reported by {escape(", ".join(names))}</p>'


def _feed_urls(conn: Connection) -> dict[str, str]:
    return {row["name"]: row["url"] for row in reads.feed_rows(conn)}


def site_link(config: Config | None, feed_urls: Mapping[str, str],
              selection: Selection | None = None) -> str | None:
    """The site the merged feed belongs to: ``site_url:`` from the config, else the first
    feed's site (the first selected, else configured, else stored feed).  The database keeps
    each feed's URL and not its ``<link>``, so the site is that URL's scheme and host: a
    real address even from ``--db`` alone (an RSS reader opens the channel link)."""
    if config is not None and config.site_url:
        return config.site_url
    names = list(selection.feeds if selection and selection.feeds else ())
    names += [f.name for f in config.feeds] if config else []
    names += sorted(feed_urls)
    for name in names:
        feed = feed_config(config, name)
        parts = urlsplit(feed_urls.get(name) or (feed.url if feed else ""))
        if parts.scheme in ("http", "https") and parts.hostname:
            host = parts.netloc.rpartition("@")[2]  # never a password in a published feed
            return f"{parts.scheme}://{host}/"
    return None


def _author(entry: Mapping[str, Any], feed: FeedConfig | None) -> str:
    return entry.get("author") or (feed.author if feed and feed.author else entry["feed"])


def build_atom(entries: list[dict[str, Any]], config: Config | None, feed_urls: Mapping[str, str],
               title: str, link: str | None, site: str | None = None) -> bytes:
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        return _sub(parent, f"{{{ATOM}}}{tag}", text, **attrs)

    root = ET.Element(f"{{{ATOM}}}feed")
    sub(root, "id", link or "urn:scrape:merged-feed")
    sub(root, "title", title)
    updated = max((entry_time(e) for e in entries), default=store.utcnow())
    sub(root, "updated", _rfc3339(updated))
    if link:
        sub(root, "link", rel="self", href=link)
    if site:
        sub(root, "link", rel="alternate", type="text/html", href=site)
    sub(root, "generator", "scrape", version=__version__)
    for entry in entries:
        feed = feed_config(config, entry["feed"])
        el = sub(root, "entry")
        sub(el, "id", entry_urn(entry))
        sub(el, "title", entry.get("title") or "", type="text")
        if entry.get("url"):
            sub(el, "link", rel="alternate", type="text/html", href=entry["url"])
        for dup in entry["duplicates"]:
            sub(el, "link", rel="related", type="text/html", href=dup["url"],
                title=dup.get("title") or dup["feed"])
        when = entry_time(entry)
        sub(el, "published", _rfc3339(when))
        sub(el, "updated", _rfc3339(when))
        author = sub(el, "author")
        sub(author, "name", _author(entry, feed))
        for category in (feed.categories if feed else ()):
            sub(el, "category", term=str(category))
        source = sub(el, "source")
        source_url = feed_urls.get(entry["feed"]) or (feed.url if feed else None)
        sub(source, "id", source_url or f"urn:scrape:feed:{entry['feed']}")
        sub(source, "title", entry["feed"])
        if source_url:
            sub(source, "link", rel="self", href=source_url)
        if entry.get("summary"):
            sub(el, "summary", entry["summary"], type="text")
        sub(el, "content", _content(entry, config), type="html")
    return _serialize(root)


def build_rss(entries: list[dict[str, Any]], config: Config | None, feed_urls: Mapping[str, str],
              title: str, link: str | None, site: str | None = None) -> bytes:
    """RSS 2.0; the channel's ``<link>`` (required, a URL) is ``link``, else ``site``."""
    channel_link = link or site
    if not channel_link:
        raise ConfigError("export feed --format rss: no URL for the channel's <link>: pass "
                          "--link URL, or set site_url: in the config")
    ET.register_namespace("atom", ATOM)
    ET.register_namespace("dc", DC)
    sub = _sub

    root = ET.Element("rss", {"version": "2.0"})
    channel = sub(root, "channel")
    sub(channel, "title", title)
    sub(channel, "link", channel_link)
    sub(channel, "description", title)
    updated = max((entry_time(e) for e in entries), default=store.utcnow())
    sub(channel, "lastBuildDate", rfc822(updated))
    sub(channel, "generator", f"scrape {__version__}")
    if link:
        sub(channel, f"{{{ATOM}}}link", rel="self", href=link, type="application/rss+xml")
    for entry in entries:
        feed = feed_config(config, entry["feed"])
        item = sub(channel, "item")
        sub(item, "title", entry.get("title") or "")
        if entry.get("url"):
            sub(item, "link", entry["url"])
        sub(item, "guid", entry_urn(entry), isPermaLink="false")
        sub(item, "pubDate", rfc822(entry_time(entry)))
        sub(item, f"{{{DC}}}creator", _author(entry, feed))
        for category in (feed.categories if feed else ()):
            sub(item, "category", str(category))
        source_url = feed_urls.get(entry["feed"]) or (feed.url if feed else None)
        if source_url:
            sub(item, "source", entry["feed"], url=source_url)
        for dup in entry["duplicates"]:
            sub(item, f"{{{ATOM}}}link", rel="related", type="text/html", href=dup["url"],
                title=dup.get("title") or dup["feed"])
        sub(item, "description", _content(entry, config) if entry.get("content_html")
            else entry.get("summary") or "")
    return _serialize(root)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: clean(v) for k, v in attrs.items()})
    if text is not None:
        el.text = clean(text)
    return el


def _serialize(root: ET.Element) -> bytes:
    return (b'<?xml version="1.0" encoding="utf-8"?>\n'
            + ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n")


def build_feed(conn: Connection, config: Config | None, *, fmt: str = "atom",
               limit: int = 50, title: str = "scrape: merged feed", link: str | None = None,
               selection: Selection | None = None) -> tuple[bytes, int]:
    """The document and how many entries it holds."""
    entries = latest_entries(conn, limit, selection)
    build = build_rss if fmt == "rss" else build_atom
    urls = _feed_urls(conn)
    return (build(entries, config, urls, title, link, site_link(config, urls, selection)),
            len(entries))


def export_feed(conn: Connection, config: Config | None, file: str | Path, *,
                fmt: str = "atom", limit: int = 50, title: str = "scrape: merged feed",
                link: str | None = None, selection: Selection | None = None) -> int:
    """Write the merged feed to ``file`` (``-``: stdout), replacing it at once."""
    body, count = build_feed(conn, config, fmt=fmt, limit=limit, title=title, link=link,
                             selection=selection)
    if str(file) == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return count
    with replacing(Path(file), "wb") as out:  # a web server may be serving the old file
        out.write(body)
    return count
