"""Full-text extraction and page decoding, on pages built around ../shared/seeds/004.

Seed 004 is a china.org.cn article flattened to text: fifteen paragraphs (each opened by
an ideographic double space), then the titles of the site's related-link blocks run
together, then the copyright footer.  The tests rebuild an HTML page from those pieces,
so the article, the links and the footer are exactly the seed's words.
"""

from __future__ import annotations

import re
from pathlib import Path

from corpus import seed_text, when_shared
from selectolax.lexbor import LexborHTMLParser

from scraper.core.fulltext import decode_page, extract_article
from scraper.core.normalize import normalize
from scraper.core.rules import SiteRule

#: The related-link titles at the seed's tail, as the site lists them (read off the seed;
#: the test below checks they add up to the seed's text).
RELATED = [
    "神舟十五号计划择机发射", "郑州机场北货运区试运营", "广州机务段“机车大夫”",
    "宁德助力新能源产业发展", "2021年全国两会聚焦“中国力量”", "2021年全国两会金融业报道",
    "2021年3·15消费曝光台", "中医名医汇 解读中医本源", "中小银行普惠金融之道",
    "对话金融科技二十人", "聚焦2020年商业银行年报", "金融护航六稳六保 构建双循环",
    "银行业分支机构服务实体经济巡礼", "大力发展信用卡 助力构建双循环",
    "第一届区块链创新高峰论坛", "中国新经济企业500强发布会", "2020中国国际金融安全论坛",
    "2020年外滩金融峰会", "第三届中国医养保险高峰论坛", "区块链大航海时代行业峰会",
]  # fmt: skip
FOOTER = [
    "中国网是国务院新闻办公室领导，中国外文出版发行事业局管理的国家重点新闻网站。"
    "本网通过10个语种11个文版，24小时对外发布信息，是中国进行国际传播、信息交流的重要窗口。",
    "凡本网站注明“来源：中国网科技”的所有作品，均为本网合法拥有版权或有权使用的作品，"
    "未经本网授权不得转载、摘编或利用其它方式使用上述作品。",
    "电话：0086-10-82081166-6059",
    "传真：0086-10-82081900",
    "邮箱：alltech@china.org.cn",
    "官方微信",
    "官方微博",
]
NAV = ["首页", "科技", "金融", "汽车", "房产", "健康", "视频", "图片"]


def _article_paragraphs() -> list[str]:
    body, _, _tail = seed_text("004").partition(" " + RELATED[0])
    return [p.strip() for p in body.split("\u3000\u3000") if p.strip()]


#: Module-level because test_fulltext_pipeline imports it; without ../shared the tests that
#: read it are skipped (corpus.when_shared).
PARAGRAPHS = when_shared(_article_paragraphs)


def test_seed_pieces_add_up_to_the_seed() -> None:
    """Guards the fixture: paragraphs + related titles + footer are the seed, nothing else."""
    assert len(PARAGRAPHS) == 14  # the seed opens 14 paragraphs with "\u3000\u3000"
    assert PARAGRAPHS[0].startswith("5月23日，小米与徕卡宣布达成战略影像合作")
    assert PARAGRAPHS[-1].endswith("很难撬动专业用户。")
    rebuilt = "\u3000\u3000".join(PARAGRAPHS) + " " + "".join(RELATED) + "".join(FOOTER)
    assert re.sub(r"\s", "", rebuilt) == re.sub(r"\s", "", seed_text("004").lstrip("\u3000"))


def semantic_page() -> str:
    paras = "".join(f"<p>\u3000\u3000{p}</p>\n" for p in PARAGRAPHS)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>小米牵手徕卡 手机影像争夺战升级_中国网科技</title>
<script>var _hmt = _hmt || [];</script></head>
<body>
<header><div class="logo"><a href="/"><img src="/images/logo.png"></a></div>
<nav><ul>{"".join(f'<li><a href="/{i}/">{n}</a></li>' for i, n in enumerate(NAV))}</ul></nav>
</header>
<div class="breadcrumb"><a href="/">首页</a> &gt; <a href="/tech/">科技</a> &gt; 正文</div>
<article>
<h1>小米牵手徕卡 手机影像争夺战升级</h1>
<div class="info">2022-05-24 09:12 来源：北京商报</div>
<div class="share"><a href="#weibo">分享到微博</a><a href="#wechat">微信</a></div>
{paras}
<p><img src="/imgs/2022-05/24/leica.jpg" alt="小米徕卡"></p>
</article>
<aside class="related"><h3>相关新闻</h3><ul>
{"".join(f'<li><a href="/r/{i}.htm">{t}</a></li>' for i, t in enumerate(RELATED))}
</ul></aside>
<footer><p>{FOOTER[0]}</p><p>{FOOTER[1]}</p>
<p>{FOOTER[2]}{FOOTER[3]}{FOOTER[4]}</p><div>{FOOTER[5]}{FOOTER[6]}</div></footer>
</body></html>"""


def div_soup_page() -> str:
    """No semantic tags and meaningless class names: only the scoring can tell."""
    paras = "".join(f"<p>\u3000\u3000{p}</p>\n" for p in PARAGRAPHS)
    links = "".join(f'<a href="/{i}/">{n}</a> | ' for i, n in enumerate(NAV))
    related = "".join(f'<li><a href="/r/{i}.htm">{t}</a></li>' for i, t in enumerate(RELATED))
    return f"""<html><head><title>小米牵手徕卡 手机影像争夺战升级</title></head><body>
