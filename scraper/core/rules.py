"""Site rules: declarative clean-up instructions for the normalize stage, keyed by host.

A :class:`SiteRule` says what to cut out of one site's article HTML (CSS selectors and
whole-line text patterns), where the article sits on a full page (``content_selector``),
which attributes hold lazily loaded image URLs, and whether images go through a proxy.
Rules are data, not code, so a feed can fix a new site's boilerplate in ``feeds.yaml``
without a release, and so the rule travels to worker processes by pickling.

:func:`resolve_rule` merges, later winning: ``BUILTIN_RULES`` by the entry link's host
suffix, the config's ``sites:`` block, the feed's own ``rules:``.  Merging extends the lists
(duplicates dropped, order kept) and lets a scalar that is set (not ``None``) override, so
``image_proxy: ""`` switches off an inherited proxy.  ZAKER arrives through RSSHub, where the
host lookup finds nothing, so a feed may name builtin profiles (``rules: {profile: zaker}``);
:func:`rule_from_mapping` expands them and merges the other keys on top.

A builtin profile also applies wherever its site's *signature* is in the article HTML
(:data:`SIGNATURES`, :func:`signed_rule`): content reaches us through mirrors, RSSHub
instances and other sites' reprints, where the host says nothing about whose boilerplate the
text carries.  Signatures are markers no other site writes (ZAKER's ``<zkspan>``, 快科技's
end image and reprint notice), never generic class names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the type only: config imports this module, the health check must not
    from selectolax.lexbor import LexborHTMLParser  # load selectolax

__all__ = [
    "BUILTIN_RULES",
    "PROFILES",
    "SIGNATURES",
    "Signature",
    "SiteRule",
    "profile",
    "resolve_rule",
    "rule_from_mapping",
    "signed_rule",
]


@dataclass(frozen=True)
class SiteRule:
    """One site's clean-up instructions; immutable and hashable so compiled forms can be cached.

    ``remove``: CSS selectors whose matches are deleted with their content.
    ``drop_lines``: regular expressions; an element (p, div, li, heading, span, ...) whose
    whole whitespace-collapsed text fully matches one of them is deleted.
    ``content_selector``: where the article sits on the site's full page (full-text mode).
    ``image_proxy``: a URL template containing ``{url}``; ``None`` inherits, ``""`` is off.
    ``image_proxy_hosts``: host suffixes the proxy applies to; empty means http:// images.
    ``lazy_attrs``: extra attributes holding the real image URL, tried before the defaults.
    """

    remove: tuple[str, ...] = ()
    drop_lines: tuple[str, ...] = ()
    content_selector: str | None = None
    image_proxy: str | None = None
    image_proxy_hosts: tuple[str, ...] = ()
    lazy_attrs: tuple[str, ...] = ()

    def merged(self, other: SiteRule) -> SiteRule:
        """``other`` refines ``self``: its lists extend ours, its set scalars replace ours."""
        return SiteRule(
            remove=_union(self.remove, other.remove),
            drop_lines=_union(self.drop_lines, other.drop_lines),
            content_selector=(
                other.content_selector
                if other.content_selector is not None
                else self.content_selector
            ),
            image_proxy=other.image_proxy if other.image_proxy is not None else self.image_proxy,
            image_proxy_hosts=_union(self.image_proxy_hosts, other.image_proxy_hosts),
            lazy_attrs=_union(self.lazy_attrs, other.lazy_attrs),
        )


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    if not b:
        return a
    if not a:
        return b
    return tuple(dict.fromkeys(a + b))


# --- builtin profiles ---------------------------------------------------------------------

#: ZAKER (via RSSHub /zaker/...).  From ../shared/seeds/000-001 and the ZAKER corpus posts:
#: two empty trailing divs, and credit lines that are whole paragraphs of gray <zkspan>
#: ("ZAKER 科技出品", "文 / 刘凡") or a parenthesised editor ("（编辑 魏如飞）").  The credit
#: lines are matched by text, not by removing every <zkspan>, because ZAKER also uses
#: <zkspan> for gray inline notes inside real paragraphs.
ZAKER = SiteRule(
    remove=("#recommend_bottom", "#article_bottom"),
    drop_lines=(
        r"ZAKER\s*\S{0,8}\s*出品",
        r"(?:文|撰文|编辑|责编|作者)\s*/\s*\S.{0,30}",
        r"[（(]\s*(?:责任)?编辑[\s：:/]*[^（()）]{1,20}[）)]",
    ),
)

#: 快科技 / Mydrivers.  From seeds/002-003 and the 快科技 corpus posts: the end image or
#: " - THE END -" (p.end), the reprint notice (p.zhuanzai), editor + "文章纠错" link and
#: "原文链接" (p.url), topic tags (p.bqian), the empty pager (div.page_article).  The
#: patterns catch the same lines when a proxy has stripped the class attributes.
#: ``content_selector``: the article body on news.mydrivers.com pages is div.news_info
#: (page layout of 2022; extract_article falls back to the generic extractor if it is gone).
MYDRIVERS = SiteRule(
    remove=("p.end", "p.zhuanzai", "p.url", "p.bqian", "div.page_article", "a.jiucuo"),
    drop_lines=(
        r"如需转载请务必注明出处[：:]?\s*\S{0,10}",
        r"责任编辑[：:]\s*\S{1,10}(?:\s*文章纠错)?",
        r"文章纠错",
        r"话题标签[：:].{0,200}",
        r"-\s*THE\s+END\s*-",
    ),
    content_selector="div.news_info",
)

#: IT之家.  Not in our corpus; kept conservative on purpose.  Its articles end with a fixed
#: advertising statement in p.ad-tips ("广告声明：文内含有的对外跳转链接……IT之家所有文章
#: 均包含本声明。"), the one piece of boilerplate every IT之家 article carries; images are
#: lazy with data-original (a default lazy attribute already).
ITHOME = SiteRule(
    remove=("p.ad-tips",),
    drop_lines=(r"广告声明：.{0,200}IT之家所有文章均包含本声明。?",),
    content_selector="#paragraph",
)

#: Builtins by host suffix: what resolve_rule applies by the entry link's host.
BUILTIN_RULES: dict[str, SiteRule] = {
    "myzaker.com": ZAKER,
    "mydrivers.com": MYDRIVERS,
    "ithome.com": ITHOME,
}

#: The same builtins by short name, for ``rules: {profile: zaker}`` in feeds.yaml.
PROFILES: dict[str, SiteRule] = {
    "zaker": ZAKER,
    "mydrivers": MYDRIVERS,
    "ithome": ITHOME,
}


@dataclass(frozen=True)
class Signature:
    """What marks article HTML as one site's, wherever it was served from.

    ``selectors``: CSS that only this site's markup matches (tested on the parsed tree),
    tested only when one of ``keys`` is a substring of the raw HTML: a tree walk per
    selector cost ~40 µs an article in bench/normalize.py, a substring test ~1 µs.
    ``patterns``: regular expressions searched in the raw HTML: credit lines and asset URLs
    only this site writes; each starts with a literal, so the search is a fast scan.
    One match of either kind is enough.
    """

    selectors: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


#: Tags or whitespace between the words of a marker line (a proxy or a reprinting site may
#: wrap the site name in <strong> or <a>).
_GAP = r"(?:\s|<[^>]{0,200}>)*"

#: Builtin profiles by signature.  Every marker comes from the profile's comment above (the
#: seeds and corpus posts) and was checked absent from the other sites' posts.
SIGNATURES: dict[str, Signature] = {
    # <zkspan> is ZAKER's own element; the two empty trailing divs close every ZAKER post.
    "zaker": Signature(
        selectors=("zkspan", "div#recommend_bottom + div#article_bottom"),
        keys=("zkspan", "recommend_bottom"),
        patterns=(r"ZAKER\s*\S{0,8}\s*出品",),
    ),
    # The reprint notice names the site; the end image lives on 快科技's icon host; the topic
    # tags (p.bqian) link to its tag pages; the editor line's "文章纠错" link is a.jiucuo
    # inside p.url.  The corpus post that has neither notice nor end image (" - THE END -")
    # still has the tag links.
    "mydrivers": Signature(
        selectors=("p.url a.jiucuo",),
        keys=("jiucuo",),
        patterns=(
            rf"如需转载请务必注明出处[：:]{_GAP}快科技",
            r"icons\.mydrivers\.com/news/end_article",
            r"""bqian["'\s>][^<]*<a\b[^>]*mydrivers\.com/tag/""",
        ),
    ),
    # The advertising statement IT之家 appends to every article names the site.
    "ithome": Signature(patterns=(rf"IT之家所有文章{_GAP}均包含本声明",)),
}


