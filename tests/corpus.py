"""The shared corpus and seeds as data, and builders that serve them as real feeds.

Used by the tests and by bench/ (which puts tests/ on sys.path).  The posts are Hexo
exports (see ../shared/seeds/README.md): front matter, then the article HTML in <div>.

../shared sits beside the repository in CI, not in a user's clone.  Where it is absent, a
test that reads it is skipped (:data:`SHARED_REASON`) instead of failing: the loaders skip
when a test calls them, and a module-level constant (``POSTS = corpus_posts()``, evaluated
while pytest collects) gets an :class:`Absent` sequence that reads as empty during
collection and skips the test that first uses it.  Where ../shared exists, the loaders
return plain lists as they always did.  The tests that must run everywhere use the
repository's own fixtures (tests/fixtures/, tests/test_sources.py).
"""

from __future__ import annotations

import email.utils
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, overload
from xml.sax.saxutils import escape

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SCRAPER_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "posts"
SEEDS = SHARED / "seeds"

SHARED_REASON = "../shared not found: the corpus tests run where it is (CI)"

#: Set by conftest.py while a test runs (setup, call, teardown); False while pytest
#: imports test modules and outside pytest (bench/).
IN_TEST = False
#: Test modules that met an :class:`Absent` at import: conftest.py gives their empty
#: parametrizations :data:`SHARED_REASON` instead of pytest's generic one.
ABSENT_IN: set[str] = set()

T = TypeVar("T")


def shared_present() -> bool:
    return CORPUS.is_dir() and SEEDS.is_dir()


def skip_absent() -> NoReturn:
    import pytest  # here, not at the top: bench/ imports this module without pytest

    pytest.skip(SHARED_REASON)


class Absent(Sequence[Any]):
    """What a loader returns for ../shared when it is missing and no test is running.

    Empty while pytest collects (a parametrize over it has no cases, a comprehension over it
    gives ``[]``), and a skip as soon as a running test reads it.
    """

    def _check(self) -> None:
        if IN_TEST:
            skip_absent()

    def __len__(self) -> int:
        self._check()
        return 0

    def __iter__(self) -> Iterator[Any]:
        self._check()
        return iter(())

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Absent: ...
    def __getitem__(self, index: int | slice) -> Any:
        self._check()
        if isinstance(index, slice):
            return self
        raise IndexError(f"{SHARED_REASON}: no item {index}")

    def __add__(self, other: object) -> Absent:
        self._check()
        return self

    __radd__ = __add__

    def __repr__(self) -> str:
        return f"Absent({SHARED_REASON!r})"


def _absent() -> Absent:
    """Skip inside a test; during collection, remember the calling test module."""
    if IN_TEST:
        skip_absent()
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is not None:
        ABSENT_IN.add(str(Path(frame.f_code.co_filename).resolve()))
    return Absent()


def when_shared(load: Callable[[], T]) -> T | Absent:
    """``load()`` where ../shared exists, else :class:`Absent` (for module-level data)."""
    return load() if shared_present() else _absent()


def seed_text(number: str) -> str:
    """The text of seed ``number`` ("004"); skips the calling test without ../shared."""
    if not shared_present():
        skip_absent()
    return next(SEEDS.glob(f"{number}_*.txt")).read_text(encoding="utf-8")


@dataclass
class Post:
    path: Path
    title: str
    categories: list[str]
    headimg: str | None
    author: str
    date: datetime
    body: str  # the HTML inside the <div> wrapper
    front: dict = field(default_factory=dict)  # the front matter as the file has it

    @property
    def site(self) -> str:
        return self.categories[1] if len(self.categories) > 1 else self.author

    @property
    def slug(self) -> str:
        return self.path.stem


def parse_post(path: Path) -> Post:
    text = path.read_text(encoding="utf-8")
    _, front_text, rest = text.split("---", 2)
    front = yaml.safe_load(front_text)
    body = rest.strip()
    if body.startswith("<div>"):
        body = body[len("<div>") :]
    if body.endswith("</div>"):
        body = body[: -len("</div>")]
    date = email.utils.parsedate_to_datetime(front["date"]).astimezone(UTC)
    return Post(
        path=path,
        title=str(front["title"]),
        categories=[str(c) for c in front.get("categories") or []],
        headimg=front.get("headimg"),
        author=str(front.get("author")),
        date=date,
        body=body.strip(),
        front=front,
    )


def corpus_posts() -> list[Post]:
    """The twelve corpus posts, in a stable order (see the module docstring without them)."""
    if not shared_present():
        return _absent()  # type: ignore[return-value]
    return [parse_post(p) for p in sorted(CORPUS.rglob("*.md"))]


def seed_posts() -> list[Post]:
    """Seeds 000-003 (004 is a scraped page, not a post)."""
    if not shared_present():
        return _absent()  # type: ignore[return-value]
    return [parse_post(p) for p in sorted(SEEDS.glob("00[0-3]_*.txt"))]