<div class="w1"><div class="c1">{links}</div></div>
<div class="w1">
  <div class="c2">
    <div class="c3"><span>2022-05-24</span> <a href="/tech/">中国网科技</a></div>
    <div class="c4">{paras}</div>
  </div>
  <div class="c5"><div class="t">热点专题</div><ul>{related}</ul></div>
</div>
<div class="w2"><p>{FOOTER[0]}</p><p>{FOOTER[1]}</p>
<p>{FOOTER[2]} {FOOTER[3]} {FOOTER[4]}</p><p>{FOOTER[5]} {FOOTER[6]}</p></div>
</body></html>"""


def _text_of(article_html: str, url: str) -> str:
    return normalize(article_html, url, SiteRule()).text


def _assert_only_article(text: str, footer: list[str] = FOOTER) -> None:
    flat = re.sub(r"\s", "", text)
    for p in PARAGRAPHS:
        assert re.sub(r"\s", "", p) in flat, p[:30]
    for t in RELATED:
        assert t not in text, t
    for f in footer:
        assert f not in text, f
    for n in ("首页", "分享到微博", "热点专题", "相关新闻"):
        assert n not in text, n


def test_generic_extractor_keeps_only_the_article() -> None:
    url = "http://127.0.0.2/tech/2022-05/24/content_78233521.htm"
    out = extract_article(semantic_page(), url)
    assert out is not None
    _assert_only_article(_text_of(out, url))


def test_class_less_footer_loses_its_copyright_and_contact_lines() -> None:
    """With no tag or class to tell, trafilatura keeps the page's footer; the trailing
    copyright, contact and follow-us lines go by their words.  The footer's first line, a
    sentence about the site in no footer's vocabulary, stays: a known limit (issue 19)."""
    url = "http://127.0.0.2/tech/2022-05/24/content_78233521.htm"
    out = extract_article(div_soup_page(), url)
    assert out is not None
    _assert_only_article(_text_of(out, url), footer=FOOTER[1:])


def test_relative_urls_resolve_against_the_page() -> None:
    url = "http://tech.china.org.cn/mobile/2022-05/24/content_78233521.htm"
    out = extract_article(semantic_page(), url)
    assert out is not None
    n = normalize(out, url, SiteRule())
    assert n.image == "http://tech.china.org.cn/imgs/2022-05/24/leica.jpg"


def test_base_href_wins_over_the_page_url() -> None:
    page = semantic_page().replace("<head>", '<head><base href="https://img.example.net/x/">')
    out = extract_article(page, "https://tech.example.org/a/b.htm")
    assert out is not None
    assert 'src="https://img.example.net/imgs/2022-05/24/leica.jpg"' in out


def test_content_selector_is_used_when_it_matches() -> None:
    page = div_soup_page()
    out = extract_article(page, "https://example.org/a.htm", content_selector="div.c4")
    assert out is not None and out.startswith('<div class="c4">')
    _assert_only_article(_text_of(out, "https://example.org/a.htm"))


def test_content_selector_that_matches_nothing_falls_back() -> None:
    out = extract_article(semantic_page(), "https://example.org/a.htm", "div.news_info")
    assert out is not None
    _assert_only_article(_text_of(out, "https://example.org/a.htm"))


NEWS_PAGE = (Path(__file__).parent / "fixtures" / "news_page.html").read_text("utf-8")


def test_content_selector_wins_over_the_generic_extractor() -> None:
    """Runs without ../shared: a configured selector is obeyed even where trafilatura would
    find the article (here it picks the related box, which no extractor would)."""
    url = "https://news.example.org/news/1.html"
    related = [a.text(strip=True) for a in LexborHTMLParser(NEWS_PAGE).css("aside li a")]
    out = extract_article(NEWS_PAGE, url, content_selector="aside.related")
    assert out is not None
    assert _text_of(out, url).split("\n")[1:] == related
    generic = extract_article(NEWS_PAGE, url, content_selector="div.no-such-block")
    assert generic is not None and not any(r in _text_of(generic, url) for r in related)
    assert "错架率从引入前的百分之二" in _text_of(generic, url)


