"""feeds.yaml: load, validate, and resolve into plain dataclasses.

Every problem is reported as ``<file>: feeds[<i>] '<name>': <field>: <problem>`` so that a
user with fifty feeds knows which line to fix; nothing is written before the config is valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import yaml

from scraper.core import rules
from scraper.core.feedsfile import DuplicateKeyError, load_yaml

DEFAULT_RSSHUB = "https://rsshub.app"
#: The environment variable that overrides ``rsshub_base`` (docker-compose.yml sets it).
RSSHUB_ENV = "SCRAPE_RSSHUB_BASE"
#: A feed polled every 30 minutes is what Miniflux and most readers default to.
DEFAULT_INTERVAL = 30 * 60
#: Total seconds for one request, end to end (httpx's own timeouts are per read).
DEFAULT_TIMEOUT = 30.0
#: Decompressed body cap.  The largest real feed we know of (a full-text RSSHub route with
#: 100 items) is under 5 MiB; 15 MiB leaves room without letting a gzip bomb through.
DEFAULT_MAX_BYTES = 15 * 1024 * 1024

# Upper bounds: past them a number is a typo, and what uses it breaks (timedelta's ten
# thousand years, asyncio's timers, a read buffer's index-sized length, SQLite's integers).
# An interval over a year is a typo (``enabled: false`` stops a feed); a request still going
# after an hour is stuck, and a claim lasts timeout x (retries + 1) x 4 (a dead worker holds
# its feeds that long); a daemon timing of a day means a daemon that looks dead or feeds a
# day late; a body is held in memory whole, and 1 GiB is some 70 times the default cap.
MAX_INTERVAL, MAX_TIMEOUT, MAX_DAEMON_SECONDS, MAX_BODY_BYTES = 365 * 86400, 3600, 86400, 1 << 30

_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


@dataclass(frozen=True)
class DedupSettings:
    """Thresholds of the ``dedup:`` block of feeds.yaml; defaults measured by the benches.

    bench/dedup_quality.py (900 variants per kind), containment at 4-character shingles: at
    least 0.85 for edits up to 3%, reordered paragraphs and the corpus' trimmed 龙芯 reprint;
    at most 0.73 for same-event articles sharing 70% of their characters.  0.8 sits between
    (5-character shingles narrowed the gap, 3-character ones let unrelated text overlap).
    10 bands x 2 rows find a pair at Jaccard 0.6 99% of the time (1 - (1 - J**2)**10; the
    龙芯 pair is at 0.61), with 18 keys per entry where 20 x 3 store 28 for no gain.
    """

    threshold: float = 0.8  # shingle containment that confirms a near-duplicate
    shingle: int = 4  # characters per shingle
    bands: int = 10
    rows: int = 2
    short_chars: int = 100  # texts shorter than this (folded) are judged by their title
    title_threshold: float = 0.6  # bigram Jaccard of folded titles
    title_window_hours: float = 72.0
    window_days: float = 14.0  # only entries this close in time are compared
    explain_candidates: int = 10

    @property
    def window_seconds(self) -> int:
        return int(self.window_days * 86400)

    @property
    def title_window_seconds(self) -> int:
        return int(self.title_window_hours * 3600)

    @property
    def span_seconds(self) -> int:
        """The dedup window's length (pruning and the arrival rule): the longer window."""
        return max(self.window_seconds, self.title_window_seconds)


_FLOAT_01 = {"threshold", "title_threshold"}
#: Upper bounds of the windows: ten years.  A 1e7-day window reaches before year 1, and the
#: prune cutoff (newest arrival - window) overflows ``datetime``.
_POSITIVE_NUMBER = {"title_window_hours": 87_600.0, "window_days": 3_650.0}
_INT_RANGES = {"shingle": (2, 16), "bands": (1, 256), "rows": (1, 32), "short_chars": (0, 100_000),
               "explain_candidates": (1, 1000)}


def dedup_from_mapping(data: object, where: str) -> DedupSettings:
    """Validate the ``dedup:`` block; errors read ``field: problem`` (the caller adds the file)."""
    if data is None:
        return DedupSettings()
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping of dedup settings, got {data!r}")
    known = [f.name for f in fields(DedupSettings)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{key}: unknown key (expected one of: {', '.join(known)})")
        if key in _FLOAT_01:
            if not _is_number(value) or not 0 < value <= 1:
                raise ValueError(f"{key}: expected a number between 0 and 1, got {value!r}")
            values[key] = float(value)
        elif key in _POSITIVE_NUMBER:
            if not _is_number(value) or not 0 < value <= _POSITIVE_NUMBER[key]:
                raise ValueError(f"{key}: expected a positive number up to "
                                 f"{_POSITIVE_NUMBER[key]:g}, got {value!r}")
            values[key] = float(value)
        else:
            low, high = _INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{key}: expected a whole number from {low} to {high}, "
                                 f"got {value!r}")
            values[key] = value
    return DedupSettings(**values)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class ConfigError(Exception):
    """A config problem, already phrased for the user (file, feed and field)."""