def find_post(posts: list[Post], title_start: str, site: str | None = None) -> Post:
    """The post whose title starts with ``title_start`` (and from ``site``, if given)."""
    matches = [
        p
        for p in posts
        if p.title.startswith(title_start)
        and (site is None or site in p.path.parts or p.site == site)
    ]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} posts match {title_start!r} (site {site!r})")
    return matches[0]


#: Reprint groups from ../shared/corpus/README.md, as (site dir, title prefix) pairs.
DUPLICATE_GROUPS: dict[str, list[tuple[str, str]]] = {
    "00后少年": [("ZAKER", "00后少年40分钟"), ("快科技（原驱动之家）", "00后少年40分钟")],
    "12.88元": [
        ("ZAKER", "12.88元买入，夫妻俩转手卖了7万多元，结果…..."),
        ("ZAKER", "12.88元买入，夫妻俩转手卖了7万多元，结果来了"),
    ],
    "龙芯 PC": [("ZAKER", "100% 国产芯"), ("快科技（原驱动之家）", "100%国产芯")],
}
DISTINCT_GROUPS: dict[str, list[tuple[str, str]]] = {
    "密室逃脱": [("ZAKER", "00后女生每周"), ("快科技（原驱动之家）", "00后女生1周")],
    "小米 × 徕卡": [
        ("ZAKER", "师承华为"),
        ("ZAKER", "雷军：是徕卡"),
        ("快科技（原驱动之家）", "小米徕卡首款"),
        ("快科技（原驱动之家）", "雷军：小米和徕卡"),
    ],
}


def group_posts(posts: list[Post], members: list[tuple[str, str]]) -> list[Post]:
    out = []
    for site, prefix in members:
        found = [p for p in posts if site in p.path.parts and p.title.startswith(prefix)]
        if len(found) > 1:
            found = [p for p in found if p.title == prefix]
        if len(found) != 1:
            raise LookupError(f"{len(found)} corpus posts match {site}/{prefix}")
        out.append(found[0])
    return out


def post_link(post: Post, base: str = "https://example.org") -> str:
    """A stable, distinct article link for a post (the corpus does not record the originals)."""
    return f"{base}/{post.site}/{post.slug}.html"


def rss_item(post: Post, link: str, guid: str | None = None, body: str | None = None) -> str:
    body = post.body if body is None else body
    return (
        "<item>"
        f"<title>{escape(post.title)}</title>"
        f"<link>{escape(link)}</link>"
        f'<guid isPermaLink="false">{escape(guid or link)}</guid>'
        f"<author>{escape(post.author)}</author>"
        f"<pubDate>{email.utils.format_datetime(post.date, usegmt=True)}</pubDate>"
        f"<description><![CDATA[{body}]]></description>"
        "</item>"
    )


def _need(items: Sequence[object]) -> None:
    """A feed of nothing, without ../shared, is corpus data that was not there: skip."""
    if not items and IN_TEST and not shared_present():
        skip_absent()


def rss_feed(
    title: str, items: list[str], encoding: str = "utf-8", link: str = "https://example.org/"
) -> bytes:
    _need(items)
    xml = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<description>{escape(title)}</description>" + "".join(items) + "</channel></rss>"
    )
    return xml.encode("gb18030" if encoding.lower() in {"gbk", "gb2312", "gb18030"} else encoding)


def atom_entry(post: Post, link: str, entry_id: str | None = None) -> str:
    when = post.date.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "<entry>"
        f"<title>{escape(post.title)}</title>"
        f'<link href="{escape(link)}"/>'
        f"<id>{escape(entry_id or link)}</id>"
        f"<updated>{when}</updated><published>{when}</published>"
        f"<author><name>{escape(post.author)}</name></author>"
        f'<content type="html">{escape(post.body)}</content>'
        "</entry>"
    )


def atom_feed(title: str, entries: list[str]) -> bytes:
    _need(entries)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:feed:{escape(title)}</id>"
        "<updated>2022-06-28T00:00:00Z</updated>" + "".join(entries) + "</feed>"
    ).encode()


def posts_feed(
    posts: list[Post], title: str = "corpus", base: str = "https://example.org"
) -> bytes:
    """All ``posts`` as one RSS 2.0 feed, each linked with :func:`post_link`."""
    _need(posts)
    return rss_feed(title, [rss_item(p, post_link(p, base)) for p in posts])


def cipher(text: str, rng: random.Random) -> str:
    """Map each CJK character through a random substitution over the 20k-character CJK block.

    Text drawn from a corpus of 7k characters shares 4-grams with its siblings far more than
    unrelated news does (mean Jaccard 0.09 against 0.006 between the corpus' distinct
    articles); one substitution per article keeps its internal statistics and removes that
    overlap, so the LSH sees what it sees in production: almost no unrelated candidates.
    (bench/dedup_scale.py and bench/soak.py build their articles with it.)"""
    table: dict[str, str] = {}
    out = []
    for ch in text:
        if "\u4e00" <= ch <= "\u9fff":
            ch = table.setdefault(ch, chr(rng.randint(0x4E00, 0x9FFF)))
        out.append(ch)
    return "".join(out)
