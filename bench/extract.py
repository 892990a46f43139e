"""Full-text extraction quality: today's extractor (trafilatura) against the hand-written one
it replaced (run by hand, not by pytest).

    .venv/bin/python bench/extract.py [--rounds 3]

Each article (the ../shared corpus posts and seeds 000-003 where ../shared exists, and the
repository's fixture articles always) is wrapped in whole pages the way news sites serve
them: navigation and a breadcrumb above, a related-links box beside or under the article,
a copyright footer below; four layouts (semantic tags, a Chinese portal's class names,
meaningless class names where only the content can tell, and a CMS page whose article is
lines of text between <br>s, followed by readers' comments).  Each extractor's result goes
through ``normalize`` as in the pipeline, and is scored against ``normalize`` of the article
alone: character-bigram F1 (bigram multisets, whitespace removed; the measure issue 19 used),
the number of pages with an empty result (the entry would keep its teaser), and pages/s of
the extraction alone.

The hand-written extractor is read from git (``OLD_COMMIT``, the last commit that had it),
so the comparison needs no copy of removed code; without git history it is left out.
Without ../shared the bench says so and runs on the fixtures alone.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from corpus import SHARED_REASON, corpus_posts, seed_posts, shared_present  # noqa: E402

from scraper.core import fulltext  # noqa: E402
from scraper.core.normalize import normalize  # noqa: E402
from scraper.core.rules import SiteRule  # noqa: E402

#: The last commit whose scraper/core/fulltext.py had the hand-written extractor.
OLD_COMMIT = "72378ba"
FIXTURES = ROOT / "tests" / "fixtures"
URL = "https://news.example.com/2023/0828/article.html"

NAV = ["首页", "新闻", "科技", "财经", "汽车", "手机", "电脑", "游戏", "视频", "图片", "专题"]
#: A generic portal footer written for the bench (no site's real words).
FOOTER = [
    "关于我们 | 联系我们 | 广告服务 | 网站地图 | 招聘信息 | 违法和不良信息举报",
    "本站所有文章、图片版权均属本网所有，未经书面授权不得转载、摘编或以其他方式使用。",
    "Copyright © 2003-2023 news.example.com All Rights Reserved 京ICP备12345678号",
    "联系电话：010-12345678 邮箱：news@example.com",
]


Article = tuple[str, str, list[str]]  # title, article HTML, related headlines


def articles() -> list[Article]:
    items: list[tuple[str, str]] = []
    if shared_present():
        items += [(p.title, p.body) for p in [*corpus_posts(), *seed_posts()]]
    else:
        print(f"{SHARED_REASON}; the fixtures alone", file=sys.stderr)
    for name in ("mydrivers_robot", "mydrivers_robot_other", "zaker_robot",
                 "zaker_robot_trimmed", "mydrivers_robot_trimmed", "zaker_reprint_footer"):
        html = (FIXTURES / f"{name}.html").read_text("utf-8")
        items.append((f"图书馆机器人 {name}", html))
    titles = [t for t, _ in items]
    # Related links: the other articles' headlines, as a site lists its own stories.
    return [(t, h, [x for x in titles if x != t][:8]) for t, h in items]


def _links(titles: list[str]) -> str:
    return "".join(f'<li><a href="/n/{i}.html">{t}</a></li>' for i, t in enumerate(titles))


def semantic(title: str, body: str, related: list[str]) -> str:
    nav = "".join(f'<li><a href="/{i}/">{n}</a></li>' for i, n in enumerate(NAV))
    foot = "".join(f"<p>{f}</p>" for f in FOOTER)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}_新闻网</title>
</head><body><header><a href="/"><img src="/logo.png" alt="新闻网"></a><nav><ul>{nav}</ul></nav>
</header><div class="breadcrumb"><a href="/">首页</a> &gt; <a href="/tech/">科技</a> &gt; 正文</div>
<main><article><h1>{title}</h1><div class="meta">2023-08-28 10:00 来源：新闻网 作者：本网记者</div>
<div class="article-body">{body}</div></article>
<aside class="related"><h3>相关阅读</h3><ul>{_links(related)}</ul></aside></main>
<footer>{foot}</footer></body></html>"""


def portal(title: str, body: str, related: list[str]) -> str:
    """A Chinese portal's layout: pinyin class names, the related box inside the column."""
    nav = "".join(f'<a href="/{i}/">{n}</a>' for i, n in enumerate(NAV))
    foot = "".join(f"<p>{f}</p>" for f in FOOTER)
    return f"""<html><head><meta charset="utf-8"><title>{title}</title></head><body>
<div class="top_nav">{nav}</div><div class="weizhi">当前位置：<a href="/">首页</a> &gt; 科技</div>
<div class="main_left"><div class="news_title"><h1>{title}</h1></div>
<div class="news_info_top"><span>2023-08-28 10:00</span><span>来源：新闻网</span></div>
<div class="news_content">{body}</div>
<div class="xiangguan"><div class="xg_title">相关新闻</div><ul>{_links(related)}</ul></div></div>
<div class="main_right"><div class="paihang"><h3>热门排行</h3><ul>{_links(related[::-1])}</ul></div>
</div><div class="copyright">{foot}</div></body></html>"""


