"""The normalize stage: raw feed/site HTML in, clean and safe article HTML plus text out.

* One lexbor parse, then one Python walk that *rebuilds* the article instead of mutating the
  tree: the walk sees every node once anyway (lazy images, URLs, empty paragraphs, credit
  lines), and a fresh, canonical structure makes the result idempotent and cheap.
* The rebuilt structure is flat: ``<div>`` soup is unwrapped, runs of bare inline content
  (ZAKER puts the paragraph after an image straight into the wrapper's parent) become
  ``<p>``, empty paragraphs disappear.
* nh3 sanitizes *last* and is the security boundary (``core.sanitize``).
* ``normalize`` is pure, with picklable values in and out: it runs in worker processes.

Images and media are in ``core.media``; the allow-list, nh3 and the URL checks in
``core.sanitize``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.core.media import DIGITS as _DIGITS
from scraper.core.media import LAZY_ATTRS, ImageRule
from scraper.core.media import img as _img
from scraper.core.media import media as _media
from scraper.core.rules import SiteRule, signed_rule
from scraper.core.sanitize import ALLOWED_TAGS, CLEAN_CONTENT_TAGS, UrlResolver
from scraper.core.sanitize import CLEANER as _CLEANER
from scraper.core.sanitize import esc_attr as _esc_attr

__all__ = ["Normalized", "normalize", "ALLOWED_TAGS", "LAZY_ATTRS", "SUMMARY_CHARS"]


@dataclass(frozen=True)
class Normalized:
    """What the normalize stage stores for an entry (content_html, content_text, image, summary)."""

    html: str
    text: str
    image: str | None
    summary: str


#: "About the first 200 characters" (issue 3); a sentence end within the last half of the
#: window is preferred to a hard cut.
SUMMARY_CHARS = 200


# --- tag classes for the walk ----------------------------------------------------------------

#: Dropped with everything inside (executable, interactive, or not article content).
_DROP = CLEAN_CONTENT_TAGS | {
    "meta", "link", "base", "input", "option", "optgroup", "datalist", "param", "track",
    "map", "area", "picture-source", "form-control", "portal", "slot", "menu",
}  # fmt: skip
#: Containers that are unwrapped: their children join the surrounding flow.
_FLOW = frozenset({
    "div", "section", "article", "main", "header", "footer", "nav", "aside", "center",
    "form", "fieldset", "details", "summary", "address", "hgroup", "dl", "dt", "legend",
    "body", "html", "picture", "search", "dd", "figcaption",
})  # fmt: skip
_PARA = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
#: Inline tags that are kept, mapped to the tag emitted.
_INLINE_KEEP: dict[str, str] = {
    "strong": "strong", "em": "em", "b": "b", "i": "i", "u": "u", "s": "s", "code": "code",
    "sub": "sub", "sup": "sup", "strike": "s", "del": "s",
}  # fmt: skip
#: Elements whose whole text is tested against a rule's drop_lines.
_LINE_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "figcaption", "td", "dd",
     "span", "zkspan", "font", "a", "strong", "b", "em", "small"}
) | _FLOW  # fmt: skip
#: drop_lines is for credit lines and notices; a longer element is content.  Keeps a
#: user's pattern like "转载.*" from deleting a whole wrapper div.
_LINE_MAX = 300

_WS = re.compile(r"[ \t\n\r\f]+")
_BR = "\x00"  # a <br> in a block's text parts (see "the walk"); the parser never emits NUL


def _collapse(s: str) -> str:
    """Whitespace runs to one space.

    Most block text needs nothing (a single space is the common run: ZAKER spaces every
    digit and Latin word), and substring tests cost far less than a regex pass that
    replaces each space with itself (measured: half the walk's regex time).
    """
    if "\n" in s or "  " in s or "\t" in s or "\r" in s or "\f" in s:
        return _WS.sub(" ", s)
    return s


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class _Compiled:
    """A rule in the form the walk uses, built once per rule per process."""

    remove: str | None
    drop: re.Pattern[str] | None
    images: ImageRule


@lru_cache(maxsize=256)
def _compile(rule: SiteRule) -> _Compiled:
    drop = "|".join(f"(?:{p})" for p in rule.drop_lines)
    return _Compiled(
        remove=", ".join(rule.remove) or None,
        drop=re.compile(drop) if drop else None,
        images=ImageRule.of(rule),
    )


class _Ctx(UrlResolver):
    """Walk state: the compiled rule, the base URL (``url()``) and what the walk found."""

    __slots__ = ("rule", "images", "removed", "lead", "poster")

    def __init__(self, rule: _Compiled, base: str | None, removed: set[int]) -> None:
        super().__init__(base)
        self.rule = rule
        self.images = rule.images
        self.removed = removed
        self.lead: str | None = None
        self.poster: str | None = None

    def dropped(self, text: str, clean: bool = False) -> bool:
        """Whether ``text`` (one element's whole text) is a line the rule drops.

        ``clean``: the text is already collapsed and trimmed (a block's text).
        """
        drop = self.rule.drop
        if drop is None or len(text) > 2 * _LINE_MAX:
            return False
        t = text if clean else _collapse(text.replace(_BR, " ")).strip()
        return bool(t) and len(t) <= _LINE_MAX and drop.fullmatch(t) is not None


# --- the walk --------------------------------------------------------------------------------
#
# Text is appended raw and whitespace is collapsed once per block, not per text node (a
# regex call per node was a third of the walk's time).  A <br> is "\x00" in the text
# parts so that the collapse cannot eat it; it becomes "\n" at the end of the block.

_BR_SPACES = re.compile(r" ?\x00[ \x00]*")
#: Node kinds the walk never descends into (comments, doctype) plus dropped tags.
_IGNORE = _DROP | {"-comment", "-doctype", "-document", None}


def _inline(node: LexborNode, ctx: _Ctx, out: list[str], text: list[str]) -> bool:
    """Emit ``node``'s children as phrasing content; True if an image or media was kept."""
    media = False
    removed = ctx.removed
    kinds = _KIND
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            s = child.text_content
            if s:
                # _esc inlined: this line runs for every text node.
                out.append(s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
                text.append(s)
            continue
        kind = kinds.get(tag, _K_INLINE)
        if kind == _K_IGNORE or (removed and child.mem_id in removed):
            continue
        if kind == _K_BR:
            out.append("<br>")
            text.append(_BR)
        else:
            media = _inline_one(child, tag, ctx, out, text) or media
    return media


def _inline_one(node: LexborNode, tag: str, ctx: _Ctx, out: list[str], text: list[str]) -> bool:
    """One phrasing element: kept (a, strong, ...), unwrapped (span, font, ...) or dropped."""
    if tag == "img":
        return _img(node, ctx, out)
    if tag == "video" or tag == "audio":
        m = _media(node, tag, ctx)
        if m:
            out.append(m)
        return m is not None
    mark, tmark = len(out), len(text)
    inner = _inline(node, ctx, out, text)
    if len(text) == tmark:
        content = ""
    else:
        content = "".join(text[tmark:])
        if tag in _LINE_TAGS and ctx.rule.drop is not None and ctx.dropped(content):
            del out[mark:], text[tmark:]
            return False
    if not inner and (not content or content.isspace()):
        # An empty wrapper: keep at most the space it stood for.
        del out[mark:], text[tmark:]
        if content:
            out.append(" ")
            text.append(" ")
        return False
    if tag == "a":
        href = ctx.url(node.attributes.get("href"), mailto=True)
        if href:
            out.insert(mark, f'<a href="{_esc_attr(href)}">')
            out.append("</a>")
    else:
        keep = _INLINE_KEEP.get(tag)
        if keep:
            out.insert(mark, f"<{keep}>")
            out.append(f"</{keep}>")
    return inner


def _block_text(parts: list[str]) -> str:
    """The plain text of a block: whitespace collapsed, <br> as a newline, edges trimmed."""
    t = _collapse("".join(parts))
    if _BR in t:
        t = _BR_SPACES.sub("\n", t.strip(" "))
    return t.strip()


def _block_html(parts: list[str]) -> str:
    """The HTML of a block: whitespace collapsed as a browser would, no <br> at the edges."""
    html = _collapse("".join(parts))
    return _trim_br(html) if "<br>" in html else html.strip()


def _trim_br(html: str) -> str:
    html = html.replace("<br> ", "<br>").replace(" <br>", "<br>").strip()
    while html.startswith("<br>"):
        html = html[4:].lstrip()
    while html.endswith("<br>"):
        html = html[:-4].rstrip()
    return html


def _emit_run(
    tag: str | None, out: list[str], text: list[str], media: bool, ctx: _Ctx,
    blocks: list[str], texts: list[str],
) -> None:  # fmt: skip
    """Close one block: _block_text, the drop test and _block_html, inlined (the hot path)."""
    t = "".join(text)
    if "\n" in t or "  " in t or "\t" in t or "\r" in t or "\f" in t:
        t = _WS.sub(" ", t)
    if _BR in t:
        t = _BR_SPACES.sub("\n", t.strip(" "))
    t = t.strip()
    if not t and not media:
        return
    drop = ctx.rule.drop
    if t and drop is not None and len(t) <= _LINE_MAX and drop.fullmatch(t) is not None:
        return
    html = "".join(out)
    if "\n" in html or "  " in html or "\t" in html or "\r" in html or "\f" in html:
        html = _WS.sub(" ", html)
    html = _trim_br(html) if "<br>" in html else html.strip()
    if not html:
        return
    blocks.append(f"<{tag}>{html}</{tag}>" if tag else html)
    texts.append(t)


def _flow(
    node: LexborNode,
    ctx: _Ctx,
    blocks: list[str],
    texts: list[str],
    wrap: bool = True,
    figure: bool = False,
) -> None:
    """Emit ``node``'s children as a sequence of blocks; bare inline runs become paragraphs.

    ``wrap=False`` (inside li, td, figure) leaves a run bare: ``<li>text</li>``.
    ``figure=True`` keeps figcaption children as captions.
    """
    run: list[str] = []
    run_text: list[str] = []
    run_media = False
    run_tag = "p" if wrap else None
    removed = ctx.removed
    kinds = _KIND
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            s = child.text_content
            if s and (run or not s.isspace()):
                run.append(s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
                run_text.append(s)
            continue
        kind = kinds.get(tag, _K_INLINE)
        if kind == _K_IGNORE or (removed and child.mem_id in removed):
            continue
        if kind == _K_INLINE:
            # A phrasing element in flow: it continues the current run.
            run_media = _inline_one(child, tag, ctx, run, run_text) or run_media
            continue
        if kind == _K_BR:
            if run:
                run.append("<br>")
                run_text.append(_BR)
            continue
        if run:
            _emit_run(run_tag, run, run_text, run_media, ctx, blocks, texts)
            run, run_text, run_media = [], [], False
        if kind == _K_PARA or (figure and tag == "figcaption"):
            out: list[str] = []
            text: list[str] = []
            media = _inline(child, ctx, out, text)
            _emit_run(tag, out, text, media, ctx, blocks, texts)
        elif kind == _K_FLOW:
            mark = len(blocks)
            _flow(child, ctx, blocks, texts)
            if (
                len(blocks) > mark
                and ctx.rule.drop is not None
                and tag in _LINE_TAGS
                and ctx.dropped("\n".join(texts[mark:]))
            ):
                del blocks[mark:], texts[mark:]
        else:
            _BLOCK_HANDLERS[tag](child, tag, ctx, blocks, texts)
    if run:
        _emit_run(run_tag, run, run_text, run_media, ctx, blocks, texts)


def _container(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    """blockquote and li: a block that holds flow content."""
    sub: list[str] = []
    sub_texts: list[str] = []
    _flow(node, ctx, sub, sub_texts, wrap=tag == "blockquote")
    if not sub:
        return
    text = "\n".join(t for t in sub_texts if t)
    if text and ctx.rule.drop is not None and ctx.dropped(text):
        return
    blocks.append(f"<{tag}>{''.join(sub)}</{tag}>")
    texts.append(text)


def _figure(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    sub: list[str] = []
    sub_texts: list[str] = []
    _flow(node, ctx, sub, sub_texts, wrap=False, figure=True)
    if not sub:
        return
    blocks.append("<figure>" + "".join(sub) + "</figure>")
    texts.append("\n".join(t for t in sub_texts if t))


def _list(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    items: list[str] = []
    item_texts: list[str] = []
    removed = ctx.removed
    for child in node.iter(include_text=True):
        ctag = child.tag
        if ctag == "-text":
            s = child.text_content
            if s and not s.isspace():
                s = _WS.sub(" ", s).strip()
                items.append(f"<li>{_esc(s)}</li>")
                item_texts.append(s)
            continue
        if ctag in _IGNORE or (removed and child.mem_id in removed):
            continue
        _container(child, "li", ctx, items, item_texts)
    if not items:
        return
    start = ""
    if tag == "ol":
        v = (node.attributes.get("start") or "").strip()
        if v and _DIGITS.match(v) and v != "1":
            start = f' start="{v}"'
    blocks.append(f"<{tag}{start}>{''.join(items)}</{tag}>")
    texts.append("\n".join(item_texts))


def _pre(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    out: list[str] = []
    text: list[str] = []
    media = _inline(node, ctx, out, text)
    # The parser drops one newline right after <pre>; dropping them all keeps a second
    # pass from eating another one.
    html = "".join(out).lstrip("\n").rstrip()
    t = "".join(text).replace(_BR, "\n").strip("\n").rstrip()
    if not t.strip() and not media:
        return
    blocks.append(f"<pre>{html}</pre>")
    texts.append(t)


def _table(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    parts: list[str] = []
    rows_text: list[str] = []
    has_content = False
    removed = ctx.removed

    def row(tr: LexborNode) -> str | None:
        nonlocal has_content
        cells: list[str] = []
        cell_texts: list[str] = []
        for cell in tr.iter():
            ctag = cell.tag
            if ctag not in ("td", "th") or (removed and cell.mem_id in removed):
                continue
            sub: list[str] = []
            sub_texts: list[str] = []
            _flow(cell, ctx, sub, sub_texts, wrap=False)
            attrs = ""
            for name in ("colspan", "rowspan"):
                v = (cell.attributes.get(name) or "").strip()
                if v and _DIGITS.match(v) and v != "1":
                    attrs += f' {name}="{v}"'
            cells.append(f"<{ctag}{attrs}>{''.join(sub)}</{ctag}>")
            cell_texts.append(" ".join(t for t in sub_texts if t))
            if sub:
                has_content = True
        if not cells:
            return None
        rows_text.append("\t".join(cell_texts).strip())
        return "<tr>" + "".join(cells) + "</tr>"

    for child in node.iter():
        ctag = child.tag
        if removed and child.mem_id in removed:
            continue
        if ctag == "caption":
            out: list[str] = []
            text: list[str] = []
            _inline(child, ctx, out, text)
            t = _block_text(text)
            if t:
                parts.append(f"<caption>{_block_html(out)}</caption>")
                rows_text.append(t)
        elif ctag in ("thead", "tbody", "tfoot"):
            rows = [r for r in (row(tr) for tr in child.iter() if tr.tag == "tr") if r]
            if rows:
                parts.append(f"<{ctag}>{''.join(rows)}</{ctag}>")
        elif ctag == "tr":
            r = row(child)
            if r:
                parts.append(f"<tbody>{r}</tbody>")
    if not has_content:
        return
    blocks.append("<table>" + "".join(parts) + "</table>")
    texts.append("\n".join(t for t in rows_text if t))


def _hr(node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]) -> None:
    if blocks and blocks[-1] != "<hr>":
        blocks.append("<hr>")
        texts.append("")


def _media_block(
    node: LexborNode, tag: str, ctx: _Ctx, blocks: list[str], texts: list[str]
) -> None:
    m = _media(node, tag, ctx)
    if m:
        blocks.append(m)
        texts.append("")


_BLOCK_HANDLERS = {
    "ul": _list,
    "ol": _list,
    "li": _container,
    "blockquote": _container,
    "figure": _figure,
    "pre": _pre,
    "table": _table,
    "hr": _hr,
    "video": _media_block,
    "audio": _media_block,
}


_K_INLINE, _K_IGNORE, _K_BR, _K_PARA, _K_FLOW, _K_BLOCK = range(6)
#: How the walk treats each tag; anything unlisted is phrasing content (kept or unwrapped).
#: One dict lookup per node instead of a chain of set tests.
_KIND: dict[str | None, int] = {
    **{t: _K_IGNORE for t in _IGNORE},
    "br": _K_BR,
    **{t: _K_PARA for t in _PARA},
    **{t: _K_FLOW for t in _FLOW},
    **{t: _K_BLOCK for t in _BLOCK_HANDLERS},
}


# --- entry point -----------------------------------------------------------------------------


def _summary(text: str) -> str:
    # The text is already collapsed: blocks and <br> are its only newlines.
    flat = text[: SUMMARY_CHARS * 2].replace("\n", " ").strip()
    if len(flat) <= SUMMARY_CHARS:
        return flat
    cut = flat[:SUMMARY_CHARS]
    end = max(cut.rfind(c) for c in "。！？!?；;")
    if end > SUMMARY_CHARS // 2:
        return cut[: end + 1]
    return cut.rstrip() + "…"


def normalize(html: str, base_url: str | None, rule: SiteRule) -> Normalized:
    """Clean one article: the site rule applied, images fixed, structure flattened, sanitized.

    ``base_url`` is the entry link (relative URLs resolve against it; without it they are
    dropped).  A builtin profile whose signature the HTML carries applies under ``rule``
    (``rules.signed_rule``): a 快科技 article from a mirror or inside a reprint loses its
    footer as on mydrivers.com.  Safe on hostile input: the result has been through nh3.
    """
    # scripting=True parses <noscript> as a browser with scripting on (every reader's
    # browser): its content is raw text, dropped whole.  With scripting off, a
    # "</noscript>" hidden in an attribute inside it swallows the rest of the article.
    tree = LexborHTMLParser(html or "", scripting=True)
    body = tree.body
    if body is None:
        return Normalized("", "", None, "")
    signed = signed_rule(html, tree)
    compiled = _compile(rule if signed is None else signed.merged(rule))
    removed: set[int] = set()
    if compiled.remove:
        removed = {n.mem_id for n in tree.css(compiled.remove)}
    ctx = _Ctx(compiled, base_url.strip() if base_url else None, removed)
    blocks: list[str] = []
    texts: list[str] = []
    _flow(body, ctx, blocks, texts)
    clean = _CLEANER.clean("\n".join(blocks))
    text = "\n".join(t for t in texts if t)
    image = ctx.lead or ctx.poster
    return Normalized(html=clean, text=text, image=image, summary=_summary(text))
