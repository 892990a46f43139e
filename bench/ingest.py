"""Ingest benchmark: N loopback feeds, `scrape --once` cold then warm, against lemon24/reader.

Run by hand (not a test):

    .venv/bin/pip install reader        # the baseline, measured in the same run
    .venv/bin/python bench/ingest.py    # 200 feeds x 30 entries
    .venv/bin/python bench/ingest.py --feeds 50 --entries 20 --no-baseline

Feeds are built from ../shared/corpus text: every entry is a distinct article (its own title,
link, and sentences drawn from the whole corpus), so normalization and dedup do their full
work on every entry.  Each command runs in its own
process; peak RSS is the largest of that process and its worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import corpus  # noqa: E402
from server import FeedServer  # noqa: E402

_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""

_READER = """
import sys, time
from reader import make_reader
db, urls = sys.argv[1], sys.argv[2:]
reader = make_reader(db)
for url in urls:
    reader.add_feed(url, exist_ok=True)
start = time.perf_counter()
reader.update_feeds(workers=int(__import__('os').environ.get('READER_WORKERS', '1')))
seconds = time.perf_counter() - start
print("reader:", sum(1 for _ in reader.get_entries()), "entries in", seconds, "s", file=sys.stderr)
"""


def build_feeds(n_feeds: int, n_entries: int, seed: int = 7) -> list[bytes]:
    """Distinct articles: each a random draw of corpus sentences, so they are not reprints.

    Drawing 16 of the corpus's ~160 sentences makes two articles share one or two sentences,
    far below any duplicate threshold, as most entries of real feeds are.
    """
    from selectolax.lexbor import LexborHTMLParser

    posts = corpus.corpus_posts()
    rng = random.Random(seed)
    sentences = []
    for post in posts:
        text = LexborHTMLParser(post.body).text(separator="\n")
        sentences += [s.strip() + "。" for s in text.replace("\n", "。").split("。")
                      if len(s.strip()) > 12]
    images = [p.headimg.split("?")[-1] for p in posts if p.headimg]
    feeds = []
    for f in range(n_feeds):
        items = []
        for i in range(n_entries):
            post = posts[(f * n_entries + i) % len(posts)]
            drawn = rng.sample(sentences, 16)
            paragraphs = ["<p>" + "".join(drawn[k:k + 4]) + "</p>" for k in range(0, 16, 4)]
            image = f'<p><img src="{rng.choice(images)}"></p>'
            body = paragraphs[0] + image + "".join(paragraphs[1:])
            link = f"https://bench.example/{f}/{i}.html"
            items.append(corpus.rss_item(post, link, body=body).replace(
                f"<title>{post.title}", f"<title>{post.title} #{f}-{i}", 1))
        feeds.append(corpus.rss_feed(f"bench {f}", items))
    return feeds


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], stdout=subprocess.PIPE,
                         text=True, env=env, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=30)
    parser.add_argument("--no-baseline", action="store_true", help="skip lemon24/reader")
    parser.add_argument("--reader-workers", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    server = FeedServer().start()
    feeds = build_feeds(args.feeds, args.entries)
    urls = []
    for i, body in enumerate(feeds):
        server.serve(f"/feed/{i}.xml", body)
        urls.append(server.url(f"/feed/{i}.xml"))
    total = args.feeds * args.entries
    scrape = [str(Path(sys.executable).with_name("scrape"))]
    if not Path(scrape[0]).exists():
        scrape = [sys.executable, "-m", "scraper"]
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "feeds.yaml"
        lines = ["fetch: {concurrency: 32, per_host: 32}", "feeds:"]
        lines += [f"  - {{name: f{i}, url: '{u}'}}" for i, u in enumerate(urls)]
        cfg.write_text("\n".join(lines) + "\n")
        db = Path(tmp) / "bench.db"
        print(f"{args.feeds} feeds x {args.entries} entries = {total} entries on 127.0.0.1")
        for label in ("cold", "warm"):
            seconds, rss, code = measure([*scrape, "--once", "--config", str(cfg),
                                          "--db", str(db)])
            stored = _count(db)
            figures[f"scrape {label}"] = {"seconds": seconds, "entries_per_s": total / seconds,
                                          "peak_rss_mib": rss / 1024, "exit": code,
                                          "stored": stored}
        if not args.no_baseline:
            env = {**os.environ, "READER_WORKERS": str(args.reader_workers)}
            rdb = str(Path(tmp) / "reader.sqlite")
            seconds, rss, code = measure([sys.executable, "-c", _READER, rdb, *urls], env)
            figures["reader cold"] = {"seconds": seconds, "entries_per_s": total / seconds,
                                      "peak_rss_mib": rss / 1024, "exit": code}
    server.stop()

    print(f"{'run':<14} {'wall s':>8} {'entries/s':>10} {'peak RSS MiB':>13}")
    for label, fig in figures.items():
        print(f"{label:<14} {fig['seconds']:>8.2f} {fig['entries_per_s']:>10.0f} "
              f"{fig['peak_rss_mib']:>13.1f}")
    cold, warm = figures["scrape cold"], figures["scrape warm"]
    print(f"warm speed-up over cold: {cold['seconds'] / warm['seconds']:.1f}x (target 20x)")
    if "reader cold" in figures:
        ratio = cold["entries_per_s"] / figures["reader cold"]["entries_per_s"]
        print(f"cold entries/s vs lemon24/reader update_feeds: {ratio:.2f}x (target 3x)")
    print(f"stored after cold run: {cold['stored']} of {total}")
    if args.json:
        print(json.dumps(figures))
    return 0


def _count(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