def test_a_short_article_keeps_its_paragraphs_and_loses_its_heading() -> None:
    """A two-paragraph ZAKER reprint on a page: its paragraphs come out as they are, without
    the page's title, dateline or 快科技's footer (the signature profile), where trafilatura's
    defaults distrust so short a result and return the whole <article> as one paragraph."""
    url = "https://news.example.org/news/2.html"
    article = (Path(__file__).parent / "fixtures" / "zaker_reprint_footer.html").read_text()
    page = ("<html><head><title>机器人走红_新闻网</title></head><body><header><nav><ul>"
            + "".join(f"<li><a href='/{n}/'>{n}</a></li>" for n in NAV) + "</ul></nav></header>"
            "<main><article><h1>机器人走红</h1><div class='meta'>2023-08-30 10:00 来源：新闻网"
            f"</div><div class='article-body'>{article}</div></article></main>"
            "<footer><p>Copyright © 2023 新闻网</p></footer></body></html>")
    out = extract_article(page, url)
    assert out is not None
    assert _text_of(out, url) == _text_of(article, url)


def test_the_title_and_dateline_above_the_article_are_dropped() -> None:
    """A portal's heading (pinyin class names trafilatura does not know) stays out: the
    entry has its own title and date."""
    url = "https://news.example.org/news/3.html"
    article = (Path(__file__).parent / "fixtures" / "mydrivers_robot.html").read_text()
    page = ("<html><head><title>图书馆机器人一夜整理3万册书</title></head><body>"
            "<div class='top_nav'>" + " ".join(f"<a href='/{n}/'>{n}</a>" for n in NAV)
            + "</div><div class='main_left'><div class='news_title'><h1>图书馆机器人一夜整理3万册书"
            "</h1></div><div class='news_info_top'><span>2023-08-28 10:00</span>"
            f"<span>来源：新闻网</span></div><div class='news_content'>{article}</div></div>"
            "</body></html>")
    out = extract_article(page, url)
    assert out is not None
    assert _text_of(out, url) == _text_of(article, url)


def test_page_without_an_article_gives_none() -> None:
    page = "<html><body><ul>" + "".join(f'<li><a href="/{i}">{n}</a></li>' for i, n in
                                        enumerate(NAV)) + "</ul></body></html>"  # fmt: skip
    assert extract_article(page, "https://example.org/") is None


def test_gbk_page_end_to_end() -> None:
    page = semantic_page().replace('<meta charset="utf-8">', '<meta charset="gb2312">')
    body = page.encode("gb18030")
    text = decode_page(body, {"Content-Type": "text/html"})
    out = extract_article(text, "https://example.org/a.htm")
    assert out is not None
    _assert_only_article(_text_of(out, "https://example.org/a.htm"))


# --- decode_page --------------------------------------------------------------------------

# "𠮷" (U+20BB7) and "镕" are outside GB2312: a gb2312/gbk decoder loses or mangles them.
CHINESE = "朱镕基与𠮷野家：小米与徕卡达成战略合作。"


def test_header_charset_gb2312_decodes_as_gb18030() -> None:
    body = f"<p>{CHINESE}</p>".encode("gb18030")
    assert CHINESE in decode_page(body, {"content-type": "text/html; charset=GB2312"})


def test_header_beats_meta() -> None:
    body = f'<meta charset="utf-8"><p>{CHINESE}</p>'.encode("gb18030")
    assert CHINESE in decode_page(body, {"Content-Type": 'text/html; charset="gbk"'})


def test_meta_charset_and_http_equiv() -> None:
    for meta in ('<meta charset="gbk">',
                 '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">'):
        body = f"<html><head>{meta}</head><body>{CHINESE}</body></html>".encode("gb18030")
        assert CHINESE in decode_page(body, {}), meta


def test_detection_without_declarations() -> None:
    assert CHINESE in decode_page(CHINESE.encode("utf-8"), {})
    assert CHINESE in decode_page(("<p>" + CHINESE * 3 + "</p>").encode("gb18030"), {})
    # Western text in windows-1252 must not come out as GB18030 mojibake.
    assert decode_page("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("cp1252"), {}) == (
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    )


def test_bom_and_bogus_labels() -> None:
    assert decode_page(b"\xef\xbb\xbf" + CHINESE.encode(), {"content-type": "charset=gbk"}) == (
        CHINESE
    )
    # A page cannot choose a non-text codec; an unknown label falls through to detection.
    assert decode_page(CHINESE.encode(), {"content-type": "text/html; charset=base64"}) == (
        CHINESE
    )
    assert decode_page(CHINESE.encode(), {"content-type": "text/html; charset=nope"}) == CHINESE
