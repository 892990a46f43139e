"""The security boundary of the normalize stage: what may appear in an article, and which URLs.

Everything here refuses input (tags, attributes, URL schemes) and knows nothing of sites or
layout.  The walk in ``normalize`` already emits only allow-listed markup through
:class:`UrlResolver`, but nothing it does is trusted: every output byte goes through
:data:`CLEANER` (nh3) with the same allow-list.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import nh3

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "CLEANER",
    "CLEAN_CONTENT_TAGS",
    "UrlResolver",
    "esc_attr",
]

#: The article allow-list from issue 3, plus sub/sup (formulas, footnote marks: unwrapping
#: them changes meaning, "H2O", "10^9") .  Must match what the normalize walk can emit.
ALLOWED_TAGS: frozenset[str] = frozenset({
    "p", "a", "img", "figure", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6",
    "ul", "ol", "li", "blockquote", "pre", "code",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
    "strong", "em", "b", "i", "u", "s", "sub", "sup", "br", "hr",
    "video", "audio", "source",
})  # fmt: skip

ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "video": {"src", "poster", "controls", "preload", "width", "height"},
    "audio": {"src", "controls", "preload"},
    "source": {"src", "type"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
}

#: Removed together with their content.  Disjoint from ALLOWED_TAGS (nh3 insists).
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet",
    "template", "svg", "math", "noscript", "noembed", "noframes", "textarea", "select",
    "button", "title", "xmp", "plaintext", "canvas", "head", "dialog",
})  # fmt: skip

CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(CLEAN_CONTENT_TAGS),
    attributes=ALLOWED_ATTRIBUTES,
    link_rel="noopener noreferrer nofollow",
    # The image hosts of the sources we follow refuse hot-linked requests (issue 3).  The
    # walk writes referrerpolicy and loading on every <img>; nh3 lets only these values
    # through.  (set_tag_attribute_values would also add them, but in hash-map order,
    # which differs between processes and breaks byte-for-byte stable output.)
    tag_attribute_values={
        "img": {"referrerpolicy": {"no-referrer"}, "loading": {"lazy"}},
    },
    set_tag_attribute_values={"video": {"controls": ""}, "audio": {"controls": ""}},
    url_schemes={"http", "https", "mailto"},
    # The walk makes every URL absolute; anything still relative is a bug or a trick.
    url_relative="deny",
    strip_comments=True,
)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_URL_TABNL = re.compile(r"[\t\n\r]")
_URL_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_URL_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as browsers do


def esc_attr(s: str) -> str:
    return s.replace("&", "&amp;").replace('"', "&quot;")


class UrlResolver:
    """Checks and absolutizes the URLs of one article against its link (the base URL).

    A class with slots, not a function, because the walk's context inherits from it: a URL
    check stays one method call, as it was before the split (it runs for every link and
    image).
    """

    __slots__ = ("base", "base_scheme")

    def __init__(self, base: str | None) -> None:
        self.base = base
        self.base_scheme = "https"
        if base:
            scheme = base.split(":", 1)[0].lower()
            if scheme in ("http", "https"):
                self.base_scheme = scheme
            else:
                self.base = None

    def url(self, raw: str | None, *, mailto: bool = False) -> str | None:
        """An absolute http(s) (or mailto) URL, or None: what a browser would fetch, checked.

        Browsers drop leading/trailing C0 controls and spaces and every tab/newline inside
        a URL before reading its scheme, which is how "jav&#x09;ascript:" works; do the
        same first, then accept only http, https and (for links) mailto.
        """
        if not raw:
            return None
        u = raw.strip(_URL_STRIP)
        if not u:
            return None
        if "\t" in u or "\n" in u or "\r" in u:
            u = _URL_TABNL.sub("", u)
        if _URL_CTRL.search(u):
            return None
        if " " in u:
            u = u.replace(" ", "%20")  # as a browser sends it; keeps spaces out of attributes
        head = u[:8].lower()
        if head.startswith(("http://", "https://")):
            return u
        if u.startswith(("//", "\\\\", "/\\", "\\/")):
            return f"{self.base_scheme}:{u}" if len(u) > 2 else None
        m = _SCHEME.match(u)
        if m is not None:
            scheme = m.group(1).lower()
            if scheme == "mailto" and mailto:
                return u
            if scheme not in ("http", "https"):
                return None
            # "http:foo" (no slashes) is relative to the base in a browser.
        if self.base is None:
            return None
        try:
            out = urljoin(self.base, u)
        except ValueError:
            return None
        return out if out[:8].lower().startswith(("http://", "https://")) else None
