"""The normalize stage on the real corpus, on golden files, and on small constructed cases.

Golden files: tests/golden/<name>.html hold the expected normalized HTML of every corpus
post and seeds 000-003, read by a person before they were checked in.  To regenerate
after an intended change, run ``SCRAPER_UPDATE_GOLDEN=1 pytest tests/test_normalize.py``
and read the diff before committing it.
"""

from __future__ import annotations

import os
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from corpus import Post, corpus_posts, post_link, seed_posts
from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.core.normalize import SUMMARY_CHARS, Normalized, normalize
from scraper.core.rules import PROFILES, SiteRule

GOLDEN = Path(__file__).parent / "golden"
PROXY = "https://cors.zfour.workers.dev/?{url}"  # the seeds' proxy (seeds/README.md)

#: Boilerplate as issue 3 lists it: containers by selector, and credit lines by text.
BOILERPLATE_SELECTORS = (
    "p.end", "p.zhuanzai", "p.url", "p.bqian", "div.page_article",
    "#recommend_bottom", "#article_bottom",
)  # fmt: skip
BOILERPLATE_LINES = ("ZAKER 科技出品", "文 / 刘凡", "（编辑 魏如飞）")
MUST_NOT_REMAIN = (
    "如需转载", "责任编辑", "文章纠错", "话题标签", "THE END", "原文链接",
    "ZAKER 科技出品", "文 / 刘凡", "编辑 魏如飞",
)  # fmt: skip


def all_posts() -> list[Post]:
    return corpus_posts() + seed_posts()


def post_id(post: Post) -> str:
    if post.path.name.startswith("00") and post.path.suffix == ".txt":
        return "seed-" + post.path.name[:3]
    site = "zaker" if post.site == "ZAKER" else "mydrivers"
    slug = re.sub(r"[\s%/]+", "_", post.slug)
    return f"{site}-{post.path.parent.name}-{slug}"


def rule_for(post: Post) -> SiteRule:
    """What feeds.yaml would say for the feed the post came from (rules: {profile: ...})."""
    return PROFILES["zaker" if post.site == "ZAKER" else "mydrivers"]


POSTS = all_posts()
IDS = [post_id(p) for p in POSTS]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _in_boilerplate(node: LexborNode, boiler_ids: set[int]) -> bool:
    while node is not None:
        if node.mem_id in boiler_ids:
            return True
        node = node.parent
    return False


def source_texts_and_images(post: Post) -> tuple[list[str], list[str]]:
    """Every text fragment and every image file name of the post outside boilerplate."""
    tree = LexborHTMLParser(post.body)
    boiler = {n.mem_id for sel in BOILERPLATE_SELECTORS for n in tree.css(sel)}
    texts: list[str] = []
    images: list[str] = []
    assert tree.body is not None
    for node in tree.body.traverse(include_text=True):
        if _in_boilerplate(node, boiler):
            continue
        if node.tag == "-text":
            t = (node.text_content or "").strip()
            if t and t not in BOILERPLATE_LINES:
                texts.append(t)
        elif node.tag == "img":
            url = node.attributes.get("data-original") or node.attributes.get("src") or ""
            images.append(url.rsplit("/", 1)[-1])
    return texts, images


