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
  similarity, or (``near``) when their text lies inside a longer article.
"""

from __future__ import annotations

import math
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


def title_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character bigrams of two folded titles."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    sa = {a[i : i + 2] for i in range(max(1, len(a) - 1))}
    sb = {b[i : i + 2] for i in range(max(1, len(b) - 1))}
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
          score: Callable[[], tuple[float, float]], screen: bool = False) -> Verdict:
    """Is the entry of ``fp`` (dated ``ts``) a duplicate of ``cand``?  The one place the rules
    live (link and explain).  ``score`` gives the exact (Jaccard, containment) of the two
    texts, called only when the rules need it.

    With ``screen``, a candidate whose sketch estimate cannot reach the threshold gets no exact
    score (linking); explain leaves it off to show the real scores."""
    gap = abs(ts - cand.ts)
    if gap > settings.window_seconds:
        return Verdict(None, 0.0, f"outside the {settings.window_days:g}-day window")
    if "url" in cand.kinds:
        return Verdict("url", 1.0, "same canonical URL")
    short = is_short_pair(fp, cand, settings)
    if not short and cand.text_hash == fp.text_hash:
        return Verdict("exact", 1.0, "same normalized text")
    if short and gap > settings.title_window_seconds:
        return Verdict(None, 0.0, f"short text, {gap / 3600:.0f} h apart (title window "
                       f"{settings.title_window_hours:g} h)")
    verdict = Verdict(None, 0.0, "no evidence")
    if fp.length and cand.length and max(fp.length, cand.length) >= MIN_CONTAINED_CHARS \
            and min(fp.length, cand.length) >= MIN_CONTAINED_CHARS:
        if screen and not cand.reachable:
            verdict.reason = (f"estimated Jaccard {cand.estimate:.2f} cannot reach containment "
                              f"{settings.threshold:g}")
            return _judge_title(fp, cand, settings, gap, short, verdict)
        jac, cont = score()
        verdict.jaccard, verdict.containment = jac, cont
        verdict.score = cont
        if cont >= settings.threshold:
            what = "text contained in the longer one" if short else "near-duplicate text"
            return Verdict("near", round(cont, 4), f"{what}: containment {cont:.2f} "
                           f">= {settings.threshold:g} (Jaccard {jac:.2f})", jac, cont)
        verdict.reason = f"containment {cont:.2f} < {settings.threshold:g} (Jaccard {jac:.2f})"
    return _judge_title(fp, cand, settings, gap, short, verdict)


def _judge_title(fp: Fingerprint, cand: Candidate, settings: Settings, gap: int,
                 short: bool, verdict: Verdict) -> Verdict:
    """The title rule of :func:`judge`, for pairs where one side is short."""
    if short:
        tsim = title_similarity(fp.title, cand.title)
        verdict.title_similarity = tsim
        if gap > settings.title_window_seconds:
            verdict.reason += f"; short text, but {gap / 3600:.0f} h apart " \
                              f"(title window {settings.title_window_hours:g} h)"
        elif tsim >= settings.title_threshold:
            return Verdict("title", round(tsim, 4), f"short text; title similarity {tsim:.2f} "
                           f">= {settings.title_threshold:g}", verdict.jaccard,
                           verdict.containment, tsim)
        else:
            verdict.reason += f"; short text, title similarity {tsim:.2f} " \
                              f"< {settings.title_threshold:g}"
            verdict.score = max(verdict.score, tsim)
    return verdict


def rank(method: str, score: float, root: int) -> tuple[int, float, int]:
    """How a link compares with another for one entry (lower is better): the stronger
    method, then the higher score, then the older cluster."""
    return PRIORITY[method], -score, root
