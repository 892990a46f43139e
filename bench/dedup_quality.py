"""Precision and recall of the deduplicator on a synthetic corpus built from ../shared/corpus.

    /tmp/venv/bin/python bench/dedup_quality.py [--rounds 40] [--seed 1] [--shingle 5]
                                                [--threshold 0.8]

Each base article is one of the corpus' distinct texts, stored first.  Each variant is then
stored alone after them (and rolled back) through the production path (``dedup.link_entries``:
fingerprint, LSH index, exact confirmation), and the bench checks where it was linked:

- a positive kind should link the variant to its own base (recall = linked right / variants),
  whichever of the two became the cluster's root;
- a hard negative (same event, at most 70% of its characters shared with the base, the rest
  from other articles, never more than half of any one of them) should link to nothing;
- precision = links to the right base / all links made.

Then the kinds of issue 19, each a few entries stored in order (fresh, rolled back) and
judged twice: for duplicates (pairs put in one cluster) and for stories (pairs given one
``entries.story``), with precision and recall of each:

- boilerplate of another site: a 快科技 post normalized as if served from another host
  (no host rule: only rules that recognize the site by its markup can drop its footer),
  after its clean text from its own site: a duplicate;
- teaser then article: the article's first 40-90 characters and a link text, then (an hour later,
  another site) the article with 1% edits: a duplicate, and the article must be the root;
- generic titles: three items under one template title ("早报", ...), two about unrelated
  articles and one with nothing beyond its title: nothing;
- same story: the corpus' 密室逃脱 pair (two write-ups of one event), and pairs of
  newsflashes that each take different sentences of one article under its title (one
  reworded): one story, no duplicate;
- look-alike templates: two deal posts from one template (different products and prices),
  and two daily briefs from one template (consecutive dates, different headlines): nothing.

Baselines measured in the same run on the same pairs: the 64-bit SimHash over character
3-grams at Hamming distance <= 3 (Manku et al. 2007; the DESIGN.md sketch), and Jaccard of
character 3-grams >= 0.8 (the issue's MinHash figure, computed exactly: the best any MinHash
estimator of it can do).
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from corpus import corpus_posts  # noqa: E402
from selectolax.lexbor import LexborHTMLParser  # noqa: E402

from scraper import dedup  # noqa: E402
from scraper import storage as store  # noqa: E402
from scraper.core import fingerprint  # noqa: E402

#: Lines where the site's boilerplate starts (快科技's end-of-article block); the production
#: path removes these with site rules in normalize.py.
_BOILERPLATE_START = ("如需转载", "- THE END -")


def post_text(body_html: str) -> str:
    """Plain text of a corpus post: one line per block, boilerplate tail dropped."""
    text = LexborHTMLParser(body_html).text(separator="\n")
    lines = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith(_BOILERPLATE_START):
            break
        if line:
            lines.append(line)
    return "\n".join(lines)


def base_texts() -> list[str]:
    """The corpus' distinct articles (one per duplicate group), as lists of paragraphs."""
    return [text for _, text in base_posts()]


def base_posts() -> list[tuple[str, str]]:
    """(title, text) of the corpus' distinct articles (one per duplicate group)."""
    seen: set[str] = set()
    out: list[str] = []
    titles: list[str] = []
    settings = dedup.DedupSettings()
    for post in corpus_posts():
        text = post_text(post.body)
        fp = fingerprint.compute(post.title, text, None, settings)
        sig = fingerprint.shingle_set(fingerprint.fold_text(text), 5)
        if fp.text_hash in seen or any(
            fingerprint.similarity(sig, fingerprint.shingle_set(fingerprint.fold_text(t), 5))[1]
            > 0.5 for t in out
        ):
            continue
        seen.add(fp.text_hash)
        out.append(text)
        titles.append(post.title)
    return list(zip(titles, out, strict=True))


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n") if p.strip()]


# -- variant makers -----------------------------------------------------------------------

def edit(rate: float) -> Callable[[str, random.Random, list[str]], str]:
    def make(text: str, rng: random.Random, pool: list[str]) -> str:
        chars = list(text)
        alphabet = [c for c in "".join(pool) if not c.isspace()]
        positions = [i for i, c in enumerate(chars) if c != "\n"]
        for i in rng.sample(positions, max(1, round(len(positions) * rate))):
            op = rng.random()
            if op < 0.6:
                chars[i] = rng.choice(alphabet)
            elif op < 0.8:
                chars[i] = ""
            else:
                chars[i] = chars[i] + rng.choice(alphabet)
        return "".join(chars)
    return make