@dataclass(frozen=True)
class FetchSettings:
    concurrency: int = 32
    per_host: int = 4
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 5
    retries: int = 2
    #: Hosts or CIDRs that full-text fetches may reach although they are private/loopback.
    allow_private: tuple[str, ...] = ()
    user_agent: str | None = None


@dataclass(frozen=True)
class DaemonSettings:
    """Timings of the daemon's own housekeeping: the ``daemon:`` block of feeds.yaml.

    The ``SCRAPE_*`` environment variables (``DAEMON_ENV``) override the file, so that a
    container (docker-compose.yml) and the tests can set them without editing feeds.yaml.
    """

    #: Seconds between heartbeats.  ``scrape status --check`` calls the daemon dead after
    #: three missed beats, so 30 s gives a 90 s detection time, close to Docker's default
    #: health-check period (30 s x 3 retries).
    heartbeat: float = 30.0
    #: Seconds between checks of feeds.yaml's mtime; 0 turns the watch off (SIGHUP still
    #: reloads).  2 s: an edit is live before the user has switched to the log.
    config_poll: float = 2.0
    #: Seconds in-flight refreshes get after SIGTERM.  The promise is an exit within 30 s
    #: (Docker's stop timeout in docker-compose.yml); this leaves 5 s to cancel, close the
    #: worker pool and the database.
    shutdown_grace: float = 25.0
    #: Seconds between the loop's questions "which feeds are due now?".  A feed is refreshed
    #: at most this late; 1 s is far inside the schedule's own jitter (10% of the interval,
    #: 3 min at the 30 min default), and the question reads one short row per feed.  A slot
    #: freed by a finished refresh is refilled at once, without waiting for the tick.
    tick: float = 1.0


#: The environment variable that overrides each ``daemon:`` setting.
DAEMON_ENV = {"heartbeat": "SCRAPE_HEARTBEAT", "config_poll": "SCRAPE_CONFIG_POLL",
              "shutdown_grace": "SCRAPE_SHUTDOWN_GRACE", "tick": "SCRAPE_TICK"}


