"""Hexo posts in the layout of ../shared/seeds/000-003, minus that publisher's bugs.

The seeds' front matter is reproduced byte for byte, then the article inside
``<div>   `` ... ``  </div>``.  What the seeds' publisher got wrong and we do not:

- the title keeps its real characters (it turned “傻亮” into ``_傻亮_``); only the file name
  is sanitized, and the YAML quoting is exact for any title (Hexo reads it with js-yaml);
- ``{`` and ``}`` in the body become entities: Hexo renders bodies through Nunjucks, where
  ``{{`` or ``{%`` in an article breaks the whole site build;
- a story is published once: duplicates are skipped, and the ``exports`` table keeps what
  was written where, so a re-export neither duplicates a post nor moves it.  A path has
  one owner: when a better member takes a cluster's post over (issue 19), the record moves
  with it, and the old owner, exported with the duplicates, gets a post of its own.

File names are safe for Linux, Windows, macOS and Hexo (see :func:`safe_name`); two entries
with one title get distinct names, and an entry keeps its recorded path forever (unless a
better member of its cluster takes that post over, above).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from scraper.config import Config, FeedConfig
from scraper.core import rules
from scraper.core.media import ImageRule
from scraper.export import Selection, entry_time, feed_config, replacing, rfc822
from scraper.storage import exports as stored
from scraper.storage.reads import Connection

#: The wrapper around the article, exactly as the seeds have it.
BODY_OPEN = "<div>   \n"
BODY_CLOSE = "  \n</div>\n            "

#: A file name's stem is cut to this many UTF-8 bytes (Linux allows 255 per name; leave room
#: for the disambiguating suffix and ".md", and for Windows' 260-character paths).
MAX_NAME_BYTES = 150

#: Characters a file name may not hold: reserved on Windows (<>:"/\|?*), or meaningful in a
#: URL path that Hexo builds from the file name (# ? %), or quotes, which the seeds' site
#: also replaced with "_" (“傻亮” -> _傻亮_).
_NAME_UNSAFE = re.compile(r"[<>:\"/\\|?*#%'“”‘’`\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"\s+")
#: Elements whose whitespace is content (see escape_body).
_VERBATIM = re.compile(r"<(/?)(?:pre|textarea)\b", re.IGNORECASE)
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", "clock$",
                     *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}

#: Characters a single-quoted YAML scalar cannot carry exactly: line breaks (YAML folds
#: them; PyYAML also breaks lines at NEL, LS and PS, which js-yaml does not), and characters
#: YAML forbids in a stream or that a reader may swallow (BOM).
_NEEDS_DOUBLE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
#: Words YAML 1.1 (PyYAML) or 1.2 (js-yaml) reads as something other than a string.
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ""}
_PLAIN_SAFE = re.compile(r"[^\W\d_][^:#,\[\]{}&*!|>'\"%@`\s]*(?: [^:#,\[\]{}&*!|>'\"%@`\s]+)*")


#: A post to record and write: entry id, path, content hash, text ("" when the file is left
#: as it is), and the member whose post the entry took over (None if none).
Pending = tuple[int, str, str, str, int | None]


@dataclass
class HexoReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    paths: list[Path] = field(default_factory=list)  # the files written, in order
    #: Posts of entries that became duplicates after their post was written: (entry,
    #: original, file).  Left in place (the folder is the user's), and said.
    stale: list[tuple[int, int, Path]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.new + self.updated


# -- YAML ------------------------------------------------------------------------------------

def yaml_quoted(text: str) -> str:
    """``text`` as a YAML scalar that reads back as exactly ``text``, single-quoted if it can.

    Single quotes (the seeds' style) escape nothing but ``'`` (doubled), so they carry any
    one-line title as is.  A title with a line break or a control character cannot be
    single-quoted exactly; it gets a double-quoted scalar with escapes, which both PyYAML and
    js-yaml read back unchanged and which keeps the field on one line.
    """
    if not _NEEDS_DOUBLE.search(text):
        return "'" + text.replace("'", "''") + "'"
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif _NEEDS_DOUBLE.match(ch):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def yaml_scalar(text: str) -> str:
    """Plain when the seeds would write it plain (``ZAKER``, ``快科技（原驱动之家）``), else quoted.

    Plain only for text that starts with a letter, holds no YAML indicator, and is not a
    word that YAML 1.1 or 1.2 reads as a boolean or null; anything else is quoted, so a
    category or author never changes type or breaks the front matter.
    """
    if (_PLAIN_SAFE.fullmatch(text) and text.lower() not in _YAML_WORDS
            and yaml.safe_load(f"k: {text}") == {"k": text}):
        return text
    return yaml_quoted(text)


# -- the post --------------------------------------------------------------------------------

def escape_body(html: str) -> str:
    """Make article HTML inert for Hexo's renderers without changing what a browser shows.

    Braces go to entities for Nunjucks; backticks too, because Hexo's code-fence filter
    rewrites a line that starts with three of them before any HTML is looked at.  No line
    may be blank: Markdown ends an HTML block at a blank line and reads the rest of the
    article as Markdown (``_x_`` turning into emphasis, indented lines into code).  Between
    elements a blank line means nothing and is dropped; inside ``<pre>``/``<textarea>`` it
    is content, so its line break is written as ``&#10;``, which renders the same.
    """
    html = html.replace("{", "&#123;").replace("}", "&#125;").replace("`", "&#96;")
    out: list[str] = []
    depth = 0
    for line in html.split("\n"):
        if line.strip() or not out:
            if line.strip():
                out.append(line)
        elif depth > 0:
            out[-1] += "&#10;" + line
        for match in _VERBATIM.finditer(line):
            depth = max(0, depth + (-1 if match.group(1) else 1))
    return "\n".join(out)


def proxied(url: str | None, rule: rules.SiteRule | None) -> str | None:
    """The image URL through the rule's image proxy, the way normalize rewrites ``<img>``
    (an URL already behind the proxy is left alone)."""
    return url if not url or rule is None else ImageRule.of(rule).proxied(url)


def post_author(feed_name: str, feed: FeedConfig | None) -> str:
    """The site (the feed's ``author``), as in the seeds; the feed's name when unset."""
    return feed.author if feed is not None and feed.author else feed_name


def render_post(entry: Mapping[str, Any], feed: FeedConfig | None = None,
                rule: rules.SiteRule | None = None) -> str:
    """One post's text, in the seeds' layout; pure, so tests can check it without files."""
    title = entry.get("title") or ""
    categories = list(feed.categories) if feed is not None else []
    image = proxied(entry.get("image"), rule) or ""
    lines = ["", "---", f"title: {yaml_quoted(title)}"]
    if categories:
        lines.append("categories: ")
        lines.extend(f" - {yaml_scalar(c)}" for c in categories)
    else:
        lines.append("categories: []")
    lines += [
        f"headimg: {yaml_quoted(image)}",
        f"author: {yaml_scalar(post_author(entry['feed'], feed))}",
        "comments: false",
        f"date: {rfc822(entry_time(entry))}",
        f"thumbnail: {yaml_quoted(image)}",
        "---",
        "",
        "",
    ]
    return "\n".join(lines) + BODY_OPEN + escape_body(entry.get("content_html") or "") + BODY_CLOSE


# -- file names ------------------------------------------------------------------------------

def safe_name(text: str, fallback: str = "untitled") -> str:
    """One path component from a title or category, safe on Linux, Windows, macOS and Hexo.

    NFC (macOS would otherwise store a decomposed name that compares unequal), no reserved
    or URL-special characters (replaced by ``_`` like the seeds' site did with quotes), no
    ASCII dots (the seeds' site dropped them: ``12.88元`` is ``1288元``; a name of dots is
    no name), no leading ``_``/``.``/``-`` (hidden from Hexo, or read as an option), no
    trailing dot or space (Windows drops them), not a Windows device name, and at most
    MAX_NAME_BYTES bytes of UTF-8.
    """
    name = unicodedata.normalize("NFC", text)
    name = _NAME_UNSAFE.sub("_", name).replace(".", "")
    name = _SPACES.sub(" ", name).strip()
    name = name.lstrip("_-~ ").rstrip(" ~")
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        name = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip()
    if not name:
        name = fallback
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name += "_"
    return name


def identity(entry: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of the entry itself (feed + key), for unique names."""
    digest = hashlib.sha256(f"{entry['feed']}\0{entry['entry_key']}".encode()).hexdigest()
    return digest[:8]


def planned_path(entry: Mapping[str, Any], feed: FeedConfig | None, flat: bool) -> str:
    """Where a post goes the first time (relative, POSIX): categories, then the title."""
    folders = [] if flat or feed is None else [safe_name(str(c), "_") for c in feed.categories]
    folders = [f for f in folders if f != "_"]
    return str(PurePosixPath(*folders, safe_name(entry.get("title") or "") + ".md"))


def _path_key(path: str) -> str:
    """Two paths that are one file on a case-insensitive (Windows, macOS) file system."""
    return unicodedata.normalize("NFC", path).casefold()


def _with_suffix(path: str, suffix: str) -> str:
    p = PurePosixPath(path)
    return str(p.with_name(f"{p.stem}-{suffix}{p.suffix}"))


# -- the export ------------------------------------------------------------------------------

def target_name(directory: Path, flat: bool) -> str:
    """The ``exports.target`` for one output directory and layout."""
    return f"hexo{'-flat' if flat else ''}:{directory.resolve()}"


def export_hexo(conn: Connection, config: Config | None, directory: str | Path, *,
                flat: bool = False, rewrite_all: bool = False,
                selection: Selection | None = None, record: bool = True) -> HexoReport:
    """Write the posts that are new (or changed) since the last export into ``directory``.

    Incremental by default: an entry is written when it has no ``exports`` row for this
    target, or was updated since, and its post text differs from what was written.
    ``rewrite_all`` looks at every selected entry and rewrites a file that is missing or
    differs on disk.  Either way an entry keeps the path recorded for it.  ``record=False``
    (a read-only database) writes the posts without recording them: the next export looks
    at them again and adopts the files it finds with the same text.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    selection = selection or Selection()
    target = target_name(directory, flat)
    recorded = stored.recorded(conn, target)
    taken: dict[str, int] = {_path_key(r.path): eid for eid, r in recorded.items() if r.path}
    chunks = stored.selected_chunks(conn, selection,
                                    pending_for=None if rewrite_all else target)

    report = HexoReport()
    pending: list[Pending] = []

    for chunk in chunks:
        # With the duplicates selected too, each member keeps its own post.
        inherited = ({} if selection.include_duplicates
                     else _inherited_paths(conn, chunk, recorded))
        for entry in chunk:
            _plan_post(entry, config, directory, flat, rewrite_all, recorded, inherited, taken,
                       report, pending)
            if len(pending) >= 100:
                _flush(conn, directory, target, pending, report, record)
    _flush(conn, directory, target, pending, report, record)
    if not selection.include_duplicates:
        report.stale = [(entry, original, directory / path) for entry, original, path
                        in stored.duplicates_with_files(conn, target)
                        if (directory / path).exists()]
    return report


def _inherited_paths(conn: Connection, chunk: list[dict[str, Any]],
                     recorded: Mapping[int, stored.Recorded]) -> dict[int, tuple[str, int]]:
    """For each entry of ``chunk`` this target has no post of: the post of a member of its
    cluster, if the target has one, and that member.  When a better member becomes a
    cluster's root (the full article after its teaser, issue 19), the story's post is
    rewritten in place with it, rather than a second post appearing beside the teaser's; the
    member's record of the post goes to the root (see ``stored.Record``)."""
    new = [int(e["id"]) for e in chunk if int(e["id"]) not in recorded]
    out: dict[int, tuple[str, int]] = {}
    if not new:
        return out
    for root, members in stored.duplicates_of(conn, new).items():
        for member in members:
            known = recorded.get(member["id"])
            if known is not None and known.path:
                out[root] = (known.path, member["id"])
                break
    return out


def _plan_post(entry: dict[str, Any], config: Config | None, directory: Path, flat: bool,
               rewrite_all: bool, recorded: Mapping[int, stored.Recorded],
               inherited: Mapping[int, tuple[str, int]], taken: dict[str, int],
               report: HexoReport, pending: list[Pending]) -> None:
    """Decide one entry's post: unchanged, rewritten where it was (or where its cluster's
    post was), or new at a free path; append it to ``pending``."""
    feed = feed_config(config, entry["feed"])
    rule = rules.resolve_rule(entry.get("url"), feed.rule if feed else None,
                              config.sites if config else {})
    text = render_post(entry, feed, rule)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    entry_id = int(entry["id"])
    known = recorded.get(entry_id)
    member: int | None = None  # whose post this entry takes over
    if known is not None and known.path:
        path = known.path
        if known.content_hash == digest and not (
                rewrite_all and not _same_file(directory / path, text)):
            report.unchanged += 1
            # refresh exported_at, so the entry is not looked at again until it changes
            pending.append((entry_id, path, digest, "", None))
            return
        report.updated += 1
    elif entry_id in inherited:
        path, member = inherited[entry_id]
        taken[_path_key(path)] = entry_id
        report.updated += 1
    else:
        path = _free_path(directory, planned_path(entry, feed, flat), entry, text, taken)
        taken[_path_key(path)] = entry_id
        report.new += 1
    pending.append((entry_id, path, digest, text, member))


def _same_file(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _free_path(directory: Path, wanted: str, entry: Mapping[str, Any], text: str,
               taken: Mapping[str, int]) -> str:
    """``wanted``, or a stable variant of it when another entry or a foreign file has it.

    A file already on disk with exactly this post's text is ours (an export that crashed
    after writing, before recording): it is adopted rather than duplicated.
    """
    candidates = [wanted, _with_suffix(wanted, identity(entry)),
                  _with_suffix(wanted, f"{identity(entry)}-{entry['id']}")]
    for path in candidates:
        if _path_key(path) in taken:
            continue
        on_disk = directory / path
        if on_disk.exists() and not _same_file(on_disk, text):
            continue
        return path
    raise RuntimeError(f"no free file name for entry {entry['id']} near {wanted!r}")


def _flush(conn: Connection, directory: Path, target: str,
           pending: list[Pending], report: HexoReport,
           record: bool = True) -> None:
    """Record and write a batch in one transaction: a crash leaves no record without file.

    A file written just before a crash, whose record rolled back, is adopted by the next
    run (see ``_free_path``), so it never turns into a second copy of the post.
    """
    if not pending:
        return
    recording = (stored.recording(conn, target) if record
                 else contextlib.nullcontext(_not_recorded))
    with recording as remember:
        for entry_id, path, digest, text, taken_from in pending:
            remember(entry_id, path, digest, taken_from)
            if text:
                with replacing(directory / path) as out:
                    out.write(text)
                report.paths.append(directory / path)
    pending.clear()


def _not_recorded(entry_id: int, path: str | None, content_hash: str,
                  taken_from: int | None = None) -> None:
    """The record of an export on a read-only database: nothing."""
