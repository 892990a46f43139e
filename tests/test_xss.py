"""Hostile HTML comes out inert: the output is parsed back and searched for anything executable.

The check is structural, not a string comparison: the sanitized HTML is parsed the way a
browser would (lexbor, a full document, so stray <meta>/<base>/<style> would land in
<head> and still be seen), and every element and attribute is inspected.
"""

from __future__ import annotations

import re

import pytest
from selectolax.lexbor import LexborHTMLParser

from scraper.core.normalize import normalize
from scraper.core.rules import PROFILES, SiteRule

BASE = "https://news.example.org/2022/05/article.html"

VECTORS: list[str] = [
    # script, plain and disguised
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<img """><script>alert(1)</script>">',
    "<template><script>alert(1)</script></template>",
    "<textarea><script>alert(1)</script></textarea>",
    "<xmp><script>alert(1)</script></xmp>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    # event handlers
    "<img src=x onerror=alert(1)>",
    '<img src="https://ok.example/a.jpg" onload=alert(1) style="x:expression(alert(1))">',
    '<p onmouseover="alert(1)">hover</p>',
    '<a href="https://ok.example/" onclick="alert(1)">ok</a>',
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>details</details>",
    "<input autofocus onfocus=alert(1)>",
    "<marquee onstart=alert(1)>marquee</marquee>",
    "<audio src=x onerror=alert(1)></audio>",
    '<video><source onerror="alert(1)"></video>',
    # javascript: URLs, obfuscated
    "<img src=\"javascript:alert('XSS')\">",
    "<img src=JaVaScRiPt:alert(1)>",
    '<img src="jav&#x09;ascript:alert(1)">',
    '<img src="jav&#x0A;ascript:alert(1)">',
    '<img src="jav&#x0D;ascript:alert(1)">',
    '<img src=" &#14;  javascript:alert(1)">',
    "<img src=`javascript:alert(1)`>",
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">e1</a>',
    '<a href="&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A;alert(1)">e2</a>',
    '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105'
    '&#0000112&#0000116&#0000058alert(1)">e3</a>',
    '<a href="java\tscript:alert(1)">tab</a>',
    '<a href="java\nscript:alert(1)">newline</a>',
    '<a href="java\x00script:alert(1)">nul</a>',
    '<a href="JAVASCRIPT:alert(1)">upper</a>',
    '<a href="  javascript:alert(1)">space</a>',
    '<a href="javas&#99;ript:alert(1)">e4</a>',
    '<a href="javascript&colon;alert(1)">colon</a>',
    '<a href="jav&#x61;script&#x3a;alert(1)">e5</a>',
    '<a href="vbscript:msgbox(1)">vb</a>',
    # data: URIs
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<iframe src="data:text/html,<script>alert(1)</script>"></iframe>',
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
    # svg
    "<svg onload=alert(1)></svg>",
    "<svg/onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s></animate></svg>",
    '<svg><use href="data:image/svg+xml,&lt;svg id=\'x\'&gt;&lt;/svg&gt;#x"></use></svg>',
    '<a href="#" xlink:href="javascript:alert(1)">xlink</a>',
    # math / mglyph mutation tricks (DOMPurify 2.0 bypasses)
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph>"
    "</table></mtext></math>",
    '<math><mtext><table><mglyph><style><!--</style><img title="--&gt;&lt;img src=1 '
    'onerror=alert(1)&gt;"></mglyph></table></mtext></math>',
    '<math href="javascript:alert(1)">CLICKME</math>',
    "<svg></p><style><a id=\"</style><img src=1 onerror=alert(1)>\">",
    # forms
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<form><button formaction="javascript:alert(1)">go</button></form>',
    "<isindex action=javascript:alert(1) type=image>",
    # frames, objects
    '<iframe src="javascript:alert(1)"></iframe>',
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    '<embed src="javascript:alert(1)">',
    '<object type="text/x-scriptlet" data="http://xss.example/x.sct"></object>',
    "<frameset onload=alert(1)>",
    # document-level
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<link rel=stylesheet href="javascript:alert(1)">',
    "<style>@import 'http://xss.example/xss.css';</style>",
    # style
    '<div style="background:url(javascript:alert(1))">styled</div>',
    '<div style="width: expression(alert(1))">expr</div>',
    '<span style="behavior:url(xss.htc)">behavior</span>',
    '<table background="javascript:alert(1)"><tr><td>cell</td></tr></table>',
    # media and srcset
    "<video poster=javascript:alert(1)><source src=\"javascript:alert(1)\"></video>",
    '<img src="https://ok.example/b.jpg" srcset="javascript:alert(1) 1x">',
    # attribute smuggling
    '<div id="x" class="y" data-x="1">idclass</div>',
    '<a href="http://ok.example/" target="_blank" rel="opener">opener</a>',
    '<p title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">quoted</p>',
]

#: Vectors that leave an element open: inside a paragraph, the words after them are inside
#: that element in any browser (text in <svg> is not rendered), so they go with it.
SWALLOWS_THE_REST = {"<svg/onload=alert(1)>"}

NEVER_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input",
    "button", "textarea", "select", "meta", "base", "link", "style", "svg", "math",
    "template", "noscript", "isindex", "marquee", "details", "xmp", "title",
}  # fmt: skip
URL_ATTRS = {
    "href", "src", "action", "formaction", "xlink:href", "poster", "data", "background",
    "cite", "srcset", "dynsrc", "lowsrc", "ping", "codebase", "manifest", "longdesc",
}  # fmt: skip
SAFE_SCHEMES = {"http", "https", "mailto"}


def scheme_is_safe(value: str) -> bool:
    """A URL value is safe if, read as a browser reads it, its scheme is allowed or absent."""
    v = re.sub(r"[\x00-\x20\x7f]", "", value).lower()
    m = re.match(r"([a-z][a-z0-9+.\-]*):", v)
    return m is None or m.group(1) in SAFE_SCHEMES


def executable_content(html: str) -> list[str]:
    """Everything in ``html`` that could run script or navigate somewhere unsafe.

    Parsed twice, as a browser with and without scripting would (they differ on
    <noscript>, a classic mutation-XSS lever).
    """
    problems = _problems(html, scripting=False)
    return problems + [p for p in _problems(html, scripting=True) if p not in problems]


def _problems(html: str, scripting: bool) -> list[str]:
    problems: list[str] = []
    doc = f"<!DOCTYPE html><html><head></head><body>{html}</body></html>"
    tree = LexborHTMLParser(doc, scripting=scripting)
    root = tree.root
    assert root is not None
    for node in root.traverse():
        tag = node.tag
        if tag in (None, "-text", "-comment", "-doctype", "html", "head", "body"):
            continue
        if tag in NEVER_TAGS:
            problems.append(f"<{tag}>")
        for name, value in node.attributes.items():
            lname = name.lower()
            if lname.startswith("on"):
                problems.append(f"{tag}[{lname}]")
            if lname in ("style", "class", "id", "srcdoc"):
                problems.append(f"{tag}[{lname}]")
            is_url = lname in URL_ATTRS or lname.endswith(":href")
            if is_url and value is not None and not scheme_is_safe(value):
                problems.append(f"{tag}[{lname}={value!r}]")
    head = tree.head
    if head is not None and head.child is not None:
        problems.append("content in <head>")
    return problems


def test_the_checker_can_fail() -> None:
    """The detector itself must see the dangers it is meant to catch."""
    assert executable_content("<p>fine <a href='https://x/'>x</a></p>") == []
    assert executable_content("<img src=x onerror=alert(1)>") == ["img[onerror]"]
    assert executable_content("<a href='java\tscript:alert(1)'>x</a>")
    assert executable_content("<a href=' JAVASCRIPT:x'>x</a>")
    assert executable_content("<svg><a xlink:href='javascript:x'></a></svg>")
    assert executable_content("<meta http-equiv=refresh content=0>") == ["<meta>"]
    assert executable_content("<p style='x'>a</p>") == ["p[style]"]


def test_at_least_fifty_vectors() -> None:
    assert len(VECTORS) >= 50


@pytest.mark.parametrize("rule", [SiteRule(), PROFILES["zaker"]], ids=["plain", "zaker"])
@pytest.mark.parametrize("i", range(len(VECTORS)))
def test_vector_is_neutralised(i: int, rule: SiteRule) -> None:
    vector = VECTORS[i]
    html = f"<p>前文{i} before</p>{vector}<p>后文{i} after</p>"
    out = normalize(html, BASE, rule)
    assert executable_content(out.html) == [], (vector, out.html)
    assert f"前文{i} before" in out.text, out.text
    assert f"后文{i} after" in out.text, out.text
    assert out.image is None or out.image.startswith(("http://", "https://"))
    again = normalize(out.html, BASE, rule)
    assert again.html == out.html
    assert executable_content(again.html) == []


@pytest.mark.parametrize("i", range(len(VECTORS)))
def test_vector_inline_in_a_paragraph(i: int) -> None:
    """The same vectors in the middle of a sentence: the words on both sides survive."""
    html = f"<p>开头{i} {VECTORS[i]} 结尾{i}</p>"
    out = normalize(html, BASE, SiteRule())
    assert executable_content(out.html) == [], (VECTORS[i], out.html)
    assert f"开头{i}" in out.text
    if VECTORS[i] in SWALLOWS_THE_REST:
        assert f"结尾{i}" not in out.html
    else:
        assert f"结尾{i}" in out.text, (VECTORS[i], out.text)


def test_links_get_rel_and_keep_safe_targets() -> None:
    out = normalize('<p><a href="/x?a=1&amp;b=2" rel="opener">x</a></p>', BASE, SiteRule())
    a = LexborHTMLParser(out.html).css_first("a")
    assert a is not None
    assert a.attributes["href"] == "https://news.example.org/x?a=1&b=2"
    assert a.attributes["rel"] == "noopener noreferrer nofollow"
    mail = normalize('<p><a href="mailto:tips@example.org">tips</a></p>', BASE, SiteRule())
    assert 'href="mailto:tips@example.org"' in mail.html


def test_protocol_relative_and_relative_without_base() -> None:
    out = normalize('<p><img src="//img.example.net/a.jpg">x</p>', None, SiteRule())
    assert 'src="https://img.example.net/a.jpg"' in out.html
    out = normalize('<p><img src="a.jpg"><a href="/x">link</a></p>', None, SiteRule())
    assert "<img" not in out.html and "href" not in out.html
    assert out.text == "link"
