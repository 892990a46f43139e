"""Full-text mode: decode a fetched article page and cut the article out of it.

Summary-only feeds (Mydrivers' own RSS gives a teaser) need the page itself.
:func:`decode_page` decodes it the way a browser would for the pages we meet (Chinese sites
still serve GBK); :func:`extract_article` returns the article's HTML without navigation,
related links and footers.  The result goes through ``normalize`` like any feed content.

A site rule's ``content_selector`` (configured, or a builtin profile's: by host or by the
page's signature) says where the article is.  Otherwise trafilatura finds it, a maintained
extractor in place of the hand-written scorer this module had: issue 19 measured F1 0.953
against 0.867 on a public 181-page benchmark, and 0.897 against 0.709 (35 of 122 pages
empty) on wrapped Chinese posts.  On ``bench/extract.py``'s pages, of the kind the old scorer
was built on, the two tie at 0.99 with what this module adds around trafilatura (lazy images,
bare text, a class-less footer, the heading, short articles: docs/benchmarks.md).
trafilatura is given the decoded page as a string, never a URL: it fetches nothing, so the
private-address guard (``net.netguard``) stays the only way out.
"""

from __future__ import annotations

import codecs
import contextlib
import html as htmllib
import re
from collections.abc import Mapping
from configparser import ConfigParser
from functools import lru_cache
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.core.media import LAZY_ATTRS
from scraper.core.parse import header
from scraper.core.rules import signed_rule

__all__ = ["decode_page", "extract_article"]

# --- decoding ----------------------------------------------------------------------------------

#: WHATWG Encoding labels that name GBK/GB2312; GB18030 is their superset (the httpx and
#: feedparser facts in DESIGN.md: gb2312 decoding loses characters real pages use).
_GB_LABELS = frozenset({
    "gb2312", "gbk", "x-gbk", "gb_2312", "gb_2312-80", "csgb2312", "cp936", "ms936",
    "windows-936", "euc-cn", "chinese", "iso-ir-58", "csiso58gb231280", "gb18030",
})  # fmt: skip
#: Labels the WHATWG Encoding standard maps to windows-1252, as browsers do.
_LATIN1_LABELS = frozenset(
    {"iso-8859-1", "iso8859-1", "latin1", "l1", "us-ascii", "ascii", "cp819", "ibm819"}
)
#: How far into the page to look for <meta charset>.  The HTML standard stops at 1024
#: bytes; Chinese portals put long keyword/description metas first, so look further.
_META_SCAN = 4096
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE
)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label, or None for unknown / non-text codecs."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _GB_LABELS:
        return "gb18030"
    if label in _LATIN1_LABELS:
        return "cp1252"
    if label in ("big5", "big5-hkscs", "cn-big5", "x-x-big5", "csbig5"):
        return "big5hkscs"
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None  # base64, rot13...: a page cannot pick these to break decoding
    return "gb18030" if info.name in ("gbk", "gb2312") else info.name


def _looks_chinese(text: str) -> bool:
    """Whether a non-UTF-8 decode as GB18030 produced mostly CJK, not mojibake."""
    non_ascii = [c for c in text[:4000] if ord(c) > 127]
    if not non_ascii:
        return True
    cjk = sum(1 for c in non_ascii if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f"
              or "\uff00" <= c <= "\uffef")
    return cjk >= 0.6 * len(non_ascii)