def div_soup(title: str, body: str, related: list[str]) -> str:
    """No semantic tags and meaningless class names: only the content can tell."""
    nav = " | ".join(f'<a href="/{i}/">{n}</a>' for i, n in enumerate(NAV))
    foot = "".join(f"<p>{f}</p>" for f in FOOTER)
    return f"""<html><head><title>{title}</title></head><body>
<div class="w1"><div class="c1">{nav}</div></div><div class="w1"><div class="c2">
<div class="c3"><span>2023-08-28</span> <a href="/tech/">科技</a></div>
<div class="c4">{body}</div></div><div class="c5"><div class="t">热点专题</div>
<ul>{_links(related)}</ul></div></div><div class="w2">{foot}</div></body></html>"""


def br_lines(title: str, body: str, related: list[str]) -> str:
    """A CMS page (TRS_Editor, common on Chinese news and government sites): the article is
    one block of text lines separated by <br>, the related box and the comments after it."""
    text = normalize(body, URL, SiteRule()).text.replace("\n", "<br>\n<br>\u3000\u3000")
    nav = "".join(f'<a href="/{i}/">{n}</a>' for i, n in enumerate(NAV))
    foot = "<br>".join(FOOTER)
    comments = "".join(f'<div class="cmt_item"><span class="user">网友{i}</span>'
                       f"<p>{t}，这篇报道写得不错，期待后续。</p></div>"
                       for i, t in enumerate(related[:4]))
    return f"""<html><head><meta charset="utf-8"><title>{title}</title></head><body>
<div id="top">{nav}</div><table width="980"><tr><td class="left">
<div class="title">{title}</div><div class="TRS_Editor">\u3000\u3000{text}</div>
<div class="xgxw">相关新闻：<ul>{_links(related)}</ul></div>
<div id="comments"><h4>网友评论</h4>{comments}</div></td>
<td class="right"><ul>{_links(related[::-1])}</ul></td></tr></table>
<div id="bottom">{foot}</div></body></html>"""


LAYOUTS: dict[str, Callable[[str, str, list[str]], str]] = {
    "semantic": semantic, "portal": portal, "div-soup": div_soup, "br-lines": br_lines,
}


def old_extractor() -> Callable[[str, str], str | None] | None:
    """The hand-written extractor, loaded from ``OLD_COMMIT`` (None without git history)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:scraper/core/fulltext.py"],
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print(f"git has no {OLD_COMMIT}: the hand-written extractor is left out",
              file=sys.stderr)
        return None
    module = types.ModuleType("old_fulltext")
    exec(compile(source, "old_fulltext.py", "exec"), module.__dict__)  # noqa: S102
    return lambda html, url: module.extract_article(html, url)


def bigrams(text: str) -> Counter[str]:
    flat = re.sub(r"\s+", "", text)
    return Counter(flat[i:i + 2] for i in range(len(flat) - 1))


def f1(got: str, want: str) -> float:
    g, w = bigrams(got), bigrams(want)
    if not g or not w:
        return 0.0
    hit = sum((g & w).values())
    if not hit:
        return 0.0
    precision, recall = hit / sum(g.values()), hit / sum(w.values())
    return 2 * precision * recall / (precision + recall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (best is kept)")
    args = ap.parse_args()

    pages = [(layout, fn(t, h, r), normalize(h, URL, SiteRule()).text)
             for t, h, r in articles() for layout, fn in LAYOUTS.items()]
    extractors: dict[str, Callable[[str, str], str | None]] = {
        "trafilatura (today)": fulltext.extract_article}
    old = old_extractor()
    if old is not None:
        extractors["hand-written (before)"] = old
    fulltext.extract_article(pages[0][1], URL)  # import trafilatura outside the timing

    print(f"{len(pages)} pages ({len(pages) // len(LAYOUTS)} articles x {len(LAYOUTS)} "
          "layouts), character-bigram F1 of the stored text")
    print(f"{'extractor':24} {'F1':>6} " + " ".join(f"{k:>9}" for k in LAYOUTS)
          + f" {'empty':>6} {'pages/s':>8}")
    for name, extract in extractors.items():
        best = float("inf")
        outs: list[str | None] = []
        for _ in range(max(1, args.rounds)):
            start = time.perf_counter()
            outs = [extract(page, URL) for _, page, _ in pages]
            best = min(best, time.perf_counter() - start)
        scores: dict[str, list[float]] = {k: [] for k in LAYOUTS}
        empty = 0
        for (layout, _, want), out in zip(pages, outs, strict=True):
            got = normalize(out, URL, SiteRule()).text if out else ""
            empty += not got
            scores[layout].append(f1(got, want))
        everything = [s for v in scores.values() for s in v]
        print(f"{name:24} {sum(everything) / len(everything):6.3f} "
              + " ".join(f"{sum(v) / len(v):9.3f}" for v in scores.values())
              + f" {empty:6d} {len(pages) / best:8.0f}")


if __name__ == "__main__":
    main()