def _duration(value: object, example: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1d"``; not range-checked
    (``inf`` passes, for :func:`_at_most` to refuse with the bound)."""
    if isinstance(value, str) and (m := _INTERVAL_RE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        return float(m.group(1)) * _UNIT_SECONDS[unit]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"expected seconds or a duration such as '{example}', got {value!r}")
    return float(value)


def _span(seconds: float) -> str:
    """A bound as a user writes it in feeds.yaml: ``365d``, ``1h``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _at_most(seconds: float, most: float, value: object) -> float:
    if not seconds <= most:
        raise ValueError(f"must be at most {_span(most)}, got {value!r}")
    return seconds


def _seconds(key: str, value: object) -> float:
    """A daemon timing; only the config watch may be 0 (off).  The error does not name
    ``key``: the file's and the environment's errors name it each in their own way."""
    seconds = _duration(value, "30s")
    if seconds < 0 or (seconds == 0 and key != "config_poll"):
        shown = seconds if isinstance(value, str) else value
        raise ValueError(f"expected a positive number of seconds, got {shown!r}")
    return _at_most(seconds, MAX_DAEMON_SECONDS, value)


def _daemon_from_mapping(data: object, where: str) -> DaemonSettings:
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of daemon timings")
    known = [f.name for f in fields(DaemonSettings)]
    values: dict[str, float] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{key}: unknown key (expected one of: {', '.join(known)})")
        try:
            values[key] = _seconds(key, value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return DaemonSettings(**values)


def daemon_settings(config: Config, env: Mapping[str, str] | None = None) -> DaemonSettings:
    """The config's ``daemon:`` timings with the ``SCRAPE_*`` overrides of ``env`` (default:
    this process's environment) applied; a bad value is a ConfigError naming the variable."""
    env = os.environ if env is None else env
    values: dict[str, float] = {}
    for key, name in DAEMON_ENV.items():
        raw = env.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            values[key] = _seconds(key, raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return replace(config.daemon, **values)


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    categories: tuple[str, ...] = ()
    interval: int = DEFAULT_INTERVAL
    timeout: float | None = None
    enabled: bool = True
    fulltext: bool = False
    #: Poll at the feed's observed publishing rate (never more often than ``interval``).
    adaptive: bool = False
    rule: rules.SiteRule | None = None
    author: str | None = None

    @property
    def host(self) -> str:
        return host_of(self.url)


@dataclass(frozen=True)
class Config:
    path: Path
    feeds: tuple[FeedConfig, ...]
    database: Path | str  # an SQLite file, or a postgresql:// URL
    rsshub_base: str = DEFAULT_RSSHUB
    #: Where the exports are published (the merged feed's channel link); None: no such site.
    site_url: str | None = None
    sites: dict[str, rules.SiteRule] = field(default_factory=dict)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)

    def feed(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(name)


def parse_interval(value: object, most: float = MAX_INTERVAL) -> int:
    """Whole seconds from a positive duration (see :func:`_duration`) up to ``most``."""
    seconds = _duration(value, "30m")
    if seconds <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return int(_at_most(seconds, most, value))


def _timeout(value: object) -> float:
    """A request's total deadline (a feed's, or ``fetch.timeout``): positive seconds up to
    :data:`MAX_TIMEOUT`; fractions allowed."""
    seconds = _duration(value, "30s")
    if seconds <= 0:
        raise ValueError(f"expected positive seconds, got {value!r}")
    return _at_most(seconds, MAX_TIMEOUT, value)


T = TypeVar("T")

#: The keys a feed (and `defaults:`) may have; docs/configuration.md lists each.
FEED_KEYS = {"name", "url", "categories", "interval", "timeout", "enabled", "fulltext",
              "adaptive", "rules", "image_proxy", "author"}
#: The top-level keys of feeds.yaml.
#: ``database:`` values that name a PostgreSQL database rather than an SQLite file (the
#: storage layer's ``pg.URL_SCHEMES``; config may not import storage).
DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")

TOP_KEYS = {"feeds", "defaults", "rsshub_base", "database", "sites", "dedup", "fetch",
              "daemon", "site_url"}


def load_config(path: str | Path) -> Config:
    path = Path(path)
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found (pass --config PATH, or run where feeds.yaml is)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = load_yaml(text)
    except DuplicateKeyError as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise ConfigError(f"{label}: line {exc.line}: {where}duplicate key {exc.key!r} "
                          f"(first on line {exc.first_line})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{label}:{where}: invalid YAML: {problem}") from None
    return config_from_data(data, path)


def config_from_data(data: object, path: Path) -> Config:
    label = path.name

    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{label}: {where}: {message}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping with a 'feeds:' list at the top level")
    for key in data:
        if key not in TOP_KEYS:
            raise fail(str(key), f"unknown key (expected one of: {', '.join(sorted(TOP_KEYS))})")

    def sub(where: str, parse: Callable[[object, str], T], value: object) -> T:
        try:
            return parse(value, where)
        except ValueError as exc:
            raise fail(where, str(exc)) from None

    rsshub_base = data.get("rsshub_base", DEFAULT_RSSHUB)
    if not isinstance(rsshub_base, str) or urlsplit(rsshub_base).scheme not in ("http", "https"):
        raise fail("rsshub_base", f"expected an http(s) URL, got {rsshub_base!r}")
    # The environment wins over the file: docker-compose.yml points the daemon at its own
    # RSSHub service without a copy of feeds.yaml.
    if env_base := os.environ.get(RSSHUB_ENV, "").strip():
        if urlsplit(env_base).scheme not in ("http", "https"):
            raise ConfigError(f"{RSSHUB_ENV}: expected an http(s) URL, got {env_base!r}")
        rsshub_base = env_base
    rsshub_base = rsshub_base.rstrip("/")
    site_url = data.get("site_url")
    if site_url is not None and (not isinstance(site_url, str)
                                 or urlsplit(site_url).scheme not in ("http", "https")
                                 or not urlsplit(site_url).hostname):
        raise fail("site_url", f"expected an http(s) URL, got {site_url!r}")

    database = data.get("database")
    db_path: Path | str
    if database is None:
        db_path = path.parent / "scrape.db"
    elif isinstance(database, str) and database.strip().lower().startswith(DATABASE_URL_SCHEMES):
        db_path = database.strip()  # PostgreSQL (storage.pg), opened as given
    elif isinstance(database, str) and database.strip():
        db_path = Path(database).expanduser()
        if not db_path.is_absolute():
            db_path = path.parent / db_path
    else:
        raise fail("database", f"expected a file path or a postgresql:// URL, got "
                               f"{database!r}")

    try:
        sites = rules.sites_from_mapping(data.get("sites"), "sites")
    except ValueError as exc:
        text = str(exc)
        raise ConfigError(f"{label}: {text if text.startswith('sites') else 'sites: ' + text}"
                          ) from None
    dedup_settings = sub("dedup", dedup_from_mapping, data.get("dedup") or {})
    fetch_settings = sub("fetch", _fetch_from_mapping, data.get("fetch") or {})
    daemon = sub("daemon", _daemon_from_mapping, data.get("daemon") or {})

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise fail("defaults", "expected a mapping of values every feed inherits")
    for key in defaults:
        if key not in FEED_KEYS - {"name", "url"}:
            raise fail(f"defaults.{key}", "unknown key")

    feeds_raw = data.get("feeds")
    if feeds_raw is None:
        raise fail("feeds", "missing (a list of feeds, each with a name and a url)")
    if not isinstance(feeds_raw, list):
        raise fail("feeds", "expected a list")
    feeds: list[FeedConfig] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(feeds_raw):
        feed = _feed(index, raw, defaults, rsshub_base, label, path.parent)
        if feed.name in seen:
            raise fail(f"feeds[{index}] '{feed.name}'",
                       f"name: duplicate of feeds[{seen[feed.name]}]")
        seen[feed.name] = index
        feeds.append(feed)
    return Config(path=path, feeds=tuple(feeds), database=db_path, rsshub_base=rsshub_base,
                  site_url=site_url, sites=sites, dedup=dedup_settings, fetch=fetch_settings,
                  daemon=daemon)


def _feed(index: int, raw: object, defaults: dict, rsshub_base: str, label: str,
          base: Path) -> FeedConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: feeds[{index}]: expected a mapping with name and url")
    name = raw.get("name")
    where = f"feeds[{index}] '{name}'" if isinstance(name, str) and name else f"feeds[{index}]"

    def fail(field_name: str, message: str) -> ConfigError:
        return ConfigError(f"{label}: {where}: {field_name}: {message}")

    for key in raw:
        if key not in FEED_KEYS:
            raise fail(str(key), f"unknown key (expected one of: {', '.join(sorted(FEED_KEYS))})")
    if name is None:
        raise fail("name", "missing")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", f"expected a non-empty string, got {name!r}")
    merged: dict[str, Any] = {**defaults, **raw}

    url = merged.get("url")
    if url is None:
        raise fail("url", "missing")
    if not isinstance(url, str) or not url.strip():
        raise fail("url", f"expected a URL or an RSSHub route 'rsshub:/...', got {url!r}")
    try:
        local = local_feed_url(url.strip(), base)
    except ValueError as exc:
        raise fail("url", str(exc)) from None
    url = local or resolve_url(url.strip(), rsshub_base)
    if local is None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise fail("url", f"expected an http(s) URL, 'rsshub:/route', file:///path or a "
                              f"path, got {raw.get('url')!r}")

    categories = merged.get("categories", [])
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, list) or not all(isinstance(c, str | int) for c in categories):
        raise fail("categories", f"expected a list of names, got {categories!r}")

    try:
        interval = parse_interval(merged.get("interval", DEFAULT_INTERVAL))
    except ValueError as exc:
        raise fail("interval", str(exc)) from None

    timeout = merged.get("timeout")
    if timeout is not None:
        try:
            timeout = _timeout(timeout)
        except ValueError as exc:
            raise fail("timeout", str(exc)) from None

    flags: dict[str, bool] = {}
    for key, default in (("enabled", True), ("fulltext", False), ("adaptive", False)):
        value = merged.get(key, default)
        if not isinstance(value, bool):
            raise fail(key, f"expected true or false, got {value!r}")
        flags[key] = value

    rule = None
    if "rules" in merged:
        try:
            rule = rules.rule_from_mapping(merged["rules"], "rules")
        except ValueError as exc:
            raise ConfigError(f"{label}: {where}: rules.{exc}") from None
    if "image_proxy" in merged:
        proxy = merged["image_proxy"]
        if proxy is not None and (not isinstance(proxy, str) or "{url}" not in proxy):
            raise fail("image_proxy", f"expected a URL template containing {{url}}, got {proxy!r}")
        proxy_rule = rules.SiteRule(image_proxy=proxy)
        rule = proxy_rule if rule is None else rule.merged(proxy_rule)

    author = merged.get("author")
    if author is not None and not isinstance(author, str):
        raise fail("author", f"expected a string, got {author!r}")

    return FeedConfig(
        name=name.strip(), url=url, categories=tuple(str(c) for c in categories),
        interval=interval, timeout=timeout, enabled=flags["enabled"],
        fulltext=flags["fulltext"], adaptive=flags["adaptive"], rule=rule, author=author,
    )


#: Something that is a URL and not a path: ``scheme:`` (``rsshub:``, ``http:``, ``ftp:``...).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


#: The first part of a relative path that looks like a host name (www.example.com).
_HOST_LIKE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


def host_of(url: str) -> str:
    """The host a per-host limit counts against: the daemon's claims (storage) and the
    fetcher's semaphores must agree on it."""
    return (urlsplit(url).hostname or "").lower()


def local_feed_url(url: str, base: Path) -> str | None:
    """``file:///path``, or a plain path (relative to ``base``, feeds.yaml's folder), as a
    canonical ``file:///`` URL; None for any other URL.

    Local feeds serve pipelines that write feed files and let the tool be tried offline
    (issue 20).  The file need not exist yet: a missing file is that feed's error at each
    refresh, not a config error, so a pipeline may write it later.
    """
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if not url[5:].startswith("//") or parts.netloc not in ("", "localhost"):
            raise ValueError(f"expected file:///absolute/path (no host), got {url!r}")
        if "\0" in unquote(parts.path):  # no file has such a name; stat() would raise
            raise ValueError(f"a path cannot hold a NUL character, got {url!r}")
        return Path(unquote(parts.path) or "/").as_uri()
    if _SCHEME.match(url):
        return None
    if "\0" in url:
        raise ValueError(f"a path cannot hold a NUL character, got {url!r}")
    path = Path(url).expanduser()
    full = path if path.is_absolute() else base.resolve() / path
    first, slash, _ = url.partition("/")
    if slash and not full.exists() and (first == "rsshub" or _HOST_LIKE.match(first)):
        # A web address without its scheme would be read as a file that never appears.
        hint = f"rsshub:/{url.split('/', 1)[1]}" if first == "rsshub" else f"https://{url}"
        raise ValueError(f"{url!r} is neither a file nor a URL; did you mean {hint!r}? "
                         f"(a folder of that name: write ./{url})")
    return full.as_uri()


def resolve_url(url: str, rsshub_base: str) -> str:
    """``rsshub:/zaker/channel/13`` -> ``<rsshub_base>/zaker/channel/13``; others unchanged."""
    if url.startswith("rsshub:"):
        route = url[len("rsshub:"):]
        return rsshub_base + "/" + route.lstrip("/")
    return url


#: The whole-number ``fetch:`` settings and their ranges.  Each retry lengthens every claim
#: (refresh.claim_seconds; a huge count overflowed its timedelta) and waits up to twice the
#: last (10 retries: 17 minutes of backoff for one feed); browsers give up after 20
#: redirects; 10,000 requests in flight is ten times the file descriptors a process gets by
#: default (``ulimit -n``, 1,024).
_FETCH_INTS = {"concurrency": (1, 10_000), "per_host": (1, 10_000), "max_redirects": (0, 20),
               "retries": (0, 10), "max_bytes": (1, MAX_BODY_BYTES)}


def _fetch_from_mapping(data: object, where: str) -> FetchSettings:
    if not isinstance(data, dict):
        raise ValueError("expected a mapping")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _FETCH_INTS:
            low, high = _FETCH_INTS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{key}: expected a whole number from {low} to {high}, "
                                 f"got {value!r}")
            values[key] = value
        elif key == "timeout":
            try:
                values[key] = _timeout(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        elif key == "allow_private":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key}: expected a list of host names or CIDRs, got {value!r}")
            values[key] = tuple(value)
        elif key == "user_agent":
            if not isinstance(value, str):
                raise ValueError(f"{key}: expected a string, got {value!r}")
            values[key] = value
        else:
            raise ValueError(f"{key}: unknown key")
    return FetchSettings(**values)


def select_feeds(config: Config, names: list[str] | None) -> list[FeedConfig]:
    """The enabled feeds, or the ones named (each once, in the order given)."""
    if not names:
        return [f for f in config.feeds if f.enabled]
    known = {f.name: f for f in config.feeds}
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(f"{config.path.name}: --feed: no feed named "
                          f"{', '.join(repr(m) for m in missing)} "
                          f"(known: {', '.join(sorted(known)) or 'none'})")
    return [known[n] for n in dict.fromkeys(names)]