@pytest.fixture(scope="module")
def normalized() -> dict[str, Normalized]:
    return {post_id(p): normalize(p.body, post_link(p), rule_for(p)) for p in POSTS}


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_every_paragraph_and_image_survives(post: Post, normalized: dict) -> None:
    out = normalized[post_id(post)]
    texts, images = source_texts_and_images(post)
    assert texts and images  # the fixture itself found something
    flat = _squash(out.text)
    for t in texts:
        assert _squash(t) in flat, t
    srcs = [img.attributes.get("src") or "" for img in LexborHTMLParser(out.html).css("img")]
    assert len(srcs) == len(images)
    for name, src in zip(images, srcs, strict=True):
        assert src.endswith("/" + name), (name, src)


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_no_boilerplate_remains(post: Post, normalized: dict) -> None:
    out = normalized[post_id(post)]
    for line in MUST_NOT_REMAIN:
        assert line not in out.text and line not in out.html, line
    for marker in ("end_article", "recommend_bottom", "article_bottom", "<div", "<iframe"):
        assert marker not in out.html, marker


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_markup_is_clean(post: Post, normalized: dict) -> None:
    tree = LexborHTMLParser(normalized[post_id(post)].html)
    assert tree.body is not None
    for node in tree.body.traverse():
        for name in node.attributes:
            assert name not in ("style", "class", "id") and not name.startswith("on"), name
        if node.tag == "img":
            src = node.attributes.get("src") or ""
            assert src.startswith(("http://", "https://")), src
            assert node.attributes.get("referrerpolicy") == "no-referrer"
            assert node.attributes.get("loading") == "lazy"
        if node.tag == "p":
            has_media = node.css_first("img, video, audio") is not None
            assert has_media or node.text(strip=True).strip(), "empty <p>"


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_idempotent(post: Post, normalized: dict) -> None:
    out = normalized[post_id(post)]
    again = normalize(out.html, post_link(post), rule_for(post))
    assert again == out


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_lead_image_matches_the_published_headimg(post: Post, normalized: dict) -> None:
    """The Hexo site's headimg is the first image, proxied when it was plain http."""
    out = normalized[post_id(post)]
    assert post.headimg
    assert out.image == post.headimg.removeprefix(PROXY.replace("{url}", ""))
    with_proxy = rule_for(post).merged(SiteRule(image_proxy=PROXY))
    proxied = normalize(post.body, post_link(post), with_proxy)
    assert proxied.image == post.headimg
    assert normalize(proxied.html, post_link(post), rule_for(post)) == proxied


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_summary(post: Post, normalized: dict) -> None:
    out = normalized[post_id(post)]
    assert 0 < len(out.summary) <= SUMMARY_CHARS + 1
    assert _squash(out.text).startswith(_squash(out.summary).rstrip("…"))


def golden_name(post: Post) -> str:
    """Posts with the same body share one golden file: seeds 000-003 are four corpus posts
    again, and the two 12.88元 posts are one body under two titles."""
    twins = [p for p in POSTS if p.body == post.body and not post_id(p).startswith("seed-")]
    return post_id(twins[0] if twins else post)


