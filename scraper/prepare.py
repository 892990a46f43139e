"""The CPU side of a refresh, run in the worker processes: parse a feed document, then
normalize and fingerprint its new or changed entries.

Kept apart from ``refresh`` (the event loop, the fetcher, the database) so that the pool's
fork server preloads only what the workers run: this module imports ``core`` and ``config``
alone, never the HTTP stack (aiohttp and httpx cost about 0.2 s to import, and no worker
uses them).  ``tests/test_layers.py`` holds it to that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from scraper.config import DedupSettings, FeedConfig
from scraper.core import decide, fingerprint, fulltext, normalize, rules
from scraper.core.parse import ParsedEntry, parse_feed

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """An entry ready to store: what the feed sent plus what normalize made of it."""

    entry: ParsedEntry
    key: str
    raw_hash: str
    content_html: str
    content_text: str
    summary: str
    image: str | None
    fingerprint: fingerprint.Fingerprint | None = None

    def data(self) -> decide.EntryData:
        e = self.entry
        return decide.EntryData(
            key=self.key, raw_hash=self.raw_hash, url=e.url, guid=e.guid, title=e.title,
            author=e.author, published=e.published, content_html=self.content_html,
            content_text=self.content_text, summary=self.summary, image=self.image,
            raw_html=e.content_html)


@dataclass
class PreparedFeed:
    """What a worker sends back for one feed document: only the new or changed entries."""

    entries: list[Prepared]
    unchanged: int
    problem: str | None
    ttl: int | None


@dataclass
class FeedScan:
    """A document's entry identities: (key, raw hash) in document order, the first of a key."""

    identities: list[tuple[str, str]]
    problem: str | None
    ttl: int | None
def scan_feed(body: bytes, headers: Mapping[str, str], url: str) -> FeedScan:
    """Parse only, so the database is asked about this document's entries and no others
    (every key a feed ever had would grow with its history); a second parse costs ~30 µs per
    item (bench/parse.py), and a document with nothing new needs none."""
    parsed = parse_feed(body, headers, url)
    seen: dict[str, str] = {}
    for entry in parsed.entries:
        seen.setdefault(entry.key, entry.raw_hash)
    return FeedScan(list(seen.items()), parsed.problem, parsed.ttl)


def prepare_feed(body: bytes, headers: Mapping[str, str], url: str, feed: FeedConfig,
                 sites: Mapping[str, rules.SiteRule], settings: DedupSettings,
                 known: Mapping[str, str]) -> PreparedFeed:
    """Parse and normalize the entries that are new or changed (runs in a worker process)."""
    parsed = parse_feed(body, headers, url)
    out: list[Prepared] = []
    unchanged = 0
    seen: set[str] = set()
    for entry in parsed.entries:
        key = entry.key
        if key in seen:
            continue  # the same entry twice in one document: the first wins
        seen.add(key)
        raw_hash = entry.raw_hash
        if known.get(key) == raw_hash:
            unchanged += 1
            continue
        out.append(prepare_entry(entry, key, raw_hash, feed, sites, settings))
    return PreparedFeed(out, unchanged, parsed.problem, parsed.ttl)


def prepare_entry(entry: ParsedEntry, key: str, raw_hash: str, feed: FeedConfig,
                  sites: Mapping[str, rules.SiteRule], settings: DedupSettings,
                  html: str | None = None) -> Prepared:
    base = entry.url or feed.url
    rule = rules.resolve_rule(base, feed.rule, dict(sites))
    clean = normalize.normalize(entry.content_html if html is None else html, base, rule)
    fp = fingerprint.compute(entry.title, clean.text, entry.url, settings)
    return Prepared(entry=entry, key=key, raw_hash=raw_hash, content_html=clean.html,
                    content_text=clean.text, summary=clean.summary, image=clean.image,
                    fingerprint=fp)


def prepare_fulltext(body: bytes, headers: Mapping[str, str], url: str, item: Prepared,
                      feed: FeedConfig, sites: Mapping[str, rules.SiteRule],
                      settings: DedupSettings) -> Prepared:
    """Extract the article from a fetched page; keep the feed's content if none is found."""
    rule = rules.resolve_rule(url, feed.rule, dict(sites))
    html = fulltext.extract_article(fulltext.decode_page(body, headers), url,
                                    rule.content_selector)
    if not html:
        log.warning("%s: no article found in %s, feed content kept", feed.name, url)
        return item
    return prepare_entry(item.entry, item.key, item.raw_hash, feed, sites, settings, html=html)


