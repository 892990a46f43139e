"""The duplicate rules: when is an entry a reprint of a candidate?  Pure functions over plain
data (a :class:`Fingerprint`, :class:`Candidate` rows and the settings); ``dedup`` finds
the candidates and stores the links.

Four levels of evidence, strongest first:

- ``url``: the same canonical URL (tracking parameters, fragment, scheme dropped);
- ``exact``: the same folded text (SHA-256 of :func:`fingerprint.fold_text`);
- ``near``: a candidate is linked only when the exact shingle containment (how much of the
  shorter text lies inside the longer) reaches ``threshold``.  A stored sketch estimates each
  candidate's Jaccard first, and the exact score is only computed for candidates whose
  estimate could reach ``threshold`` (:func:`could_reach`).  Containment and not Jaccard,
  because a reprint that trims a quarter of the article (the corpus' 龙芯 pair, Jaccard 0.61,
  containment 0.85) is still the same article, while two write-ups of one event sharing 70%
  of their text stay below it;
- ``title``: teasers and title-only items (under ``short_chars`` folded characters) cannot
  be judged by their text; within ``title_window_hours`` of each other, they link by title
  similarity, or (``near``) when their text lies inside a longer article.  A similar title
  is not enough on its own (issue 19): the titles must agree on their numbers and names, the
  texts too (the shorter mostly inside the longer, or one side nothing beyond its title),
  and a generic title (one that names several stories in the window: "早报", "快讯：今日要闻")
  never links a bare item.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from scraper.core.fingerprint import SKETCH_BINS, SKETCH_BITS, Fingerprint

METHODS = ("url", "exact", "near", "title")
PRIORITY = {m: i for i, m in enumerate(METHODS)}

#: Standard deviations of margin below the Jaccard a pair needs before its sketch estimate
#: rules it out.  The estimate of J from k agreeing bins is binomial(k, J) / k (measured with
#: random sets); its lower tail at 5 sigma is 5.6e-7 for k = 128 at J = 0.67 (equal-sized
#: texts at containment 0.8), so a pair exactly at the threshold is missed about once in a
#: million, and a real reprint sits well above it (>= 0.85 in bench/dedup_quality.py).
SKETCH_SIGMAS = 5.0

#: A short text shorter than this (folded characters) is not evidence even when it lies
#: inside an article: "点击查看全文" would otherwise link every teaser that ends with it.
MIN_CONTAINED_CHARS = 20

#: Probe kinds that only find short entries (see ``Fingerprint``): evidence only within the
#: title window.
SHORT_KINDS = frozenset({"title", "lead"})

#: Containment of the shorter text in the longer at which two similar titles' texts "agree"
#: (issue 19): "mostly contained", more than half.  Two "快讯：今日要闻" newsflashes about
#: different events score 0.00-0.10 here; a teaser that is the article's lead scores >= 0.8
#: (and links by ``near`` before the title rule is asked).
TITLE_AGREEMENT = 0.5

#: Folded characters beyond its title under which an item has "no text beyond its title":
#: RSS items that repeat the title and add a link text ("点击查看全文", "阅读原文", 4-6
#: characters, the shipped feeds' tails) stay under it.
BARE_MARGIN = 10

#: Distinct clusters (other than the pair's) with exactly this folded title in the title window
#: from which a title is generic.  A reprinted story is one cluster however many sites carry
#: it; a title naming two different stories in the window is a template ("早报", "每日简报"),
#: and which of them a bare item repeats is unknowable.  So the count is of clusters, not of
#: entries, and one other story is already enough.
GENERIC_TITLE_CLUSTERS = 2


class Settings(Protocol):
    """What the rules read of ``config.DedupSettings`` (core imports nothing above it)."""

    threshold: float
    short_chars: int
    title_threshold: float
    title_window_hours: float
    window_days: float

    @property
    def window_seconds(self) -> int: ...

    @property
    def title_window_seconds(self) -> int: ...


@dataclass(slots=True)
class Candidate:
    """A stored entry that shares at least one index key with the entry being judged."""

    id: int
    ts: int
    length: int  # folded characters
    title: str  # folded title
    text_hash: str
    kinds: set[str]  # the kinds of the keys it shares ("url", "near", "title", "lead")
    bands: int = 0  # LSH bands shared
    sketch: bytes | None = None  # fingerprint.sketch of its text (None: stored before it)
    shingles: int | None = None  # distinct shingles of its text
    #: Its cluster root as stored (it groups candidates by cluster; the root a link names is
    #: read from the winning candidate's entry).
    root: int = 0
    estimate: float | None = None  # estimated Jaccard with the entry being judged
    reachable: bool = True  # False: the estimate says containment cannot reach the threshold


@dataclass
class Verdict:
    method: str | None  # None: not a duplicate
    score: float
    reason: str
    jaccard: float | None = None
    containment: float | None = None
    title_similarity: float | None = None


_ANCHOR = re.compile(r"\d+|[a-z]{2,}")


def anchors(folded_title: str) -> Counter[str]:
    """The numbers and Latin words of a folded title, counted: the slots a template fills
    in.  Counted, because "2月2日" and "2月1日" differ only in how often "2" appears."""
    return Counter(_ANCHOR.findall(folded_title))


def anchors_agree(a: str, b: str) -> bool:
    """The anchors of the title with fewer of them all appear in the other's (as a
    multiset: "早报2月1日" and "早报2月2日" disagree, "00后女生每周玩三次" and
    "00后女生1周3次" agree)."""
    first, second = anchors(a), anchors(b)
    small, large = ((first, second) if first.total() <= second.total()
                    else (second, first))
    return not small - large


@functools.lru_cache(maxsize=4096)
def _bigrams(title: str) -> frozenset[str]:
    """A folded title's character bigrams.  Kept: the entry being linked compares its title
    with each candidate's (a dozen an entry in bench/dedup_scale.py), and a candidate's
    title recurs across the entries of a refresh."""
    return frozenset(title[i : i + 2] for i in range(max(1, len(title) - 1)))


def title_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character bigrams of two folded titles."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    sa, sb = _bigrams(a), _bigrams(b)
    return len(sa & sb) / len(sa | sb)


#: The low 15 bits, and the top bit, of every 16-bit bin of a sketch read as one integer.
_BIN_LOW = int.from_bytes(b"\xff\x7f" * SKETCH_BINS, "little")
_BIN_TOP = int.from_bytes(b"\x00\x80" * SKETCH_BINS, "little")
#: Chance agreement of two different 16-bit minima (see ``fingerprint.SKETCH_BITS``).
_CHANCE = 2.0**-SKETCH_BITS


def agreeing_bins(mine: bytes, theirs: bytes) -> int:
    """How many 16-bit bins of two sketches are equal, with the sketches as 2048-bit integers:
    in their XOR, a bin's low 15 bits plus 0x7fff carry into its top bit exactly when they
    are not all zero (and never beyond it), so after ORing in the bin's own top bit, the top
    bits set are the bins that differ.  Five operations on integers of 32 machine words,
    about 1 µs a candidate, where a loop over the bins took 10."""
    x = int.from_bytes(mine, "little") ^ int.from_bytes(theirs, "little")
    return SKETCH_BINS - ((((x & _BIN_LOW) + _BIN_LOW) | x) & _BIN_TOP).bit_count()


def estimate_jaccard(mine: bytes, theirs: bytes) -> float:
    """Estimated Jaccard of two sketches: the fraction of agreeing bins, less the 2**-16
    chance agreement."""
    agree = agreeing_bins(mine, theirs) / SKETCH_BINS
    return max(agree - _CHANCE, 0.0) / (1.0 - _CHANCE)


def could_reach(estimate: float, mine: float, theirs: float, threshold: float) -> bool:
    """Could a pair with this estimated Jaccard and these distinct shingle counts have a
    containment of ``threshold``?  False only when the estimate is ``SKETCH_SIGMAS`` standard
    deviations below the Jaccard that containment needs.

    For sets of sizes a <= b, containment t means an intersection of t * a, hence a Jaccard of
    J* = t * a / (a + b - t * a).  The test is one-sided at J*: a pair above J* is ruled out
    even less often.  The estimator's spread is taken at J* with k = min(bins, a) effective
    bins: a set smaller than the bin count fills the rest by densification, which adds no
    information (measured: the spread is then 1.0-1.1 x the binomial's at k = bins).
    """
    small = min(mine, theirs)
    if small <= 0:
        return True
    inter = threshold * small
    needed = inter / max(mine + theirs - inter, 1e-9)
    sigma = math.sqrt(needed * (1.0 - needed) / min(max(small, 1.0), SKETCH_BINS))
    return estimate >= needed - SKETCH_SIGMAS * sigma


def screen(fp: Fingerprint, candidates: Sequence[Candidate], settings: Settings) -> None:
    """Estimate each candidate's Jaccard from the sketches and mark those whose containment
    cannot reach the threshold (``reachable``): :func:`ruled_out` then drops them unjudged.
    An article sharing common sentences with hundreds of stored ones (bench/ingest.py) is
    screened for a few µs a candidate instead of a 60 µs fold and intersection each."""
    if fp.short or len(fp.sketch) != SKETCH_BINS * 2 or not fp.shingles:
        return
    for cand in candidates:
        sk = cand.sketch
        if not cand.shingles or sk is None or len(sk) != len(fp.sketch):
            continue  # stored before the sketch, or with another shingle size: judged
        cand.estimate = estimate_jaccard(fp.sketch, sk)
        cand.reachable = could_reach(cand.estimate, fp.shingles, cand.shingles,
                                     settings.threshold)


def is_bare(length: int, title: str) -> bool:
    """No text beyond the title: the folded text is at most the title plus a link text."""
    return length < max(MIN_CONTAINED_CHARS, len(title) + BARE_MARGIN)


def same_title_clusters(fp: Fingerprint, ts: int, candidates: Sequence[Candidate],
                        settings: Settings, entry_id: int) -> dict[int, int]:
    """For each candidate cluster root: how many *other* clusters of entries before
    ``entry_id`` carry exactly ``fp``'s folded title within the title window (see
    ``GENERIC_TITLE_CLUSTERS``).  Short entries probe every title key, so for them this counts
    every same-title entry in the window; a long entry sees only the short ones."""
    if not fp.title:
        return {}
    roots = {c.root or c.id for c in candidates if c.id < entry_id and c.title == fp.title
             and abs(ts - c.ts) <= settings.title_window_seconds}
    return {root: len(roots - {root}) for root in roots}


def is_short_pair(fp: Fingerprint, cand: Candidate, settings: Settings) -> bool:
    return fp.short or cand.length < settings.short_chars


def ruled_out(fp: Fingerprint, cand: Candidate, settings: Settings) -> bool:
    """True when :func:`judge` (with ``screen``) cannot link this pair, known without any
    I/O: no shared URL, not the same text, both long, and an estimate that cannot reach the
    threshold.  Most candidates of an ordinary article end here, unjudged."""
    return (not cand.reachable and "url" not in cand.kinds and cand.text_hash != fp.text_hash
            and not is_short_pair(fp, cand, settings))


def order(cand: Candidate) -> tuple[int, int, int]:
    """Cheap, strong evidence first; then the most shared LSH bands (the likeliest match)."""
    return (0 if "url" in cand.kinds else 1), -cand.bands, cand.id


def judge(fp: Fingerprint, ts: int, cand: Candidate, settings: Settings,
          score: Callable[[], tuple[float, float]], screen: bool = False,
          other_clusters: int = 0) -> Verdict:
    """Is the entry of ``fp`` (dated ``ts``) a duplicate of ``cand``?  The one place the rules
    live (link and explain).  ``score`` gives the exact (Jaccard, containment) of the two
    texts, called only when the rules need it.

    With ``screen``, a candidate whose sketch estimate cannot reach the threshold gets no exact
    score (linking); explain leaves it off to show the real scores.  ``other_clusters``: how
    many other clusters share the exact title in the window (:func:`same_title_clusters`)."""
    gap = abs(ts - cand.ts)
    if gap > settings.window_seconds:
        return Verdict(None, 0.0, f"outside the {settings.window_days:g}-day window")
    if "url" in cand.kinds:
        return Verdict("url", 1.0, "same canonical URL")
    short = is_short_pair(fp, cand, settings)
    if not short and cand.text_hash == fp.text_hash:
        return Verdict("exact", 1.0, "identical text after folding")
    if short and gap > settings.title_window_seconds:
        return Verdict(None, 0.0, f"short text, {gap / 3600:.0f} h apart (title window "
                       f"{settings.title_window_hours:g} h)")
    verdict = Verdict(None, 0.0, "no evidence")
    if fp.length and cand.length and max(fp.length, cand.length) >= MIN_CONTAINED_CHARS \
            and min(fp.length, cand.length) >= MIN_CONTAINED_CHARS:
        if screen and not cand.reachable and not short:
            verdict.reason = (f"estimated Jaccard {cand.estimate:.2f} cannot reach containment "
                              f"{settings.threshold:g}")
            return _judge_title(fp, cand, settings, gap, short, verdict, other_clusters)
        jac, cont = score()
        verdict.jaccard, verdict.containment = jac, cont
        verdict.score = cont
        if cont >= settings.threshold:
            what = "text contained in the longer one" if short else "near-duplicate text"
            return Verdict("near", round(cont, 4), f"{what}: containment {cont:.2f} "
                           f">= {settings.threshold:g} (Jaccard {jac:.2f})", jac, cont)
        verdict.reason = f"containment {cont:.2f} < {settings.threshold:g} (Jaccard {jac:.2f})"
    return _judge_title(fp, cand, settings, gap, short, verdict, other_clusters)


def _judge_title(fp: Fingerprint, cand: Candidate, settings: Settings, gap: int,
                 short: bool, verdict: Verdict, other_clusters: int = 0) -> Verdict:
    """The title rule of :func:`judge`, for pairs where one side is short: a similar title,
    and texts that agree (the shorter mostly inside the longer, or one side bare), and for a
    bare side a title that is not generic."""
    if short:
        tsim = title_similarity(fp.title, cand.title)
        verdict.title_similarity = tsim
        if gap > settings.title_window_seconds:
            verdict.reason += f"; short text, but {gap / 3600:.0f} h apart " \
                              f"(title window {settings.title_window_hours:g} h)"
        elif tsim >= settings.title_threshold:
            agree = _texts_agree(fp, cand, verdict, other_clusters)
            if agree is None:
                return Verdict("title", round(tsim, 4), f"short text; title similarity "
                               f"{tsim:.2f} >= {settings.title_threshold:g}", verdict.jaccard,
                               verdict.containment, tsim)
            verdict.reason += f"; title similarity {tsim:.2f}, but {agree}"
            verdict.score = max(verdict.score, tsim)
        else:
            verdict.reason += f"; short text, title similarity {tsim:.2f} " \
                              f"< {settings.title_threshold:g}"
            verdict.score = max(verdict.score, tsim)
    return verdict


def generic_title(fp: Fingerprint, cand: Candidate, other_clusters: int) -> bool:
    """The pair's title is one that ``GENERIC_TITLE_CLUSTERS`` clusters carry in the window
    (the candidate's and ``other_clusters`` more): it says nothing about the story."""
    return fp.title == cand.title and other_clusters + 1 >= GENERIC_TITLE_CLUSTERS


def _texts_agree(fp: Fingerprint, cand: Candidate, verdict: Verdict,
                 other_clusters: int) -> str | None:
    """None when the texts of a similar-title pair agree; else why not (for explain)."""
    if not anchors_agree(fp.title, cand.title):  # "早报12月7日" is not "早报12月8日"
        return "the titles differ in numbers or names"
    cont = verdict.containment
    if cont is not None and cont > TITLE_AGREEMENT:
        return None
    if is_bare(fp.length, fp.title) or is_bare(cand.length, cand.title):
        if generic_title(fp, cand, other_clusters):
            return (f"the title is generic ({other_clusters + 1} stories carry it in the "
                    "window) and one side has no text beyond it")
        return None
    shown = "not compared" if cont is None else f"{cont:.2f}"
    return f"the texts disagree (containment {shown} <= {TITLE_AGREEMENT:g})"


def rank(method: str, score: float, root: int) -> tuple[int, float, int]:
    """How a link compares with another for one entry (lower is better): the stronger
    method, then the higher score, then the older cluster."""
    return PRIORITY[method], -score, root