def decode_page(body: bytes, headers: Mapping[str, str]) -> str:
    """The page as text: BOM, then the Content-Type charset, then <meta>, then detection.

    A BOM wins first, as in browsers.  Declared charsets decode with replacement (a page
    that lies a little still reads); detection tries strict UTF-8, then GB18030 if the
    result is mostly CJK, then windows-1252.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    content_type = header(headers, "content-type")
    m = _HEADER_CHARSET.search(content_type)
    codec = _codec(m.group(1)) if m else None
    if codec is None:
        m2 = _META_CHARSET.search(body[:_META_SCAN])
        codec = _codec(m2.group(1).decode("ascii", "replace")) if m2 else None
        if codec in ("utf-16-le", "utf-16-be", "utf-16"):
            codec = "utf-8"  # a meta tag readable as ASCII cannot be UTF-16 (HTML standard)
    if codec is not None:
        return body.decode(codec, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = body.decode("gb18030")
        if _looks_chinese(text):
            return text
    except UnicodeDecodeError:
        pass
    return body.decode("cp1252", errors="replace")


# --- extraction --------------------------------------------------------------------------------

#: Below this many characters the extraction is treated as failed (None): the feed's own
#: content is better than a fragment.
_MIN_ARTICLE = 60
#: Attributes holding URLs, resolved against the page before the HTML leaves it.
_URL_ATTRS = ("src", "href", "poster", *LAZY_ATTRS)
_URL_SELECTOR = ", ".join(f"[{a}]" for a in _URL_ATTRS)

#: trafilatura's options.  HTML out (normalize rebuilds and sanitizes it), with images,
#: links, tables and inline formatting; no comment sections, no metadata (the feed has the
#: title and date).  ``deduplicate`` off: its cache is per process, so an article would
#: lose paragraphs it shares with an earlier page of the same worker.
_TRAFILATURA = {
    "output_format": "html",
    "include_images": True,
    "include_links": True,
    "include_tables": True,
    "include_formatting": True,
    "include_comments": False,
    "with_metadata": False,
    "deduplicate": False,
}


#: A site footer's lines: copyright, licence numbers, reprint bans, contacts, site links.
#: The words are those of seed 004's china.org.cn footer and of the portals'; a block that
#: carries one of them at the article's end, and is short, is the site's, not the article's.
_SITE_FOOTER = re.compile(
    r"版权所有|copyright|©|all rights reserved|icp[备证]|公网安备|"
    r"未经.{0,15}(?:授权|许可|同意).{0,15}(?:不得|禁止|严禁)|"
    r"(?:电话|传真|邮箱|e-?mail)\s*[：:]|关于我们|联系我们|网站地图|违法和不良信息举报|"
    r"官方微信|官方微博",
    re.IGNORECASE,
)
#: Longer than this, a trailing block is content whatever words it has.
_FOOTER_BLOCK_MAX = 200


def _trim_site_footer(article: LexborNode) -> None:
    """Drop the run of site-footer blocks that ends the article.

    trafilatura keeps a footer that no class or tag names (``<div class="w2">``): in
    bench/extract.py's class-less layout it cost 0.16 of F1.  Only a trailing run goes, so a
    sentence that quotes a copyright line inside the article stays.
    """
    for block in reversed(list(article.iter())):
        text = block.text(deep=True, strip=True)
        if not text and block.tag != "img" and not block.css_first("img"):
            continue
        if len(text) > _FOOTER_BLOCK_MAX or not _SITE_FOOTER.search(text):
            return
        block.decompose()


#: A dateline: a short line that opens with a date, or names the source or author.
_DATELINE = re.compile(
    r"\d{4}\s*[-年/.]\s*\d{1,2}\s*[-月/.]\s*\d{1,2}|(?:来源|作者|编辑|发布时间)\s*[：:]")
_DATELINE_MAX = 80
#: How many leading blocks may be the page's heading (title, dateline, a share bar's text).
_HEADING_BLOCKS = 3


def _trim_heading(article: LexborNode, title: str) -> None:
    """Drop the title and the dateline that open the extraction: the entry has its own title
    and date, and trafilatura keeps both on pages whose heading sits inside <article>."""
    for block in list(article.iter())[:_HEADING_BLOCKS]:
        text = block.text(deep=True, strip=True)
        if not text:
            continue
        if (title and text in title) or (
                len(text) <= _DATELINE_MAX and _DATELINE.match(text.removeprefix(title).strip())):
            block.decompose()
            continue
        return


def _text_len(node: LexborNode) -> int:
    return len(node.text(deep=True, strip=True))


def _base(tree: LexborHTMLParser, url: str) -> str:
    """The page's URL, or its <base href> resolved against it."""
    base_el = tree.css_first("base[href]")
    if base_el is not None:
        href = (base_el.attributes.get("href") or "").strip()
        if href.lower().startswith(("http://", "https://", "/")):
            return urljoin(url, href)
    return url


def _absolutize(node: LexborNode, base: str) -> None:
    """Resolve URLs against the page, and put a lazy image's real URL in ``src``.

    trafilatura reads only ``src`` and ``data-src*``; ZAKER and IT之家 keep the real URL in
    ``data-original`` behind a loading GIF in ``src`` (``core.media.LAZY_ATTRS``).
    """
    for el in node.css(_URL_SELECTOR):
        attrs = el.attrs
        for name in _URL_ATTRS:
            value = attrs.get(name) if name in attrs else None
            if value and not value.lstrip().lower().startswith(("data:", "javascript:", "#")):
                with contextlib.suppress(ValueError):  # a malformed URL stays as it was
                    attrs[name] = urljoin(base, value.strip())
        if el.tag == "img":
            lazy = next((attrs[a] for a in LAZY_ATTRS if a in attrs and attrs[a]
                         and not attrs[a].lstrip().lower().startswith("data:")), None)
            if lazy:
                attrs["src"] = lazy
                for name in LAZY_ATTRS:
                    if name in attrs:
                        del attrs[name]