def _donors(text: str, pool: list[str]) -> list[str]:
    """Other articles that share no paragraph with ``text`` (the corpus' two 快科技 Leica
    stories quote each other: borrowing one for the other's negative would plant overlap)."""
    mine = fingerprint.shingle_set(fingerprint.fold_text(text), 5)
    return [t for t in pool if t != text and fingerprint.similarity(
        mine, fingerprint.shingle_set(fingerprint.fold_text(t), 5))[1] < 0.1]


def _foreign(rng: random.Random, pool: list[str], exclude: str, size: int) -> str:
    """``size`` characters of running text from other articles, at most half of each, with no
    piece repeated."""
    donors = _donors(exclude, pool)
    rng.shuffle(donors)
    out = ""
    for donor in donors:
        flat = donor.replace("\n", "")
        take = min(len(flat) // 2, size - len(out))
        start = rng.randrange(len(flat) - take + 1)
        out += flat[start : start + take]
        if len(out) >= size:
            break
    return out


def header(text: str, rng: random.Random, pool: list[str]) -> str:
    """An editor's introduction of 10-25% of the article's length."""
    size = int(len(text) * rng.uniform(0.10, 0.25))
    return f"编者按：{_foreign(rng, pool, text, size)}\n{text}"


def footer(text: str, rng: random.Random, pool: list[str]) -> str:
    size = int(len(text) * rng.uniform(0.10, 0.25))
    return f"{text}\n{_foreign(rng, pool, text, size)}\n（来源：网络 责任编辑：小编）"


def reorder(text: str, rng: random.Random, pool: list[str]) -> str:
    paras = paragraphs(text)
    shuffled = paras[:]
    while len(paras) > 1 and shuffled == paras:
        rng.shuffle(shuffled)
    return "\n".join(shuffled)


_CJK_PUNCT = {"，": ",", "：": ":", "（": "(", "）": ")", "！": "!", "？": "?", "；": ";"}


def spacing(text: str, rng: random.Random, pool: list[str]) -> str:
    """ZAKER-style spacing, quote styles and width variants, each applied or not."""
    if rng.random() < 0.7:  # spaces around digits and Latin words: "8 月 28 日"
        text = re.sub(r"(?<=[^\x00-\x7f])([0-9A-Za-z.%]+)(?=[^\x00-\x7f])", r" \1 ", text)
    if rng.random() < 0.7:  # “x” <-> " x "
        text = re.sub(r"[“”]", ' " ', text) if "“" in text else text.replace('"', rng.choice("“”"))
    if rng.random() < 0.7:  # full-width digits and letters
        text = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)
    if rng.random() < 0.5:
        text = "".join(_CJK_PUNCT.get(c, c) for c in text)
    return text


def trim(text: str, rng: random.Random, pool: list[str]) -> str:
    """Drop paragraphs (about 15-25% of the characters), as 快科技 did to the 龙芯 release."""
    paras = paragraphs(text)
    total = sum(map(len, paras))
    keep = paras[:]
    while len(keep) > 2 and sum(map(len, keep)) > total * 0.85:
        victim = rng.randrange(1, len(keep))
        if sum(map(len, keep)) - len(keep[victim]) < total * 0.75:
            break
        keep.pop(victim)
    return "\n".join(keep)


def hard_negative(text: str, rng: random.Random, pool: list[str]) -> str:
    """Same event, different article: at most 70% of the characters shared with ``text``,
    the rest written by someone else (running text from other articles)."""
    paras = paragraphs(text)
    total = sum(map(len, paras))
    shared_target = total * rng.uniform(0.5, 0.7)
    order = list(range(len(paras)))
    rng.shuffle(order)
    shared: list[int] = []
    size = 0
    for i in order:
        if size + len(paras[i]) <= shared_target:
            shared.append(i)
            size += len(paras[i])
    extra = _foreign(rng, pool, text, total - size)
    pieces = [paras[i] for i in sorted(shared)]
    while extra:
        cut = rng.randint(40, 160)
        pieces.insert(rng.randrange(len(pieces) + 1), extra[:cut])
        extra = extra[cut:]
    return "\n".join(pieces)