@lru_cache(maxsize=1)
def _signature_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple(
        (name, re.compile("|".join(f"(?:{p})" for p in sig.patterns)))
        for name, sig in SIGNATURES.items()
        if sig.patterns
    )


def signed_profiles(html: str, tree: LexborHTMLParser | None = None) -> tuple[str, ...]:
    """The builtin profiles whose signature ``html`` carries (``tree``: its parse, if any)."""
    found = [name for name, pattern in _signature_patterns() if pattern.search(html)]
    if tree is not None:
        for name, sig in SIGNATURES.items():
            if (name not in found and any(key in html for key in sig.keys)
                    and tree.css_first(", ".join(sig.selectors))):
                found.append(name)
    return tuple(name for name in SIGNATURES if name in found)


def signed_rule(html: str, tree: LexborHTMLParser | None = None) -> SiteRule | None:
    """The merged profiles ``html``'s signatures call for, or None when it carries none."""
    names = signed_profiles(html, tree)
    if not names:
        return None
    rule = SiteRule()
    for name in names:
        rule = rule.merged(PROFILES[name])
    return rule


def profile(name: str) -> SiteRule:
    """The builtin rule called ``name``; KeyError names the known profiles."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None


# --- resolution ---------------------------------------------------------------------------


def _host_matches(host: str, suffix: str) -> bool:
    return host == suffix or host.endswith("." + suffix)


def _by_host(host: str, table: Mapping[str, SiteRule]) -> list[SiteRule]:
    """Rules whose key is a suffix of ``host``, least specific first so the closest wins."""
    keys = [k for k in table if _host_matches(host, k.lower().lstrip("."))]
    keys.sort(key=lambda k: k.count("."))
    return [table[k] for k in keys]


def resolve_rule(
    url: str | None, feed_rule: SiteRule | None, site_rules: Mapping[str, SiteRule]
) -> SiteRule:
    """The effective rule for one entry: builtin for the host, then ``sites:``, then the feed."""
    rule = SiteRule()
    host = _hostname(url)
    if host:
        for r in _by_host(host, BUILTIN_RULES):
            rule = rule.merged(r)
        for r in _by_host(host, site_rules):
            rule = rule.merged(r)
    if feed_rule is not None:
        rule = rule.merged(feed_rule)
    return rule


def _hostname(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


# --- validation ---------------------------------------------------------------------------

_FIELDS = tuple(f.name for f in fields(SiteRule))
RULE_KEYS = (*_FIELDS, "profile")
_ATTR_NAME = re.compile(r"[A-Za-z_:][-A-Za-z0-9_:.]*\Z")
_HOST = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?\Z")


def _got(value: object) -> str:
    """How an error names a wrong value: scalars by value, containers by type."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:37]!r}..."
    return type(value).__name__


