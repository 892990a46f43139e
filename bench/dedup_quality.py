"""Precision and recall of the deduplicator on a synthetic corpus built from ../shared/corpus.

    /tmp/venv/bin/python bench/dedup_quality.py [--rounds 40] [--seed 1] [--shingle 5]
                                                [--threshold 0.8]

Each base article is one of the corpus' distinct texts, stored first.  Each variant is then
stored alone after them (and rolled back) through the production path (``dedup.link_entries``:
fingerprint, LSH index, exact confirmation), and the bench checks where it was linked:

- a positive kind should link the variant to its own base (recall = linked right / variants);
- a hard negative (same event, at most 70% of its characters shared with the base, the rest
  from other articles, never more than half of any one of them) should link to nothing;
- precision = links to the right base / all links made.

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
    seen: set[str] = set()
    out = []
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
    return out


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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
