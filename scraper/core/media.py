"""Images, video and audio in an article: the real URL, the proxy, and the entry's picture.

The sources hide their pictures in different ways (ZAKER's lazy ``data-original`` on a
hotlink-protected http host, GIFs behind a still frame); which attribute wins, which images
go through a proxy and which picture leads is one idea, tuned per site by the rule's
``lazy_attrs`` and ``image_proxy*`` fields.  ``normalize``'s walk calls :func:`img` and
:func:`media`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from selectolax.lexbor import LexborNode

from scraper.core.rules import SiteRule
from scraper.core.sanitize import esc_attr

__all__ = ["DIGITS", "LAZY_ATTRS", "ImageRule", "MediaContext", "img", "lead_ok", "media"]

#: Attributes that hold an image's real URL when the page loads images lazily, in the order
#: they win.  data-gif-url first: ZAKER puts a still frame in data-original and the animated
#: GIF there.  data-actualsrc is Zhihu's.  A rule's own lazy_attrs are tried before these.
LAZY_ATTRS: tuple[str, ...] = (
    "data-gif-url",
    "data-original",
    "data-lazy-src",
    "data-src",
    "data-actualsrc",
)

_WS = re.compile(r"[ \t\n\r\f]+")
DIGITS = re.compile(r"\d{1,5}\Z")
_MIME = re.compile(r"[a-z]+/[-+.a-z0-9]+\Z")
#: Images that are not a story's picture: icons, logos, spacers, and Mydrivers'
#: end_article.png (seeds/002-003).
_NOT_LEAD = re.compile(
    r"(?:^|[/_.\-])(?:icons?|logo|avatar|emoji|spacer|blank|pixel|1x1|end_article|loading)"
    r"(?:[/_.\-]|$)",
    re.IGNORECASE,
)
_LEAD_MIN_PX = 50  # a picture with a declared side below this is an icon or a badge


@dataclass(frozen=True)
class ImageRule:
    """The image part of a site rule, in the form the walk uses (built once per rule)."""

    lazy: tuple[str, ...]
    proxy: str | None
    proxy_prefix: str
    proxy_hosts: tuple[str, ...]

    @classmethod
    def of(cls, rule: SiteRule) -> ImageRule:
        proxy = rule.image_proxy or None
        return cls(
            lazy=tuple(dict.fromkeys((*rule.lazy_attrs, *LAZY_ATTRS))),
            proxy=proxy,
            proxy_prefix=proxy.split("{url}", 1)[0] if proxy else "",
            proxy_hosts=tuple(h.lower() for h in rule.image_proxy_hosts),
        )

    def proxied(self, src: str) -> str:
        """``src`` through the rule's image proxy, if the rule sends this image there."""
        if self.proxy is None or (self.proxy_prefix and src.startswith(self.proxy_prefix)):
            return src
        if self.proxy_hosts:
            try:
                host = urlsplit(src).hostname or ""
            except ValueError:
                return src
            if not any(host == h or host.endswith("." + h) for h in self.proxy_hosts):
                return src
        elif src[:7].lower() != "http://":
            return src
        return self.proxy.replace("{url}", src)


class MediaContext(Protocol):
    """What :func:`img` and :func:`media` need of the walk's state."""

    images: ImageRule
    removed: set[int]
    lead: str | None
    poster: str | None

    def url(self, raw: str | None, *, mailto: bool = False) -> str | None: ...


def img(node: LexborNode, ctx: MediaContext, out: list[str]) -> bool:
    """Emit one <img> with its real URL, checked and proxied; False if nothing was kept."""
    attrs = node.attributes
    raw = None
    for name in ctx.images.lazy:
        v = attrs.get(name)
        if v and v.lstrip()[:5].lower() != "data:":
            raw = v
            break
    if raw is None:
        raw = attrs.get("src")
    src = ctx.url(raw)
    if src is None:
        return False
    width, height = attrs.get("width"), attrs.get("height")
    if width in ("0", "1") or height in ("0", "1"):
        return False  # a tracking pixel, not content
    src = ctx.images.proxied(src)
    parts = [f'<img src="{esc_attr(src)}"']
    for name in ("alt", "title"):
        v = attrs.get(name)
        if v and not v.isspace():
            parts.append(f' {name}="{esc_attr(_WS.sub(" ", v).strip())}"')
    for name, v in (("width", width), ("height", height)):
        if v and DIGITS.match(v.strip()):
            parts.append(f' {name}="{v.strip()}"')
    parts.append(' referrerpolicy="no-referrer" loading="lazy">')
    out.append("".join(parts))
    if ctx.lead is None and lead_ok(src, attrs):
        ctx.lead = src
    return True


def lead_ok(src: str, attrs: dict[str, str | None]) -> bool:
    """Whether an image can be the entry's picture: the first that is no icon leads."""
    if _NOT_LEAD.search(src):
        return False
    for name in ("width", "height", "w", "h", "data-width", "data-height"):
        v = attrs.get(name)
        if v and DIGITS.match(v.strip()) and int(v) < _LEAD_MIN_PX:
            return False
    return True


def media(node: LexborNode, tag: str, ctx: MediaContext) -> str | None:
    """One <video> or <audio> with controls and checked sources; None if it plays nothing."""
    attrs = node.attributes
    parts = [f"<{tag}"]
    src = ctx.url(attrs.get("src"))
    if src:
        parts.append(f' src="{esc_attr(src)}"')
    if tag == "video":
        poster = ctx.url(attrs.get("poster"))
        if poster:
            poster = ctx.images.proxied(poster)
            parts.append(f' poster="{esc_attr(poster)}"')
            if ctx.poster is None:
                ctx.poster = poster
    parts.append(' controls=""')
    preload = (attrs.get("preload") or "").strip().lower()
    if preload in ("none", "metadata", "auto"):
        parts.append(f' preload="{preload}"')
    if tag == "video":
        for name in ("width", "height"):
            v = attrs.get(name)
            if v and DIGITS.match(v.strip()):
                parts.append(f' {name}="{v.strip()}"')
    parts.append(">")
    sources = 0
    removed = ctx.removed
    for child in node.iter():
        if child.tag == "source" and not (removed and child.mem_id in removed):
            s = ctx.url(child.attributes.get("src"))
            if s:
                sources += 1
                typ = (child.attributes.get("type") or "").strip().lower()
                t = f' type="{typ}"' if _MIME.match(typ) else ""
                parts.append(f'<source src="{esc_attr(s)}"{t}>')
    if not src and not sources:
        return None
    parts.append(f"</{tag}>")
    return "".join(parts)