@pytest.mark.parametrize("post", POSTS, ids=IDS)
def test_golden(post: Post, normalized: dict) -> None:
    path = GOLDEN / f"{golden_name(post)}.html"
    html = normalized[post_id(post)].html + "\n"
    if os.environ.get("SCRAPER_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(html, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == html


def test_zaker_text_after_an_image_box_is_its_own_paragraph() -> None:
    raw = (
        '<p>第一段。</p><p></p><div class="img_box" id="id_imagebox_0" onclick>'
        '<div class="content_img_div perview_img_div"><img class="lazy opacity_0 " '
        'data-original="http://zkres2.myzaker.com/a_1024.jpg" src="https://p/?x"></div></div>'
        "图片后面的文字。<p></p><p>最后一段。</p>"
    )
    out = normalize(raw, "https://www.myzaker.com/article/1", PROFILES["zaker"])
    assert out.html == (
        "<p>第一段。</p>\n"
        '<p><img src="http://zkres2.myzaker.com/a_1024.jpg" referrerpolicy="no-referrer" '
        'loading="lazy"></p>\n'
        "<p>图片后面的文字。</p>\n<p>最后一段。</p>"
    )
    assert out.text == "第一段。\n图片后面的文字。\n最后一段。"


# --- images ---------------------------------------------------------------------------------


def _img_srcs(html: str) -> list[str]:
    return [n.attributes.get("src") or "" for n in LexborHTMLParser(html).css("img")]


@pytest.mark.parametrize(
    "attr", ["data-original", "data-src", "data-lazy-src", "data-gif-url", "data-actualsrc"]
)
def test_lazy_attributes(attr: str) -> None:
    raw = f'<p><img src="data:image/gif;base64,R0lGOD" {attr}="/real.jpg">x</p>'
    out = normalize(raw, "https://example.org/a/b.html", SiteRule())
    assert _img_srcs(out.html) == ["https://example.org/real.jpg"]


def test_gif_url_wins_over_still_frame() -> None:
    raw = '<p><img data-original="http://z/still.jpg" data-gif-url="http://z/anim.gif"></p>'
    assert _img_srcs(normalize(raw, None, SiteRule()).html) == ["http://z/anim.gif"]


def test_rule_lazy_attrs_come_first() -> None:
    raw = '<p><img data-src="http://z/small.jpg" data-hd="http://z/hd.jpg"></p>'
    rule = SiteRule(lazy_attrs=("data-hd",))
    assert _img_srcs(normalize(raw, None, rule).html) == ["http://z/hd.jpg"]


def test_image_proxy_off_by_default_and_scoped() -> None:
    raw = '<p><img src="http://a.example/1.jpg"><img src="https://b.example/2.jpg"></p>'
    assert _img_srcs(normalize(raw, None, SiteRule()).html) == [
        "http://a.example/1.jpg",
        "https://b.example/2.jpg",
    ]
    http_only = SiteRule(image_proxy="https://proxy.example/?u={url}")
    assert _img_srcs(normalize(raw, None, http_only).html) == [
        "https://proxy.example/?u=http://a.example/1.jpg",
        "https://b.example/2.jpg",
    ]
    by_host = SiteRule(
        image_proxy="https://proxy.example/?u={url}", image_proxy_hosts=("b.example",)
    )
    assert _img_srcs(normalize(raw, None, by_host).html) == [
        "http://a.example/1.jpg",
        "https://proxy.example/?u=https://b.example/2.jpg",
    ]
    off = http_only.merged(SiteRule(image_proxy=""))
    assert _img_srcs(normalize(raw, None, off).html)[0] == "http://a.example/1.jpg"


def test_tracking_pixels_and_icons() -> None:
    raw = (
        '<p><img src="https://icons.mydrivers.com/news/end_article.png">'
        '<img src="https://t.example/p.gif" width="1" height="1">'
        '<img src="https://img.example/logo.png" width="32">'
        '<img src="https://img.example/story.jpg">story</p>'
    )
    out = normalize(raw, None, SiteRule())
    assert "https://t.example/p.gif" not in out.html
    assert out.image == "https://img.example/story.jpg"


# --- structure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<p></p><p> </p><p>&nbsp;</p><p><br></p><p>a</p>", "<p>a</p>"),
        ("<div><div><div>deep</div></div></div>", "<p>deep</p>"),
        ("<div>one<br>two<div>three</div></div>", "<p>one<br>two</p>\n<p>three</p>"),
        ("<p><span style='color:red'><strong>b</strong></span> <font>f</font></p>",
         "<p><strong>b</strong> f</p>"),
        ("<p>a<strong> </strong>b</p>", "<p>a b</p>"),
        ("<ul><li>x</li><li></li><li><p>y</p></li></ul>", "<ul><li>x</li><li><p>y</p></li></ul>"),
        ("<ol start='3'><li>c</li></ol>", '<ol start="3"><li>c</li></ol>'),
        ("<blockquote>q<p>r</p></blockquote>", "<blockquote><p>q</p><p>r</p></blockquote>"),
        ("<pre>  a\n    b</pre>", "<pre>  a\n    b</pre>"),
        ("<table><tr><td colspan=2 style=x>c</td></tr></table>",
         '<table><tbody><tr><td colspan="2">c</td></tr></tbody></table>'),
        ("<figure><img src='https://x/a.jpg'><figcaption>cap</figcaption></figure>",
         '<figure><img src="https://x/a.jpg" referrerpolicy="no-referrer" loading="lazy">'
         "<figcaption>cap</figcaption></figure>"),
        ("<h2 class=t>Title</h2><hr><hr><p>x</p>", "<h2>Title</h2>\n<hr>\n<p>x</p>"),
        ("<p>a &amp; b &lt;c&gt;</p>", "<p>a &amp; b &lt;c&gt;</p>"),
    ],
)  # fmt: skip
def test_structure(raw: str, expected: str) -> None:
    out = normalize(raw, "https://example.org/", SiteRule())
    assert out.html == expected
    assert normalize(out.html, "https://example.org/", SiteRule()) == out


