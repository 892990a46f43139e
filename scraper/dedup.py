"""Cross-feed deduplication: link each reprint to the best entry of its cluster, and group
write-ups of one event into stories.

The rules are ``core.similarity``'s (and ``core.story``'s), the keys ``core.fingerprint``'s,
the tables ``storage.dedup``'s; this module finds each entry's candidates, judges them,
stores the link.

Links, never deletions: ``entries.duplicate_of`` is the cluster's root, its best member
(issue 19): the most complete (a full article over a teaser, then the longer text, by more
than ``LENGTH_MARGIN``), ties to the earliest published.  A new entry is compared with the
entries linked before it; when it is better than its cluster's root, the cluster moves to it
in the same transaction (its members are few).  ``entries.story`` groups clusters that report
one event in different words.  On SQLite (one writer) the entries linked before a new entry
have lower ids; on PostgreSQL another worker's transaction may have taken a higher id and
committed first.  Workers take turns on the index keys they share (``lock_entries``), so two
reprints stored at once see each other whichever commits first.  A re-linked entry and a
rebuild compare only with lower ids, in id order, so re-processing gives the same answer.

The window is a rule on arrival (``fetched_at``), not on the feed's dates: a feed added
today brings last month's backlog, whose reprints arrive with it.  An entry is compared only
with entries that arrived within ``DedupSettings.span_seconds`` before it, so pruning the
keys of older arrivals (at most ``PRUNE_ENTRIES`` a call, in the caller's transaction)
changes no answer and keeps the table the window's size.  Everything is in the database: a
rollback or a crash leaves nothing to resync.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from scraper.config import DedupSettings, dedup_from_mapping  # noqa: F401 (re-exported)
from scraper.core import fingerprint as fpmod
from scraper.core import similarity as rules
from scraper.core import story
from scraper.core.fingerprint import Fingerprint
from scraper.core.similarity import Candidate
from scraper.storage import Connection, iso, parse_iso, transaction
from scraper.storage import dedup as index

#: Candidates confirmed per entry at most (each costs a text fold and a set intersection,
#: about 60 µs).  Candidates come strongest first and one per cluster, and only those whose
#: estimate could reach the threshold count, so this only bounds pathological buckets: a story
#: reprinted by 32 distinct unlinked clusters.
MAX_CONFIRMATIONS = 32

#: Entries whose keys one call prunes at most.  Each key deleted dirties a random page of
#: the key table: with 1M entries in the window, pruning 256 entries in one call took 126 ms
#: with its commit (bench/dedup_scale.py; ``--aging`` measures the steady state), so 64 keeps
#: a call near 30 ms.  At 20,000 new entries an hour about 6 a second age out, far fewer than
#: the refreshes can prune; a backlog of 1M entries is gone after 16,000 calls.
PRUNE_ENTRIES = 64

#: Shingle sets one call keeps for confirming (about 12 KB each for a 1,500-character
#: article): a story reprinted five times in one refresh is confirmed against its first copy
#: four times, and that copy is read and folded once.
_SETS_KEPT = 256

#: Relative length difference under which two members are "as complete" and the earlier
#: published one stays the root.  Reprints differ from their source by a credit line or an
#: editor's note (20-40 characters on a 1,500-character article, 2-3%), and
#: bench/dedup_quality.py's edits change up to 3%: a reprint fetched first does not stay the
#: root for those.  A teaser (a few lines) and a trimmed reprint (a quarter less) are far
#: outside it.
LENGTH_MARGIN = 0.05
#: ...and at least this many folded characters: on a short article the same credit line is
#: more than 5% (the offline example's reprint adds 17 characters to 262, +6.5%, and became the
#: root over its source, published five hours earlier).
LENGTH_MARGIN_CHARS = 60


@dataclass(frozen=True)
class Link:
    entry_id: int
    duplicate_of: int
    method: str
    score: float


def _epoch(text: str | None) -> int:
    try:
        dt = parse_iso(text)
    except ValueError:
        return 0
    return 0 if dt is None else int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


class _Texts:
    """The shingle sets of one call's entries and candidates, computed when a candidate needs
    confirming (most entries have none).  Lives for one call: nothing is kept between calls,
    so nothing can go stale."""

    def __init__(self, conn: Connection, shingle: int) -> None:
        self.conn = conn
        self.shingle = shingle
        self.raw: dict[int, str] = {}
        self.given: dict[tuple[int, str], bytes] = {}
        self.sets: dict[tuple[int, str], Any] = {}

    def add(self, entry_id: int, text: str, fp: Fingerprint) -> None:
        """An entry being linked: its text (if read) and the set its fingerprint came with."""
        if text:
            self.raw[entry_id] = text
        if fp.shingle == self.shingle and fp.shingle_set:
            self.given[(entry_id, fp.text_hash)] = fp.shingle_set

    def get(self, entry_id: int, digest: str) -> Any:
        key = (entry_id, digest)
        found = self.sets.get(key)
        if found is not None:
            return found
        given = self.given.get(key)
        if given is not None:
            found = fpmod.shingle_set_of(given)
        else:
            text = self.raw.get(entry_id)
            if text is None:
                text = index.entry_text(self.conn, entry_id)
            found = fpmod.text_shingle_set(text, self.shingle)
        if len(self.sets) >= _SETS_KEPT:
            self.sets.clear()
        self.sets[key] = found
        return found

    def scorer(self, entry_id: int, fp: Fingerprint, cand: Candidate
               ) -> Callable[[], tuple[float, float]]:
        return lambda: fpmod.similarity(self.get(entry_id, fp.text_hash),
                                        self.get(cand.id, cand.text_hash))


def _index_keys(fp: Fingerprint) -> list[int]:
    """The distinct keys stored for ``fp``, sorted (what ``dedup_fingerprints.keys`` holds)."""
    return sorted({key for _, key in fp.index_keys()})


def _candidates(conn: Connection, fp: Fingerprint, exclude: int, before: int | None = None,
                ts: int | None = None, settings: DedupSettings | None = None,
                arrived: str | None = None,
                probes: list[tuple[str, int]] | None = None) -> list[Candidate]:
    """Entries sharing an index key with ``fp``, with the kinds of evidence their keys stand
    for: of lower id than ``before``, arrived within the window of ``arrived`` (the arrival
    rule), published within it of ``ts``.  Only the URL key is checked against the row (a key
    may be stale: an id reused after a deletion); the other kinds only bring a candidate that
    is then judged on its text or title."""
    kinds_of: dict[int, str] = {}
    for kind, key in fp.probe_keys() if probes is None else probes:
        kinds_of.setdefault(key, kind)
    low = high = first = last = None
    if ts is not None and settings is not None:
        low, high = ts - settings.span_seconds, ts + settings.span_seconds
    if arrived is not None and settings is not None:
        first, last = _around(arrived, settings)
    found = index.find_candidates(conn, list(kinds_of), exclude, before, low, high, first, last)
    mine = _scheme_less(fp.canonical_url)
    out: list[Candidate] = []
    for entry_id, keys, cts, length, shingles, sketch, digest, title, url, root in found:
        kinds = [kinds_of[k] for k in keys]
        if "url" in kinds and _scheme_less(url) != mine:
            kinds = [k for k in kinds if k != "url"]
        if ts is not None and settings is not None \
                and abs(ts - cts) > settings.title_window_seconds:
            kinds = [k for k in kinds if k not in rules.SHORT_KINDS]
        if not kinds:
            continue
        out.append(Candidate(entry_id, cts, length, title, digest, set(kinds),
                             kinds.count("near"), sketch, shingles, root or 0))
    unknown = [c.id for c in out if not c.root]  # linked before migration 6
    if unknown:
        roots = index.roots_of(conn, unknown)
        for cand in out:
            if not cand.root:
                cand.root = roots.get(cand.id, cand.id)
    return out


def _scheme_less(url: str | None) -> str | None:
    """What the url key is made of (``fingerprint.compute``: http and https are one page)."""
    return url.split("://", 1)[-1] if url else None


def _best(conn: Connection, entry_id: int, ts: int, arrived: str, fp: Fingerprint,
          settings: DedupSettings, texts: _Texts, before: int | None
          ) -> tuple[tuple[int, str, float] | None, list[Candidate]]:
    """(root, method, score) of the best link for an entry, None if it is an original; and
    the candidates found (the story grouping looks at them too).  ``before``: compare only
    with lower ids than this (None: every entry linked before this one, see the module)."""
    found = _candidates(conn, fp, entry_id, before, ts, settings, arrived)
    rules.screen(fp, found, settings)
    same_title = rules.same_title_clusters(fp, ts, found, settings, before or _ANY_ID)
    judged = sorted((c for c in found if not rules.ruled_out(fp, c, settings)), key=rules.order)
    best: tuple[int, float, int] | None = None
    best_id = 0
    best_method = ""
    best_score = 0.0
    linked_roots: set[int] = set()
    confirmations = 0
    for cand in judged:
        if cand.root in linked_roots:
            continue  # its cluster is already matched: another member cannot change the root
        if confirmations >= MAX_CONFIRMATIONS:
            break
        verdict = rules.judge(fp, ts, cand, settings, texts.scorer(entry_id, fp, cand),
                              screen=True, other_clusters=same_title.get(cand.root, 0))
        if verdict.jaccard is not None:  # the exact score was computed
            confirmations += 1
        if verdict.method is None:
            continue
        linked_roots.add(cand.root)
        rank = rules.rank(verdict.method, verdict.score, cand.root)
        if best is None or rank < best:
            best, best_id, best_method, best_score = rank, cand.id, verdict.method, verdict.score
    if best is None:
        return None, found
    # The root a candidate's row names only groups candidates (it can be stale: moved by
    # another process since): the link's root is read from the winning candidate's entry.
    return (index.cluster_root(conn, best_id), best_method, best_score), found


#: Above every entry id: the bound of ``before=None`` (every candidate found is earlier).
_ANY_ID = 1 << 62


def _more_complete(conn: Connection, length: int, ts: int, root: int,
                   settings: DedupSettings) -> bool:
    """Is an entry of this folded length and date a better root than ``root``?  A full
    article over a teaser, then the longer text (beyond ``LENGTH_MARGIN``), then the earlier
    published; an exact tie keeps the root."""
    theirs = index.completeness(conn, root)
    if theirs is None:
        return False
    other_length, other_ts = theirs
    full, other_full = length >= settings.short_chars, other_length >= settings.short_chars
    if full != other_full:
        return full
    if length - other_length > max(other_length * LENGTH_MARGIN, LENGTH_MARGIN_CHARS):
        return True
    if other_length - length > max(length * LENGTH_MARGIN, LENGTH_MARGIN_CHARS):
        return False
    return ts < other_ts


def best_member(conn: Connection, members: list[int], settings: DedupSettings) -> int:
    """The member that should be its cluster's root, by the rule a refresh applies
    (``_more_complete``): for a cluster whose root is deleted (``scrape feeds prune``)."""
    best = members[0]
    for member in members[1:]:
        mine = index.completeness(conn, member)
        if mine is not None and _more_complete(conn, mine[0], mine[1], best, settings):
            best = member
    return best


def lock_entries(conn: Connection, fingerprints: Iterable[Fingerprint]) -> None:
    """Take the index locks that linking entries of these fingerprints needs, to the end of
    the transaction (``storage.dedup.lock_keys``): a refresh calls it before its writes, since
    the holder of the keys may have to update a row it rewrites (the cluster's root)."""
    index.lock_keys(conn, {key for fp in fingerprints
                           for _, key in (*fp.index_keys(), *fp.probe_keys())})


def link_entries(conn: Connection, entry_ids: list[int], settings: DedupSettings,
                 fingerprints: dict[int, Fingerprint] | None = None) -> list[Link]:
    """Fingerprint, index and link ``entry_ids``; returns the links of those that are
    duplicates (and of a root that one of them replaced).

    Runs inside the caller's transaction (a feed refresh), after the ``entries`` rows are
    written.  An entry whose fingerprint is unchanged since it was last linked is left alone,
    so a second run over the same feeds changes no link.
    """
    links = _link(conn, entry_ids, settings, fingerprints or {}, force=False)
    _prune(conn, settings)
    return links


def _around(arrived: str | None, settings: DedupSettings) -> tuple[str | None, str | None]:
    """The window before and after an arrival: (first, last) arrival, ISO 8601."""
    try:
        at = parse_iso(arrived)
    except ValueError:
        at = None
    if at is None:
        return None, None
    span = timedelta(seconds=settings.span_seconds)
    return iso(at - span), iso(at + span)


def _prune(conn: Connection, settings: DedupSettings) -> None:
    """Take the entries that aged out since the last call out of the index (a bounded
    number: see ``PRUNE_ENTRIES``); nothing while another worker's transaction prunes."""
    cutoff = _around(index.arrival(conn), settings)[0]
    if cutoff is not None:
        mark = index.claim_pruning(conn)
        if mark is None:
            return
        stop = index.prune(conn, mark, cutoff, PRUNE_ENTRIES)
        if stop != mark:
            index.set_pruned_below(conn, stop)


def _link(conn: Connection, entry_ids: Iterable[int], settings: DedupSettings,
          fingerprints: dict[int, Fingerprint], force: bool) -> list[Link]:
    """``force``: relink every entry, unchanged or not, and index it even if it aged out
    (a rebuild, which prunes afterwards)."""
    links: list[Link] = []
    ids = sorted(set(entry_ids))
    # The texts are only read when some fingerprint is to be computed here.
    with_text = not all(fingerprints.get(i) for i in ids)
    floor = index.pruned_below(conn)
    texts = _Texts(conn, settings.shingle)
    work: list[tuple[index.StoredEntry, Fingerprint, int, list[int], bytes, bool]] = []
    for entry in index.load_entries(conn, ids, with_text):
        fp = fingerprints.get(entry.id) or fpmod.compute(entry.title, entry.text, entry.url,
                                                         settings)
        ts = _epoch(entry.stamp)
        keys = _index_keys(fp)
        blob = index.keys_blob(keys)
        same = not force and entry.stored == (ts, fp.text_hash, fp.title, blob)
        work.append((entry, fp, ts, keys, blob, same))
    # Every key looked up or inserted below, locked before the first lookup (a refresh
    # took them before its writes already: see lock_entries).
    lock_entries(conn, (fp for _, fp, _, _, _, same in work if not same))
    for entry, fp, ts, keys, blob, same in work:
        stored = entry.stored
        if same:
            if not entry.sketched:  # stored before migration 4: add what it lacks
                index.fill_sketch(conn, entry.id, fp.sketch, fp.shingles)
            if entry.duplicate_of is not None:
                links.append(Link(entry.id, entry.duplicate_of, entry.dup_method or "",
                                  entry.dup_score or 0.0))
            continue
        if stored is not None:
            index.unindex_keys(conn, entry.id, stored[3])
        texts.add(entry.id, entry.text, fp)
        # A new entry: every entry linked before it (see the module); else lower ids only.
        before = entry.id if force or stored is not None else None
        best, found = _best(conn, entry.id, ts, entry.arrived, fp, settings, texts, before)
        promoted = best is not None and _more_complete(conn, fp.length, ts, best[0], settings)
        new = (None, None, None) if best is None or promoted else best
        root = entry.id if best is None or promoted else best[0]
        index.save_fingerprint(conn, entry.id, ts, entry.arrived, fp.canonical_url,
                               fp.text_hash, fp.title, fp.length, blob, fp.sketch, fp.shingles,
                               root)
        if force or entry.id >= floor:
            index.index_keys(conn, entry.id, keys)
        if new != (entry.duplicate_of, entry.dup_method, entry.dup_score):
            index.set_link(conn, entry.id, *new)
        if best is not None and promoted:
            # The better member: the cluster (and this entry's own duplicates) move to it.
            index.promote(conn, entry.id, best[0], best[1], best[2])
            links.append(Link(best[0], entry.id, best[1], best[2]))  # the old root's link
        elif best is not None:
            if stored is not None:
                # A re-linked entry that was a root and no longer is: its duplicates follow
                # it to the new root.  (A new entry has no duplicates yet.)
                index.move_followers(conn, entry.id, best[0])
            links.append(Link(entry.id, best[0], best[1], best[2]))
        _group_story(conn, entry.id, root, ts, entry.arrived, fp, found, settings, texts,
                     alone=stored is None and best is None, search=root == entry.id,
                     took_over=best[0] if promoted and best is not None else None,
                     before=before)
    return links


def _story_candidates(conn: Connection, entry_id: int, ts: int, arrived: str,
                      fp: Fingerprint, found: list[Candidate], settings: DedupSettings,
                      before: int | None) -> list[Candidate]:
    """The earlier entries a story could join: the link's candidates, and for a long entry
    the long entries with a similar title (a long entry's links never look at those, since
    two articles are judged by their text; two write-ups of one event share little text)."""
    out = {c.id: c for c in found if c.id < (before or _ANY_ID)}
    if not fp.short and fp.title_keys:
        for cand in _candidates(conn, fp, entry_id, before, ts, settings, arrived,
                                probes=[("title", k) for k in fp.title_keys]):
            out.setdefault(cand.id, cand)
    return sorted(out.values(), key=lambda c: c.id)


def _group_story(conn: Connection, entry_id: int, root: int, ts: int, arrived: str,
                 fp: Fingerprint, found: list[Candidate], settings: DedupSettings,
                 texts: _Texts, alone: bool = False, search: bool = True,
                 took_over: int | None = None, before: int | None = None) -> None:
    """Put the cluster of ``root`` (which ``entry_id`` just joined or started) in the story
    of every earlier cluster that reports the same event (``core.story``), merging stories
    that meet.  A story's number is the lowest it had, else the lowest cluster root.
    ``alone``: a new entry that started its own cluster (it has no members and no story:
    most entries, spared the lookup of their cluster's stories).  ``search``: look for other
    clusters' write-ups; only a cluster's root does (a reprint that joins a cluster takes
    its story, which spares a lookup per reprint).  ``took_over``: the root this entry just
    replaced, whose members the candidates (read before the move) still name as root.
    ``before``: as for links."""
    own = {root, took_over}
    cands = _story_candidates(conn, entry_id, ts, arrived, fp, found, settings, before) \
        if search else []
    # The cluster's own members are not another story carrying the title.
    cands = [c for c in cands if c.id not in own and (c.root or c.id) not in own]
    same_title = rules.same_title_clusters(fp, ts, cands, settings, before or _ANY_ID)
    roots = {root}
    scored = 0
    for cand in cands:
        if scored >= MAX_CONFIRMATIONS:
            break  # a pathological title bucket: as for links, the exact scores are bounded
        verdict = story.judge_story(fp, ts, cand, settings, texts.scorer(entry_id, fp, cand),
                                    same_title.get(cand.root, 0))
        scored += verdict.containment is not None
        if verdict.method:
            roots.add(index.cluster_root(conn, cand.id))
    if alone and len(roots) == 1:
        return
    stories = sorted({s for r in roots for s in index.cluster_stories(conn, r)})
    if len(roots) == 1 and len(stories) <= 1:
        if stories and index.story_of(conn, entry_id) != stories[0]:
            index.set_cluster_story(conn, root, stories[0])  # joined a cluster in a story
        return
    number = stories[0] if stories else min(roots)
    for other in stories[1:]:
        index.merge_story(conn, other, number)
    for r in roots:
        index.set_cluster_story(conn, r, number)


def rebuild(conn: Connection, settings: DedupSettings,
            progress: Callable[[int, int], None] | None = None,
            batch: int = 500) -> dict[str, Any]:
    """Recompute fingerprints and links of every entry, in id order (after a settings change).

    Commits every ``batch`` entries so the daemon's refreshes are not blocked meanwhile.
    Needs no clearing first: entries are redone in id order, each compared only with lower
    ids, already redone, under the same arrival rule as when linking, so the batch size
    changes no link.  Aged-out entries are linked against their own time's entries: each is
    indexed, and taken out again once the rebuild is a window past it (its own walk below
    ``pruned_below``, which the daemon's pruning never crosses); what is inside the window at
    the end stays indexed, so a longer window takes effect here.  An interrupted rebuild
    leaves the keys of the aged-out entries it redid in the index: never candidates (they
    arrived before every later entry's window), and the next rebuild takes them out.
    """
    started = time.perf_counter()
    total = index.count_entries(conn)
    done = 0
    last = 0
    walked = 0  # the rebuild's own pruning walk: ids below this are out of the index again
    by_method: dict[str, int] = {}
    with transaction(conn):
        index.lock_index(conn)  # (PostgreSQL: each transaction here runs alone in the index)
        index.clear_stories(conn)  # found again, in id order, as the entries are redone
    while True:
        ids = index.entry_ids_after(conn, last, batch)
        if not ids:
            break
        with transaction(conn):
            index.lock_index(conn)
            links = _link(conn, ids, settings, {}, force=True)
            cutoff = _around(index.arrival(conn, ids[-1]), settings)[0]
            if cutoff is not None:
                walked = index.prune(conn, walked, cutoff, 4 * batch,
                                     below=index.pruned_below(conn))
        for link in links:
            by_method[link.method] = by_method.get(link.method, 0) + 1
        done += len(ids)
        last = ids[-1]
        if progress is not None:
            progress(done, total)
    while True:  # the rest of what aged out, in batches
        with transaction(conn):
            index.lock_index(conn)
            cutoff = _around(index.arrival(conn), settings)[0]
            mark = index.pruned_below(conn)
            stop = walked if cutoff is None else index.prune(conn, walked, cutoff, 4 * batch,
                                                              below=mark)
            if stop == walked:
                if walked < mark:  # redone and inside the window: indexed from here on
                    index.set_pruned_below(conn, walked)
                break
            walked = stop
    with transaction(conn):
        index.lock_index(conn)
        index.drop_orphan_keys(conn)
    return {"entries": done, "duplicates": sum(by_method.values()), "by_method": by_method,
            "seconds": round(time.perf_counter() - started, 3)}


def explain(conn: Connection, entry_id: int, settings: DedupSettings) -> dict[str, Any]:
    """Why ``entry_id`` is or is not linked: its nearest indexed candidates and their scores
    (those that arrived within the window of it: the others are never compared with it)."""
    rows = index.load_entries(conn, [entry_id])
    if not rows:
        raise KeyError(entry_id)
    entry = rows[0]
    ts = _epoch(entry.stamp)
    fp = fpmod.compute(entry.title, entry.text, entry.url, settings)
    texts = _Texts(conn, settings.shingle)
    texts.add(entry.id, entry.text, fp)
    out: list[dict[str, Any]] = []
    found = _candidates(conn, fp, entry.id, settings=settings, arrived=entry.arrived)
    same_title = rules.same_title_clusters(fp, ts, found, settings, entry.id)
    for cand in found:
        verdict = rules.judge(fp, ts, cand, settings, texts.scorer(entry.id, fp, cand),
                              other_clusters=same_title.get(cand.root, 0))
        later = cand.id > entry.id
        info = index.entry_brief(conn, cand.id)
        decision = verdict.method or "no link"
        if later and verdict.method and cand.id == entry.duplicate_of:
            decision = f"later entry (a {verdict.method} match, more complete: the " \
                       "cluster moved to it when it arrived)"
        elif later and verdict.method:
            decision = f"later entry (a {verdict.method} match: it joined when it arrived)"
        elif verdict.method and info and info[3] == entry.id:
            decision = f"earlier entry (it links here by {verdict.method}: this one is " \
                       "more complete)"
        out.append({
            "id": cand.id, "feed": info[0] if info else None,
            "title": info[1] if info else None,
            "duplicate_of": info[3] if info else None,
            "found_by": sorted(cand.kinds), "later": later,
            "hours_apart": round(abs(ts - cand.ts) / 3600, 1),
            "jaccard": _r(verdict.jaccard), "containment": _r(verdict.containment),
            "title_similarity": _r(verdict.title_similarity),
            "score": _r(verdict.score), "decision": decision, "reason": verdict.reason,
        })
    out.sort(key=lambda c: (c["decision"] == "no link", -(c["score"] or 0), c["id"]))
    if entry.duplicate_of is not None:
        how = ("identical text after folding" if entry.dup_method == "exact"
               else f"score {entry.dup_score:.2f}" if entry.dup_score is not None else "")
        summary = f"linked to {entry.duplicate_of} by {entry.dup_method}" + (
            f": {how}" if how else "")
    elif index.count_duplicates(conn, entry.id):
        summary = "the cluster's root: its most complete member"
    elif not out:
        summary = "not linked: no entry shares an index key (URL, text hash, LSH band, title)"
    else:
        summary = "not linked: no earlier candidate passed its threshold; the nearest:"
    return {
        "entry": {"id": entry.id, "feed": entry.feed, "title": entry.title,
                  "folded_length": fp.length, "short": fp.length < settings.short_chars,
                  "canonical_url": fp.canonical_url, "text_hash": fp.text_hash},
        "duplicate_of": entry.duplicate_of, "method": entry.dup_method,
        "score": entry.dup_score, "duplicates": index.count_duplicates(conn, entry.id),
        "summary": summary,
        "candidates": out[: settings.explain_candidates],
        "story": _explain_story(conn, entry.id, ts, fp, settings, texts),
    }


def _explain_story(conn: Connection, entry_id: int, ts: int, fp: Fingerprint,
                   settings: DedupSettings, texts: _Texts) -> dict[str, Any] | None:
    """The story of an entry and why each other member is in it: its own verdict with this
    entry, or the cluster it shares, or (grouped through a third entry) its verdict all the
    same."""
    number = index.story_of(conn, entry_id)
    if number is None:
        return None
    root = index.cluster_root(conn, entry_id)
    members = []
    for other, feed, title, duplicate_of in index.story_members(conn, number):
        if other == entry_id:
            continue
        if (duplicate_of or other) == root:
            reason = "the same cluster (a reprint)"
        else:
            row = index.fingerprint_of(conn, other)
            if row is None:
                reason = "not fingerprinted"
            else:
                cand = Candidate(other, row[0], row[1], row[2], row[3], set())
                verdict = story.judge_story(fp, ts, cand, settings,
                                            texts.scorer(entry_id, fp, cand))
                reason = verdict.reason if verdict.method else \
                    f"through another member of the story (with this one: {verdict.reason})"
        members.append({"id": other, "feed": feed, "title": title,
                        "duplicate_of": duplicate_of, "reason": reason})
    return {"id": number, "members": members}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def stories(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Stories, newest first: each with its entries (roots and their reprints)."""
    return [{"id": number, "entries": [
        {"id": m[0], "feed": m[1], "title": m[2], "duplicate_of": m[3]}
        for m in index.story_members(conn, number)]}
        for number in index.story_ids(conn, limit)]


def clusters(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Clusters with more than one member, newest root first: root, then its duplicates."""
    out = []
    for root in index.cluster_roots(conn, limit):
        head = index.entry_brief(conn, root)
        out.append({
            "id": root, "feed": head[0] if head else None, "title": head[1] if head else None,
            "published": head[2] if head else None,
            "duplicates": [{"id": m[0], "feed": m[1], "title": m[2], "method": m[3],
                            "score": m[4]} for m in index.cluster_members(conn, root)],
        })
    return out
