"""Full-text mode: decode a fetched article page and cut the article out of it.

Summary-only feeds (Mydrivers' own RSS gives a teaser) need the page itself.
:func:`decode_page` decodes it the way a browser would for the pages we meet (Chinese sites
still serve GBK); :func:`extract_article` returns the article's HTML without navigation,
related links and footers.  The result goes through ``normalize`` like any feed content.

The extractor is a small readability-style scorer on selectolax (paragraphs vote for their
parent and grandparent, link-heavy blocks lose), chosen over trafilatura to avoid lxml and
five more dependencies; a site that defeats it gets a ``content_selector`` in its rule.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Mapping
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.core.parse import header

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

#: Never article content.
_NOISE_TAGS = frozenset({
    "script", "style", "noscript", "template", "iframe", "form", "nav", "header",
    "footer", "aside", "svg", "button", "select", "input", "textarea", "object",
    "embed", "link", "meta",
})  # fmt: skip
#: class/id words of page furniture (readability's "unlikely candidates", plus the
#: Chinese portals' habits: 相关 = xiangguan, tuijian = recommend, "copyright" footers).
_NEGATIVE = re.compile(
    r"comment|footer|foot\b|\bnav|menu|sidebar|side-?bar|related|relate|recommend|tuijian|"
    r"xiangguan|share|social|copyright|banner|breadcrumb|crumbs|\bads?\b|advert|sponsor|"
    r"popup|login|subscribe|pagination|pager|\bpage[-_]?nav|toolbar|hot-?news|rank|widget|"
    r"masthead|topbar|top-bar|qrcode|\btags?\b",
    re.IGNORECASE,
)
_POSITIVE = re.compile(
    r"article|content|entry|main|post|body|text|story|news[-_]?(?:info|detail|text)|"
    r"detail|artibody|\bcontent\b",
    re.IGNORECASE,
)
_TAG_BONUS = {"article": 10, "main": 5, "div": 5, "section": 3, "pre": 3, "td": 3,
              "blockquote": 3, "form": -3, "ol": -3, "ul": -3, "li": -3, "dl": -3,
              "h1": -5, "h2": -5, "h3": -5, "th": -5}  # fmt: skip
#: A paragraph shorter than this casts no vote (readability uses 25 characters; one
#: Chinese character carries about what three Latin letters do, so 10 here).
_MIN_PARAGRAPH = 10
#: Below this many characters the extraction is treated as failed (None): the feed's
#: own content is better than a fragment.
_MIN_ARTICLE = 60
_COMMAS = re.compile(r"[,，、；;。]")
_LAZY_URL_ATTRS = ("src", "href", "poster", "data-original", "data-src", "data-lazy-src",
                   "data-gif-url", "data-actualsrc")  # fmt: skip


def _class_id(node: LexborNode) -> str:
    attrs = node.attributes
    return f"{attrs.get('class') or ''} {attrs.get('id') or ''}"


def _strip_noise(root: LexborNode) -> None:
    """Delete page furniture; collect disjoint subtrees first, then decompose each once."""
    doomed: list[LexborNode] = []

    def visit(node: LexborNode) -> None:
        for child in node.iter():
            tag = child.tag
            if tag in _NOISE_TAGS:
                doomed.append(child)
                continue
            if tag not in ("body", "article", "main"):
                ci = _class_id(child)
                if ci.strip() and _NEGATIVE.search(ci) and not _POSITIVE.search(ci):
                    doomed.append(child)
                    continue
            visit(child)

    visit(root)
    for node in doomed:
        node.decompose()


def _text_len(node: LexborNode) -> int:
    return len(node.text(deep=True, strip=True))


def _link_density(node: LexborNode) -> float:
    total = _text_len(node)
    if total == 0:
        return 0.0
    links = sum(len(a.text(deep=True, strip=True)) for a in node.css("a"))
    return min(1.0, links / total)


def _score(root: LexborNode) -> tuple[dict[int, float], dict[int, LexborNode]]:
    scores: dict[int, float] = {}
    nodes: dict[int, LexborNode] = {}

    def add(node: LexborNode | None, value: float) -> None:
        if node is None or node.tag in (None, "-document", "html"):
            return
        key = node.mem_id
        if key not in scores:
            nodes[key] = node
            scores[key] = float(_TAG_BONUS.get(node.tag or "", 0))
            ci = _class_id(node)
            if _POSITIVE.search(ci):
                scores[key] += 25
            if _NEGATIVE.search(ci):
                scores[key] -= 25
        scores[key] += value

    seen: set[int] = set()
    for para in root.css("p, pre, td, blockquote, div"):
        if para.mem_id in seen:
            continue  # lexbor can return a node once per matching selector of a list
        seen.add(para.mem_id)
        if para.tag == "div" and para.css_first("p, div, table, ul, ol, pre, blockquote"):
            continue  # a div with block children is a container, not a paragraph
        text = para.text(deep=True, strip=True)
        if len(text) < _MIN_PARAGRAPH:
            continue
        value = 1 + len(_COMMAS.findall(text)) + min(len(text) / 100, 3)
        parent = para.parent
        add(parent, value)
        if parent is not None:
            add(parent.parent, value / 2)
    for key, node in nodes.items():
        scores[key] *= 1 - _link_density(node)
    return scores, nodes


def _clean_candidate(node: LexborNode, title: str) -> None:
    """Inside the chosen block: drop link lists (related stories) and the repeated title."""
    doomed = []
    for child in node.css("ul, ol, div, table, section, p"):
        links = child.css("a")
        if len(links) >= 2 and _link_density(child) > 0.5:
            doomed.append(child)
    for h in node.css("h1"):
        t = h.text(deep=True, strip=True)
        if t and t in title:
            doomed.append(h)
    # Keep only the outermost of nested (or repeated) matches: decomposing a freed
    # subtree crashes.
    unique = {n.mem_id: n for n in doomed}
    ids = set(unique)
    for n in unique.values():
        p = n.parent
        while p is not None and p.mem_id not in ids:
            p = p.parent
        if p is None:
            n.decompose()


def _absolutize(node: LexborNode, base: str) -> None:
    """Resolve URLs against the page (or its <base href>), before the HTML leaves the page."""
    for el in node.css("[src], [href], [poster], [data-original], [data-src], "
                       "[data-lazy-src], [data-gif-url], [data-actualsrc]"):
        attrs = el.attrs
        for name in _LAZY_URL_ATTRS:
            value = attrs.get(name) if name in attrs else None
            if value and not value.lstrip().lower().startswith(("data:", "javascript:", "#")):
                with contextlib.suppress(ValueError):  # a malformed URL stays as it was
                    attrs[name] = urljoin(base, value.strip())


def extract_article(html: str, url: str, content_selector: str | None = None) -> str | None:
    """The article's HTML from a whole page, or None when no article-like block is found.

    With ``content_selector`` (a site rule), the matching elements are the article; if
    the selector matches nothing (the site changed) the generic extractor runs instead.
    """
    tree = LexborHTMLParser(html)
    body = tree.body
    if body is None:
        return None
    base = url
    base_el = tree.css_first("base[href]")
    if base_el is not None:
        href = (base_el.attributes.get("href") or "").strip()
        if href.lower().startswith(("http://", "https://", "/")):
            base = urljoin(url, href)
    title_el = tree.css_first("title")
    title = title_el.text(strip=True) if title_el is not None else ""

    if content_selector:
        found = tree.css(content_selector)
        if found:
            for node in found:
                _absolutize(node, base)
            out = "\n".join(n.html or "" for n in found)
            text_len = sum(_text_len(n) for n in found)
            if text_len >= _MIN_ARTICLE or "<img" in out:
                return out

    _strip_noise(body)
    scores, nodes = _score(body)
    if not scores:
        return None
    best_key = max(scores, key=scores.__getitem__)
    best = nodes[best_key]
    top = scores[best_key]

    # Articles split over sibling blocks: take siblings that scored well too.
    parts = [best]
    parent = best.parent
    if parent is not None and parent.tag != "html":
        threshold = max(10.0, top * 0.2)
        parts = []
        for sib in parent.iter():
            key = sib.mem_id
            if key == best_key or scores.get(key, 0.0) >= threshold:
                parts.append(sib)
            elif sib.tag == "p":
                text = sib.text(deep=True, strip=True)
                if len(text) > 80 and _link_density(sib) < 0.25:
                    parts.append(sib)
    for node in parts:
        _clean_candidate(node, title)
        _absolutize(node, base)
    out = "\n".join(n.html or "" for n in parts)
    if sum(_text_len(n) for n in parts) < _MIN_ARTICLE:
        return None
    return out