def test_text_has_paragraph_and_line_breaks() -> None:
    out = normalize("<p>one\n  two</p><p>three<br>\nfour</p>", None, SiteRule())
    assert out.text == "one two\nthree\nfour"


def test_drop_lines_match_whole_elements_only() -> None:
    rule = SiteRule(drop_lines=(r"本文来源：\S+",))
    out = normalize("<p>本文来源：某报</p><p>正文提到本文来源：某报。</p>", None, rule)
    assert out.text == "正文提到本文来源：某报。"


def test_remove_selectors_and_duplicates_are_safe() -> None:
    rule = SiteRule(remove=("div.ad", "div.ad", ".ad", "div.ad p"))
    raw = '<div class="ad"><p>buy</p><div class="ad">now</div></div><p>ok</p>'
    out = normalize(raw, None, rule)
    assert out.html == "<p>ok</p>"


def test_video_is_kept_with_controls() -> None:
    raw = (
        '<div class="video_container" style="width:100%"><video poster="/p.jpg" autoplay '
        'onplay="x()"><source src="/v.mp4" type="video/mp4"></video></div><p>text</p>'
    )
    out = normalize(raw, "https://example.org/a", SiteRule())
    assert out.html == (
        '<video poster="https://example.org/p.jpg" controls="">'
        '<source src="https://example.org/v.mp4" type="video/mp4"></video>\n<p>text</p>'
    )
    assert out.image == "https://example.org/p.jpg"  # no <img>: the poster leads


def test_summary_prefers_a_sentence_end() -> None:
    text = "句" * 150 + "。" + "尾" * 100
    out = normalize(f"<p>{text}</p>", None, SiteRule())
    assert out.summary == "句" * 150 + "。"
    out = normalize(f"<p>{'字' * 300}</p>", None, SiteRule())
    assert out.summary == "字" * SUMMARY_CHARS + "…"


def test_empty_and_garbage_input() -> None:
    assert normalize("", None, SiteRule()) == Normalized("", "", None, "")
    assert normalize("<script>x</script>", None, SiteRule()).html == ""
    assert normalize("plain text", None, SiteRule()).html == "<p>plain text</p>"


def _normalize_args(args: tuple[str, str | None, SiteRule]) -> Normalized:
    return normalize(*args)


def test_picklable_and_same_in_another_process() -> None:
    """Worker processes must produce byte-identical output (golden files, raw_hash updates)."""
    jobs = [(p.body, post_link(p), rule_for(p)) for p in POSTS]
    local = [normalize(*args) for args in jobs]
    assert pickle.loads(pickle.dumps(local[0])) == local[0]
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(_normalize_args, jobs)) == local


def test_mydrivers_lines_caught_without_their_classes() -> None:
    """A proxy that strips class attributes must not let the boilerplate back in."""
    raw = (
        "<p>正文。</p><p> - THE END - </p><div><p><strong>如需转载请务必注明出处：快科技"
        "</strong></p><p><span>责任编辑：朝晖</span><a href=\"javascript:;\">文章纠错</a></p>"
        '</div><p>话题标签：<a href="https://news.mydrivers.com/tag/xiaomi.htm">小米</a></p>'
    )
    out = normalize(raw, "https://news.mydrivers.com/1/1.htm", PROFILES["mydrivers"])
    assert out.html == "<p>正文。</p>"


def test_ithome_advertising_statement() -> None:
    raw = (
        "<p>IT之家 6 月 1 日消息，正文。</p><p class=\"ad-tips\">广告声明：文内含有的对外跳转"
        "链接（包括不限于超链接、二维码、口令等形式），用于传递更多信息，节省甄选时间，结果仅供"
        "参考，IT之家所有文章均包含本声明。</p>"
    )
    out = normalize(raw, "https://www.ithome.com/0/1/2.htm", PROFILES["ithome"])
    assert out.text == "IT之家 6 月 1 日消息，正文。"
    unclassed = raw.replace(' class="ad-tips"', "")
    assert normalize(unclassed, None, PROFILES["ithome"]).text == out.text