#: Phrasing elements: a run of them with bare text, between blocks, reads as a paragraph.
_INLINE = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "del", "dfn", "em", "font", "i",
    "img", "ins", "kbd", "mark", "q", "s", "samp", "small", "span", "strike", "strong",
    "sub", "sup", "time", "u", "var", "wbr", "zkspan",
})  # fmt: skip


def _wrap_bare_text(body: LexborNode) -> None:
    """Bare text between blocks becomes a <p>, as a browser shows it.

    ZAKER writes the paragraph after an image straight into the wrapper, after the image's
    div (../shared's ZAKER posts); trafilatura drops such text: recall 0.58-0.90 on four of
    the seven ZAKER corpus posts in bench/extract.py.  Containers deepest first, so a run that
    moves never holds a container still to visit.
    """
    for box in reversed(body.css("div, section, article, main, td, li, blockquote")):
        run: list[LexborNode] = []
        kids = list(box.iter(include_text=True))
        if all(k.tag == "-text" or k.tag in _INLINE for k in kids):
            continue  # a paragraph already, to any extractor
        for kid in [*kids, None]:
            if kid is not None and (kid.tag == "-text" or kid.tag in _INLINE):
                run.append(kid)
                continue
            if any(r.tag == "-text" and (r.text_content or "").strip() for r in run):
                html = "".join(htmllib.escape(r.text_content or "", quote=False)
                               if r.tag == "-text" else r.html or "" for r in run)
                para = LexborHTMLParser(f"<p>{html}</p>").css_first("p")
                if para is not None:
                    run[0].insert_before(para)
                    for r in run:
                        r.decompose()
            run = []


def _decompose_outermost(nodes: list[LexborNode]) -> None:
    """Delete each node not inside another one of ``nodes`` (freeing a freed node crashes)."""
    ids = {n.mem_id for n in nodes}
    for node in nodes:
        parent = node.parent
        while parent is not None and parent.mem_id not in ids:
            parent = parent.parent
        if parent is None:
            node.decompose()


def _by_selector(tree: LexborHTMLParser, selector: str, base: str) -> str | None:
    found = tree.css(selector)
    if not found:
        return None
    for node in found:
        _absolutize(node, base)
    out = "\n".join(n.html or "" for n in found)
    if sum(_text_len(n) for n in found) >= _MIN_ARTICLE or "<img" in out:
        return out
    return None


@lru_cache(maxsize=1)
def _trafilatura_config() -> ConfigParser:
    """trafilatura's defaults, but a short Chinese article counts as an article.

    Below MIN_EXTRACTED_SIZE characters trafilatura distrusts its result and falls back to a
    baseline that returns the whole <article> (title, dateline, footer) as one paragraph.
    Its default, 250, is a few English sentences; one Chinese character carries about what
    three Latin letters do (the ratio the old extractor's thresholds used), so 80.
    """
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "80")
    return config


def _generic(tree: LexborHTMLParser, body: LexborNode, base: str) -> str | None:
    """trafilatura on the page, its URLs already resolved; the repeated <h1> title dropped."""
    import trafilatura  # here: ~0.4 s and lxml to import, paid only by full-text feeds

    _absolutize(body, base)
    _wrap_bare_text(body)
    out = trafilatura.extract(tree.html or "", config=_trafilatura_config(), **_TRAFILATURA)
    if not out:
        return None
    article = LexborHTMLParser(out).body
    if article is None:
        return None
    _trim_site_footer(article)
    if _text_len(article) < _MIN_ARTICLE:
        return None
    title_el = tree.css_first("title")
    _trim_heading(article, title_el.text(strip=True) if title_el is not None else "")
    return article.inner_html


def extract_article(html: str, url: str, content_selector: str | None = None) -> str | None:
    """The article's HTML from a whole page, or None when no article is found.

    The elements ``content_selector`` matches are the article; without one, the selector
    of the builtin profile whose signature the page carries (a 快科技 page on a mirror).
    If it matches nothing (the site changed) or no selector applies, trafilatura decides,
    after the signed profile's ``remove`` selectors have cut the site's boilerplate.
    """
    tree = LexborHTMLParser(html)
    body = tree.body
    if body is None:
        return None
    base = _base(tree, url)
    signed = signed_rule(html, tree)
    if not content_selector and signed is not None:
        content_selector = signed.content_selector
    if content_selector:
        out = _by_selector(tree, content_selector, base)
        if out is not None:
            return out
    if signed is not None and signed.remove:
        # The site's boilerplate goes before trafilatura, which drops the classes and
        # markers normalize would know it by (快科技's p.url, p.bqian, end image).
        _decompose_outermost(tree.css(", ".join(signed.remove)))
    return _generic(tree, body, base)
