"""Same-story grouping (issue 19): two entries that report one event in different words.

Pure functions over a :class:`Fingerprint` and a :class:`Candidate`, like
``core.similarity``; ``dedup`` finds the candidates and stores ``entries.story``.

Precision first: a wrong grouping hides news.  A pair shares a story only when all of these
hold, each cheap test before the next:

- published within ``title_window_hours`` of each other (the dedup setting, 72 h by
  default: the corpus' two write-ups of one event, 密室逃脱, are 52 h apart);
- similar titles (``STORY_TITLE``, character-bigram Jaccard of the folded titles);
- titles that do not disagree on their anchors (numbers and Latin words): the anchors of one
  title all appear in the other.  Two deal posts from one template ("小米手环8 到手199元",
  "华为手环9 到手249元") and two daily posts ("早报 12月7日", "早报 12月8日") differ there;
- a title that is not generic (identical titles carried by a third story in the window);
- texts that share some of their wording (``STORY_CONTAINMENT``): a title says little
  without it, and neither side may be bare (no text beyond its title).
"""

from __future__ import annotations

from collections.abc import Callable

from scraper.core.fingerprint import Fingerprint
from scraper.core.similarity import (
    MIN_CONTAINED_CHARS,
    Candidate,
    Settings,
    Verdict,
    anchors,
    anchors_agree,
    generic_title,
    title_similarity,
)

#: Bigram Jaccard of two folded titles from which they may name one event.  The corpus' two
#: write-ups of one event (密室逃脱: "00后女生每周玩三次密室逃脱，结果导致肺部感染" and
#: "00后女生1周3次密室逃脱致肺部感染 医生提醒") score 0.40; its four different Leica
#: articles score 0.07 or less with each other.
STORY_TITLE = 0.35

#: Shingle containment (4 characters) of the shorter text in the longer from which two texts
#: share enough wording.  The 密室逃脱 write-ups share 0.12; unrelated articles of the corpus
#: 0.00-0.05 (and two Leica articles quoting each other 0.26, stopped by their titles).
STORY_CONTAINMENT = 0.1

def judge_story(fp: Fingerprint, ts: int, cand: Candidate, settings: Settings,
                score: Callable[[], tuple[float, float]], other_clusters: int = 0) -> Verdict:
    """Does the entry of ``fp`` (dated ``ts``) report the same event as ``cand`` (an entry of
    another cluster)?  ``method`` is "story" when it does; ``reason`` says why either way.
    ``other_clusters``: how many further clusters carry the identical title in the window."""
    gap = abs(ts - cand.ts)
    if gap > settings.title_window_seconds:
        return Verdict(None, 0.0, f"{gap / 3600:.0f} h apart (title window "
                       f"{settings.title_window_hours:g} h)")
    tsim = title_similarity(fp.title, cand.title)
    if tsim < STORY_TITLE:
        return Verdict(None, tsim, f"title similarity {tsim:.2f} < {STORY_TITLE:g}",
                       title_similarity=tsim)
    if not anchors_agree(fp.title, cand.title):
        mine, theirs = anchors(fp.title), anchors(cand.title)
        return Verdict(None, tsim, "the titles differ in numbers or names ("
                       f"{' '.join(sorted(mine - theirs)) or '-'} / "
                       f"{' '.join(sorted(theirs - mine)) or '-'})", title_similarity=tsim)
    if generic_title(fp, cand, other_clusters):
        return Verdict(None, tsim, f"the title is generic ({other_clusters + 2} stories carry "
                       "it in the window)", title_similarity=tsim)
    if min(fp.length, cand.length) < MIN_CONTAINED_CHARS:
        return Verdict(None, tsim, "one side has no text to confirm the title",
                       title_similarity=tsim)
    jac, cont = score()
    if cont < STORY_CONTAINMENT:
        return Verdict(None, tsim, f"title similarity {tsim:.2f}, but the texts share "
                       f"little (containment {cont:.2f} < {STORY_CONTAINMENT:g})", jac, cont,
                       tsim)
    return Verdict("story", round(tsim, 4), f"same story: title similarity {tsim:.2f} "
                   f">= {STORY_TITLE:g}, the same numbers and names, texts sharing "
                   f"{cont:.2f} of their wording (>= {STORY_CONTAINMENT:g})", jac, cont, tsim)