@lru_cache(maxsize=512)
def css_error(selector: str) -> str | None:
    """Why lexbor refuses ``selector`` (None if it compiles); cached, rules repeat a lot."""
    from selectolax.lexbor import LexborHTMLParser

    try:
        LexborHTMLParser("<p></p>", is_fragment=True).css(selector)
    except Exception as exc:  # lexbor raises ValueError / SelectolaxError, varies by version
        return str(exc) or type(exc).__name__
    return None


def _str_list(data: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key}: expected a list of strings, got {_got(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"{key}[{i}]: expected a string, got {_got(item)}")
        item = item.strip()
        if not item:
            raise ValueError(f"{key}[{i}]: empty string")
        out.append(item)
    return tuple(out)


def _opt_str(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key}: expected a string, got {_got(value)}")


def _check_selector(key: str, selector: str) -> None:
    problem = css_error(selector)
    if problem is not None:
        raise ValueError(f"{key}: invalid CSS selector {selector!r} ({problem})")


def rule_from_mapping(data: object, where: str = "rules") -> SiteRule:
    """Validate one ``rules:`` (or ``sites: <host>:``) mapping from YAML into a SiteRule.

    Errors are ``ValueError("<field>: <problem>")`` so that config can prefix the file and
    feed; ``where`` is only used for the block itself ("rules: expected a mapping, got
    list").  ``None`` (an empty ``rules:`` key) is the empty rule.
    """
    if data is None:
        return SiteRule()
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {_got(data)}")
    for key in data:
        if key not in RULE_KEYS:
            hint = difflib.get_close_matches(str(key), RULE_KEYS, n=1)
            also = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(RULE_KEYS)})"
            raise ValueError(f"{key}: unknown field{also}")

    base = SiteRule()
    names = data.get("profile")
    if names is not None:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list | tuple):
            raise ValueError(f"profile: expected a profile name or a list, got {_got(names)}")
        for i, name in enumerate(names):
            key = "profile" if len(names) == 1 else f"profile[{i}]"
            if not isinstance(name, str):
                raise ValueError(f"{key}: expected a string, got {_got(name)}")
            try:
                base = base.merged(profile(name))
            except KeyError as exc:
                raise ValueError(f"{key}: {exc.args[0]}") from None

    remove = _str_list(data, "remove")
    for i, sel in enumerate(remove):
        _check_selector(f"remove[{i}]", sel)

    drop_lines = _str_list(data, "drop_lines")
    for i, pattern in enumerate(drop_lines):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"drop_lines[{i}]: invalid regular expression ({exc})") from None

    content_selector = _opt_str(data, "content_selector")
    if content_selector is not None:
        content_selector = content_selector.strip() or None
        if content_selector:
            _check_selector("content_selector", content_selector)

    image_proxy = _opt_str(data, "image_proxy")
    if image_proxy:
        image_proxy = image_proxy.strip()
        if "{url}" not in image_proxy:
            raise ValueError("image_proxy: the template must contain {url}")
        if not image_proxy.lower().startswith(("http://", "https://")):
            raise ValueError(
                f"image_proxy: expected an http(s) URL template, got {_got(image_proxy)}"
            )

    hosts = _str_list(data, "image_proxy_hosts")
    cleaned_hosts = []
    for i, host in enumerate(hosts):
        h = host.lower().removeprefix("*.").lstrip(".")
        if not _HOST.match(h):
            raise ValueError(f"image_proxy_hosts[{i}]: not a host name: {_got(host)}")
        cleaned_hosts.append(h)

    lazy = _str_list(data, "lazy_attrs")
    for i, attr in enumerate(lazy):
        if not _ATTR_NAME.match(attr):
            raise ValueError(f"lazy_attrs[{i}]: not an attribute name: {_got(attr)}")

    own = SiteRule(
        remove=remove,
        drop_lines=drop_lines,
        content_selector=content_selector,
        image_proxy=image_proxy,
        image_proxy_hosts=tuple(cleaned_hosts),
        lazy_attrs=tuple(a.lower() for a in lazy),
    )
    return base.merged(own)


def sites_from_mapping(data: object, where: str = "sites") -> dict[str, SiteRule]:
    """Validate a config ``sites:`` block (host -> rules mapping); errors name the host."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of host -> rules, got {_got(data)}")
    out: dict[str, SiteRule] = {}
    for host, block in data.items():
        if not isinstance(host, str) or not _HOST.match(host.lower().lstrip(".")):
            raise ValueError(f"{where}: not a host name: {_got(host)}")
        key = host.lower().lstrip(".")
        try:
            out[key] = rule_from_mapping(block, where)
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None
    return out