KINDS: dict[str, tuple[Callable[[str, random.Random, list[str]], str], bool, float | None]] = {
    # kind: (maker, is a duplicate, recall target)
    "edit 1%": (edit(0.01), True, 0.95),
    "edit 2%": (edit(0.02), True, 0.95),
    "edit 3%": (edit(0.03), True, 0.95),
    "edit 5%": (edit(0.05), True, None),
    "header": (header, True, 0.95),
    "footer": (footer, True, 0.95),
    "reorder": (reorder, True, 0.95),
    "spacing/quotes/width": (spacing, True, 0.95),
    "trim 15-25%": (trim, True, None),
    "hard negative <=70%": (hard_negative, False, None),
}


# -- baselines ----------------------------------------------------------------------------

def simhash64(folded: str) -> int:
    h = fingerprint.shingle_hashes(folded, 3)
    bits = ((h[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int32)
    weights = (2 * bits - 1).sum(axis=0)
    return int(sum(1 << i for i in range(64) if weights[i] > 0))


def baseline_links(a: str, b: str) -> tuple[bool, bool]:
    fa, fb = fingerprint.fold_text(a), fingerprint.fold_text(b)
    sim = bin(simhash64(fa) ^ simhash64(fb)).count("1") <= 3
    jac, _ = fingerprint.similarity(fingerprint.shingle_set(fa, 3), fingerprint.shingle_set(fb, 3))
    return sim, jac >= 0.8


# -- the run ------------------------------------------------------------------------------

_NOW = "2024-01-01T00:00:00Z"


def _insert(conn: sqlite3.Connection, feed: str, key: str, text: str) -> int:
    cur = conn.execute(
        "INSERT INTO entries (feed, entry_key, title, content_text, published, fetched_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", (feed, key, f"{feed} {key}", text, _NOW,
                                                     _NOW, _NOW))
    return int(cur.lastrowid)


def store_bases(conn: sqlite3.Connection, bases: list[str],
                settings: dedup.DedupSettings) -> list[int]:
    with store.transaction(conn):
        ids = [_insert(conn, "base", str(i), text) for i, text in enumerate(bases)]
        dedup.link_entries(conn, ids, settings)
    return ids


def link_variant(conn: sqlite3.Connection, base_ids: list[int], variant: str,
                 settings: dedup.DedupSettings) -> int | None:
    """Store one variant after the bases, link it, and roll back: variants never see each
    other (two synthetic negatives built from the same small pool can overlap for real)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        entry_id = _insert(conn, "variant", "v", variant)
        dedup.link_entries(conn, [entry_id], settings)
        to = conn.execute("SELECT duplicate_of FROM entries WHERE id = ?",
                          (entry_id,)).fetchone()[0]
        if to is None:  # the variant may have become its cluster's root (issue 19)
            row = conn.execute("SELECT min(id) FROM entries WHERE duplicate_of = ?",
                               (entry_id,)).fetchone()
            to = row[0] if row else None
    finally:
        conn.execute("ROLLBACK")
    return None if to is None else base_ids.index(to)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shingle", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args(argv)
    settings = dedup.DedupSettings()
    if args.shingle:
        settings = replace(settings, shingle=args.shingle)
    if args.threshold:
        settings = replace(settings, threshold=args.threshold)
    bases = base_texts()
    rng = random.Random(args.seed)
    print(f"{len(bases)} base articles ({min(map(len, bases))}-{max(map(len, bases))} "
          f"characters), {args.rounds} rounds per kind; shingle {settings.shingle}, "
          f"containment >= {settings.threshold}, {settings.bands} bands x {settings.rows} rows")
    header_row = (f"{'kind':22} {'pairs':>5} {'recall':>7} {'prec':>6} {'false':>5} "
                  f"{'min cont':>8} {'min jac':>7} | {'simhash':>7} {'jac3>=.8':>8} | target")
    print(header_row)
    print("-" * len(header_row))
    failed = False
    targeted: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        conn = store.connect(Path(directory) / "quality.db")
        base_ids = store_bases(conn, bases, settings)
        for kind, (maker, positive, target) in KINDS.items():
            right = wrong = missed = 0
            sim_hits = jac_hits = 0
            conts = []
            jacs = []
            for _ in range(args.rounds):
                variants = [maker(text, rng, bases) for text in bases]
                linked = [link_variant(conn, base_ids, v, settings) for v in variants]
                for i, (text, variant, to) in enumerate(zip(bases, variants, linked, strict=True)):
                    a = fingerprint.shingle_set(fingerprint.fold_text(text), settings.shingle)
                    b = fingerprint.shingle_set(fingerprint.fold_text(variant), settings.shingle)
                    jac_k, cont_k = fingerprint.similarity(a, b)
                    conts.append(cont_k)
                    jacs.append(jac_k)
                    sim, jac = baseline_links(text, variant)
                    sim_hits += sim
                    jac_hits += jac
                    if to is None:
                        missed += 1
                    elif positive and to == i:
                        right += 1
                    else:
                        wrong += 1
            pairs = args.rounds * len(bases)
            made = right + wrong
            if positive:
                recall = right / pairs
                sim_col, jac_col = f"{sim_hits / pairs:7.2f}", f"{jac_hits / pairs:8.2f}"
                ok = target is None or recall >= target
                verdict = f">= {target}: {'ok' if ok else 'MISSED'}" if target else "-"
                print(f"{kind:22} {pairs:5} {recall:7.3f} "
                      f"{(right / made if made else 1.0):6.3f} {wrong:5} {min(conts):8.2f} "
                      f"{min(jacs):7.2f} | {sim_col} {jac_col} | {verdict}")
                if target is not None:
                    targeted.append((recall, sim_hits / pairs, jac_hits / pairs))
            else:
                ok = wrong == 0
                print(f"{kind:22} {pairs:5} {'-':>7} {'-':>6} {wrong:5} {max(conts):8.2f} "
                      f"{max(jacs):7.2f} | {sim_hits:7d} {jac_hits:8d} | "
                      f"0 false: {'ok' if ok else 'MISSED'}")
            failed |= not ok
        conn.close()
    print("\nrecall = variants linked to their own base / variants; false = links to the wrong "
          "entry\n(for the hard negatives, any link); min cont / min jac = lowest shingle "
          "containment\nand Jaccard seen (highest, for negatives).  simhash / jac3>=.8 = the "
          "baselines' recall\non the same pairs (for negatives: their false links).")
    ours, sim, jac = (sum(col) / len(targeted) for col in zip(*targeted, strict=True))
    print(f"\nmean recall over the targeted kinds: ours {ours:.3f}; simhash {sim:.3f} "
          f"(ours x{ours / max(sim, 1e-9):.1f}); jac3>=.8 {jac:.3f} (ours x{ours / jac:.2f})")
    failed |= stories_table(args.rounds, rng, settings)
    return 1 if failed else 0



# -- issue 19: sequences judged for duplicates and for stories ----------------------------

#: One entry of a sequence: (title, text, hours after the first).
Item = tuple[str, str, float]
#: A sequence, the pairs (indexes) that must share a cluster, and those that must share a
#: story; every other pair must share neither.
Case = tuple[list[Item], set[tuple[int, int]], set[tuple[int, int]]]

_SENTENCE = re.compile(r"[^。！？]*[。！？]")
_T0 = "2024-02-01T00:00:00Z"


def sentences(text: str) -> list[str]:
    return [x.strip() for x in _SENTENCE.findall(text.replace("\n", "")) if len(x.strip()) > 8]


def boilerplate_cases() -> list[Case]:
    """Each 快科技 post of the corpus, its footer kept (normalized as served from 127.0.0.1),
    after the clean text of its story from its own site (its group's other post, if any)."""
    from scraper.core import normalize, rules

    posts = corpus_posts()
    out: list[Case] = []
    for post in posts:
        if "ZAKER" in post.path.parts:
            continue
        foreign = "http://127.0.0.1:8080/article/1.html"
        text = normalize.normalize(post.body, foreign, rules.resolve_rule(foreign, None, {})).text
        clean = post_text(post.body)
        source = next((p for p in posts if "ZAKER" in p.path.parts and fingerprint.similarity(
            fingerprint.shingle_set(fingerprint.fold_text(post_text(p.body)), 5),
            fingerprint.shingle_set(fingerprint.fold_text(clean), 5))[1] > 0.5), None)
        first = (source.title, post_text(source.body)) if source else (post.title, clean)
        out.append(([(*first, 0.0), (post.title, text, 1.0)], {(0, 1)}, set()))
    return out


def teaser_case(title: str, text: str, rng: random.Random) -> Case:
    """A feed's teaser: the article's first 40-90 characters, an ellipsis and a link text
    (under ``short_chars``, as RSS teasers are)."""
    lead = text.replace("\n", "")[: rng.randint(40, 90)]
    return ([(title, lead + "……点击查看全文", 0.0),
             (title, edit(0.01)(text, rng, [text]), 1.0)], {(0, 1)}, set())


_GENERIC = ("早报", "快讯：今日要闻", "每日简报", "晚报")


def generic_case(posts: list[tuple[str, str]], rng: random.Random) -> Case:
    (_, a), (_, b) = rng.sample(posts, 2)
    title = rng.choice(_GENERIC)
    return ([(title, a.replace("\n", "")[:80], 0.0), (title, b.replace("\n", "")[:80], 2.0),
             (title, title, 4.0)], set(), set())


def newsflash_case(title: str, text: str, rng: random.Random) -> Case | None:
    """Two newsflashes of one article: three sentences each, the shortest in common, and at
    most a third of either (more would make them near-duplicates, not two write-ups)."""
    parts = sentences(text)
    if len(parts) < 6:
        return None
    picked = sorted(rng.sample(parts, 5), key=len)
    rest = picked[1:]
    rng.shuffle(rest)
    first = "".join([picked[0], *rest[:2]])
    second = "".join([picked[0], *rest[2:]])
    if len(picked[0]) * 3 > min(len(first), len(second)):
        return None
    reworded = rng.choice((title + "，详情曝光", "快讯：" + title, title + "（更新）"))
    return [(title, first, 0.0), (reworded, second, 3.0)], set(), {(0, 1)}


def corpus_story_cases() -> list[Case]:
    """The corpus' two write-ups of one event (its README: 密室逃脱, not a duplicate)."""
    posts = [p for p in corpus_posts() if "密室逃脱" in p.title]
    posts.sort(key=lambda p: p.date)
    hours = (posts[1].date - posts[0].date).total_seconds() / 3600
    return [([(posts[0].title, post_text(posts[0].body), 0.0),
              (posts[1].title, post_text(posts[1].body), hours)], set(), {(0, 1)})]


_PRODUCTS = [("小米手环8 NFC版", "1.62英寸AMOLED屏幕，支持150多种运动模式，续航最长16天"),
             ("华为手环9", "1.47英寸AMOLED屏幕，机身仅重14克，支持科学睡眠监测"),
             ("AirPods Pro 2", "主动降噪，自适应通透模式，USB-C充电盒，续航6小时"),
             ("Kindle Paperwhite 5", "6.8英寸墨水屏，300ppi，IPX8防水，续航10周"),
             ("罗技MX Master 3S", "8000DPI静音微动，MagSpeed电磁滚轮，可连三台设备"),
             ("小米充电宝20000mAh", "22.5W双向快充，三口输出，可上飞机")]


def template_case(posts: list[tuple[str, str]], rng: random.Random) -> Case:
    if rng.random() < 0.5:
        items = []
        for k, (name, spec) in enumerate(rng.sample(_PRODUCTS, 2)):
            price = rng.randrange(99, 999)
            items.append((f"【好价】{name} 京东到手{price}元",
                          f"京东自营现售{name}，标价{price + 50}元，下单立减50元，叠加PLUS会员"
                          f"券后到手价{price}元，为近期低价。{spec}。值友提醒：价格随时变动，"
                          "请以实际下单页面为准。本文由好价频道整理，商品信息来自商家页面，转载"
                          "请注明出处。", float(k)))
        return items, set(), set()
    day = rng.randrange(1, 27)
    items = []
    chosen = rng.sample(posts, 6)  # each day its own three headlines
    for k in range(2):
        heads = [sentences(t)[0][:60] for _, t in chosen[3 * k : 3 * k + 3]]
        items.append((f"科技早报｜2月{day + k}日", "早上好，以下是今天值得关注的科技新闻。"
                      + "".join(f"{i + 1}、{h}" for i, h in enumerate(heads))
                      + "以上就是今天的早报，我们明天见。", 24.0 * k))
    return items, set(), set()


def run_case(conn: sqlite3.Connection, items: list[Item], settings: dedup.DedupSettings
             ) -> tuple[list[int], list[int | None], list[int]]:
    """Store and link the items one at a time, in order; their (roots, stories, ids)."""
    from datetime import timedelta

    conn.execute("BEGIN IMMEDIATE")
    try:
        ids = []
        start = store.parse_iso(_T0)
        for k, (title, text, hours) in enumerate(items):
            when = store.iso(start + timedelta(hours=hours))
            cur = conn.execute(
                "INSERT INTO entries (feed, entry_key, title, content_text, published, "
                "fetched_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (f"site{k}", str(k), title, text, when, when, when))
            ids.append(int(cur.lastrowid))
            dedup.link_entries(conn, [ids[-1]], settings)
        rows = {r[0]: (r[1] or r[0], r[2]) for r in conn.execute(
            f"SELECT id, duplicate_of, story FROM entries WHERE id IN "
            f"({', '.join('?' * len(ids))})", ids)}
    finally:
        conn.execute("ROLLBACK")
    return [rows[i][0] for i in ids], [rows[i][1] for i in ids], ids


def _score(tp: int, fp: int, fn: int) -> tuple[str, str]:
    precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
    recall = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
    return precision, recall


def stories_table(rounds: int, rng: random.Random, settings: dedup.DedupSettings) -> bool:
    """Print precision and recall per issue 19 kind, for duplicates and for stories; True
    when a kind misses its target (no wrong pair anywhere; recall 1.00 for the teaser and
    the corpus' story pair)."""
    posts = base_posts()
    kinds: dict[str, list[Case]] = {
        "boilerplate of another site": boilerplate_cases(),
        "teaser then article": [teaser_case(t, x, rng) for _ in range(rounds) for t, x in posts],
        "generic titles": [generic_case(posts, rng) for _ in range(rounds * len(posts))],
        "same story": corpus_story_cases() + [c for _ in range(rounds) for t, x in posts
                                              if (c := newsflash_case(t, x, rng))],
        "look-alike templates": [template_case(posts, rng) for _ in range(rounds * len(posts))],
    }
    print(f"\n{'issue 19 kind':28} {'cases':>5} | {'dup prec':>8} {'dup rec':>7} "
          f"{'wrong':>5} | {'story prec':>10} {'story rec':>9} {'wrong':>5} | root right")
    failed = False
    with tempfile.TemporaryDirectory() as directory:
        conn = store.connect(Path(directory) / "stories.db")
        for kind, cases in kinds.items():
            counts = [0] * 6  # dup tp, fp, fn; story tp, fp, fn
            roots_right = 0
            for items, dup_pairs, story_pairs in cases:
                roots, stories, ids = run_case(conn, items, settings)
                for a in range(len(items)):
                    for b in range(a + 1, len(items)):
                        together = roots[a] == roots[b]
                        grouped = stories[a] is not None and stories[a] == stories[b]
                        judged = [(0, together, (a, b) in dup_pairs)]
                        if (a, b) not in dup_pairs:  # a missed reprint grouped as a story
                            judged.append((3, grouped, (a, b) in story_pairs))  # is no error
                        for base, got, want in judged:
                            if got and want:
                                counts[base] += 1
                            elif got:
                                counts[base + 1] += 1
                            elif want:
                                counts[base + 2] += 1
                if kind == "teaser then article" and roots[0] == ids[1]:
                    roots_right += 1
            dp, dr = _score(*counts[:3])
            sp, sr = _score(*counts[3:])
            root_col = f"{roots_right}/{len(cases)}" if kind == "teaser then article" else "-"
            print(f"{kind:28} {len(cases):5} | {dp:>8} {dr:>7} {counts[1]:5} | {sp:>10} "
                  f"{sr:>9} {counts[4]:5} | {root_col}")
            failed |= bool(counts[1] or counts[4])
        conn.close()
    print("dup / story: pairs of a case put in one cluster / one story; wrong = pairs put "
          "together that\nshould not be; root right = the article became the cluster's root.")
    return failed


if __name__ == "__main__":
    sys.exit(main())
